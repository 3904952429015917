"""``perfsim sweep``'s folder: sweep.csv, sweep.json, latency against the first varied field with each
model's knee marked (the least value from which on nothing spills) and, for two fields, a heatmap; with
``html`` report.html. Plots may be drawn in a forked painter (``perfsim.report.painter``) while the tables
are written."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .folder import write_folder
from .style import LINE_COLORS, new_figure
from .text import field_text

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.batch import Axis
    from .painter import Painter


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
    out = {}
    field = axes[0].field
    for model, part in _slice(frame, axes, [field]).groupby("model", sort=False):
        out[model] = knee(list(part[field]), list(part.spill_bytes), list(part.fits))
    return out


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
        knee = None if at is None else (at, y, f"knee {field_text(field, at)}")
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
        color = LINE_COLORS[k % len(LINE_COLORS)]
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
    fig.savefig(path, format="png")


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
    ticks = [(i, field_text(fx, axes[0].values[i])) for i in _ticks(len(axes[0].values))]
    yticks = [(i, field_text(fy, axes[1].values[i])) for i in _ticks(len(axes[1].values))]
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
    fig.savefig(path, format="png")


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
            knee_text = {m: field_text(axes[0].field, v) for m, v in knee_at.items()}
            (folder / "report.html").write_text(sweep_html(frame, axes, meta, knee_text, folder, names),
                                                encoding="utf-8")
            if not plots:
                for name in names:
                    (folder / name).unlink()
    return write_folder(out, fill)


def _plain(v: Any) -> Any:
    """numpy scalars in JSON."""
    return v.item() if hasattr(v, "item") else str(v)
