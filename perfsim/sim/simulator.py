"""The simulator: layers + profile -> per-layer table and totals. Torch-free.

It runs the stages in order and owns none of their rules:

1. ``plan_rows``: each tensor's size at the batch and the profile's bits, each layer's weight bytes, the
   memory plan (``perfsim.sim.memory``: one ``Traffic`` per layer) and from it each row's ``RowWork``
   (bytes, work, efficiencies, overhead: ``perfsim.sim.timing``) and the totals the plan fixes;
2. timing: each row's seconds from its work and the profile's ``Rates`` (``timing.layer_times``), added
   up in order (``timing.Totals``);
3. results (``perfsim.sim.results``): ``LayerResult`` rows and the ``Summary``.

A sweep (``perfsim.sim.batch``) runs stage 1 once per plan and stage 2 over arrays of points: the same
functions, so its totals are ``simulate``'s to the last bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

from .._version import __version__
from ..hardware.energy import sram_access_bytes
from ..hardware.systolic import run_on_array
from ..ir.graph import Graph, Layer, Unit
from . import check_batch
from .memory import MemoryPlan, plan_memory, tensor_bytes
from .records import Bound
from .results import BoundCounts, LayerResult, SimResult, Summary
from .timing import LayerTimes, Rates, RowWork, Totals, layer_times, row_fixed_time, unit_efficiencies

if TYPE_CHECKING:
    from ..hardware.description import HardwareProfile

__all__ = ["simulate", "plan_rows", "Planned"]

BOUNDS = tuple(Bound)  # LayerTimes.bound indexes this


@dataclass(frozen=True)
class Planned:
    """What one profile's plan makes of a network at a batch, before any rate."""

    sizes: list[int]  # bytes of each physical tensor
    weight_bytes: list[int]  # what each layer reads
    plan: MemoryPlan
    work: tuple[RowWork, ...]  # one per layer
    cycles: tuple[int, ...]  # each row's cycles on a systolic array (0 without one)
    totals: dict[str, Any]  # the summary's totals that the plan fixes (``plan_totals``)
    matrix_macs: int  # MACs of the rows on the matrix unit (for its utilisation)


def simulate(graph: Graph, profile: HardwareProfile, *, batch: int = 1, model: str | None = None) -> SimResult:
    """Simulate ``graph`` on ``profile`` for a batch of ``batch`` inputs."""
    check_batch(batch)
    planned = plan_rows(graph, profile, batch)
    rates = Rates.of(profile)
    totals = Totals()
    rows = []
    for layer, tr, w, work, cycles in zip(graph.layers, planned.plan.traffic, planned.weight_bytes, planned.work,
                                          planned.cycles):
        t = layer_times(work, rates)
        totals.add(t)
        rows.append(_row(layer, tr, w, planned.sizes, work, t, cycles, batch))
    notes = list(planned.plan.notes)
    unused = graph.params - sum(r.params for r in rows)
    if unused:
        notes.append(f"{unused} parameters of the module are not used by its traced forward pass "
                     "(counted in params, in no row)")
    timed = totals.finish(batch, planned.matrix_macs, rates.matrix_flops)
    counts = BoundCounts(data=timed.pop("bound_data"), matrix=timed.pop("bound_matrix"),
                         vector=timed.pop("bound_vector"))
    summary = Summary(model=model or graph.name, profile=profile, perfsim_version=__version__, batch=batch,
                      input_shape=(batch,) + tuple(graph.input_shape[1:]), notes=tuple(notes),
                      bound_counts=counts, **planned.totals, **timed)
    return SimResult(rows=tuple(rows), totals=summary)


def plan_rows(graph: Graph, profile: HardwareProfile, batch: int) -> Planned:
    """Sizes, the memory plan, each row's work and the totals they fix (raises ``DoesNotFitError``)."""
    p = profile
    f, s = p.formats, p.schedule
    sizes = tensor_bytes(graph, batch, f.activation_bits)
    wbytes = [layer.weight_bytes(f.weight_bits, f.bias_bits, s.fold_batchnorm) for layer in graph.layers]
    stored = [0 if layer.shares_weights else b for layer, b in zip(graph.layers, wbytes)]  # the deployable model
    plan = plan_memory(graph, p, sizes, wbytes, stored)
    work, cycles = [], []
    for layer, tr, w in zip(graph.layers, plan.traffic, wbytes):
        row, c = _work(layer, tr, w, sizes, p, batch)
        work.append(row)
        cycles.append(c)
    totals = plan_totals(graph, p, batch, plan, work, stored, cycles)
    matrix_macs = sum(w.macs for layer, w in zip(graph.layers, work) if layer.unit is Unit.MATRIX)
    return Planned(sizes=sizes, weight_bytes=wbytes, plan=plan, work=tuple(work), cycles=tuple(cycles),
                   totals=totals, matrix_macs=matrix_macs)


