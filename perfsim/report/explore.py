"""The report folders of ``perfsim compare`` and ``perfsim sweep``: CSV, JSON, plots (and, on request,
one self-contained HTML file), written atomically through ``perfsim.report.folder``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .folder import write_folder
from ..units import format_bytes, format_count, format_seconds

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.results import SimResult
    from .painter import Painter
    from ..explore.sweep import Axis

_TERMS = (("t_data_s", "data movement", "#4C72B0"), ("t_matrix_s", "matrix unit", "#DD8452"),
          ("t_vector_s", "vector unit", "#55A868"))
_LINE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def new_figure(width: float, height: float, ncols: int = 1):
    """A figure on the Agg canvas without pyplot (no backend machinery, nothing global to close)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    return fig, axes


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png")


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------


def plot_compare_terms(frame: pd.DataFrame, profile_name: str, path: Path) -> None:
    """Latency of each model stacked by term (data, matrix, vector)."""
    fig, (ax,) = new_figure(max(7.0, 1.0 + 0.9 * len(frame)), 5.2)
    top = float((frame.t_data_s + frame.t_matrix_s + frame.t_vector_s).max()) or 1e-30
    scale, unit = _time_scale(top)
    x = list(range(len(frame)))
    bottom = [0.0] * len(frame)
    for column, label, color in _TERMS:
        vals = [v * scale for v in frame[column]]
        ax.bar(x, vals, bottom=bottom, width=0.7, label=label, color=color, linewidth=0)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(x)
    ax.set_xticklabels(frame.model, rotation=30, ha="right", fontsize=9)
    ax.set_ylabel(f"latency ({unit})")
    ax.set_title(f"latency by term on {profile_name}", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.25, left=0.12, right=0.97)
    _save(fig, path)


def plot_latency_vs_macs(frame: pd.DataFrame, matrix_flops: float, profile_name: str, path: Path) -> None:
    """A point per model; the line is the latency MACs alone predict (2*MACs / matrix_flops): distance
    above it is time MAC counts do not see (data movement, vector work)."""
    fig, (ax,) = new_figure(7.5, 5.2)
    macs = [float(m) for m in frame.macs]
    lat = [float(v) for v in frame.latency_s]
    ax.scatter(macs, lat, s=36, color="#4C72B0", zorder=3)
    for m, t, name in zip(macs, lat, frame.model):
        ax.annotate(name, (m, t), textcoords="offset points", xytext=(5, 4), fontsize=8)
    lo, hi = min(macs) / 2, max(macs) * 2
    ax.plot([lo, hi], [2 * lo / matrix_flops, 2 * hi / matrix_flops], "k--", linewidth=1,
            label="MACs alone: 2*MACs / matrix_flops")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs")
    ax.set_ylabel("latency (s)")
    ax.set_title(f"latency against MACs on {profile_name}", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.25)
    _save(fig, path)


COMPARE_PLOTS = ("latency_by_term.png", "latency_vs_macs.png")


