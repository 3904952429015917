"""``perfsim validate``: perfsim's per-layer prediction against the real module on this CPU.

One input (seeded random) is drawn; the module is captured on it (every call computed, so a branch on
values takes the branch it takes when timed) and timed on it as plain eager PyTorch
(``perfsim.host.measure``): the whole forward as a user would run it, and every ATen call inside the
capture's dispatch mode. The capture's graph is the one predicted; its calls and the timed ones are the
same, index for index, unless the forward took another branch between the two, in which case they are
lined up by (ATen target, module path) (``perfsim.host.match``). A row's measured time is the sum of its
calls' medians. Matched calls that make no row (views, a channel shuffle's copy, ops the rules ignore)
are unattributed; timed calls with no counterpart in the capture, and rows missing a call, are
unmatched, reported with their time. The whole-network error compares perfsim's latency with the plain
eager forward, which includes everything. The graph for the measured input is compared with the zeros
graph ``perfsim run`` uses (``GraphDifference``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..frontends.sources import ModelOptions

# Refuse when fewer of the calls than this line up (matched calls over the longer of the capture's and
# the timed forward's): the rows' times would then say little. Measured (docs/hardware.md, "validate"):
# with the same input the capture and the timed forward match fully in every network of the coverage
# table; a synthetic forward that switches branches entirely between the two matches none.
MIN_MATCHED = 0.5
TOP_UNMATCHED = 10  # unmatched calls listed in the JSON, by time


@dataclass(frozen=True)
class RowCheck:
    layer: str
    op: str
    calls: int
    predicted_s: float
    measured_s: float
    measured_q1_s: float
    measured_q3_s: float

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s if self.measured_s > 0 else math.inf


@dataclass(frozen=True)
class GraphDifference:
    """The graph perfsim predicts (captured on the measured input) against the zeros graph ``perfsim run``
    uses: MACs, rows, ops, and whether the ops are the same (names, targets, MACs, in order)."""

    macs: int
    rows: int
    ops: int
    zeros_macs: int | None = None  # None: there is no zeros graph (``zeros_error`` says why)
    zeros_rows: int | None = None
    zeros_ops: int | None = None
    same_ops: bool | None = None
    zeros_error: str = ""

    def describe(self) -> str:
        here = f"{self.rows} rows, {self.macs:,} MACs on the measured input"
        if self.zeros_error:
            return f"{here}; on zeros (perfsim run): {self.zeros_error}"
        if self.same_ops:
            return f"{here}; the same ops on zeros (perfsim run)"
        return (f"{here}; on zeros (perfsim run) other ops: {self.zeros_rows} rows, {self.zeros_macs:,} MACs "
                f"({self.macs - self.zeros_macs:+,} MACs, {self.rows - self.zeros_rows:+,} rows on the measured input)")


def graph_difference(graph, zeros, zeros_error: str = "") -> GraphDifference:
    """``graph`` (the measured input's) against ``zeros`` (None when the zeros lowering failed)."""
    def ops(g):
        return [(op.name, op.target, op.macs) for op in g.ops]
    here = GraphDifference(macs=graph.macs, rows=len(graph.layers), ops=len(graph.ops))
    if zeros is None:
        return GraphDifference(**{**asdict(here), "zeros_error": zeros_error or "not lowered"})
    return GraphDifference(**{**asdict(here), "zeros_macs": zeros.macs, "zeros_rows": len(zeros.layers),
                              "zeros_ops": len(zeros.ops), "same_ops": ops(graph) == ops(zeros)})


@dataclass(frozen=True)
class Validation:
    model: str
    profile: str
    threads: int
    rows: list[RowCheck]
    predicted_s: float  # perfsim's latency
    measured_s: float  # plain eager forward, median
    measured_q1_s: float
    measured_q3_s: float
    rows_measured_s: float  # sum of the rows' measured times
    unattributed_s: float  # matched calls that make no row
    unattributed_calls: int
    spearman: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    host: dict[str, Any]
    allocator: str = "system"  # how freed memory was treated while timing (``measure.set_allocator``)
    graph: GraphDifference | None = None
    captured_calls: int = 0
    timed_calls: int = 0
    matched_calls: int = 0
    unmatched_s: float = 0.0  # timed calls with no counterpart in the capture, and calls of rows missing one
    unmatched_calls: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)  # the largest, by (path, target)
    rows_unmatched: int = 0  # rows some of whose captured calls were not timed: not compared
    rows_unmatched_predicted_s: float = 0.0
    rounds_differing: int = 0  # timed forwards whose calls differed from the others'
    machine_spread: float = 0.0  # how far the calibration saw this machine's timings move run to run
    # rows whose calls read or wrote subnormal floats: layer, op, read, written, predicted_s, measured_s
    subnormal: list[dict[str, Any]] = field(default_factory=list)
    probe_s: float | None = None  # the speed probe while timed here (``measure.speed_probe``)
    calibration_probe_s: float | None = None  # and while the profile was calibrated

    @property
    def slowdown(self) -> float | None:
        """How much slower this machine ran here than while calibrated, by the speed probe (1.25: a 256x256
        GEMM took 25 % longer); None when the profile or the timing has no probe."""
        if not self.probe_s or not self.calibration_probe_s:
            return None
        return self.probe_s / self.calibration_probe_s

    @property
    def error_at_speed(self) -> float | None:
        """The whole-network error with the prediction read at the speed measured here (times ``slowdown``):
        the model's error apart from the machine's speed having moved since calibrate."""
        if self.slowdown is None:
            return None
        return (self.predicted_s * self.slowdown - self.measured_s) / self.measured_s

    @property
    def spread(self) -> float:
        """The measured spread, relative: the wider of the whole forward's interquartile range here and the
        run-to-run movement calibrate measured on this machine (``Calibration.measurements["stability"]``)."""
        return max((self.measured_q3_s - self.measured_q1_s) / self.measured_s, self.machine_spread)

    @property
    def within_spread(self) -> bool:
        """The whole-network error is no larger than the spread: this machine cannot tell it from noise."""
        return abs(self.error) <= self.spread

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def unmatched_share(self) -> float:
        """Unmatched time over the timed calls' total."""
        total = self.rows_measured_s + self.unattributed_s + self.unmatched_s
        return self.unmatched_s / total if total > 0 else 0.0

    def by_op(self) -> list[dict[str, Any]]:
        """Per op label: rows, predicted and measured sums, the sums' error and the median row error."""
        groups: dict[str, list[RowCheck]] = {}
        for r in self.rows:
            groups.setdefault(r.op, []).append(r)
        out = []
        for op, rows in groups.items():
            pred, meas = sum(r.predicted_s for r in rows), sum(r.measured_s for r in rows)
            errs = sorted(r.error for r in rows)
            out.append({"op": op, "rows": len(rows), "predicted_s": pred, "measured_s": meas,
                        "error": (pred - meas) / meas if meas > 0 else math.inf,
                        "median_row_error": errs[len(errs) // 2]})
        return sorted(out, key=lambda d: -d["measured_s"])

    def worst_op(self) -> dict[str, Any]:
        """The op label whose summed error is largest in size, among those with at least 5 % of the time."""
        ops = self.by_op()
        big = [d for d in ops if d["measured_s"] >= 0.05 * self.rows_measured_s] or ops
        if not big:
            return {"op": "", "rows": 0, "predicted_s": 0.0, "measured_s": 0.0, "error": math.nan}
        return max(big, key=lambda d: abs(math.log1p(d["error"])) if d["error"] > -1 else math.inf)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d.update(error=self.error, median_abs_row_error=median_abs([r.error for r in self.rows]),
                 by_op=self.by_op(), worst_op=self.worst_op()["op"], unmatched_share=self.unmatched_share,
                 spread=self.spread, within_spread=self.within_spread, slowdown=self.slowdown,
                 error_at_speed=self.error_at_speed)
        return d

    def speed_note(self) -> str:
        """The speed probe here and at calibration, in words ("" without both)."""
        if self.slowdown is None:
            return ""
        return (f"the probe (a 256x256 GEMM) took {self.probe_s * 1e6:.0f} us here, "
                f"{self.calibration_probe_s * 1e6:.0f} us while calibrated: this machine ran x{self.slowdown:.2f} "
                f"as slow; at this speed the prediction is {self.predicted_s * self.slowdown * 1e3:.3f} ms, "
                f"error {self.error_at_speed:+.1%}")

    def subnormal_note(self) -> str:
        """The rows that met subnormal floats, in words ("" when none did): their measured time and share,
        and the largest. Such a row runs far slower than its shape predicts (``measure.subnormals``), by an
        amount set by the values, not the shapes, which no calibration can fit."""
        if not self.subnormal:
            return ""
        measured = sum(d["measured_s"] for d in self.subnormal)
        share = measured / self.rows_measured_s if self.rows_measured_s > 0 else 0.0
        top = max(self.subnormal, key=lambda d: d["measured_s"])
        return (f"{len(self.subnormal)} rows read or wrote subnormal floats, measured {measured * 1e3:.3f} ms "
                f"({share:.0%} of the measured rows); the largest, {top['layer']} ({top['op']}), measured "
                f"{top['measured_s'] * 1e3:.3f} ms against {top['predicted_s'] * 1e3:.3f} ms predicted. CPUs "
                "compute subnormals slowly: torch.set_flush_denormal(True) flushes them to zero")

    def matching(self) -> str:
        """What could not be attributed, in words ("" when every call lined up)."""
        parts = []
        if self.unmatched_s > 0 or self.unmatched_calls:
            parts.append(f"{self.unmatched_calls} calls unmatched {self.unmatched_s * 1e3:.3f} ms "
                         f"({self.unmatched_share:.1%} of the timed calls)")
        if self.matched_calls < max(self.captured_calls, self.timed_calls):
            parts.append(f"{self.matched_calls} of {self.captured_calls} captured and {self.timed_calls} timed calls "
                         "matched")
        if self.rows_unmatched:
            parts.append(f"{self.rows_unmatched} rows not wholly timed, not compared (predicted "
                         f"{self.rows_unmatched_predicted_s * 1e3:.3f} ms)")
        if self.rounds_differing:
            parts.append(f"{self.rounds_differing} timed forwards ran other calls")
        return "; ".join(parts)


def median_abs(values: list[float]) -> float:
    s = sorted(abs(v) for v in values)
    return s[len(s) // 2] if s else 0.0


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import pandas as pd
    if len(a) < 3:
        return math.nan
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()  # average ranks for ties; pandas' own needs scipy
    return float(ra.corr(rb))


def _row_of_call(traced) -> list[int | None]:
    op_row = {name: i for i, layer in enumerate(traced.graph.layers) for name in layer.ops}
    return [op_row.get(name) if name is not None else None for name in traced.call_ops]


@dataclass
class _Attribution:
    """The timed calls' medians, summed per row of the capture's graph through the matched calls."""

    sums: list[float]
    q1s: list[float]
    q3s: list[float]
    counts: list[int]  # matched calls per row
    missing: list[int]  # captured calls per row with no timed counterpart
    unattributed_s: float = 0.0
    unattributed_calls: int = 0
    unmatched: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (path, target) -> [s, calls]

    def add_unmatched(self, path: str, target: str, seconds: float) -> None:
        entry = self.unmatched.setdefault((path, target), [0.0, 0])
        entry[0] += seconds
        entry[1] += 1


def attribute(traced, times) -> tuple[_Attribution, list[tuple[int, int]]]:
    """Line the timed calls up with the captured ones (index for index when they are the same, else by
    (target, path): ``perfsim.host.match``) and sum each row's matched calls."""
    from .match import align
    pairs = align([(c.target, c.path) for c in traced.calls], [(c.target, c.path) for c in times.calls])
    n = len(traced.graph.layers)
    row_of = _row_of_call(traced)
    a = _Attribution(sums=[0.0] * n, q1s=[0.0] * n, q3s=[0.0] * n, counts=[0] * n, missing=[0] * n)
    timed_of = dict(pairs)
    for i, row in enumerate(row_of):
        if row is not None and i not in timed_of:
            a.missing[row] += 1
    matched = set(timed_of.values())
    for j, (call, spread) in enumerate(zip(times.calls, times.call_s)):
        if j not in matched and spread.median_s > 0:
            a.add_unmatched(call.path, call.target, spread.median_s)
    for i, j in pairs:
        row, spread = row_of[i], times.call_s[j]
        if row is None:
            a.unattributed_s += spread.median_s
            a.unattributed_calls += spread.median_s > 0
        elif a.missing[row]:  # a row not wholly timed: its calls are reported, the row is not compared
            if spread.median_s > 0:
                a.add_unmatched(times.calls[j].path, times.calls[j].target, spread.median_s)
        else:
            a.sums[row] += spread.median_s
            a.q1s[row] += spread.q1_s
            a.q3s[row] += spread.q3_s
            a.counts[row] += 1
    return a, pairs


def _subnormal_rows(traced, times, pairs, result, a: _Attribution) -> list[dict[str, Any]]:
    """Per row of the graph, the subnormal floats its matched calls read and wrote (rows with any)."""
    row_of, captured_of = _row_of_call(traced), {j: i for i, j in pairs}
    found: dict[int, list[int]] = {}
    for j, read, written in times.subnormal:
        row = row_of[captured_of[j]] if j in captured_of else None
        if row is not None:
            counts = found.setdefault(row, [0, 0])
            counts[0] += read
            counts[1] += written
    return [{"layer": result.rows[row].layer, "op": result.rows[row].op, "read": read, "written": written,
             "predicted_s": result.rows[row].t_total_s, "measured_s": a.sums[row]}
            for row, (read, written) in sorted(found.items())]


def _zeros_graph(source, options: ModelOptions):
    """The graph ``perfsim run`` uses (on zeros, from the graph cache), or None and why not."""
    from ..frontends.sources import load_graph
    try:
        return load_graph(source, options).graph, ""
    except InputError as e:
        return None, str(e)


def _check_matched(label: str, traced, times, pairs) -> None:
    longer = max(len(traced.calls), len(times.calls), 1)
    if len(pairs) < MIN_MATCHED * longer:
        raise InputError(f"{label}: only {len(pairs)} of {longer} calls ({len(pairs) / longer:.0%}) of the timed "
                         f"forward line up with its capture on the same input (perfsim needs {MIN_MATCHED:.0%}); "
                         "its forward runs other operations from one run to the next")


def validate(model: str, profile: str = "host", *, options: ModelOptions = ModelOptions(), overrides=(),
             threads: int | None = None, warmup: int = 3, repeats: int = 15, allocator: str | None = None,
             progress: Callable[[int, int], None] | None = None,
             before_timing: Callable[[int], None] | None = None) -> Validation:
    from ..frontends.lowering import lower_traced
    from ..frontends.sources import ModelSource, build_module
    from ..sim.simulator import simulate
    from .measure import describe_host, random_input, time_module

    source = ModelSource.parse(model)
    source.check(options)  # a bad model is named before the profile is read
    hw = _profile(profile, overrides)
    threads = threads or (hw.calibration.threads if hw.calibration else None) or os.cpu_count() or 1
    if threads < 1 or repeats < 1 or warmup < 0:
        raise InputError("--threads and --repeats must be positive, --warmup not negative")
    allocator = allocator or (hw.calibration.allocator if hw.calibration else "keep")
    zeros, zeros_error = _zeros_graph(source, options)
    module, shape, source = build_module(source, options)
    x = random_input((1,) + shape)
    traced = lower_traced(module, (1,) + shape, name=source.label, input=x)  # the graph predicted
    result = simulate(traced.graph, hw)
    if before_timing:
        before_timing(threads)
    times = time_module(module, (1,) + shape, threads=threads, warmup=warmup, repeats=repeats, allocator=allocator,
                        progress=progress, input=x)
    a, pairs = attribute(traced, times)
    _check_matched(source.label, traced, times, pairs)
    rows = [RowCheck(layer=r.layer, op=r.op, calls=a.counts[i], predicted_s=r.t_total_s, measured_s=a.sums[i],
                     measured_q1_s=a.q1s[i], measured_q3_s=a.q3s[i])
            for i, r in enumerate(result.rows) if a.counts[i] and not a.missing[i]]
    unmatched = sorted(({"path": p, "target": t, "calls": c, "measured_s": s} for (p, t), (s, c) in a.unmatched.items()),
                       key=lambda d: -d["measured_s"])
    rounds_s = times.unmatched_s.median_s if times.unmatched_s else 0.0
    return Validation(
        model=source.label, profile=hw.name, threads=threads, rows=rows, predicted_s=result.latency_s,
        measured_s=times.whole.median_s, measured_q1_s=times.whole.q1_s, measured_q3_s=times.whole.q3_s,
        rows_measured_s=sum(r.measured_s for r in rows), unattributed_s=a.unattributed_s,
        unattributed_calls=a.unattributed_calls,
        spearman=spearman([r.predicted_s for r in rows], [r.measured_s for r in rows]),
        load_before=times.load_before, load_after=times.load_after, host=describe_host(), allocator=times.allocator,
        graph=graph_difference(traced.graph, zeros, zeros_error), captured_calls=len(traced.calls),
        timed_calls=len(times.calls), matched_calls=len(pairs),
        unmatched_s=sum((d["measured_s"] for d in unmatched), 0.0) + rounds_s,
        unmatched_calls=sum(d["calls"] for d in unmatched) + times.unmatched_calls, unmatched=unmatched[:TOP_UNMATCHED],
        machine_spread=hw.calibration.measurements["stability"].q3
        if hw.calibration and "stability" in hw.calibration.measurements else 0.0,
        rows_unmatched=sum(1 for m in a.missing if m),
        rows_unmatched_predicted_s=sum(r.t_total_s for i, r in enumerate(result.rows) if a.missing[i]),
        rounds_differing=times.rounds_differing, subnormal=_subnormal_rows(traced, times, pairs, result, a),
        probe_s=times.probe_s, calibration_probe_s=_calibration_probe(hw, threads))


def _calibration_probe(hw, threads: int) -> float | None:
    """The speed probe of the profile's calibration, if it ran at ``threads`` (at another thread count the
    probes measure different things)."""
    c = hw.calibration
    if c is None or c.threads != threads or "speed_probe" not in c.measurements:
        return None
    return c.measurements["speed_probe"].value


def _profile(profile: str, overrides):
    from ..hardware.loader import load_profile, parse_override
    try:
        return load_profile(profile, **dict(parse_override(o) for o in overrides))
    except InputError as e:
        if profile == "host" and str(e).startswith("unknown profile"):
            raise InputError("no profile 'host' here yet: run `perfsim calibrate` first (it writes "
                             "hardware_profiles/host.yaml), or give --profile") from None
        raise



# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def rows_csv(v: Validation) -> str:
    import pandas as pd
    frame = pd.DataFrame([{**asdict(r), "error": r.error} for r in v.rows])
    return frame.to_csv(index=False)


def plot_scatter(v: Validation, path: Path) -> None:
    """Predicted against measured per row, log-log, one colour per op label, the diagonal drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    ops = sorted({r.op for r in v.rows})
    cmap = plt.get_cmap("tab10" if len(ops) <= 10 else "tab20")
    for i, op in enumerate(ops):
        rows = [r for r in v.rows if r.op == op]
        ax.scatter([r.measured_s * 1e6 for r in rows], [r.predicted_s * 1e6 for r in rows], s=22, alpha=0.8,
                   color=cmap(i % cmap.N), label=f"{op} ({len(rows)})")
    values = [x * 1e6 for r in v.rows for x in (r.measured_s, r.predicted_s) if x > 0]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="predicted = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured per layer (µs, median)")
    ax.set_ylabel("predicted by perfsim (µs)")
    ax.set_title(f"{v.model} on {v.profile}: Spearman {v.spearman:.2f}, whole network {v.error:+.0%}\n"
                 f"measured {v.measured_s * 1e3:.3f} ms, predicted {v.predicted_s * 1e3:.3f} ms, "
                 f"{v.threads} thread(s)" + _graph_note(v), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _graph_note(v: Validation) -> str:
    """The scatter's third title line: what was not compared, and the graph on zeros if it differs."""
    notes = []
    if v.unmatched_s > 0:
        notes.append(f"unmatched {v.unmatched_s * 1e3:.3f} ms ({v.unmatched_share:.0%})")
    if v.graph and v.graph.zeros_error:
        notes.append("no graph on zeros")
    elif v.graph and not v.graph.same_ops:
        notes.append(f"on zeros: {v.graph.zeros_rows} rows, {v.graph.zeros_macs:,} MACs")
    return "\n" + ", ".join(notes) if notes else ""


def write_validation(v: Validation, out: str | Path, *, plots: bool = True) -> Path:
    from ..report.folder import write_folder

    def fill(folder: Path) -> None:
        (folder / "validation.csv").write_text(rows_csv(v), encoding="utf-8")
        (folder / "validation.json").write_text(json.dumps(v.to_dict(), indent=2) + "\n", encoding="utf-8")
        if plots:
            plot_scatter(v, folder / "scatter.png")

    try:
        return write_folder(out, fill)
    except OSError as e:
        raise InputError(f"cannot write the validation to {out}/: {e.strerror or e}") from None


def format_validation(v: Validation) -> str:
    lines = [f"{'op':16} {'rows':>4} {'predicted':>11} {'measured':>11} {'error':>7} {'median row':>10}"]
    for d in v.by_op():
        lines.append(f"{d['op']:16} {d['rows']:>4} {d['predicted_s'] * 1e3:>9.3f}ms {d['measured_s'] * 1e3:>9.3f}ms "
                     f"{d['error']:>+7.0%} {d['median_row_error']:>+10.0%}")
    lines += [
        "",
        f"whole network    predicted {v.predicted_s * 1e3:.3f} ms, measured {v.measured_s * 1e3:.3f} ms "
        f"(IQR {v.measured_q1_s * 1e3:.3f}-{v.measured_q3_s * 1e3:.3f}), error {v.error:+.1%}",
        f"spread           ±{v.spread:.0%} (the IQR here, or the run-to-run movement calibrate measured: "
        f"{v.machine_spread:.0%}); the error is {'inside' if v.within_spread else 'outside'} it",
        f"per layer        Spearman {v.spearman:.3f} over {len(v.rows)} rows, "
        f"median |error| {median_abs([r.error for r in v.rows]):.0%}, worst op {v.worst_op()['op']}",
        f"measured rows    {v.rows_measured_s * 1e3:.3f} ms; {v.unattributed_calls} calls in no row "
        f"{v.unattributed_s * 1e3:.3f} ms",
        *([f"unmatched        {v.matching()}"] if v.matching() else []),
        *([f"host speed       {v.speed_note()}"] if v.speed_note() else []),
        *([f"subnormals       {v.subnormal_note()}"] if v.subnormal_note() else []),
        *([f"graph            {v.graph.describe()}"] if v.graph else []),
        f"machine          {v.host.get('cpu')}, {v.threads} thread(s), allocator {v.allocator}, load "
        f"{v.load_before[0]:.2f} -> {v.load_after[0]:.2f}",
    ]
    return "\n".join(lines)
