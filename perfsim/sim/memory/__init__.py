"""The memory plan: which bytes each layer moves between DRAM and SRAM. Torch-free.

``plan_memory`` applies the profile's ``memory_policy`` and ``weights`` switches and
returns one ``Traffic`` record per layer:

- ``liveness`` (``liveness.py``): SPEC's memory model (eviction, spills, tiling hand-off);
- ``paper`` (``paper.py``): the seed paper's Table 3 accounting, replayed.

``weights: resident`` pins every stored weight byte in SRAM (a preload outside
per-inference traffic) when they fit beside the peak of live activations; otherwise
weights stream and a note says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ...errors import DoesNotFitError
from ...ir.graph import Graph
from ..capacity import Capacity
from ..records import Traffic
from .liveness import live_peak, liveness_traffic
from .paper import paper_accounting, paper_traffic

if TYPE_CHECKING:
    from ...hardware.description import HardwareProfile

__all__ = ["MemoryPlan", "paper_accounting", "plan_memory", "tensor_bytes"]


@dataclass(frozen=True)
class MemoryPlan:
    traffic: tuple[Traffic, ...]  # one per layer, in order
    preload_bytes: int  # resident weights, loaded once before the first inference
    notes: tuple[str, ...]
    # [lo, hi): every SRAM size in it gives this very plan (perfsim.sim.capacity; a sweep plans once per range)
    sram_range: tuple[float, float] = (float("-inf"), float("inf"))


def tensor_bytes(graph: Graph, batch: int, bits: int) -> list[int]:
    """Each physical tensor's size at ``batch``: ceil(numel * bits / 8) bytes."""
    return [-(-t.numel * batch * bits // 8) for t in graph.tensors]


def plan_memory(graph: Graph, profile: HardwareProfile, sizes: Sequence[int], weight_bytes: Sequence[int],
                stored_bytes: Sequence[int]) -> MemoryPlan:
    """Per-layer traffic. ``weight_bytes``: what each layer reads; ``stored_bytes``: the
    deployable model's weights (a module called twice is stored once)."""
    p = profile
    sram = Capacity(p.memory.sram_bytes)
    try:
        return _plan(graph, p, sizes, weight_bytes, stored_bytes, sram)
    except DoesNotFitError as e:
        e.sram_range = (sram.lo, sram.hi)  # every SRAM size in it does not fit either
        raise


def _plan(graph: Graph, p: HardwareProfile, sizes: Sequence[int], weight_bytes: Sequence[int],
          stored_bytes: Sequence[int], sram: Capacity) -> MemoryPlan:
    """``plan_memory`` asking every question of the SRAM size through ``sram`` (and narrowing it)."""
    if p.memory.policy == "paper":
        notes = ("memory_policy paper replays the seed paper's accounting, which streams weights: "
                 "'weights: resident' is not applied",) if p.memory.weights == "resident" else ()
        return MemoryPlan(tuple(paper_traffic(graph, sizes, weight_bytes, sram)), 0, notes, (sram.lo, sram.hi))
    notes = []
    resident = p.memory.weights == "resident"
    preload = 0
    if resident:
        total_w = sum(stored_bytes)
        peak_live = live_peak(graph, sizes)
        if not sram.fits(total_w + peak_live):
            notes.append(f"resident weights ({total_w} B) do not fit beside the peak of live activations "
                         f"({peak_live} B) in {p.memory.sram_bytes} B of SRAM: weights stream instead")
            resident = False
        else:
            preload = total_w
    streamed = [0] * len(weight_bytes) if resident else list(weight_bytes)
    capacity = Capacity(p.memory.sram_bytes - preload)
    try:
        traffic = liveness_traffic(graph, sizes, streamed, capacity, pinned=preload, sram_bytes=p.memory.sram_bytes)
    finally:
        sram.narrow(*capacity.shifted(preload))
    if resident:
        notes.append(f"weights resident: {preload} B preloaded once, outside per-inference traffic")
    return MemoryPlan(tuple(traffic), preload, tuple(notes), (sram.lo, sram.hi))
