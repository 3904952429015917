"""The run report's plots: time per layer stacked by term, SRAM occupancy against capacity, DRAM traffic,
the roofline, and (with a systolic array, or energy prices) utilisation and energy per layer. Drawn on
matplotlib's Agg canvas without pyplot; on a multi-core Linux machine in two forked workers."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..children import as_child
from ..ir.graph import Unit
from ..sim.records import Bound
from ..sim.results import SimResult
from ..units import bytes_scale, format_bytes, format_seconds, time_scale
from .style import COLORS, TERMS

PLOTS = ("time_per_layer.png", "sram_occupancy.png", "dram_traffic.png", "roofline.png")

# written when the profile has a systolic array / energy figures (docs/systolic.md)
OPTIONAL_PLOTS = {"utilization": "utilization.png", "energy": "energy.png"}


def _figure(result: SimResult, axes_height: float = 3.6):
    """A wide figure with room below for rotated layer names (when there are few enough)."""
    from matplotlib.figure import Figure
    n = len(result.rows)
    named = n <= _NAMED_LAYERS
    longest = max((len(f"{i} {r.layer}") for i, r in enumerate(result.rows)), default=1)
    bottom_in = 0.25 + 0.062 * min(longest, 40) if named else 0.6
    top_in = 1.05
    width = min(22.0, max(10.0, 0.3 * n)) if named else 16.0
    height = axes_height + bottom_in + top_in
    fig = Figure(figsize=(width, height), dpi=100)  # no pyplot: no backend machinery, nothing global to close
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=bottom_in / height,
                        top=1 - top_in / height)
    return None, fig, ax


def _legend(ax, ncol: int = 4) -> None:
    """Above the axes, under the title: never over the bars."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=ncol, fontsize=8, frameon=False,
              borderaxespad=0.2)


def _layer_axis(ax, result: SimResult) -> None:
    """Layer names when they are readable, indices with sparse ticks when there are hundreds."""
    n = len(result.rows)
    ax.set_xlim(-0.7, n - 0.3)
    if n <= _NAMED_LAYERS:
        ax.set_xticks(range(n))
        ax.set_xticklabels([f"{i} {r.layer}" for i, r in enumerate(result.rows)], rotation=90, fontsize=7)
    else:
        step = max(1, int(math.ceil(n / 40 / 5.0)) * 5)
        ax.set_xticks(range(0, n, step))
        ax.set_xticklabels([str(i) for i in range(0, n, step)], fontsize=8)
        ax.set_xlabel("layer index (names in layers.csv)")


_NAMED_LAYERS = 60  # up to this many rows the x axis shows names; beyond, sparse indices


def _title(result: SimResult, what: str) -> str:
    p = result.profile
    batch = f", batch {result.batch}" if result.batch > 1 else ""
    return (f"{result.model} on {p.name}{batch}: {what}\n"
            f"SRAM {format_bytes(p.memory.sram_bytes)}, DRAM {p.memory.dram_bandwidth / 1e9:g} GB/s, "
            f"matrix {p.matrix.flops / 1e12:g} TFLOPS, vector {p.vector.flops / 1e9:g} GFLOPS, "
            f"{'overlap' if p.schedule.overlap else 'serial'}, {p.memory.policy}")


def _finish(plt, fig, ax, result: SimResult, title: str, path: Path, ncol: int = 4) -> None:
    """Title, legend above the axes, grid, layer axis; save (margins were fixed in _figure:
    tight_layout would cost a whole extra draw per figure)."""
    ax.set_title(_title(result, title), fontsize=10, pad=20)
    _legend(ax, ncol)
    ax.grid(axis="y", alpha=0.3)
    _layer_axis(ax, result)
    fig.savefig(path, format="png")


def plot_time(result: SimResult, path: Path) -> None:
    rows = result.rows
    plt, fig, ax = _figure(result)
    x = range(len(rows))
    scale, unit = time_scale(max((r.t_data_s + r.t_matrix_s + r.t_vector_s) for r in rows))
    bottom = [0.0] * len(rows)
    for term, label, color in TERMS:
        vals = [getattr(r, term) * scale for r in rows]
        ax.bar(x, vals, bottom=bottom, width=0.8, label=label, color=color, linewidth=0)
        bottom = [b + v for b, v in zip(bottom, vals)]
    if result.profile.schedule.overlap:
        ax.plot(list(x), [r.t_total_s * scale for r in rows], "k_", markersize=8,
                label="layer time (overlap: max of data, compute)")
    ax.set_ylabel(f"time per layer ({unit})")
    ax.set_ylim(0, max(bottom + [1e-30]) * 1.05)
    _finish(plt, fig, ax, result, f"latency {format_seconds(result.totals.latency_s)}", path)


