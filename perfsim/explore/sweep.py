"""Sweeps: many profile points for one network, each point's totals exactly as ``simulate`` gives them.

A point is the base profile with some fields changed (``--vary FIELD=SPEC``, a grid). The memory
plan depends on the *plan* fields (SRAM, bits, BN folding, activation fusion, weights and memory
policies) and the batch; timing only on the *timing* fields (``TIMING_FIELDS``). So the sweep runs
the plan once per distinct combination of the varied plan fields (a *group*) and computes the time
of every point with numpy, one layer at a time over all points, adding the layers in the order
``simulate`` does: the numbers are bit for bit ``simulate``'s (tests/test_sweep_properties.py).

Fields this module does not vectorise (any other profile field) fall back to one ``simulate`` call
per point; so does every point when the first point, computed both ways, disagrees (a profile
field the vector timing does not know, such as a calibrated overhead): correct first, fast for the
common fields. A point whose network does not fit in its SRAM (``DoesNotFitError``) is a row with
``fits`` false and empty totals, not an error of the whole sweep.

Torch-free. docs/explore.md states the rules.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import DoesNotFitError, InputError
from ..sim import check_batch
from ..units import parse_quantity, shown

if TYPE_CHECKING:
    import pandas as pd

    from ..ir.graph import Graph
    from ..hardware.profile import HardwareProfile

TIMING_FIELDS = ("dram_bandwidth", "dram_latency", "matrix_flops", "vector_flops", "overlap")
PLAN_FIELDS = ("sram_bytes", "activation_bits", "weight_bits", "bias_bits", "fold_batchnorm", "fuse_activation",
               "weights", "memory_policy")
FIXED_FIELDS = ("name", "description")  # never swept

# Every total of summary.json that is a number, in its order (bound_counts as three columns).
TOTAL_COLUMNS = ("latency_s", "latency_per_sample_s", "macs", "flops", "vector_ops", "params", "params_inference",
                 "model_size_bytes", "dram_read_bytes", "dram_write_bytes", "spill_bytes", "refetch_bytes",
                 "preload_bytes", "peak_sram_bytes", "layers", "tiled_layers", "bound_data", "bound_matrix",
                 "bound_vector", "t_data_s", "t_matrix_s", "t_vector_s", "t_overhead_s")
FLOAT_TOTALS = ("latency_s", "latency_per_sample_s", "t_data_s", "t_matrix_s", "t_vector_s", "t_overhead_s")

MAX_POINTS = 5_000_000  # a grid larger than this is refused before it is built
_CHUNK_CELLS = 4_000_000  # points x layers computed at once (memory bound)


@dataclass(frozen=True)
class Axis:
    """One varied field: its name and its values in base units (bytes, B/s, s, FLOP/s, bits...)."""

    field: str
    values: tuple[Any, ...]
    spec: str = ""  # as the user wrote it


# --------------------------------------------------------------------------
# --vary FIELD=SPEC
# --------------------------------------------------------------------------


def _field_kind(field: str) -> str:
    """How a field's values are read: a quantity kind, 'int', 'bool' or 'text'."""
    from ..hardware.profile import _QUANTITY_FIELDS, HardwareProfile
    if field in _QUANTITY_FIELDS:
        return _QUANTITY_FIELDS[field]
    annotation = HardwareProfile.model_fields[field].annotation
    return {int: "int", bool: "bool", float: "float"}.get(annotation, "text")


def _known_fields() -> list[str]:
    from ..hardware.profile import HardwareProfile
    return [f for f in HardwareProfile.model_fields if f not in FIXED_FIELDS]


def _value(text: str, field: str, kind: str) -> Any:
    """One value as written on the command line, in base units."""
    text = text.strip()
    if not text:
        raise InputError(f"--vary {field}: an empty value")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise InputError(f"--vary {field}: {shown(text)} is not a whole number") from None
    if kind == "float":
        return _float(text, field)
    if kind in ("bool", "text"):
        from ..hardware.profile import parse_override
        return parse_override(f"{field}={text}")[1]
    return parse_quantity(text, kind, field=f"--vary {field}")


