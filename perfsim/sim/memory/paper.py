"""``memory_policy: paper``: the seed paper's Table 3 accounting, replayed. Torch-free.

SPEC: data moved = the network input (first layer only) + 2 x weight bytes (weights moved
in and out); a running total adds each layer's output and weight bytes and is never
freed; when it exceeds ``sram_bytes``, data moved = the total + weight bytes and the total
restarts at the next layer. Nothing is read back and the network output is not written.
"""
from __future__ import annotations

from typing import Sequence

from ...ir.graph import Graph
from ..capacity import Capacity, as_capacity
from ..records import Plan, Traffic


def paper_accounting(in_sizes: Sequence[int], out_sizes: Sequence[int], weight_sizes: Sequence[int],
                     capacity: float | Capacity) -> list[tuple[int, int, bool]]:
    """The seed paper's Table 3 arithmetic: per layer (memory used, data moved, flushed).

    Memory used: a running total of the first layer's input and every layer's output and
    weights, never freed. Data moved: the network input (first layer) + 2 x weights (moved
    in and out). When the total exceeds ``capacity``, data moved = total + weights and the
    total restarts at the next layer (from that layer's input). Units are whatever the
    sizes are in (the paper uses bits; perfsim bytes).
    """
    capacity = as_capacity(capacity)
    rows = []
    total = 0
    restart = True
    for i, (size_in, size_out, w) in enumerate(zip(in_sizes, out_sizes, weight_sizes)):
        total = size_in + size_out + w if restart else total + size_out + w
        moved = 2 * w + (size_in if i == 0 else 0)
        restart = not capacity.fits(total)
        if restart:
            moved = total + w
        rows.append((total, moved, restart))
    return rows


def paper_traffic(graph: Graph, sizes: Sequence[int], weight_bytes: Sequence[int],
                  sram_bytes: int | Capacity) -> list[Traffic]:
    """Table 3's accounting with true shapes and the profile's bits, as per-layer traffic.

    DRAM reads are the weights (and the input at the first layer); writes are the weights
    moved out, or the flushed total (also its ``spill_bytes``).
    """
    in_sizes = [sum(sizes[t] for t in layer.inputs) for layer in graph.layers]
    out_sizes = [sizes[layer.output] for layer in graph.layers]
    traffic = []
    for i, (total, moved, flushed) in enumerate(paper_accounting(in_sizes, out_sizes, weight_bytes, sram_bytes)):
        w = weight_bytes[i]
        read = w + (in_sizes[0] if i == 0 else 0)
        traffic.append(Traffic(
            read_bytes=read, write_bytes=moved - read, spill_bytes=total if flushed else 0, refetch_bytes=0,
            transfers=(2 if w else 0) + (1 if i == 0 else 0) + (1 if flushed else 0), tiles=1,
            sram_bytes=total, plan=Plan.PAPER_FLUSH if flushed else Plan.PAPER))
    return traffic
