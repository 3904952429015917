"""The memory-hierarchy simulator: layers + profile -> per-layer table. Torch-free.

Memory policy ``liveness`` (SPEC "Memory model"): layers run in order; a layer's
working set is its inputs, weights and output; other resident tensors are
evicted farthest-next-use first (ties: clean before dirty, then larger), dirty
victims still needed are spilled and read back before their next use; a layer
whose working set alone exceeds SRAM is tiled (``tiling.py``). Policy ``paper``
replays the seed paper's Table 3 accounting. Timing: data + matrix + vector, or
max(data, matrix + vector) with ``overlap``.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from .errors import DoesNotFitError, InputError
from .graph import Graph, Layer
from .profile import HardwareProfile
from .tiling import TileGeometry, choose_plan, min_sram

# Report columns, SPEC order; later columns follow ``bound``.
COLUMNS = (
    "layer", "op", "unit", "in_shape", "out_shape", "kernel", "stride", "groups", "macs", "flops",
    "vector_ops", "params", "weight_bytes", "in_bytes", "out_bytes", "sram_used_bytes",
    "dram_read_bytes", "dram_write_bytes", "spill_bytes", "tiles", "t_data_s", "t_matrix_s",
    "t_vector_s", "t_total_s", "bound",
    # extras
    "refetch_bytes", "transfers", "plan",
)

_INF = float("inf")


@dataclass(frozen=True, slots=True)
class LayerResult:
    layer: str
    op: str
    unit: str
    in_shape: str
    out_shape: str
    kernel: str
    stride: str
    groups: int
    macs: int
    flops: int
    vector_ops: int
    params: int
    weight_bytes: int
    in_bytes: int
    out_bytes: int
    sram_used_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    spill_bytes: int
    tiles: int
    t_data_s: float
    t_matrix_s: float
    t_vector_s: float
    t_total_s: float
    bound: str
    refetch_bytes: int
    transfers: int
    plan: str  # "resident", or the tiling plan: keep_in_out / keep_in / stream

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


@dataclass(frozen=True)
class SimResult:
    """What ``simulate`` returns: one row per layer and the totals."""

    model: str
    profile: HardwareProfile
    batch: int
    rows: tuple[LayerResult, ...]
    summary: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    def to_frame(self):
        import pandas as pd  # at the edge: the core stays numpy/dataclasses
        return pd.DataFrame([r.as_tuple() for r in self.rows], columns=list(COLUMNS))

    @property
    def latency_s(self) -> float:
        return self.summary["latency_s"]


def _shape(s: tuple[int, ...], batch: int) -> str:
    return "x".join(str(d) for d in ((batch,) + tuple(s[1:]))) if s else ""


def _pair(p) -> str:
    return "" if p is None else f"{p[0]}x{p[1]}"


def _bytes(numel: int, bits: int) -> int:
    return -(-numel * bits // 8)


def geometry(layer: Layer, in_bytes: int, out_bytes: int, weight_bytes: int) -> TileGeometry:
    """How a layer's tensors split into row bands and channel blocks."""
    ins, outs = layer.in_shape, layer.out_shape
    if len(outs) == 4:
        co, ho = outs[1], outs[2]
    else:  # linear / flattened: channels are the features, one "row"
        co, ho = (outs[-1] if outs else 1), 1
    hi = ins[2] if len(ins) == 4 else 1  # input rows
    if layer.unit.value == "matrix" and layer.kernel is not None:
        dil = layer.dilation[0] if layer.dilation else 1
        kh, sh = dil * (layer.kernel[0] - 1) + 1, layer.stride[0]  # rows one output row reads
        groups = layer.groups
    elif layer.kernel is not None and len(ins) == 4:  # pooling: channelwise
        kh = layer.kernel[0]
        sh = layer.stride[0] if layer.stride else kh
        groups = co
        if layer.op.startswith("global"):
            kh, sh = hi, 1
    else:  # linear, elementwise, add, softmax: no halo
        kh, sh = 1, 1
        groups = 1 if layer.unit.value == "matrix" else co
    if layer.unit.value == "matrix" and len(ins) != 4:
        kh, sh, groups = 1, 1, 1
    pad = layer.padding[0] if (layer.padding and len(ins) == 4 and kh > 1) else 0
    return TileGeometry(in_bytes=in_bytes, out_bytes=out_bytes, weight_bytes=weight_bytes,
                        in_rows=hi, out_channels=co, out_rows=ho,
                        kernel_rows=kh, stride_rows=sh, groups=groups, pad_rows=pad)


