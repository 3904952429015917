"""What every process perfsim forks does first (plot workers, sweep planners, the painter). Stdlib only."""
from __future__ import annotations

import os
import signal


def as_child(parent: int | None = None) -> None:
    """Die quietly on SIGTERM (``Pool.terminate``), leave SIGINT to the parent (which cleans up a report's
    temporary folder; the handlers forked with it would raise), and die with the parent: on Linux the
    kernel sends SIGTERM when it exits, so a parent killed mid-run leaves no helper behind writing
    "Broken pipe" tracebacks. ``parent``: its pid, to catch a parent gone before this ran."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the helper ends at its next pipe error instead
        return
    if parent is not None and os.getppid() != parent:
        os._exit(0)