def write_compare(results: Sequence[SimResult], frame: pd.DataFrame, out: Path, *, plots: bool, html: bool) -> Path:
    profile = results[0].profile

    def fill(folder: Path) -> None:
        frame.to_csv(folder / "compare.csv", index=False, float_format="%.17g")
        doc = {"profile": profile.resolved(), "batch": results[0].batch,
               "models": [r.summary for r in results]}
        (folder / "compare.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if plots or html:
            plot_compare_terms(frame, profile.name, folder / COMPARE_PLOTS[0])
            plot_latency_vs_macs(frame, profile.matrix.flops, profile.name, folder / COMPARE_PLOTS[1])
        if html:
            from .html import compare_html
            (folder / "report.html").write_text(compare_html(results, frame, folder), encoding="utf-8")
            if not plots:
                for name in COMPARE_PLOTS:
                    (folder / name).unlink()
    return write_folder(out, fill)


# --------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------


def _slice(frame: pd.DataFrame, axes: Sequence[Axis], keep: Sequence[str]) -> pd.DataFrame:
    """The points where every axis not in ``keep`` is at its first value."""
    mask = None
    for a in axes:
        if a.field in keep:
            continue
        m = frame[a.field] == a.values[0]
        mask = m if mask is None else mask & m
    return frame if mask is None else frame[mask]


def knees(frame: pd.DataFrame, axes: Sequence[Axis]) -> dict[str, Any]:
    """Per model: the knee along the first axis (others at their first value)."""
    from ..explore.sweep import knee
    out = {}
    field = axes[0].field
    for model, part in _slice(frame, axes, [field]).groupby("model", sort=False):
        out[model] = knee(list(part[field]), list(part.spill_bytes), list(part.fits))
    return out


def _fmt(field: str, v: Any) -> str:
    if v is None:
        return "none"
    if field == "sram_bytes":
        return format_bytes(v)
    if field == "dram_bandwidth":
        return f"{v / 1e9:g} GB/s"
    if field.endswith("_flops"):
        return f"{v / 1e9:g} GFLOPS"
    if field == "dram_latency":
        return format_seconds(v)
    return str(v)


def plot_sweep_line(frame: pd.DataFrame, axes: Sequence[Axis], knee_at: dict[str, Any], path: Path) -> None:
    """Latency against the first varied field, a line per model, each model's knee marked."""
    draw_sweep_line(sweep_line_data(frame, axes, knee_at), path)


def sweep_line_data(frame: pd.DataFrame, axes: Sequence[Axis], knee_at: dict[str, Any]) -> dict[str, Any]:
    """What ``draw_sweep_line`` shows, as plain data (it may be drawn in another process: perfsim.report.painter)."""
    field = axes[0].field
    part = _slice(frame, axes, [field])
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axes[0].values)
    lines = []
    for model, rows in part.groupby("model", sort=False):
        rows = rows[rows.fits]
        xs = rows[field].tolist() if numeric else [axes[0].values.index(v) for v in rows[field]]
        at = knee_at.get(model) if numeric else None
        y = None if at is None else float(rows[rows[field] == at].latency_s.iloc[0])
        knee = None if at is None else (at, y, f"knee {_fmt(field, at)}")
        lines.append((str(model), xs, rows.latency_s.astype(float).tolist(), knee))
    vals = [v for v in axes[0].values if isinstance(v, (int, float))]
    return {
        "lines": lines,
        "log_x": bool(numeric and vals and min(vals) > 0 and max(vals) / min(vals) > 20),
        "tick_labels": None if numeric else [str(v) for v in axes[0].values],
        "xlabel": field + ("" if len(axes) == 1 else "  (other fields at their first value)"),
        "title": f"latency against {field}; the knee: the least {field} from which on nothing spills",
    }


