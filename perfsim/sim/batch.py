"""Many profile points for one network, each point's totals exactly ``simulate``'s (the sweep's engine).

A point is the base profile with some flat fields changed (an ``Axis`` per field, a grid of points).
``simulate`` has two stages (``perfsim.sim.simulator``): ``plan_rows`` (sizes, the memory plan, each
row's ``RowWork``) and the timing of each row from the profile's ``Rates``. Here the points are grouped
by everything but their rate fields (``timing.rate_fields``: bandwidth, latency, peaks, overlap, energy
prices); ``plan_rows`` runs once per group, and each layer's ``timing.layer_times`` runs once over the
arrays of all the points, added up in layer order by ``timing.Totals``: the same functions with arrays,
so the numbers are ``simulate``'s bit for bit (tests/test_sweep_properties.py). A group whose SRAM never
binds shares the plan with unbounded SRAM, and consecutive SRAM sizes within one plan's ``sram_range``
share that plan (``perfsim.sim.capacity``). A point whose network does not fit in its SRAM
(``DoesNotFitError``) has ``fits`` false and empty totals. Torch-free.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import DoesNotFitError
from .results import Summary
from .simulator import plan_rows
from .timing import Rates, RowWork, Totals, layer_times, rate_fields

if TYPE_CHECKING:
    from ..hardware.description import HardwareProfile
    from ..ir.graph import Graph

# Every total of summary.json that is a number, in its order (bound_counts as three columns).
_NOT_TOTALS = ("model", "profile", "perfsim_version", "batch", "input_shape", "notes")
TOTAL_COLUMNS = tuple(c for f in fields(Summary) if f.name not in _NOT_TOTALS
                      for c in (("bound_data", "bound_matrix", "bound_vector") if f.name == "bound_counts"
                                else (f.name,)))
FLOAT_TOTALS = tuple(f.name for f in fields(Summary) if f.type == "float")
UNBOUNDED_SRAM = 2**40  # LIMITS' largest SRAM: no eviction, no tiling, no flush
_CHUNK_CELLS = 4_000_000  # points x layers computed at once (memory bound)


@dataclass(frozen=True)
class Axis:
    """One varied field: its name and its values in base units (bytes, B/s, s, FLOP/s, bits...)."""

    field: str
    values: tuple[Any, ...]
    spec: str = ""  # as the user wrote it


@dataclass
class _Group:
    """What ``plan_rows`` made of one group's profile: each ``RowWork`` field as an array over the layers."""

    fits: bool
    sram_range: tuple[float, float]  # [lo, hi): the SRAM sizes this very plan holds for (MemoryPlan)
    profile: Any = None  # the group's profile (its rates, for ``Rates.of``)
    work: dict[str, np.ndarray] | None = None
    totals: dict[str, int] | None = None  # what the plan fixes (``simulator.plan_totals``)
    matrix_macs: int = 0


def _plan_group(graph: Graph, p: HardwareProfile, batch: int) -> _Group:
    try:
        planned = plan_rows(graph, p, batch)
    except DoesNotFitError as e:
        return _Group(fits=False, sram_range=e.sram_range, profile=p)
    work = {f: np.array([getattr(w, f) for w in planned.work]) for f in RowWork._fields}
    return _Group(fits=True, sram_range=planned.plan.sram_range, profile=p, work=work, totals=planned.totals,
                  matrix_macs=planned.matrix_macs)