class _Memory:
    """SRAM contents and DRAM validity during one liveness simulation."""

    def __init__(self, sizes: list[int], uses: list[list[int]], in_dram: set[int]):
        self.sizes = sizes
        self.uses = uses
        self.resident: dict[int, int] = {}
        self.in_dram = set(in_dram)
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

    def evict_for(self, needed: int, capacity: int, keep: set[int], now: int) -> tuple[int, int]:
        """Evict until ``needed`` more bytes fit; returns (spill bytes written, transfers).

        Victims: the farthest next use first; ties, a tensor already in DRAM first, then --
        refining SPEC's "then the larger" -- the smallest one that alone frees enough room,
        else the larger. (Larger-first alone spilled 2 KiB where 512 B sufficed and made
        traffic rise with SRAM: tests/test_simulate.py::test_eviction_ties_prefer_the_smallest_that_suffices.)
        """
        if self.occupied + needed <= capacity:
            return 0, 0
        candidates = [t for t in self.resident if t not in keep]

        def tie_class(t: int) -> tuple[float, int]:
            return (-self.next_use(t, now), 0 if t in self.in_dram else 1)

        spilled = transfers = 0
        while self.occupied + needed > capacity and candidates:
            head = min(tie_class(t) for t in candidates)
            tied = [t for t in candidates if tie_class(t) == head]
            excess = self.occupied + needed - capacity
            enough = [t for t in tied if self.sizes[t] >= excess]
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


def _live_peak(graph: Graph, sizes: list[int]) -> int:
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


def simulate(graph: Graph, profile: HardwareProfile, *, batch: int = 1, model: str | None = None) -> SimResult:
    """Simulate ``graph`` on ``profile`` for a batch of ``batch`` inputs."""
    if not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    p = profile
    layers = graph.layers
    sizes = [_bytes(t.numel * batch, p.activation_bits) for t in graph.tensors]
    wbytes = [l.weight_bytes(p.weight_bits, p.bias_bits, p.fold_batchnorm) for l in layers]
    stored = [0 if l.shares_weights else b for l, b in zip(layers, wbytes)]  # the deployable model
    notes: list[str] = []

    if p.memory_policy == "paper":
        traffic = _paper_policy(graph, p, sizes, wbytes)
        preload = 0
        if p.weights == "resident":
            notes.append("memory_policy paper replays the seed paper's accounting, which streams weights: "
                         "'weights: resident' is not applied")
    else:
        weights_mode = p.weights
        capacity = p.sram_bytes
        preload = 0
        if weights_mode == "resident":
            total_w = sum(stored)
            peak_live = _live_peak(graph, sizes)
            if total_w + peak_live > p.sram_bytes:
                notes.append(f"resident weights ({total_w} B) do not fit beside the peak of live activations "
                             f"({peak_live} B) in {p.sram_bytes} B of SRAM: weights stream instead")
                weights_mode = "stream"
            else:
                capacity = p.sram_bytes - total_w
                preload = total_w
        traffic = _liveness_policy(graph, p, sizes, wbytes, capacity, streamed=weights_mode == "stream",
                                   pinned=p.sram_bytes - capacity)
        if weights_mode == "resident":
            notes.append(f"weights resident: {preload} B preloaded once, outside per-inference traffic")

    rows: list[LayerResult] = []
    bound_counts = {"data": 0, "matrix": 0, "vector": 0}
    for i, layer in enumerate(layers):
        tr = traffic[i]
        macs = layer.macs * batch
        vops = layer.vector_ops(p.fold_batchnorm, p.fuse_activation) * batch
        t_data = (tr["read"] + tr["write"]) / p.dram_bandwidth + tr["transfers"] * p.dram_latency
        t_matrix = 2 * macs / p.matrix_flops
        t_vector = vops / p.vector_flops
        t_total = max(t_data, t_matrix + t_vector) if p.overlap else t_data + t_matrix + t_vector
        terms = {"data": t_data, "matrix": t_matrix, "vector": t_vector}
        bound = max(terms, key=terms.get)
        bound_counts[bound] += 1
        rows.append(LayerResult(
            layer=layer.name, op=layer.op, unit=layer.unit.value,
            in_shape=_shape(layer.in_shape, batch), out_shape=_shape(layer.out_shape, batch),
            kernel=_pair(layer.kernel), stride=_pair(layer.stride), groups=layer.groups,
            macs=macs, flops=2 * macs, vector_ops=vops, params=layer.params, weight_bytes=wbytes[i],
            in_bytes=sum(sizes[t] for t in layer.inputs), out_bytes=sizes[layer.output],
            sram_used_bytes=tr["sram"], dram_read_bytes=tr["read"], dram_write_bytes=tr["write"],
            spill_bytes=tr["spill"], tiles=tr["tiles"], t_data_s=t_data, t_matrix_s=t_matrix,
            t_vector_s=t_vector, t_total_s=t_total, bound=bound, refetch_bytes=tr["refetch"],
            transfers=tr["transfers"], plan=tr["plan"],
        ))

    from . import __version__
    latency = sum(r.t_total_s for r in rows)
    unused = graph.params - sum(r.params for r in rows)
    if unused:
        notes.append(f"{unused} parameters of the module are not used by its traced forward pass "
                     "(counted in params, in no row)")
    summary = {
        "model": model or graph.name,
        "profile": p.resolved(),
        "perfsim_version": __version__,
        "batch": batch,
        "input_shape": [batch] + list(graph.input_shape[1:]),
        "latency_s": latency,
        "latency_per_sample_s": latency / batch,
        "macs": sum(r.macs for r in rows),
        "flops": sum(r.flops for r in rows),
        "vector_ops": sum(r.vector_ops for r in rows),
        "params": graph.params,
        "params_inference": sum(l.params_inference(p.fold_batchnorm) for l in layers if not l.shares_weights),
        "model_size_bytes": sum(stored),
        "dram_read_bytes": sum(r.dram_read_bytes for r in rows),
        "dram_write_bytes": sum(r.dram_write_bytes for r in rows),
        "spill_bytes": sum(r.spill_bytes for r in rows),
        "refetch_bytes": sum(r.refetch_bytes for r in rows),
        "preload_bytes": preload,
        "peak_sram_bytes": max((r.sram_used_bytes for r in rows), default=0),
        "layers": len(rows),
        "tiled_layers": sum(1 for r in rows if r.tiles > 1),
        "bound_counts": bound_counts,
        "t_data_s": sum(r.t_data_s for r in rows),
        "t_matrix_s": sum(r.t_matrix_s for r in rows),
        "t_vector_s": sum(r.t_vector_s for r in rows),
        "notes": notes,
    }
    return SimResult(model=summary["model"], profile=p, batch=batch, rows=tuple(rows), summary=summary,
                     notes=tuple(notes))