def draw_sweep_line(d: dict[str, Any], path: Path) -> None:
    fig, (ax,) = new_figure(9.0, 5.4)
    for k, (model, xs, ys, knee) in enumerate(d["lines"]):
        color = _LINE_COLORS[k % len(_LINE_COLORS)]
        ax.plot(xs, ys, "-", marker="." if len(xs) < 80 else None, color=color, label=model)
        if knee is not None:
            at, y, label = knee
            ax.axvline(at, color=color, linestyle=":", linewidth=1)
            ax.plot([at], [y], "o", color=color, markersize=8, markerfacecolor="none")
            ax.annotate(label, (at, y), textcoords="offset points", xytext=(6, 8), fontsize=8, color=color)
    if d["log_x"]:
        ax.set_xscale("log")
    if d["tick_labels"] is not None:
        ax.set_xticks(range(len(d["tick_labels"])))
        ax.set_xticklabels(d["tick_labels"])
    ax.set_xlabel(d["xlabel"])
    ax.set_ylabel("latency (s)")
    ax.set_title(d["title"], fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    _save(fig, path)


def plot_sweep_heatmap(frame: pd.DataFrame, axes: Sequence[Axis], path: Path) -> None:
    """Latency over the first two varied fields, a panel per model (at most four)."""
    draw_sweep_heatmap(sweep_heatmap_data(frame, axes), path)


def sweep_heatmap_data(frame: pd.DataFrame, axes: Sequence[Axis]) -> dict[str, Any]:
    """What ``draw_sweep_heatmap`` shows, as plain data."""
    import numpy as np
    fx, fy = axes[0].field, axes[1].field
    part = _slice(frame, axes, [fx, fy])
    panels = []
    xi = {v: i for i, v in enumerate(axes[0].values)}
    yi = {v: i for i, v in enumerate(axes[1].values)}
    for model in list(dict.fromkeys(part.model))[:4]:
        rows = part[part.model == model]
        grid = np.full((len(axes[1].values), len(axes[0].values)), np.nan)
        for x, y, t in zip(rows[fx], rows[fy], rows.latency_s.astype(float)):
            grid[yi[y], xi[x]] = t
        panels.append((str(model), grid))
    ticks = [(i, _fmt(fx, axes[0].values[i])) for i in _ticks(len(axes[0].values))]
    yticks = [(i, _fmt(fy, axes[1].values[i])) for i in _ticks(len(axes[1].values))]
    return {"fx": fx, "fy": fy, "panels": panels, "xticks": ticks, "yticks": yticks}


def draw_sweep_heatmap(d: dict[str, Any], path: Path) -> None:
    fig, axes = new_figure(5.2 * len(d["panels"]) + 0.8, 4.8, ncols=len(d["panels"]))
    for ax, (model, grid) in zip(axes, d["panels"]):
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", norm=_lognorm(grid))
        ax.set_xticks([i for i, _ in d["xticks"]])
        ax.set_xticklabels([t for _, t in d["xticks"]], rotation=45, ha="right", fontsize=7)
        ax.set_yticks([i for i, _ in d["yticks"]])
        ax.set_yticklabels([t for _, t in d["yticks"]], fontsize=7)
        ax.set_xlabel(d["fx"])
        ax.set_ylabel(d["fy"])
        ax.set_title(f"{model}: latency (s)", fontsize=10)
        fig.colorbar(im, ax=ax)
    fig.subplots_adjust(bottom=0.22, left=0.1, right=0.97, wspace=0.35)
    _save(fig, path)


def _lognorm(grid):
    import numpy as np
    from matplotlib.colors import LogNorm
    finite = grid[np.isfinite(grid)]
    if len(finite) == 0 or finite.min() <= 0 or finite.max() == finite.min():
        return None
    return LogNorm(vmin=finite.min(), vmax=finite.max())


def _ticks(n: int, most: int = 12) -> list[int]:
    step = max(1, -(-n // most))
    return list(range(0, n, step))


def sweep_plot_names(axes: Sequence[Axis]) -> list[str]:
    names = [f"latency_vs_{axes[0].field}.png"]
    if len(axes) >= 2:
        names.append(f"latency_{axes[0].field}_x_{axes[1].field}.png")
    return names


def write_sweep(frame: pd.DataFrame, axes: Sequence[Axis], meta: dict[str, Any], out: Path, *, plots: bool,
                html: bool, painter: Painter | None = None) -> Path:
    """The sweep's folder: sweep.csv, sweep.json, its plots (drawn by ``painter`` if given, while the
    tables are written) and report.html with ``html``."""
    knee_at = knees(frame, axes)

    def fill(folder: Path) -> None:
        names = sweep_plot_names(axes)
        if plots or html:
            draw = painter.draw if painter is not None else (lambda fn, *args: fn(*args))
            draw(draw_sweep_line, sweep_line_data(frame, axes, knee_at), folder / names[0])
            if len(names) > 1:
                draw(draw_sweep_heatmap, sweep_heatmap_data(frame, axes), folder / names[1])
        frame.to_csv(folder / "sweep.csv", index=False, float_format="%.17g")
        doc = dict(meta, axes=[{"field": a.field, "spec": a.spec, "values": list(a.values)} for a in axes],
                   knee={"field": axes[0].field, "by_model": knee_at}, points=len(frame))
        (folder / "sweep.json").write_text(json.dumps(doc, indent=2, default=_plain) + "\n", encoding="utf-8")
        if painter is not None:
            painter.finish()
        if html:
            from .html import sweep_html
            (folder / "report.html").write_text(sweep_html(frame, axes, meta, knee_at, folder, names),
                                                encoding="utf-8")
            if not plots:
                for name in names:
                    (folder / name).unlink()
    return write_folder(out, fill)


def _plain(v: Any) -> Any:
    """numpy scalars in JSON."""
    return v.item() if hasattr(v, "item") else str(v)


def _time_scale(max_s: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
        if max_s * scale >= 1:
            return scale, unit
    return 1e9, "ns"


def format_sweep(frame: pd.DataFrame, axes: Sequence[Axis], knee_at: dict[str, Any]) -> str:
    """Per model: points, the fastest point, the knee."""
    lines = []
    field = axes[0].field
    for model, part in frame.groupby("model", sort=False):
        ok = part[part.fits]
        line = f"{model:14} {len(part):>7} points"
        if len(ok):
            best = ok.loc[ok.latency_s.astype(float).idxmin()]
            where = ", ".join(f"{a.field}={_fmt(a.field, best[a.field])}" for a in axes)
            line += f"  fastest {format_seconds(best.latency_s)} at {where}"
        line += f"  knee ({field}, no spills from here on): {_fmt(field, knee_at.get(model))}"
        if len(ok) < len(part):
            line += f"  ({len(part) - len(ok)} points do not fit)"
        lines.append(line)
    return "\n".join(lines)


__all__ = ["write_compare", "write_sweep", "format_sweep", "knees", "format_count"]