def plot_sram(result: SimResult, path: Path) -> None:
    rows = result.rows
    plt, fig, ax = _figure(result)
    cap = result.profile.memory.sram_bytes
    scale, unit = bytes_scale(max(cap, max(r.sram_used_bytes for r in rows)))
    x = list(range(len(rows)))
    ax.bar(x, [r.sram_used_bytes * scale for r in rows], width=0.8, color="#4C72B0", label="peak SRAM in use")
    ax.axhline(cap * scale, color="k", linestyle="--", linewidth=1.2, label=f"capacity {format_bytes(cap)}")
    if result.totals.preload_bytes:
        ax.axhline((cap - result.totals.preload_bytes) * scale, color="grey", linestyle=":",
                   label="capacity left beside resident weights")
    spills = [i for i, r in enumerate(rows) if r.spill_bytes]
    if spills:
        ax.scatter(spills, [rows[i].sram_used_bytes * scale for i in spills], marker="v", s=50, color="#C44E52",
                   zorder=3, label=f"spill ({len(spills)} layers, {format_bytes(result.totals.spill_bytes)})")
    tiled = [i for i, r in enumerate(rows) if r.tiles > 1]
    if tiled:
        ax.scatter(tiled, [cap * scale] * len(tiled), marker="x", s=40, color="#8172B3", zorder=3,
                   label=f"tiled ({len(tiled)} layers)")
    ax.set_ylabel(f"bytes ({unit})")
    ax.set_ylim(0, max(cap, max(r.sram_used_bytes for r in rows)) * scale * 1.05)
    _finish(plt, fig, ax, result, f"SRAM occupancy, peak {format_bytes(result.totals.peak_sram_bytes)}", path)


def plot_traffic(result: SimResult, path: Path) -> None:
    rows = result.rows
    plt, fig, ax = _figure(result)
    scale, unit = bytes_scale(max(1, max(r.dram_read_bytes + r.dram_write_bytes for r in rows)))
    x = list(range(len(rows)))
    reads = [r.dram_read_bytes * scale for r in rows]
    writes = [(r.dram_write_bytes - r.spill_bytes) * scale for r in rows]
    spills = [r.spill_bytes * scale for r in rows]
    ax.bar(x, reads, width=0.8, color=COLORS["read"], label="DRAM read")
    ax.bar(x, writes, bottom=reads, width=0.8, color=COLORS["write"], label="DRAM write (output)")
    ax.bar(x, spills, bottom=[a + b for a, b in zip(reads, writes)], width=0.8, color=COLORS["spill"],
           label="DRAM write (spill)")
    s = result.totals
    ax.set_ylabel(f"bytes ({unit})")
    ax.set_ylim(0, max(1, max(r.dram_read_bytes + r.dram_write_bytes for r in rows)) * scale * 1.05)
    _finish(plt, fig, ax, result, f"DRAM traffic: read {format_bytes(s.dram_read_bytes)}, "
                                  f"written {format_bytes(s.dram_write_bytes)}", path)


def plot_roofline(result: SimResult, path: Path) -> None:
    """Each row against its own unit's roof: matrix rows in FLOPs, vector rows in vector ops.

    x: work per DRAM byte the row moves; y: work per second of the row's time. Rows that
    move no DRAM bytes (everything already on chip) have no intensity: they are drawn at
    the right edge, hollow.
    """
    from matplotlib.figure import Figure
    p = result.profile
    fig = Figure(figsize=(9, 6.2), dpi=100)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.1, right=0.98, top=0.86, bottom=0.1)
    pts = []
    for r in result.rows:
        work = r.flops if r.unit is Unit.MATRIX else r.vector_ops
        if work == 0 or r.t_total_s == 0:
            continue
        traffic = r.dram_read_bytes + r.dram_write_bytes
        pts.append((work / traffic if traffic else None, work / r.t_total_s, r.bound))
    ridge = p.matrix.flops / p.memory.dram_bandwidth
    finite = [i for i, _, _ in pts if i] + [ridge, p.vector.flops / p.memory.dram_bandwidth]
    lo, hi = min(finite) / 10, max(finite) * 10
    xs = [lo * (hi / lo) ** (k / 200) for k in range(201)]
    ax.plot(xs, [min(p.matrix.flops, x * p.memory.dram_bandwidth) for x in xs], "k-", linewidth=1.5,
            label=f"matrix roof {p.matrix.flops / 1e12:g} TFLOPS")
    ax.plot(xs, [min(p.vector.flops, x * p.memory.dram_bandwidth) for x in xs], "k--", linewidth=1.0,
            label=f"vector roof {p.vector.flops / 1e9:g} GFLOPS")
    ax.axvline(ridge, color="grey", linestyle=":", linewidth=0.8)
    edge = hi / 3
    for bound, marker in ((Bound.DATA, "o"), (Bound.MATRIX, "s"), (Bound.VECTOR, "^")):
        moved = [(i, y) for i, y, b in pts if b is bound and i]
        onchip = [y for i, y, b in pts if b is bound and not i]
        if not moved and not onchip:
            continue
        label = f"{bound.value}-bound rows ({len(moved) + len(onchip)}"
        label += f"; {len(onchip)} with no DRAM traffic, at the right edge)" if onchip else ")"
        ax.scatter([i for i, _ in moved], [y for _, y in moved], marker=marker, s=30, color=COLORS[bound],
                   alpha=0.8, label=label)
        if onchip:
            ax.scatter([edge] * len(onchip), onchip, marker=marker, s=30, facecolors="none",
                       edgecolors=COLORS[bound])
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOPs, or vector ops for vector rows, per DRAM byte)")
    ax.set_ylabel("achieved throughput (FLOP/s, or vector op/s)")
    ax.set_title(_title(result, f"roofline, ridge at {ridge:.0f} FLOP/B"), fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.25)
    fig.savefig(path, format="png")


