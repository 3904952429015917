"""``perfsim sweep``: the tidy table of a network's points, in process or on a Dask cluster.

The points' totals come from ``perfsim.sim.batch.evaluate_points`` (``simulate``'s own stages over
arrays); a cluster's workers each run it on chunks that keep each plan group whole, so the table is the
same. docs/explore.md states the rules. Torch-free.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..sim import check_batch
from ..sim.batch import FLOAT_TOTALS, TOTAL_COLUMNS, Axis, evaluate_points
from ..sim.timing import rate_fields
from ..units import shown
from .vary import check_grid, grid_index

if TYPE_CHECKING:
    import pandas as pd

    from ..hardware.description import HardwareProfile
    from ..ir.graph import Graph


def _chunks(index: np.ndarray, axes: Sequence[Axis], base: HardwareProfile, parts: int) -> list[np.ndarray]:
    """Point numbers split into about ``parts`` runs that keep each plan group whole."""
    rates = rate_fields(base)
    plan_k = [i for i, a in enumerate(axes) if a.field not in rates]
    if not plan_k or parts <= 1:
        return [np.arange(len(index))]
    _, gid = np.unique(index[:, plan_k], axis=0, return_inverse=True)
    gid = gid.reshape(-1)
    order = np.argsort(gid, kind="stable")
    n_groups = int(gid.max()) + 1
    bounds = np.searchsorted(gid[order], np.linspace(0, n_groups, parts + 1)[1:-1].round())
    return [c for c in np.split(order, bounds) if len(c)]


def _evaluate_chunk(graph, base, axes, index, batch):
    """One task of a distributed sweep (module level, so that it pickles)."""
    return evaluate_points(graph, base, axes, index, batch=batch)


def sweep_frame(graph: Graph, base: HardwareProfile, axes: Sequence[Axis], *, batch: int = 1,
                model: str | None = None, client: Any = None, progress: Callable[[int], None] | None = None
                ) -> pd.DataFrame:
    """The tidy table: one row per point (``model``, ``point``, the varied fields, ``fits``, the totals).

    With a dask.distributed ``client`` the points go to its workers in chunks that keep plan groups
    whole; each chunk runs ``evaluate_points`` as in process, so the numbers are the same.
    """
    check_batch(batch)
    check_grid(axes)
    index = grid_index(axes)
    if client is None:
        cols = evaluate_points(graph, base, axes, index, batch=batch, progress=progress)
    else:
        cols = _distributed(client, graph, base, axes, index, batch, progress)
    import pandas as pd  # after the plans: ``meanwhile`` may import it while they run
    frame = pd.DataFrame({"model": model or graph.name, "point": np.arange(len(index))})
    for k, a in enumerate(axes):
        frame[a.field] = pd.array([a.values[i] for i in index[:, k]]) if a.values else []
    frame["fits"] = cols["fits"]
    complete = bool(np.all(cols["fits"]))  # whole numbers stay int64 unless a point has none (then Int64)
    for k in TOTAL_COLUMNS:
        if k in FLOAT_TOTALS:
            frame[k] = np.asarray(cols[k], dtype=np.float64)
        else:
            frame[k] = np.asarray(cols[k], dtype=np.int64) if complete else pd.array(cols[k], dtype="Int64")
    return frame


def _distributed(client, graph, base, axes, index, batch, progress) -> dict[str, np.ndarray]:
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = _chunks(index, axes, base, 4 * workers)
    g, b = client.scatter(graph, broadcast=True), client.scatter(base, broadcast=True)
    futures = [client.submit(_evaluate_chunk, g, b, tuple(axes), index[p], batch, pure=False) for p in parts]
    out = {k: np.empty(len(index), dtype=object) for k in ("fits",) + TOTAL_COLUMNS}
    from distributed import as_completed
    where = {f.key: p for f, p in zip(futures, parts)}
    for f in as_completed(futures):
        p = where[f.key]
        for k, v in f.result().items():
            out[k][p] = v
        if progress:
            progress(len(p))
    out["fits"] = out["fits"].astype(bool)
    for k in FLOAT_TOTALS:
        out[k] = out[k].astype(np.float64)
    return out


def connect(address: str):
    """A dask.distributed client of the cluster at ``address`` (the ``dask`` extra)."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'perfsim[dask]'") from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(f"--scheduler {shown(address)}: cannot reach the Dask scheduler: {e}") from None