def _work(layer: Layer, tr: Any, weight_bytes: int, sizes: Sequence[int], p: HardwareProfile,
          batch: int) -> tuple[RowWork, int]:
    macs = layer.macs * batch
    vops = layer.vector_ops(p.schedule.fold_batchnorm, p.schedule.fuse_activation) * batch
    matrix_eff, vector_eff = unit_efficiencies(p, layer, batch, tr.tiles)
    a = p.matrix.array
    cycles = run_on_array(layer, batch, a.rows, a.cols, a.dataflow).cycles \
        if a is not None and layer.unit is Unit.MATRIX else 0
    dram_bytes = tr.read_bytes + tr.write_bytes
    in_bytes, out_bytes = sum(sizes[t] for t in layer.inputs), sizes[layer.output]
    sram = sram_access_bytes(p, layer, batch, macs=macs, dram_bytes=dram_bytes, in_bytes=in_bytes,
                             weight_bytes=weight_bytes, out_bytes=out_bytes)
    work = RowWork(dram_bytes=dram_bytes, transfers=tr.transfers, macs=macs,
                   matrix_work=cycles if a is not None and layer.unit is Unit.MATRIX else 2 * macs, vector_ops=vops,
                   matrix_efficiency=matrix_eff, vector_efficiency=vector_eff,
                   overhead_s=row_fixed_time(p, layer, out_bytes, tr.tiles), sram_access_bytes=sram)
    return work, cycles


def plan_totals(graph: Graph, p: HardwareProfile, batch: int, plan: MemoryPlan, work: Sequence[RowWork],
                stored: Sequence[int], cycles: Sequence[int]) -> dict[str, Any]:
    """The summary's totals that depend on the plan and not on any rate."""
    tr = plan.traffic
    macs = sum(w.macs for w in work)
    return {
        "macs": macs, "flops": sum(2 * w.macs for w in work), "vector_ops": sum(w.vector_ops for w in work),
        "params": graph.params,
        "params_inference": sum(layer.params_inference(p.schedule.fold_batchnorm) for layer in graph.layers
                                if not layer.shares_weights),
        "model_size_bytes": sum(stored),
        "dram_read_bytes": sum(t.read_bytes for t in tr), "dram_write_bytes": sum(t.write_bytes for t in tr),
        "spill_bytes": sum(t.spill_bytes for t in tr), "refetch_bytes": sum(t.refetch_bytes for t in tr),
        "preload_bytes": plan.preload_bytes, "peak_sram_bytes": max((t.sram_bytes for t in tr), default=0),
        "layers": len(tr), "tiled_layers": sum(1 for t in tr if t.tiles > 1),
        "matrix_cycles": sum(cycles), "sram_access_bytes": sum(w.sram_access_bytes for w in work),
    }


def _row(layer: Layer, tr: Any, weight_bytes: int, sizes: Sequence[int], w: RowWork, t: LayerTimes, cycles: int,
         batch: int) -> LayerResult:
    return LayerResult(
        layer=layer.name, op=layer.op, unit=layer.unit,
        in_shape=_shape(layer.in_shape, batch), out_shape=_shape(layer.out_shape, batch),
        kernel=_pair(layer.kernel), stride=_pair(layer.stride), groups=layer.groups,
        macs=w.macs, flops=2 * w.macs, vector_ops=w.vector_ops, params=layer.params, weight_bytes=weight_bytes,
        in_bytes=sum(sizes[i] for i in layer.inputs), out_bytes=sizes[layer.output],
        sram_used_bytes=tr.sram_bytes, dram_read_bytes=tr.read_bytes, dram_write_bytes=tr.write_bytes,
        spill_bytes=tr.spill_bytes, tiles=tr.tiles, t_data_s=t.data_s, t_matrix_s=t.matrix_s,
        t_vector_s=t.vector_s, t_total_s=t.total_s, bound=BOUNDS[t.bound], refetch_bytes=tr.refetch_bytes,
        transfers=tr.transfers, plan=tr.plan, t_overhead_s=t.overhead_s, matrix_cycles=cycles,
        utilization=t.utilization, sram_access_bytes=w.sram_access_bytes, energy_mac_j=t.energy_mac_j,
        energy_sram_j=t.energy_sram_j, energy_dram_j=t.energy_dram_j, energy_j=t.energy_j, kind=layer.kind,
    )


@lru_cache(maxsize=4096)
def _shape(s: tuple[int, ...], batch: int) -> str:
    return "x".join(str(d) for d in ((batch,) + tuple(s[1:]))) if s else ""


@lru_cache(maxsize=1024)
def _pair(p: tuple[int, int] | None) -> str:
    return "" if p is None else f"{p[0]}x{p[1]}"
