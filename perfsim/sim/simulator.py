"""The simulator: layers + profile -> per-layer table and totals. Torch-free.

It runs the stages in order and owns none of their rules:

1. sizes: each tensor at the batch and the profile's bits, each layer's weight bytes;
2. the memory plan (``perfsim.sim.memory``): one ``Traffic`` per layer;
3. timing (``perfsim.sim.timing``): each row's seconds from its bytes and ops;
4. results (``perfsim.sim.results``): ``LayerResult`` rows and the ``Summary``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from . import check_batch
from ..hardware.energy import row_energy
from ..ir.graph import Graph, Layer, Unit
from .memory import plan_memory, tensor_bytes
from .results import Bound, BoundCounts, LayerResult, SimResult, Summary, Traffic
from ..hardware.systolic import run_on_array
from .timing import layer_times, row_fixed_time, unit_efficiencies

if TYPE_CHECKING:
    from ..hardware.profile import HardwareProfile

__all__ = ["simulate"]


def simulate(graph: Graph, profile: HardwareProfile, *, batch: int = 1, model: str | None = None) -> SimResult:
    """Simulate ``graph`` on ``profile`` for a batch of ``batch`` inputs."""
    check_batch(batch)
    p = profile
    sizes = tensor_bytes(graph, batch, p.activation_bits)
    wbytes = [layer.weight_bytes(p.weight_bits, p.bias_bits, p.fold_batchnorm) for layer in graph.layers]
    stored = [0 if layer.shares_weights else b for layer, b in zip(graph.layers, wbytes)]  # the deployable model
    plan = plan_memory(graph, p, sizes, wbytes, stored)
    rows = tuple(_row(layer, tr, w, sizes, p, batch)
                 for layer, tr, w in zip(graph.layers, plan.traffic, wbytes))
    notes = list(plan.notes)
    unused = graph.params - sum(r.params for r in rows)
    if unused:
        notes.append(f"{unused} parameters of the module are not used by its traced forward pass "
                     "(counted in params, in no row)")
    totals = _summary(graph, p, batch, model or graph.name, rows, stored, plan.preload_bytes, tuple(notes))
    return SimResult(rows=rows, totals=totals)


def _row(layer: Layer, tr: Traffic, weight_bytes: int, sizes: Sequence[int], p: HardwareProfile,
         batch: int) -> LayerResult:
    macs = layer.macs * batch
    vops = layer.vector_ops(p.fold_batchnorm, p.fuse_activation) * batch
    matrix_eff, vector_eff = unit_efficiencies(p, layer, batch, tr.tiles)
    overhead = row_fixed_time(p, layer, sizes[layer.output], tr.tiles)
    run = run_on_array(layer, batch, p.array_rows, p.array_cols, p.dataflow) \
        if p.systolic and layer.unit is Unit.MATRIX else None
    dram_bytes = tr.read_bytes + tr.write_bytes
    t = layer_times(p, dram_bytes=dram_bytes, transfers=tr.transfers, macs=macs, vector_ops=vops,
                    matrix_efficiency=matrix_eff, vector_efficiency=vector_eff, overhead_s=overhead,
                    matrix_cycles=run.cycles if run is not None else None)
    in_bytes, out_bytes = sum(sizes[t] for t in layer.inputs), sizes[layer.output]
    e = row_energy(p, layer, batch, macs=macs, dram_bytes=dram_bytes, in_bytes=in_bytes,
                   weight_bytes=weight_bytes, out_bytes=out_bytes)
    return LayerResult(
        layer=layer.name, op=layer.op, unit=layer.unit,
        in_shape=_shape(layer.in_shape, batch), out_shape=_shape(layer.out_shape, batch),
        kernel=_pair(layer.kernel), stride=_pair(layer.stride), groups=layer.groups,
        macs=macs, flops=2 * macs, vector_ops=vops, params=layer.params, weight_bytes=weight_bytes,
        in_bytes=in_bytes, out_bytes=out_bytes,
        sram_used_bytes=tr.sram_bytes, dram_read_bytes=tr.read_bytes, dram_write_bytes=tr.write_bytes,
        spill_bytes=tr.spill_bytes, tiles=tr.tiles, t_data_s=t.data_s, t_matrix_s=t.matrix_s,
        t_vector_s=t.vector_s, t_total_s=t.total_s, bound=t.bound, refetch_bytes=tr.refetch_bytes,
        transfers=tr.transfers, plan=tr.plan, t_overhead_s=t.overhead_s,
        matrix_cycles=run.cycles if run is not None else 0,
        utilization=2 * macs / (p.matrix_flops * t.matrix_s) if t.matrix_s else 0.0,
        sram_access_bytes=e.sram_access_bytes, energy_mac_j=e.mac_j, energy_sram_j=e.sram_j,
        energy_dram_j=e.dram_j, energy_j=e.total_j, kind=layer.kind,
    )


@lru_cache(maxsize=4096)
def _shape(s: tuple[int, ...], batch: int) -> str:
    return "x".join(str(d) for d in ((batch,) + tuple(s[1:]))) if s else ""


@lru_cache(maxsize=1024)
def _pair(p: tuple[int, int] | None) -> str:
    return "" if p is None else f"{p[0]}x{p[1]}"


def _summary(graph: Graph, p: HardwareProfile, batch: int, model: str, rows: Sequence[LayerResult],
             stored: Sequence[int], preload_bytes: int, notes: tuple[str, ...]) -> Summary:
    from .._version import __version__
    latency = sum(r.t_total_s for r in rows)
    return Summary(
        model=model, profile=p, perfsim_version=__version__, batch=batch,
        input_shape=(batch,) + tuple(graph.input_shape[1:]),
        latency_s=latency, latency_per_sample_s=latency / batch,
        macs=sum(r.macs for r in rows), flops=sum(r.flops for r in rows),
        vector_ops=sum(r.vector_ops for r in rows), params=graph.params,
        params_inference=sum(layer.params_inference(p.fold_batchnorm) for layer in graph.layers
                             if not layer.shares_weights),
        model_size_bytes=sum(stored),
        dram_read_bytes=sum(r.dram_read_bytes for r in rows), dram_write_bytes=sum(r.dram_write_bytes for r in rows),
        spill_bytes=sum(r.spill_bytes for r in rows), refetch_bytes=sum(r.refetch_bytes for r in rows),
        preload_bytes=preload_bytes, peak_sram_bytes=max((r.sram_used_bytes for r in rows), default=0),
        layers=len(rows), tiled_layers=sum(1 for r in rows if r.tiles > 1),
        bound_counts=BoundCounts(**{b.value: sum(1 for r in rows if r.bound is b) for b in Bound}),
        t_data_s=sum(r.t_data_s for r in rows), t_matrix_s=sum(r.t_matrix_s for r in rows),
        t_vector_s=sum(r.t_vector_s for r in rows), t_overhead_s=sum(r.t_overhead_s for r in rows), notes=notes,
        matrix_cycles=sum(r.matrix_cycles for r in rows), utilization=_utilization(rows, p),
        sram_access_bytes=sum(r.sram_access_bytes for r in rows), energy_mac_j=sum(r.energy_mac_j for r in rows),
        energy_sram_j=sum(r.energy_sram_j for r in rows), energy_dram_j=sum(r.energy_dram_j for r in rows),
        energy_j=sum(r.energy_j for r in rows),
    )


def _utilization(rows: Sequence[LayerResult], p: HardwareProfile) -> float:
    """The matrix unit's achieved fraction of peak over the time it computes."""
    t = sum(r.t_matrix_s for r in rows)
    return 2 * sum(r.macs for r in rows if r.unit is Unit.MATRIX) / (p.matrix_flops * t) if t else 0.0
