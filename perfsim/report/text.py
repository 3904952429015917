"""What perfsim prints on a terminal: a run's layer table and totals, a comparison, a sweep's summary.
Quantities are scaled for people here (``perfsim.units``); files keep base units."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..sim.results import SimResult
from ..units import format_bytes, format_count, format_seconds

if TYPE_CHECKING:
    import pandas as pd

    from ..sim.batch import Axis


_TABLE = (("#", 3), ("layer", 26), ("op", 14), ("out_shape", 13), ("macs", 8), ("weights", 9),
          ("sram", 9), ("dram r/w", 17), ("spill", 9), ("tiles", 5), ("time", 11), ("bound", 6))


def format_table(result: SimResult) -> str:
    lines = ["  ".join(h.rjust(w) if h in ("#", "macs", "tiles") else h.ljust(w) for h, w in _TABLE)]
    for i, r in enumerate(result.rows):
        name = r.layer if len(r.layer) <= 26 else "…" + r.layer[-25:]
        cells = (str(i), name, r.op, r.out_shape, format_count(r.macs), format_bytes(r.weight_bytes),
                 format_bytes(r.sram_used_bytes),
                 f"{format_bytes(r.dram_read_bytes)}/{format_bytes(r.dram_write_bytes)}",
                 format_bytes(r.spill_bytes) if r.spill_bytes else "-", str(r.tiles),
                 format_seconds(r.t_total_s), r.bound.value)
        lines.append("  ".join(c.rjust(w) if h in ("#", "macs", "tiles") else c.ljust(w)
                               for c, (h, w) in zip(cells, _TABLE)))
    return "\n".join(lines)


def format_totals(result: SimResult) -> str:
    s = result.totals
    p = result.profile
    bc = s.bound_counts
    lines = [
        f"model {s.model}  input {'x'.join(map(str, s.input_shape))}  profile {p.name}",
        f"latency          {format_seconds(s.latency_s)}"
        + (f"  ({format_seconds(s.latency_per_sample_s)} per sample)" if result.batch > 1 else "")
        + f"   data {format_seconds(s.t_data_s)}, matrix {format_seconds(s.t_matrix_s)}, "
          f"vector {format_seconds(s.t_vector_s)}" + ("  (overlapped)" if p.schedule.overlap else ""),
        f"work             {format_count(s.macs)} MACs, {format_count(s.vector_ops)} vector ops, "
        f"{format_count(s.params)} params, model {format_bytes(s.model_size_bytes)} "
        f"at {p.formats.weight_bits}-bit weights",
        f"DRAM traffic     read {format_bytes(s.dram_read_bytes)}, written {format_bytes(s.dram_write_bytes)}"
        f"  (spills {format_bytes(s.spill_bytes)}, refetch {format_bytes(s.refetch_bytes)}"
        + (f", preloaded {format_bytes(s.preload_bytes)}" if s.preload_bytes else "") + ")",
        f"SRAM             peak {format_bytes(s.peak_sram_bytes)} of {format_bytes(p.memory.sram_bytes)}, "
        f"{s.tiled_layers} of {s.layers} layers tiled",
        f"bound            {bc.data} data, {bc.matrix} matrix, {bc.vector} vector",
    ]
    if p.systolic:
        lines.append(f"array            {p.matrix.array.rows}x{p.matrix.array.cols} {p.matrix.array.dataflow} at {p.matrix.array.clock / 1e9:g} GHz: "
                     f"{format_count(s.matrix_cycles)} cycles, utilisation {s.utilization:.1%} of peak while computing")
    if s.energy_j:
        parts = ", ".join(f"{name} {v * 1e6:.3g} µJ ({v / s.energy_j:.0%})" for name, v in
                          (("MACs", s.energy_mac_j), ("SRAM", s.energy_sram_j), ("DRAM", s.energy_dram_j)))
        lines.append(f"energy           {s.energy_j * 1e6:.4g} µJ per inference: {parts}")
    lines += [f"note             {n}" for n in s.notes]
    return "\n".join(lines)


def field_text(field: str, v: Any) -> str:
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


def format_sweep(frame: pd.DataFrame, axes: Sequence[Axis], knee_at: dict[str, Any]) -> str:
    """Per model: points, the fastest point, the knee."""
    lines = []
    field = axes[0].field
    for model, part in frame.groupby("model", sort=False):
        ok = part[part.fits]
        line = f"{model:14} {len(part):>7} points"
        if len(ok):
            best = ok.loc[ok.latency_s.astype(float).idxmin()]
            where = ", ".join(f"{a.field}={field_text(a.field, best[a.field])}" for a in axes)
            line += f"  fastest {format_seconds(best.latency_s)} at {where}"
        line += f"  knee ({field}, no spills from here on): {field_text(field, knee_at.get(model))}"
        if len(ok) < len(part):
            line += f"  ({len(part) - len(ok)} points do not fit)"
        lines.append(line)
    return "\n".join(lines)


def format_compare(frame: pd.DataFrame, profile_name: str) -> str:
    """The terminal table."""
    head = (f"{'model':14} {'latency':>11} {'data':>11} {'matrix':>11} {'vector':>11} {'DRAM read':>11} "
            f"{'DRAM write':>11} {'spills':>11} {'peak SRAM':>11} {'MACs':>9} {'params':>8} {'size':>11}")
    lines = [f"profile {profile_name}", head]
    for r in frame.itertuples(index=False):
        lines.append(f"{r.model:14} {format_seconds(r.latency_s):>11} {format_seconds(r.t_data_s):>11} "
                     f"{format_seconds(r.t_matrix_s):>11} {format_seconds(r.t_vector_s):>11} "
                     f"{format_bytes(r.dram_read_bytes):>11} {format_bytes(r.dram_write_bytes):>11} "
                     f"{format_bytes(r.spill_bytes):>11} {format_bytes(r.peak_sram_bytes):>11} "
                     f"{format_count(r.macs):>9} {format_count(r.params):>8} {format_bytes(r.model_size_bytes):>11}")
    return "\n".join(lines)