def _network_min_sram(graph: Graph, sizes: list[int], wbytes: list[int]) -> int:
    """The smallest SRAM in which every layer runs (each, at worst, tiled with all else evicted)."""
    need = 0
    for layer, w in zip(graph.layers, wbytes):
        in_bytes = sum(sizes[t] for t in layer.inputs)
        ws = in_bytes + w + sizes[layer.output]
        need = max(need, min(ws, min_sram(geometry(layer, in_bytes, sizes[layer.output], w))))
    return need


def _liveness_policy(graph: Graph, p: HardwareProfile, sizes: list[int], wbytes: list[int], capacity: int,
                     *, streamed: bool, pinned: int) -> list[dict[str, Any]]:
    layers = graph.layers
    uses: list[list[int]] = [[] for _ in graph.tensors]
    for i, layer in enumerate(layers):
        for t in layer.inputs:
            uses[t].append(i)
    outputs = set(graph.outputs)
    mem = _Memory(sizes, uses, set(graph.inputs))
    results = []
    for i, layer in enumerate(layers):
        ins = list(layer.inputs)
        out = layer.output
        w = wbytes[i] if streamed else 0
        in_bytes = sum(sizes[t] for t in ins)
        ws = in_bytes + w + sizes[out]
        read = write = spill = refetch = transfers = 0
        tiles = 1
        plan = "resident"
        if ws <= capacity:
            keep = set(ins)
            needed = w + sizes[out] + sum(sizes[t] for t in ins if t not in mem.resident)
            s, n = mem.evict_for(needed, capacity, keep, i)
            spill += s
            write += s
            transfers += n
            for t in ins:
                if t not in mem.resident:
                    read += sizes[t]
                    transfers += 1
                    mem.add(t)
            if w:
                read += w
                transfers += 1
            mem.add(out)
            sram = mem.occupied + w + pinned
        else:
            # tiled: every other resident tensor goes first (spilled if still needed)
            for t in [t for t in mem.resident if t not in ins]:
                s, n = mem.evict(t, i)
                spill += s
                write += s
                transfers += n
            missing = sum(sizes[t] for t in ins if t not in mem.resident)
            dirty = sum(sizes[t] for t in ins if t in mem.resident and t not in mem.in_dram)
            n_missing = sum(1 for t in ins if t not in mem.resident)
            out_needed_later = bool(uses[out])
            geo = geometry(layer, in_bytes, sizes[out], w)
            n_dirty = sum(1 for t in ins if t in mem.resident and t not in mem.in_dram)
            choice = choose_plan(geo, capacity, missing_in_bytes=missing, dirty_in_bytes=dirty,
                                 n_in_tensors=len(ins), n_missing=n_missing, n_dirty=n_dirty,
                                 out_read_back=out_needed_later,
                                 inputs_die=all(mem.next_use(t, i) == _INF for t in ins))
            if choice is None:
                need = min_sram(geo) + pinned
                whole = _network_min_sram(graph, sizes, wbytes if streamed else [0] * len(layers)) + pinned
                raise DoesNotFitError(
                    f"layer {layer.name!r} ({layer.op}) cannot run in {p.sram_bytes} B of SRAM even tiled; "
                    f"the smallest SRAM that runs it is {need} B (every layer of the network: {whole} B)")
            plan = choice.plan
            tiles = choice.tiles
            read += choice.read_bytes
            write += choice.write_bytes
            spill += choice.spill_bytes
            refetch += choice.refetch_bytes
            transfers += choice.transfers
            sram = choice.sram_bytes + pinned
            if choice.keeps_input:
                for t in ins:
                    mem.add(t)
            else:
                for t in ins:
                    if t in mem.resident:
                        mem.in_dram.add(t)  # the plan wrote dirty inputs back before streaming them
                        mem.drop(t)
            if choice.keeps_output:
                mem.add(out)
            else:
                mem.in_dram.add(out)
        # free what has no later use; the network output goes to DRAM
        for t in ins:
            if mem.next_use(t, i) == _INF:
                mem.drop(t)
        if out in outputs and out not in mem.in_dram:
            write += sizes[out]
            transfers += 1
            mem.in_dram.add(out)
        if not uses[out] or mem.next_use(out, i) == _INF:
            mem.drop(out)
        results.append({"read": read, "write": write, "spill": spill, "refetch": refetch,
                        "transfers": transfers, "tiles": tiles, "sram": sram, "plan": plan})
    return results


