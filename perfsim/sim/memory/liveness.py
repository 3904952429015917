"""``memory_policy: liveness`` (SPEC "Memory model"): what each layer moves. Torch-free.

Layers run in order. A layer's working set is its inputs, its (streamed) weights and its
output. Tensors already in SRAM stay; to make room, other resident tensors are evicted
farthest next use first (ties: one already in DRAM first, then the smallest that alone
frees enough room, else the larger); a dirty victim still needed later is spilled (written)
and read back before its next use. A layer whose working set alone exceeds SRAM is tiled:
everything else is evicted and ``tiling.choose_plan`` picks the plan. After each layer,
tensors with no later reader are freed; a network output is written to DRAM once.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Collection, Sequence

from ...errors import DoesNotFitError
from ...ir.graph import Graph, Layer, OpKind
from ..capacity import Capacity, as_capacity
from ..records import Plan, Traffic
from ..tiling import TileChoice, TileGeometry, choose_plan, geometry, min_sram

_INF = float("inf")


class Sram:
    """SRAM contents and DRAM validity during one liveness simulation (tensors by id)."""

    def __init__(self, sizes: Sequence[int], uses: list[list[int]], in_dram: set[int]):
        self.sizes = sizes
        self.uses = uses  # per tensor, the indices of the layers that read it, ascending
        self.resident: dict[int, int] = {}
        self.in_dram = set(in_dram)  # tensors whose DRAM copy is valid (clean)
        self.occupied = 0

    def next_use(self, t: int, after: int) -> float:
        u = self.uses[t]
        k = bisect_right(u, after)
        return u[k] if k < len(u) else _INF

    def add(self, t: int) -> None:
        if t not in self.resident:
            self.resident[t] = self.sizes[t]
            self.occupied += self.sizes[t]

    def drop(self, t: int) -> None:
        size = self.resident.pop(t, None)
        if size is not None:
            self.occupied -= size

    def evict_for(self, needed: int, capacity: Capacity, keep: Collection[int], now: int) -> tuple[int, int]:
        """Evict until ``needed`` more bytes fit; returns (spill bytes written, transfers).

        Victims: the farthest next use first; ties, a tensor already in DRAM first, then --
        refining SPEC's "then the larger" -- the smallest one that alone frees enough room,
        else the larger. (Larger-first alone spilled 2 KiB where 512 B sufficed and made
        traffic rise with SRAM: tests/test_simulate.py::test_eviction_ties_prefer_the_smallest_that_suffices.)
        """
        if capacity.fits(self.occupied + needed):
            return 0, 0
        candidates = [t for t in self.resident if t not in keep]

        def tie_class(t: int) -> tuple[float, int]:
            return (-self.next_use(t, now), 0 if t in self.in_dram else 1)

        spilled = transfers = 0
        while not capacity.fits(self.occupied + needed) and candidates:
            head = min(tie_class(t) for t in candidates)
            tied = [t for t in candidates if tie_class(t) == head]
            # evicting t alone frees enough: occupied + needed - size(t) fits
            enough = [t for t in tied if capacity.fits(self.occupied + needed - self.sizes[t])]
            victim = (min(enough, key=lambda t: (self.sizes[t], t)) if enough
                      else max(tied, key=lambda t: (self.sizes[t], -t)))
            candidates.remove(victim)
            spilled_now, n = self.evict(victim, now)
            spilled += spilled_now
            transfers += n
        return spilled, transfers

    def evict(self, t: int, now: int) -> tuple[int, int]:
        """Evict one tensor, spilling it if it is dirty and still needed."""
        spilled = transfers = 0
        if t not in self.in_dram and self.next_use(t, now) != _INF:
            spilled, transfers = self.sizes[t], 1
            self.in_dram.add(t)
        self.drop(t)
        return spilled, transfers


@dataclass
class _Moves:
    """What one layer moves, accumulated as the plan unfolds."""

    read: int = 0
    write: int = 0
    spill: int = 0
    refetch: int = 0
    transfers: int = 0

    def spilled(self, spill_bytes: int, transfers: int) -> None:
        self.spill += spill_bytes
        self.write += spill_bytes
        self.transfers += transfers


class _Liveness:
    """One pass over the layers; ``weight_bytes`` are 0 where weights are resident (pinned)."""

    def __init__(self, graph: Graph, sizes: Sequence[int], weight_bytes: Sequence[int], capacity: Capacity, *,
                 pinned: int, sram_bytes: int):
        self.graph, self.sizes, self.weight_bytes = graph, sizes, weight_bytes
        self.capacity, self.pinned, self.sram_bytes = capacity, pinned, sram_bytes
        self.uses: list[list[int]] = [[] for _ in graph.tensors]
        for i, layer in enumerate(graph.layers):
            for t in layer.inputs:
                self.uses[t].append(i)
        self.outputs = set(graph.outputs)
        self.mem = Sram(sizes, self.uses, set(graph.inputs))

    def run(self) -> list[Traffic]:
        return [self._step(i, layer) for i, layer in enumerate(self.graph.layers)]

    def _step(self, i: int, layer: Layer) -> Traffic:
        moves = _Moves()
        w = self.weight_bytes[i]
        ws = sum(self.sizes[t] for t in layer.inputs) + w + self.sizes[layer.output]
        if self.capacity.fits(ws):
            sram = self._resident(i, layer, w, moves)
            tiles, plan = 1, Plan.RESIDENT
        else:
            choice = self._tiled(i, layer, w, moves)
            sram, tiles, plan = choice.sram_bytes + self.pinned, choice.tiles, choice.plan
        self._retire(i, layer, moves)
        return Traffic(read_bytes=moves.read, write_bytes=moves.write, spill_bytes=moves.spill,
                       refetch_bytes=moves.refetch, transfers=moves.transfers, tiles=tiles, sram_bytes=sram,
                       plan=plan)

    def _resident(self, i: int, layer: Layer, w: int, moves: _Moves) -> int:
        """The whole working set fits: make room, read what is missing; returns the SRAM in use."""
        mem, sizes, ins = self.mem, self.sizes, layer.inputs
        needed = w + sizes[layer.output] + sum(sizes[t] for t in ins if t not in mem.resident)
        moves.spilled(*mem.evict_for(needed, self.capacity, ins, i))
        for t in ins:
            if t not in mem.resident:
                moves.read += sizes[t]
                moves.transfers += 1
                mem.add(t)
        if w:
            moves.read += w
            moves.transfers += 1
        mem.add(layer.output)
        return mem.occupied + w + self.pinned

    def _tiled(self, i: int, layer: Layer, w: int, moves: _Moves) -> TileChoice:
        """The working set alone exceeds SRAM: evict all else, then run the cheapest tiling plan."""
        mem, sizes, ins, out = self.mem, self.sizes, layer.inputs, layer.output
        for t in [t for t in mem.resident if t not in ins]:
            moves.spilled(*mem.evict(t, i))
        missing = [t for t in ins if t not in mem.resident]
        dirty = [t for t in ins if t in mem.resident and t not in mem.in_dram]
        geo = geometry(layer, sum(sizes[t] for t in ins), sizes[out], w, _in_elems(self.graph, layer))
        choice = choose_plan(geo, self.capacity, missing_in_bytes=sum(sizes[t] for t in missing),
                             dirty_in_bytes=sum(sizes[t] for t in dirty), n_in_tensors=len(ins),
                             n_missing=len(missing), n_dirty=len(dirty), out_read_back=bool(self.uses[out]),
                             inputs_die=all(mem.next_use(t, i) == _INF for t in ins))
        if choice is None:
            raise self._does_not_fit(layer, geo)
        moves.read += choice.read_bytes
        moves.write += choice.write_bytes
        moves.spill += choice.spill_bytes
        moves.refetch += choice.refetch_bytes
        moves.transfers += choice.transfers
        for t in ins:
            if choice.keeps_input:
                mem.add(t)
            elif t in mem.resident:
                mem.in_dram.add(t)  # the plan wrote dirty inputs back before streaming them
                mem.drop(t)
        if choice.keeps_output:
            mem.add(out)
        else:
            mem.in_dram.add(out)
        return choice

    def _retire(self, i: int, layer: Layer, moves: _Moves) -> None:
        """Free what has no later reader; the network output goes to DRAM."""
        mem, out = self.mem, layer.output
        for t in layer.inputs:
            if mem.next_use(t, i) == _INF:
                mem.drop(t)
        if out in self.outputs and out not in mem.in_dram:
            moves.write += self.sizes[out]
            moves.transfers += 1
            mem.in_dram.add(out)
        if not self.uses[out] or mem.next_use(out, i) == _INF:
            mem.drop(out)

    def _does_not_fit(self, layer: Layer, geo: TileGeometry) -> DoesNotFitError:
        need = min_sram(geo) + self.pinned
        whole = network_min_sram(self.graph, self.sizes, self.weight_bytes) + self.pinned
        return DoesNotFitError(
            f"layer {layer.name!r} ({layer.op}) cannot run in {self.sram_bytes} B of SRAM even tiled; "
            f"the smallest SRAM that runs it is {need} B (every layer of the network: {whole} B)")


def liveness_traffic(graph: Graph, sizes: Sequence[int], weight_bytes: Sequence[int], capacity: int | Capacity, *,
                     pinned: int, sram_bytes: int) -> list[Traffic]:
    """Per-layer traffic under the liveness policy in ``capacity`` bytes of SRAM.

    ``weight_bytes``: what each layer streams (all 0 when weights are resident, then
    ``pinned`` bytes of SRAM hold them and count in every layer's SRAM figure).
    """
    return _Liveness(graph, sizes, weight_bytes, as_capacity(capacity), pinned=pinned, sram_bytes=sram_bytes).run()


def live_peak(graph: Graph, sizes: Sequence[int]) -> int:
    """Peak bytes of live activations with unbounded SRAM (inputs, output, and those kept for later)."""
    last_use = {t.id: -1 for t in graph.tensors}
    for i, layer in enumerate(graph.layers):
        for t in layer.inputs:
            last_use[t] = i
    for t in graph.outputs:
        last_use[t] = max(last_use[t], graph.tensors[t].producer)
    peak = 0
    live: dict[int, int] = {t: sizes[t] for t in graph.inputs}
    for i, layer in enumerate(graph.layers):
        live[layer.output] = sizes[layer.output]
        peak = max(peak, sum(live.values()))
        for t in list(live):
            if last_use[t] <= i:
                del live[t]
    return peak


def network_min_sram(graph: Graph, sizes: Sequence[int], weight_bytes: Sequence[int]) -> int:
    """The smallest SRAM in which every layer runs (each, at worst, tiled with all else evicted)."""
    need = 0
    for layer, w in zip(graph.layers, weight_bytes):
        in_bytes = sum(sizes[t] for t in layer.inputs)
        ws = in_bytes + w + sizes[layer.output]
        geo = geometry(layer, in_bytes, sizes[layer.output], w, _in_elems(graph, layer))
        need = max(need, min(ws, min_sram(geo)))
    return need


def _in_elems(graph: Graph, layer: Layer) -> int:
    """Elements (at batch 1) of the physical tensors a layer reads: only a matmul's geometry needs them."""
    return sum(graph.tensors[t].numel for t in layer.inputs) if layer.kind is OpKind.MATMUL else 0