def _float(text: str, field: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise InputError(f"--vary {field}: {shown(text)} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"--vary {field}: {shown(text)} is not finite")
    return x


def _count(field: str, n: float) -> int:
    if n > MAX_POINTS:
        raise InputError(f"--vary {field}: the range has more than {MAX_POINTS:,} values")
    return int(n)


def _range(field: str, kind: str, lo_text: str, hi_text: str, step_text: str) -> list[Any]:
    """lo..hi:xF (geometric, factor F > 1), lo..hi:+S (linear, step S > 0), lo..hi:nN (N log-spaced)."""
    if kind in ("bool", "text"):
        raise InputError(f"--vary {field}: a range needs a numeric field; list the values (a,b)")
    lo, hi = _value(lo_text, field, kind), _value(hi_text, field, kind)
    if hi < lo:
        raise InputError(f"--vary {field}: empty range {lo_text.strip()}..{hi_text.strip()} (the end is below the start)")
    build = {"x": _geometric, "+": _linear, "n": _spaced}.get(step_text[:1])
    if build is None:
        raise InputError(f"--vary {field}: after ':' write xFACTOR, +STEP or nCOUNT, got {shown(step_text)}")
    return build(field, kind, lo, hi, step_text[1:])


def _geometric(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    f = _float(arg, field)
    if not f > 1:
        raise InputError(f"--vary {field}: the factor after :x must be above 1, got {shown(arg)}")
    if lo <= 0:
        raise InputError(f"--vary {field}: a geometric range needs a positive start")
    n = _count(field, math.floor(math.log(hi / lo) / math.log(f) + 1e-9) + 1)
    return [lo * f ** k for k in range(n)]


def _linear(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    step = _value(arg, field, kind)
    if not step > 0:
        raise InputError(f"--vary {field}: the step after :+ must be positive, got {shown(arg)}")
    n = _count(field, math.floor((hi - lo) / step + 1e-9) + 1)
    return [lo + k * step for k in range(n)]


def _spaced(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    n = _count(field, _int_arg(arg, field))
    if n == 1:
        return [lo]
    if lo <= 0:
        raise InputError(f"--vary {field}: log-spaced points (:n) need a positive start")
    values = [float(v) for v in np.geomspace(lo, hi, n)]
    values[0], values[-1] = lo, hi
    return values


def _int_arg(text: str, field: str) -> int:
    if not text.strip().isdecimal() or int(text) < 1:
        raise InputError(f"--vary {field}: the count after :n must be a positive whole number, got {shown(text)}")
    return int(text)


def _whole(field: str, kind: str, values: list[Any]) -> list[Any]:
    """Byte counts and bits are whole numbers: ranges are rounded to them, repeats dropped (order kept)."""
    if kind in ("bytes", "int"):
        values = [int(round(v)) for v in values]
    return list(dict.fromkeys(values))


def parse_vary(spec: str, base: HardwareProfile) -> Axis:
    """``FIELD=SPEC`` -> an ``Axis``; every value is checked against the profile's rules (LIMITS)."""
    if "=" not in spec:
        raise InputError(f"--vary expects FIELD=VALUES, got {shown(spec)}")
    field, text = (s.strip() for s in spec.split("=", 1))
    known = _known_fields()
    if field not in known:
        raise InputError(f"--vary: unknown profile field {shown(field)} (fields: {', '.join(known)})")
    kind = _field_kind(field)
    if ".." in text:
        lo_text, rest = text.split("..", 1)
        hi_text, sep, step_text = rest.rpartition(":")
        if not sep:
            raise InputError(f"--vary {field}: a range is START..END:xFACTOR, :+STEP or :nCOUNT, got {shown(text)}")
        values = _range(field, kind, lo_text, hi_text, step_text.strip())
        is_range = True
    else:
        is_range = False
        values = [_value(v, field, kind) for v in text.split(",")]
    values = _whole(field, kind, values)
    if not values:
        raise InputError(f"--vary {field}: no values")
    _check_values(field, values, base, is_range=is_range)
    return Axis(field=field, values=tuple(values), spec=spec)


def _check_values(field: str, values: Sequence[Any], base: HardwareProfile, *, is_range: bool) -> None:
    """Values on the base profile: the profile's own validation (LIMITS), one line naming the field.
    A range is an interval, so its least and greatest values stand for all of it."""
    from ..hardware.profile import load_profile
    for v in (min(values), max(values)) if is_range else values:
        try:
            load_profile(base, **{field: v})
        except InputError as e:
            raise InputError(f"--vary {field}: {e}") from None


def check_grid(axes: Sequence[Axis]) -> int:
    """The number of points; refuses repeated fields and grids over ``MAX_POINTS``."""
    seen = set()
    for a in axes:
        if a.field in seen:
            raise InputError(f"--vary {a.field}: given twice")
        seen.add(a.field)
    n = math.prod(len(a.values) for a in axes)
    if n > MAX_POINTS:
        raise InputError(f"--vary: the grid has {n:,} points, more than {MAX_POINTS:,}")
    return n


def grid_index(axes: Sequence[Axis]) -> np.ndarray:
    """[points, axes] indices into each axis's values, the first axis varying slowest."""
    shape = tuple(len(a.values) for a in axes)
    if not shape:
        return np.zeros((1, 0), dtype=np.int64)
    return np.indices(shape).reshape(len(shape), -1).T.astype(np.int64)


# --------------------------------------------------------------------------
# Evaluating points
# --------------------------------------------------------------------------


@dataclass
class _Group:
    """What the memory plan decided for one combination of plan fields: per-layer arrays and totals."""

    fits: bool
    sram_range: tuple[float, float]  # [lo, hi): the SRAM sizes this very plan holds for (MemoryPlan)
    dram: np.ndarray | None = None  # per layer: DRAM bytes read + written
    transfers: np.ndarray | None = None
    vector_ops: np.ndarray | None = None
    matrix_eff: np.ndarray | None = None
    vector_eff: np.ndarray | None = None
    overhead: np.ndarray | None = None  # per layer: seconds of kernel overhead
    totals: dict[str, int] | None = None


def _plan_group(graph: Graph, p: HardwareProfile, batch: int) -> _Group:
    """The simulator's stages up to the plan (perfsim.sim.simulator.simulate, mirrored; the property test
    and the first-point check hold the two together)."""
    from ..sim.memory import plan_memory, tensor_bytes
    from ..sim.timing import row_fixed_time, unit_efficiencies
    sizes = tensor_bytes(graph, batch, p.activation_bits)
    wbytes = [layer.weight_bytes(p.weight_bits, p.bias_bits, p.fold_batchnorm) for layer in graph.layers]
    stored = [0 if layer.shares_weights else b for layer, b in zip(graph.layers, wbytes)]
    try:
        plan = plan_memory(graph, p, sizes, wbytes, stored)
    except DoesNotFitError as e:
        return _Group(fits=False, sram_range=e.sram_range)
    tr = plan.traffic
    effs = [unit_efficiencies(p, layer, batch, t.tiles) for layer, t in zip(graph.layers, tr)]
    overhead = [row_fixed_time(p, layer, sizes[layer.output], t.tiles) for layer, t in zip(graph.layers, tr)]
    vops = [layer.vector_ops(p.fold_batchnorm, p.fuse_activation) * batch for layer in graph.layers]
    macs = sum(layer.macs * batch for layer in graph.layers)
    totals = {
        "macs": macs, "flops": 2 * macs, "vector_ops": sum(vops), "params": graph.params,
        "params_inference": sum(layer.params_inference(p.fold_batchnorm) for layer in graph.layers
                                if not layer.shares_weights),
        "model_size_bytes": sum(stored), "dram_read_bytes": sum(t.read_bytes for t in tr),
        "dram_write_bytes": sum(t.write_bytes for t in tr), "spill_bytes": sum(t.spill_bytes for t in tr),
        "refetch_bytes": sum(t.refetch_bytes for t in tr), "preload_bytes": plan.preload_bytes,
        "peak_sram_bytes": max((t.sram_bytes for t in tr), default=0), "layers": len(tr),
        "tiled_layers": sum(1 for t in tr if t.tiles > 1),
    }
    return _Group(fits=True, sram_range=plan.sram_range, dram=np.array([t.read_bytes + t.write_bytes for t in tr], dtype=np.float64),
                  transfers=np.array([t.transfers for t in tr], dtype=np.float64),
                  vector_ops=np.array(vops, dtype=np.float64),
                  matrix_eff=np.array([e[0] for e in effs], dtype=np.float64),
                  vector_eff=np.array([e[1] for e in effs], dtype=np.float64),
                  overhead=np.array(overhead, dtype=np.float64), totals=totals)


def _timing(graph: Graph, batch: int, groups: list[_Group], gid: np.ndarray, t: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """Every point's time terms and bound counts, layer by layer (perfsim.sim.timing.layer_times, over arrays),
    summed in layer order as the simulator sums them."""
    n = len(gid)
    dram = np.stack([g.dram for g in groups])[gid]  # [points, layers]
    transfers = np.stack([g.transfers for g in groups])[gid]
    vops = np.stack([g.vector_ops for g in groups])[gid]
    meff = np.stack([g.matrix_eff for g in groups])[gid]
    veff = np.stack([g.vector_eff for g in groups])[gid]
    ovh = np.stack([g.overhead for g in groups])[gid]
    two_macs = [float(2 * layer.macs * batch) for layer in graph.layers]
    out = {k: np.zeros(n) for k in ("latency_s", "t_data_s", "t_matrix_s", "t_vector_s", "t_overhead_s")}
    counts = {k: np.zeros(n, dtype=np.int64) for k in ("bound_data", "bound_matrix", "bound_vector")}
    for j in range(len(two_macs)):
        data = dram[:, j] / t["dram_bandwidth"] + transfers[:, j] * t["dram_latency"]
        matrix = two_macs[j] / (t["matrix_flops"] * meff[:, j])
        vector = vops[:, j] / (t["vector_flops"] * veff[:, j])
        total = np.where(t["overlap"], np.maximum(data, matrix + vector), data + matrix + vector) + ovh[:, j]
        is_vector = vector > np.maximum(data, matrix)
        is_matrix = (matrix > data) & ~is_vector
        counts["bound_vector"] += is_vector
        counts["bound_matrix"] += is_matrix
        counts["bound_data"] += ~(is_vector | is_matrix)
        out["latency_s"] = out["latency_s"] + total
        out["t_data_s"] = out["t_data_s"] + data
        out["t_matrix_s"] = out["t_matrix_s"] + matrix
        out["t_vector_s"] = out["t_vector_s"] + vector
        out["t_overhead_s"] = out["t_overhead_s"] + ovh[:, j]
    out["latency_per_sample_s"] = out["latency_s"] / batch
    return {**out, **counts}


def _profiles_of(base: HardwareProfile, axes: Sequence[Axis], rows: np.ndarray) -> list[dict[str, Any]]:
    return [{a.field: a.values[k] for a, k in zip(axes, row)} for row in rows]


def _simulate_points(graph: Graph, base: HardwareProfile, axes: Sequence[Axis], index: np.ndarray, batch: int
                     ) -> dict[str, np.ndarray]:
    """The fallback: one ``simulate`` per point."""
    from ..hardware.profile import load_profile
    from ..sim.simulator import simulate
    cols: dict[str, list] = {k: [] for k in ("fits",) + TOTAL_COLUMNS}
    for over in _profiles_of(base, axes, index):
        try:
            s = simulate(graph, load_profile(base, **over), batch=batch).summary
        except DoesNotFitError:
            cols["fits"].append(False)
            for k in TOTAL_COLUMNS:
                cols[k].append(math.nan if k in FLOAT_TOTALS else None)
            continue
        cols["fits"].append(True)
        for k in TOTAL_COLUMNS:
            cols[k].append(s["bound_counts"][k[6:]] if k.startswith("bound_") else s[k])
    return {k: np.array(v, dtype=object if k not in FLOAT_TOTALS + ("fits",) else None) for k, v in cols.items()}


def _timing_arrays(base: HardwareProfile, axes: Sequence[Axis], index: np.ndarray) -> dict[str, np.ndarray]:
    """Each timing field's value at every point (the base's where the field is not varied)."""
    n = len(index)
    out = {}
    for f in TIMING_FIELDS:
        k = next((i for i, a in enumerate(axes) if a.field == f), None)
        dtype = bool if f == "overlap" else np.float64
        if k is None:
            out[f] = np.full(n, getattr(base, f), dtype=dtype)
        else:
            out[f] = np.array(axes[k].values, dtype=dtype)[index[:, k]]
    return out


def evaluate(graph: Graph, base: HardwareProfile, axes: Sequence[Axis], index: np.ndarray, *, batch: int = 1,
             progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """The totals (``TOTAL_COLUMNS``, and ``fits``) of the points ``index`` (rows of indices into each
    axis's values): a dict of arrays, one entry per point, in ``index`` order."""
    if any(a.field not in TIMING_FIELDS + PLAN_FIELDS for a in axes) or not _agrees(graph, base, batch):
        out = _simulate_points(graph, base, axes, index, batch)
        if progress:
            progress(len(index))
        return out
    plan_k = [i for i, a in enumerate(axes) if a.field in PLAN_FIELDS]
    keys, gid = np.unique(index[:, plan_k], axis=0, return_inverse=True) if plan_k else \
        (np.zeros((1, 0), dtype=np.int64), np.zeros(len(index), dtype=np.int64))
    gid = gid.reshape(-1)
    changes = [{axes[k].field: axes[k].values[v] for k, v in zip(plan_k, key)} for key in keys]
    groups = _plan_groups(graph, base, changes, batch)
    if progress:
        progress(len(index))
    return _assemble(graph, base, axes, index, batch, groups, gid)


UNBOUNDED_SRAM = 2**40  # LIMITS' largest SRAM: no eviction, no tiling, no flush


def _plan_groups(graph: Graph, base: HardwareProfile, changes: list[dict[str, Any]], batch: int) -> list[_Group]:
    """One plan per group (``changes``: its plan fields' values), reusing the unbounded plan where the
    SRAM never binds.

    A liveness run in which no layer's working set plus what stays resident exceeds the capacity
    evicts nothing and tiles nothing: it is the run with unbounded SRAM. That holds for every SRAM at
    or above the unbounded run's peak (and, for resident weights, at or above the weights plus the
    peak of live activations, where the preload decision stays the same); the paper replay likewise
    never flushes there. So points with such an SRAM share the unbounded plan. The rest are planned
    one by one, in two forked workers when there are many (``_parallel``).

    Each value was validated on the base profile by ``parse_vary`` (the profile has no rule across
    fields), so a group's profile is the base with its changes copied in.
    """
    out: list[_Group | None] = [None] * len(changes)
    families: dict[tuple, tuple[_Group, int]] = {}
    todo = []
    for i, change in enumerate(changes):
        family = _family(change)
        if family not in families:
            families[family] = _unbounded(graph, base.model_copy(update=dict(family)), batch)
        group, threshold = families[family]
        if change.get("sram_bytes", base.sram_bytes) >= threshold:
            out[i] = group
        else:
            todo.append(i)
    todo.sort(key=lambda i: (_family(changes[i]), changes[i].get("sram_bytes", base.sram_bytes)))
    jobs = [(_family(changes[i]), base.model_copy(update=changes[i])) for i in todo]
    for i, g in zip(todo, _parallel(graph, jobs, batch)):
        out[i] = g
    return out


def _family(change: dict[str, Any]) -> tuple:
    """A group's plan fields but the SRAM size: the groups of one family differ in SRAM alone."""
    return tuple(sorted((k, v) for k, v in change.items() if k != "sram_bytes"))


def _walk(graph: Graph, jobs: Sequence[tuple[tuple, HardwareProfile]], batch: int) -> list[_Group]:
    """The plans of ``jobs`` ((family, profile), in order of family, then SRAM size): a plan holds for
    every SRAM size in its ``sram_range`` (perfsim.sim.capacity), so the next size of the same family
    within it reuses the plan instead of planning again."""
    out: list[_Group] = []
    last: tuple | None = None
    for family, p in jobs:
        g = out[-1] if out else None
        if not (g is not None and family == last and g.sram_range[0] <= p.sram_bytes < g.sram_range[1]):
            g = _plan_group(graph, p, batch)
        out.append(g)
        last = family
    return out


def _unbounded(graph: Graph, p: HardwareProfile, batch: int) -> tuple[_Group, int]:
    """The plan with unbounded SRAM, and the least SRAM from which on it is every point's plan."""
    from ..sim.memory import tensor_bytes
    from ..sim.memory.liveness import live_peak
    group = _plan_group(graph, p.model_copy(update={"sram_bytes": UNBOUNDED_SRAM}), batch)
    threshold = group.totals["peak_sram_bytes"]
    if p.weights == "resident":
        live = live_peak(graph, tensor_bytes(graph, batch, p.activation_bits))
        threshold = max(threshold, group.totals["model_size_bytes"] + live)
    return group, threshold


_JOB: tuple = ()  # the forked workers' (graph, profiles, batch): inherited, never pickled
PARALLEL_FROM = 64  # plans; fewer run in process


def _parallel(graph: Graph, jobs: list[tuple[tuple, HardwareProfile]], batch: int) -> list[_Group]:
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
                _run_meanwhile()  # after the fork: nothing the workers inherit is half-imported
                return [g for part in pending.get() for g in part]
        except (OSError, ValueError):
            pass  # no fork here (or no resources): plan serially
        finally:
            _JOB = ()
    return _walk(graph, jobs, batch)


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


def _run_meanwhile() -> None:
    while _MEANWHILE:
        _MEANWHILE.pop(0)()


def _plan_chunk(span: tuple[int, int]) -> list[_Group]:
    graph, jobs, batch = _JOB
    return _walk(graph, jobs[span[0]:span[1]], batch)


def _assemble(graph, base, axes, index, batch, groups: list[_Group], gid: np.ndarray) -> dict[str, np.ndarray]:
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
    t_all = _timing_arrays(base, axes, index[ok])
    step = max(1, _CHUNK_CELLS // max(1, len(graph.layers)))
    for s in range(0, len(ok), step):
        sel = ok[s:s + step]
        t = {f: v[s:s + step] for f, v in t_all.items()}
        times = _timing(graph, batch, [groups[i] for i in fitting], remap[gid[sel]], t)
        for k, v in times.items():
            out[k][sel] = v
    for k in TOTAL_COLUMNS:
        if k not in FLOAT_TOTALS and not k.startswith("bound_"):
            out[k][ok] = np.array([g.totals[k] if g.fits else None for g in groups], dtype=object)[gid[ok]]
    return out


def _agrees(graph: Graph, base: HardwareProfile, batch: int) -> bool:
    """The vector path reproduces ``simulate`` at the base profile (else a field it does not know is at work)."""
    from ..sim.simulator import simulate
    try:
        want = simulate(graph, base, batch=batch).summary
    except DoesNotFitError:
        return True  # nothing to compare at the base; the property tests hold the paths together
    got = _assemble(graph, base, (), np.zeros((1, 0), dtype=np.int64), batch, [_plan_group(graph, base, batch)],
                    np.zeros(1, dtype=np.int64))
    return all(got[k][0] == (want["bound_counts"][k[6:]] if k.startswith("bound_") else want[k])
               for k in TOTAL_COLUMNS)


# --------------------------------------------------------------------------
# The sweep: a table
# --------------------------------------------------------------------------


def _chunks(index: np.ndarray, axes: Sequence[Axis], parts: int) -> list[np.ndarray]:
    """Point numbers split into about ``parts`` runs that keep each plan group whole."""
    plan_k = [i for i, a in enumerate(axes) if a.field in PLAN_FIELDS]
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
    return evaluate(graph, base, axes, index, batch=batch)


def sweep_frame(graph: Graph, base: HardwareProfile, axes: Sequence[Axis], *, batch: int = 1,
                model: str | None = None, client: Any = None, progress: Callable[[int], None] | None = None
                ) -> pd.DataFrame:
    """The tidy table: one row per point (``model``, ``point``, the varied fields, ``fits``, the totals).

    With a dask.distributed ``client`` the points go to its workers in chunks that keep plan groups
    whole; each chunk runs ``evaluate`` as in process, so the numbers are the same.
    """
    check_batch(batch)
    check_grid(axes)
    index = grid_index(axes)
    if client is None:
        cols = evaluate(graph, base, axes, index, batch=batch, progress=progress)
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
    parts = _chunks(index, axes, 4 * workers)
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


def knee(values: Sequence[float], spills: Sequence[Any], fits: Sequence[bool]) -> Any:
    """The smallest swept value from which on nothing spills (``spill_bytes`` 0 at it and at every larger
    value swept); None if spills never vanish."""
    pairs = sorted(zip(values, spills, fits), key=lambda t: t[0])
    found = None
    for v, s, ok in reversed(pairs):
        if not ok or s is None or s != 0:
            break
        found = v
    return found


def points_of(axes: Sequence[Axis]) -> Callable[[int], dict[str, Any]]:
    """Point number -> its varied fields (for messages)."""
    shape = tuple(len(a.values) for a in axes)

    def field_values(point: int) -> dict[str, Any]:
        idx = np.unravel_index(point, shape) if shape else ()
        return {a.field: a.values[i] for a, i in zip(axes, idx)}
    return field_values


__all__ = ["Axis", "TIMING_FIELDS", "PLAN_FIELDS", "TOTAL_COLUMNS", "parse_vary", "check_grid", "grid_index",
           "evaluate", "sweep_frame", "connect", "knee", "points_of"]