def paper_accounting(in_sizes, out_sizes, weight_sizes, capacity: float) -> list[tuple[int, int, bool]]:
    """The seed paper's Table 3 arithmetic: per layer (memory used, data moved, flushed).

    Memory used: a running total of the first layer's input and every layer's output and
    weights, never freed. Data moved: the network input (first layer) + 2 x weights (moved
    in and out). When the total exceeds ``capacity``, data moved = total + weights and the
    total restarts at the next layer (from that layer's input). Units are whatever the
    sizes are in (the paper uses bits; perfsim bytes).
    """
    rows = []
    total = 0
    restart = True
    for i, (size_in, size_out, w) in enumerate(zip(in_sizes, out_sizes, weight_sizes)):
        total = size_in + size_out + w if restart else total + size_out + w
        moved = 2 * w + (size_in if i == 0 else 0)
        restart = total > capacity
        if restart:
            moved = total + w
        rows.append((total, moved, restart))
    return rows


def _paper_policy(graph: Graph, p: HardwareProfile, sizes: list[int], wbytes: list[int]) -> list[dict[str, Any]]:
    """``memory_policy: paper``: Table 3's accounting with true shapes and the profile's bits.

    Nothing is read back after a flush and the network output is not written (as in the
    paper). DRAM reads are the weights (and the input at the first layer); writes are the
    weights moved out, or the flushed total.
    """
    in_sizes = [sum(sizes[t] for t in layer.inputs) for layer in graph.layers]
    out_sizes = [sizes[layer.output] for layer in graph.layers]
    results = []
    for i, (total, moved, flushed) in enumerate(paper_accounting(in_sizes, out_sizes, wbytes, p.sram_bytes)):
        w = wbytes[i]
        read = w + (in_sizes[0] if i == 0 else 0)
        write = moved - read
        results.append({"read": read, "write": write, "spill": total if flushed else 0, "refetch": 0,
                        "transfers": (2 if w else 0) + (1 if i == 0 else 0) + (1 if flushed else 0), "tiles": 1,
                        "sram": total, "plan": "paper-flush" if flushed else "paper"})
    return results
