"""``perfsim validate``: perfsim's per-layer prediction against the real module on this CPU.

The module runs as plain eager PyTorch (``perfsim.host.measure``): the whole forward is timed as a user
would run it, and every ATen call is timed inside the capture's dispatch mode. Calls line up with
perfsim's rows through the capture that lowered the model (the same calls, index for index): a
row's measured time is the sum of its calls' medians. Calls that make no row (views, a channel
shuffle's copy, ops the rules ignore) are reported as unattributed. The whole-network error
compares perfsim's latency with the plain eager forward, which includes everything.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..frontends.sources import ModelOptions


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
    unattributed_s: float  # calls that make no row
    unattributed_calls: int
    spearman: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    host: dict[str, Any]
    allocator: str = "system"  # how freed memory was treated while timing (``measure.set_allocator``)

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s

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
        return max(big, key=lambda d: abs(math.log1p(d["error"])) if d["error"] > -1 else math.inf)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d.update(error=self.error, median_abs_row_error=median_abs([r.error for r in self.rows]),
                 by_op=self.by_op(), worst_op=self.worst_op()["op"])
        return d


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


def validate(model: str, profile: str = "host", *, options: ModelOptions = ModelOptions(), overrides=(),
             threads: int | None = None, warmup: int = 3, repeats: int = 15, allocator: str | None = None,
             progress: Callable[[int, int], None] | None = None,
             before_timing: Callable[[int], None] | None = None) -> Validation:
    from ..frontends.lowering import lower_traced
    from ..frontends.sources import ModelSource, build_module
    from ..hardware.loader import load_profile, parse_override
    from ..sim.simulator import simulate
    from .measure import describe_host, time_module

    source = ModelSource.parse(model)
    source.check(options)  # a bad model is named before the profile is read
    try:
        hw = load_profile(profile, **dict(parse_override(o) for o in overrides))
    except InputError as e:
        if profile == "host" and str(e).startswith("unknown profile"):
            raise InputError("no profile 'host' here yet: run `perfsim calibrate` first (it writes "
                             "hardware_profiles/host.yaml), or give --profile") from None
        raise
    threads = threads or (hw.calibration.threads if hw.calibration else None) or os.cpu_count() or 1
    if threads < 1 or repeats < 1 or warmup < 0:
        raise InputError("--threads and --repeats must be positive, --warmup not negative")
    allocator = allocator or (hw.calibration.allocator if hw.calibration else "keep")
    module, shape, source = build_module(source, options)
    traced = lower_traced(module, (1,) + shape, name=source.label)
    result = simulate(traced.graph, hw)
    if before_timing:
        before_timing(threads)
    times = time_module(module, (1,) + shape, threads=threads, warmup=warmup, repeats=repeats, allocator=allocator,
                        progress=progress)
    if [(c.target, c.path) for c in times.calls] != [(c.target, c.path) for c in traced.calls]:
        raise InputError(f"{source.label}'s forward on random data runs other operations than on zeros; "
                         "perfsim cannot line its layers up with the measurement")
    n = len(traced.graph.layers)
    sums, q1s, q3s, counts = [0.0] * n, [0.0] * n, [0.0] * n, [0] * n
    unattributed, unattributed_calls = 0.0, 0
    for row, spread in zip(_row_of_call(traced), times.call_s):
        if row is None:
            unattributed += spread.median_s
            unattributed_calls += spread.median_s > 0
            continue
        sums[row] += spread.median_s
        q1s[row] += spread.q1_s
        q3s[row] += spread.q3_s
        counts[row] += 1
    rows = [RowCheck(layer=r.layer, op=r.op, calls=counts[i], predicted_s=r.t_total_s, measured_s=sums[i],
                     measured_q1_s=q1s[i], measured_q3_s=q3s[i])
            for i, r in enumerate(result.rows) if counts[i]]
    return Validation(
        model=source.label, profile=hw.name, threads=threads, rows=rows, predicted_s=result.latency_s,
        measured_s=times.whole.median_s, measured_q1_s=times.whole.q1_s, measured_q3_s=times.whole.q3_s,
        rows_measured_s=sum(sums), unattributed_s=unattributed, unattributed_calls=unattributed_calls,
        spearman=spearman([r.predicted_s for r in rows], [r.measured_s for r in rows]),
        load_before=times.load_before, load_after=times.load_after, host=describe_host(), allocator=times.allocator)


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
                 f"{v.threads} thread(s)", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
        f"per layer        Spearman {v.spearman:.3f} over {len(v.rows)} rows, "
        f"median |error| {median_abs([r.error for r in v.rows]):.0%}, worst op {v.worst_op()['op']}",
        f"measured rows    {v.rows_measured_s * 1e3:.3f} ms; {v.unattributed_calls} calls in no row "
        f"{v.unattributed_s * 1e3:.3f} ms",
        f"machine          {v.host.get('cpu')}, {v.threads} thread(s), allocator {v.allocator}, load "
        f"{v.load_before[0]:.2f} -> {v.load_after[0]:.2f}",
    ]
    return "\n".join(lines)