def evaluate_points(graph: Graph, base: HardwareProfile, axes: Sequence[Axis], index: np.ndarray, *,
                    batch: int = 1, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """The totals (``TOTAL_COLUMNS``, and ``fits``) of the points ``index`` (rows of indices into each axis's
    values): a dict of arrays, one entry per point, in ``index`` order."""
    rates = rate_fields(base)
    group_k = [i for i, a in enumerate(axes) if a.field not in rates]
    keys, gid = np.unique(index[:, group_k], axis=0, return_inverse=True) if group_k else \
        (np.zeros((1, 0), dtype=np.int64), np.zeros(len(index), dtype=np.int64))
    gid = gid.reshape(-1)
    changes = [{axes[k].field: axes[k].values[v] for k, v in zip(group_k, key)} for key in keys]
    groups = _plan_groups(graph, base, changes, batch)
    if progress:
        progress(len(index))
    return _assemble(graph, axes, index, batch, groups, gid, rates)


def _plan_groups(graph: Graph, base: HardwareProfile, changes: list[dict[str, Any]], batch: int) -> list[_Group]:
    """One plan per group (``changes``: its group fields' values), reusing the unbounded plan where the
    SRAM never binds.

    A liveness run in which no layer's working set plus what stays resident exceeds the capacity
    evicts nothing and tiles nothing: it is the run with unbounded SRAM. That holds for every SRAM at
    or above the unbounded run's peak (and, for resident weights, at or above the weights plus the
    peak of live activations, where the preload decision stays the same); the paper replay likewise
    never flushes there. So points with such an SRAM share the unbounded plan. The rest are planned
    one by one, in two forked workers when there are many (``_in_workers``).

    Each value was validated on the base profile (the sweep's ``parse_vary``), so a group's profile is
    the base with its changes copied in (``HardwareProfile.with_fields``).
    """
    out: list[_Group | None] = [None] * len(changes)
    families: dict[tuple, tuple[_Group, int]] = {}
    todo = []
    for i, change in enumerate(changes):
        family = _family(change)
        if family not in families:
            families[family] = _unbounded(graph, base.with_fields(**dict(family)), batch)
        group, threshold = families[family]
        if change.get("sram_bytes", base.memory.sram_bytes) >= threshold:
            out[i] = group
        else:
            todo.append(i)
    todo.sort(key=lambda i: (_family(changes[i]), changes[i].get("sram_bytes", base.memory.sram_bytes)))
    jobs = [(_family(changes[i]), base.with_fields(**changes[i])) for i in todo]
    for i, g in zip(todo, _in_workers(graph, jobs, batch)):
        out[i] = g
    return out


def _family(change: dict[str, Any]) -> tuple:
    """A group's fields but the SRAM size: the groups of one family differ in SRAM alone."""
    return tuple(sorted((k, _hashable(v)) for k, v in change.items() if k != "sram_bytes"))


def _hashable(v: Any) -> Any:
    return repr(v) if isinstance(v, (dict, list)) else v


def _walk(graph: Graph, jobs: Sequence[tuple[tuple, HardwareProfile]], batch: int) -> list[_Group]:
    """The plans of ``jobs`` ((family, profile), in order of family, then SRAM size): a plan holds for
    every SRAM size in its ``sram_range`` (perfsim.sim.capacity), so the next size of the same family
    within it reuses the plan instead of planning again."""
    out: list[_Group] = []
    last: tuple | None = None
    for family, p in jobs:
        g = out[-1] if out else None
        if not (g is not None and family == last and g.sram_range[0] <= p.memory.sram_bytes < g.sram_range[1]):
            g = _plan_group(graph, p, batch)
        out.append(g)
        last = family
    return out


def _unbounded(graph: Graph, p: HardwareProfile, batch: int) -> tuple[_Group, int]:
    """The plan with unbounded SRAM, and the least SRAM from which on it is every point's plan."""
    from .memory import tensor_bytes
    from .memory.liveness import live_peak
    group = _plan_group(graph, p.with_fields(sram_bytes=UNBOUNDED_SRAM), batch)
    threshold = group.totals["peak_sram_bytes"]
    if p.memory.weights == "resident":
        live = live_peak(graph, tensor_bytes(graph, batch, p.formats.activation_bits))
        threshold = max(threshold, group.totals["model_size_bytes"] + live)
    return group, threshold


def _assemble(graph: Graph, axes: Sequence[Axis], index: np.ndarray, batch: int, groups: list[_Group],
              gid: np.ndarray, rates: Sequence[str]) -> dict[str, np.ndarray]:
    n = len(index)
    fits = np.array([g.fits for g in groups], dtype=bool)[gid]
    out: dict[str, np.ndarray] = {"fits": fits}
    for k in TOTAL_COLUMNS:
        out[k] = np.full(n, math.nan) if k in FLOAT_TOTALS else np.full(n, None, dtype=object)
    ok = np.flatnonzero(fits)
    if len(ok) == 0:
        return out
    fitting = [i for i, g in enumerate(groups) if g.fits]
    remap = np.full(len(groups), -1, dtype=np.int64)
    remap[fitting] = np.arange(len(fitting))
    kept = [groups[i] for i in fitting]
    work = {f: np.stack([g.work[f] for g in kept]) for f in RowWork._fields}  # [groups, layers]
    varied = {a.field: np.array(a.values)[index[ok, k]] for k, a in enumerate(axes) if a.field in rates}
    step = max(1, _CHUNK_CELLS // max(1, len(graph.layers)))
    for s in range(0, len(ok), step):
        sel, g = ok[s:s + step], remap[gid[ok[s:s + step]]]
        times = _timing(len(graph.layers), batch, kept, g, work, {f: v[s:s + step] for f, v in varied.items()})
        for k, v in times.items():
            out[k][sel] = v
    for k in kept[0].totals:  # what the plans fix
        out[k][ok] = np.array([g.totals[k] for g in kept], dtype=object)[remap[gid[ok]]]
    return out


def _timing(layers: int, batch: int, groups: list[_Group], g: np.ndarray, work: dict[str, np.ndarray],
            varied: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The time-dependent totals of points of groups ``g``: ``layer_times`` over arrays, layer by layer, added
    up by ``Totals`` as ``simulate`` adds its rows."""
    rates = _rates(groups, g, varied)
    totals = Totals()
    for j in range(layers):
        totals.add(layer_times(RowWork(*(work[f][g, j] for f in RowWork._fields)), rates))
    macs = np.array([grp.matrix_macs for grp in groups], dtype=np.int64)[g]
    return totals.finish(batch, macs, rates.matrix_flops)


def _rates(groups: list[_Group], g: np.ndarray, varied: dict[str, np.ndarray]) -> Rates:
    """Each point's ``Rates``: its group's profile's (``Rates.of``), its varied rate fields taking their place."""
    out = {f: np.empty(len(g), dtype=bool if f == "overlap" else np.float64) for f in Rates._fields}
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.diff(g[order])) + 1
    for part in np.split(order, bounds):
        r = Rates.of(groups[g[part[0]]].profile, {f: v[part] for f, v in varied.items()})
        for f, v in zip(Rates._fields, r):
            out[f][part] = v
    return Rates(**out)


# --------------------------------------------------------------------------
# Many plans at once: forked workers
# --------------------------------------------------------------------------

_JOB: tuple = ()  # the forked workers' (graph, profiles, batch): inherited, never pickled
PARALLEL_FROM = 64  # plans; fewer run in process


def _in_workers(graph: Graph, jobs: list[tuple[tuple, HardwareProfile]], batch: int) -> list[_Group]:
    """Plans of many profiles (``_walk``'s jobs) in forked workers, each walking contiguous chunks (the
    main thread of a main process only: never inside a Dask worker or another pool); serially otherwise."""
    import multiprocessing
    import os
    import threading

    from ..children import as_child
    global _JOB
    serial = (len(jobs) < PARALLEL_FROM or (os.cpu_count() or 1) < 2 or not hasattr(os, "fork")
              or threading.current_thread() is not threading.main_thread()
              or multiprocessing.current_process().daemon or os.environ.get("PERFSIM_SERIAL_SWEEP"))
    if not serial:
        _JOB = (graph, jobs, batch)
        try:
            # the parent's own work meanwhile (imports) keeps one core busy: leave it that core
            workers = 1 if _MEANWHILE and (os.cpu_count() or 1) <= 2 else 2
            step = -(-len(jobs) // 8)  # eight chunks: a slow one does not hold up the rest for long
            spans = [(k, k + step) for k in range(0, len(jobs), step)]
            with multiprocessing.get_context("fork").Pool(workers, initializer=as_child,
                                                           initargs=(os.getpid(),)) as pool:
                pending = pool.map_async(_plan_chunk, spans, chunksize=1)
                run_meanwhile()  # after the fork: nothing the workers inherit is half-imported
                return [g for part in pending.get() for g in part]
        except (OSError, ValueError):
            pass  # no fork here (or no resources): plan serially
        finally:
            _JOB = ()
    return _walk(graph, jobs, batch)


def _plan_chunk(span: tuple[int, int]) -> list[_Group]:
    graph, jobs, batch = _JOB
    return _walk(graph, jobs[span[0]:span[1]], batch)


_MEANWHILE: list[Callable[[], None]] = []


@contextlib.contextmanager
def meanwhile(fn: Callable[[], None]):
    """Run ``fn`` once in this process while forked workers plan (e.g. import the plotting library the
    command needs next): the two overlap on a multi-core machine. Serial plans leave it to the caller."""
    _MEANWHILE.append(fn)
    try:
        yield
    finally:
        if fn in _MEANWHILE:
            _MEANWHILE.remove(fn)


def run_meanwhile() -> None:
    while _MEANWHILE:
        _MEANWHILE.pop(0)()
