"""A forked process that draws plots, so that importing matplotlib overlaps the command's own work.

Importing matplotlib's figure and Agg canvas takes ~0.3 s, about as long as a 1,001-point
sweep plans and builds its table. ``start()`` forks a painter early; it imports matplotlib
while the command works, then draws what ``draw`` sends it: a module-level function of plain,
picklable data (no pandas) and the path of the PNG to write. ``finish`` waits until every
drawing is on disk and stops the painter. Anything wrong with the painter (no fork here, it
died, a drawing raised in it) falls back to drawing in this process, so a plot is never lost
to it; an error the drawing itself raises is raised here, as it would be without a painter.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

_START_METHOD = "fork"


class Painter:
    def __init__(self):
        import multiprocessing
        ctx = multiprocessing.get_context(_START_METHOD)
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child_conn, self._conn, os.getpid()), daemon=True,
                                 name="perfsim-painter")
        self._proc.start()
        child_conn.close()
        self._sent: list[tuple[Callable[..., None], tuple]] = []

    def draw(self, fn: Callable[..., None], *args: Any) -> None:
        """Draw ``fn(*args)`` in the painter (``fn`` writes its file)."""
        self._sent.append((fn, args))
        if self._proc is not None:
            try:
                self._conn.send((fn, args))
            except (OSError, ValueError):  # the painter is gone: finish draws here
                self._stop()

    def finish(self) -> None:
        """Wait for every drawing; draw here what the painter did not. Stops the painter."""
        done = 0
        if self._proc is not None:
            try:
                for _ in self._sent:
                    if not self._conn.recv():  # it raised there: draw here, where the same error surfaces plainly
                        break
                    done += 1
            except (EOFError, OSError):
                pass
        self._stop()
        for fn, args in self._sent[done:]:
            fn(*args)
        self._sent = []

    def close(self) -> None:
        """Stop the painter without waiting for its drawings (on an error or a signal)."""
        self._sent = []
        self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join()


def start() -> Painter | None:
    """A painter, or None where forking is not possible or would not help (one core, not the main
    thread, inside a daemon process, ``PERFSIM_SERIAL_PLOTS`` set)."""
    import multiprocessing
    if ((os.cpu_count() or 1) < 2 or not hasattr(os, "fork") or os.environ.get("PERFSIM_SERIAL_PLOTS")
            or threading.current_thread() is not threading.main_thread()
            or multiprocessing.current_process().daemon):
        return None
    try:
        return Painter()
    except (OSError, ValueError):
        return None


def _serve(conn, parent_conn, parent: int) -> None:
    """The painter: import the plotting library, then draw until told to stop or the parent is gone."""
    from ..children import as_child
    as_child(parent)
    parent_conn.close()
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        fn, args = job
        try:
            fn(*args)
            drawn = True
        except Exception:  # the parent draws it again and meets the error itself
            drawn = False
        try:
            conn.send(drawn)
        except (OSError, ValueError):
            break
    conn.close()