def _plain_log_labels(ax) -> None:
    """Decade labels as plain text (1e+03) and no minor labels: mathtext layout was most of the
    roofline's drawing time."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0e}"))
        axis.set_minor_formatter(NullFormatter())


def plot_utilization(result: SimResult, path: Path) -> None:
    """Each matrix row's achieved fraction of the array's peak (docs/systolic.md)."""
    rows = result.rows
    plt, fig, ax = _figure(result)
    labels = sorted({r.op for r in rows if r.unit is Unit.MATRIX})
    cmap = matplotlib_cmap(len(labels))
    for j, label in enumerate(labels):
        idx = [i for i, r in enumerate(rows) if r.unit is Unit.MATRIX and r.op == label]
        ax.bar(idx, [rows[i].utilization * 100 for i in idx], width=0.8, color=cmap[j], label=label)
    s = result.totals
    ax.axhline(s.utilization * 100, color="k", linestyle="--", linewidth=1,
               label=f"network {s.utilization:.1%}")
    ax.set_ylabel("matrix unit utilisation (% of peak)")
    ax.set_ylim(0, 105)
    p = result.profile
    what = (f"{p.matrix.array.rows}x{p.matrix.array.cols} {p.matrix.array.dataflow} array, utilisation per layer" if p.systolic
            else "matrix unit utilisation per layer")
    _finish(plt, fig, ax, result, what, path, ncol=len(labels) + 1)


def plot_energy(result: SimResult, path: Path) -> None:
    """Energy per layer, stacked by where it goes: MACs, SRAM accesses, DRAM traffic."""
    rows = result.rows
    plt, fig, ax = _figure(result)
    x = list(range(len(rows)))
    top = max((r.energy_j for r in rows), default=0.0)
    scale, unit = next(((f, u) for f, u in ((1.0, "J"), (1e3, "mJ"), (1e6, "µJ"), (1e9, "nJ"), (1e12, "pJ"))
                        if top * f >= 1), (1e12, "pJ"))
    s = result.totals
    bottom = [0.0] * len(rows)
    for term, label, color, total in (("energy_mac_j", "MACs", COLORS[Bound.MATRIX], s.energy_mac_j),
                                      ("energy_sram_j", "SRAM accesses", "#8172B3", s.energy_sram_j),
                                      ("energy_dram_j", "DRAM traffic", COLORS[Bound.DATA], s.energy_dram_j)):
        vals = [getattr(r, term) * scale for r in rows]
        share = total / s.energy_j if s.energy_j else 0.0
        ax.bar(x, vals, bottom=bottom, width=0.8, color=color, linewidth=0, label=f"{label} ({share:.0%})")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel(f"energy per layer ({unit})")
    ax.set_ylim(0, max(bottom + [1e-30]) * 1.05)
    _finish(plt, fig, ax, result, f"energy {s.energy_j * 1e6:.3g} µJ per inference", path)


def matplotlib_cmap(n: int) -> list:
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


_PLOTTERS = {"time": plot_time, "sram": plot_sram, "traffic": plot_traffic, "roofline": plot_roofline,
             "utilization": plot_utilization, "energy": plot_energy}


def _render(job: tuple[str, SimResult, Path]) -> None:
    name, result, path = job
    _PLOTTERS[name](result, path)


def plot_jobs(result: SimResult, folder: Path) -> list[tuple[str, SimResult, Path]]:
    """The four plots, then utilisation on a systolic array and energy when the profile prices it."""
    jobs = [(n, result, folder / f) for n, f in zip(("time", "sram", "traffic", "roofline"), PLOTS)]
    p = result.profile
    if p.systolic:
        jobs.append(("utilization", result, folder / OPTIONAL_PLOTS["utilization"]))
    if p.energy.per_mac or p.energy.per_sram_byte or p.energy.per_dram_byte:
        jobs.append(("energy", result, folder / OPTIONAL_PLOTS["energy"]))
    return jobs


def write_plots(result: SimResult, folder: Path, *, parallel: bool | None = None) -> None:
    """Render the plots (plot_jobs); on a multi-core Linux machine, in two forked workers (~2x faster)."""
    import matplotlib.backends.backend_agg  # noqa: F401  (imported once, before any fork)
    import matplotlib.figure  # noqa: F401
    jobs = plot_jobs(result, folder)
    if parallel is None:
        parallel = (os.cpu_count() or 1) > 1 and hasattr(os, "fork") and not os.environ.get("PERFSIM_SERIAL_PLOTS")
    if parallel:
        import multiprocessing
        try:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(2, initializer=as_child, initargs=(os.getpid(),)) as pool:
                pool.map(_render, jobs, chunksize=-(-len(jobs) // 2))
            return
        except (OSError, ValueError):
            pass  # no fork here (or no resources): render serially
    for job in jobs:
        _render(job)
