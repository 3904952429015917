"""``perfsim compare``'s folder: compare.csv, compare.json, latency stacked by term per model and latency
against MACs, and with ``html`` report.html; written atomically through ``perfsim.report.folder``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..units import time_scale
from .folder import write_folder
from .style import TERMS, new_figure

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.results import SimResult


def plot_compare_terms(frame: pd.DataFrame, profile_name: str, path: Path) -> None:
    """Latency of each model stacked by term (data, matrix, vector)."""
    fig, (ax,) = new_figure(max(7.0, 1.0 + 0.9 * len(frame)), 5.2)
    top = float((frame.t_data_s + frame.t_matrix_s + frame.t_vector_s).max()) or 1e-30
    scale, unit = time_scale(top)
    x = list(range(len(frame)))
    bottom = [0.0] * len(frame)
    for column, label, color in TERMS:
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
    fig.savefig(path, format="png")


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
    fig.savefig(path, format="png")


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
            (folder / "report.html").write_text(compare_html(results, frame, folder, COMPARE_PLOTS), encoding="utf-8")
            if not plots:
                for name in COMPARE_PLOTS:
                    (folder / name).unlink()
    return write_folder(out, fill)
