"""Tiling plans for a layer whose working set alone exceeds SRAM. Torch-free, numpy.

A tile is a band of ``r`` output rows (its input rows plus halo) by a block of
``c`` output channels (their weights, and the input channels their groups read).
The plan space is the same at every SRAM size (SPEC), so a larger SRAM can only
add feasible plans and the chosen cost never rises:

``keep_in_out``  inputs and output stay resident; weights stream in channel blocks.
``overwrite``    inputs (all dying here) are resident and output row bands overwrite the
                 input rows already consumed; all weights stay resident. The output stays.
``keep_in``      inputs stay resident; weights stream in channel blocks, output tiles
                 are written to DRAM (a spill) and read back by the next reader.
``stream``       nothing stays: inputs stream per tile (dirty ones written back first),
                 channel-block-outer (weights read once, inputs once per block) or
                 row-band-outer (inputs read once with halo, weights once per band).

Streaming the input to keep the output is not in the space (it would make local
choices flip with SRAM size). The plan is chosen by its whole cost in DRAM bytes,
including reading back later what it leaves in DRAM; ties prefer keeping more, then
fewer transfers. (Weighing transfers by ``dram_latency`` instead would trade bytes
for transfers and let traffic rise with SRAM, breaking SPEC's invariant.)
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from math import prod
from typing import NamedTuple

import numpy as np

from ..arith import divisors
from ..ir.graph import UNARY_ACTIVATION_KINDS, Layer, OpKind, Unit
from .capacity import Capacity, as_capacity
from .records import Plan


@dataclass(frozen=True, slots=True)
class TileGeometry:
    in_bytes: int  # all input parts together
    out_bytes: int
    weight_bytes: int  # 0 for vector layers and for resident weights
    in_rows: int
    out_channels: int
    out_rows: int
    kernel_rows: int
    stride_rows: int
    groups: int  # channel coupling: 1 = every output reads every input; out_channels = channelwise
    pad_rows: int = 0  # top padding: output row y reads input rows from y*stride - pad_rows
    whole_in_bytes: int = 0  # the part of in_bytes every tile reads in full (a matmul's second operand)


# Vector kinds whose every output element reads only the input elements at its own position.
_POINTWISE = UNARY_ACTIVATION_KINDS | {OpKind.ADD, OpKind.ELEMENTWISE, OpKind.BATCHNORM}
_REDUCING = frozenset({OpKind.REDUCE, OpKind.SOFTMAX, OpKind.LAYERNORM})


def geometry(layer: Layer, in_bytes: int, out_bytes: int, weight_bytes: int, in_elems: int = 0) -> TileGeometry:
    """How a layer's tensors split into row bands and channel blocks (the memory plan's hand-off).

    ``in_elems``: the elements of the physical tensors the layer reads (``in_bytes`` at batch 1 in
    elements); a matmul uses it to tell its first operand from the rest.
    """
    ways = _token_rows(layer, in_bytes, in_elems)
    if ways:  # several valid ways (a batched matmul): the one that runs in the least SRAM, first of equals
        geos = [TileGeometry(in_bytes=in_bytes, out_bytes=out_bytes, weight_bytes=weight_bytes,
                             in_rows=_units(rows_in), out_channels=co, out_rows=_units(rows_out),
                             kernel_rows=1, stride_rows=1, groups=groups, whole_in_bytes=whole)
                for rows_in, co, rows_out, groups, whole in ways]
        return geos[0] if len(geos) == 1 else min(geos, key=min_sram)
    ins, outs = layer.in_shape, layer.out_shape
    if len(outs) == 4:
        co, ho = outs[1], outs[2]
    else:  # linear / flattened: channels are the features, one "row"
        co, ho = (outs[-1] if outs else 1), 1
    hi = ins[2] if len(ins) == 4 else 1  # input rows
    kh, sh, groups = _window(layer, hi, co)
    pad = layer.padding[0] if (layer.padding and len(ins) == 4 and kh > 1) else 0
    return TileGeometry(in_bytes=in_bytes, out_bytes=out_bytes, weight_bytes=weight_bytes,
                        in_rows=hi, out_channels=co, out_rows=ho,
                        kernel_rows=kh, stride_rows=sh, groups=groups, pad_rows=pad)


_MAX_ROW_UNITS = 1024  # the plan search is O(rows²) in the overwrite plan: bands of whole row units


def _units(rows: int) -> int:
    """Rows in units of a divisor, at most _MAX_ROW_UNITS of them (exact: a unit is a band of rows),
    unless that would leave fewer than 64 (a prime count of tokens): then the rows themselves."""
    if rows <= _MAX_ROW_UNITS:
        return rows
    units = next(u for u in range(_MAX_ROW_UNITS, 0, -1) if rows % u == 0)
    return units if units >= 64 else rows


_Way = tuple[int, int, int, int, int]  # input rows, output channels, output rows, groups, whole input bytes


def _token_rows(layer: Layer, in_bytes: int, in_elems: int) -> list[_Way] | None:
    """The ways to tile a layer by its kind rather than as NCHW, or None for the NCHW rule (conv,
    pools, 4-D vector ops, 2-D rows)."""
    kind, ins, outs = layer.kind, layer.in_shape, layer.out_shape
    if kind is OpKind.LINEAR or kind is OpKind.MATMUL:
        return _matrix_rows(layer, in_bytes, in_elems)
    if kind in _REDUCING and layer.reduce_dims:
        way = _reduce_rows(layer)
        return [way] if way else None
    if kind in _POINTWISE and len(outs) not in (2, 4) and len(ins) > 2 and len(outs) > 2:
        rows = prod(outs[1:-1])
        if prod(ins[1:-1]) == rows:  # same positions (a broadcast operand first: the old rule)
            return [(rows, outs[-1], rows, outs[-1], 0)]
    return None


def _matrix_rows(layer: Layer, in_bytes: int, in_elems: int) -> list[_Way] | None:
    """Linear and matmul: channels = the last dim; rows = the dims between the batch and the last.

    Every output channel reads the whole input row (groups 1). A matmul A·B tiles by rows of A,
    every tile reading all the rest (B, or what A was gathered from) whole; when its batch dims (heads,
    windows) are B's own (what it reads holds A and B apart, neither broadcast), also by batch slices,
    each reading its slice of both operands.
    """
    ins, outs = layer.in_shape, layer.out_shape
    if len(outs) < 2:
        return None
    rows = prod(outs[1:-1])
    same = prod(ins[1:-1]) == rows and len(ins) >= 2
    if layer.kind is OpKind.LINEAR:
        return [(rows, outs[-1], rows, 1, 0)] if same else None
    first = prod(ins) if ins else 0
    batch = prod(outs[1:-2])
    second = batch * ins[-1] * outs[-1] if ins else 0  # the second operand's elements, unbroadcast
    if not same or not 0 < first <= in_elems:  # cannot tell the first operand apart: all inputs whole
        return [(1, outs[-1], 1, 1, in_bytes)]
    whole = -(-in_bytes * min(in_elems, max(in_elems - first, second)) // in_elems)
    ways = [(rows, outs[-1], rows, 1, whole)]
    if batch > 1 and prod(ins[1:-2]) == batch and first + second <= in_elems:
        ways.insert(0, (batch, outs[-1], batch, 1, 0))  # two operands apart, neither broadcast
    return ways


def _reduce_rows(layer: Layer) -> _Way | None:
    """A reduction (or softmax / norm) over some dims: rows are the kept dims before the first
    reduced one, channels the kept dims after the last (channelwise); neither splits a reduced dim."""
    ins, outs = layer.in_shape, layer.out_shape
    rank = len(ins)
    red = sorted(rank + d for d in layer.reduce_dims if -rank <= d < 0)
    if not red:
        return None
    rows = prod(ins[1:max(1, red[0])])
    co = prod(ins[red[-1] + 1:])
    if prod(outs) % (rows * co):
        return 1, 1, 1, 1, 0  # shapes that do not say how: the whole layer is one tile
    return rows, co, rows, co, 0


def _window(layer: Layer, in_rows: int, out_channels: int) -> tuple[int, int, int]:
    """(input rows one output row reads, row stride, channel groups) of a layer."""
    matrix = layer.unit is Unit.MATRIX
    spatial = len(layer.in_shape) == 4
    if matrix and not spatial:  # linear: one row, every output reads every input
        return 1, 1, 1
    if matrix and layer.kernel is not None:  # conv: dilation widens the rows read
        dil = layer.dilation[0] if layer.dilation else 1
        return dil * (layer.kernel[0] - 1) + 1, layer.stride[0], layer.groups
    if layer.kernel is not None and spatial:  # pooling: channelwise
        if layer.kind is OpKind.GLOBAL_AVGPOOL:
            return in_rows, 1, out_channels
        kh = layer.kernel[0]
        return kh, (layer.stride[0] if layer.stride else kh), out_channels
    # elementwise, add, softmax: no halo
    return 1, 1, (1 if matrix else out_channels)


@dataclass(frozen=True, slots=True)
class TileChoice:
    plan: Plan
    tiles: int
    rows: int  # output rows per band
    channels: int  # output channels per block
    order: str  # "", "channel-outer" or "row-outer"
    read_bytes: int
    write_bytes: int
    spill_bytes: int
    refetch_bytes: int
    transfers: int
    sram_bytes: int  # peak resident during the layer
    keeps_input: bool
    keeps_output: bool


def _grid(g: TileGeometry):
    """Candidate tiles: c over the divisors of the output channels, r over every band height."""
    c = np.array(divisors(max(1, g.out_channels)), dtype=float)[None, :]
    r = np.arange(1, max(1, g.out_rows) + 1, dtype=float)[:, None]
    co, ho, hi = float(max(1, g.out_channels)), float(max(1, g.out_rows)), float(max(1, g.in_rows))
    n_cb = co / c
    n_rb = np.ceil(ho / r)
    in_rows = np.minimum(hi, (r - 1) * g.stride_rows + g.kernel_rows)
    # fraction of input channels a block of c output channels reads
    if g.groups <= 1:
        frac = np.ones_like(c)
    else:
        opg = co / g.groups
        touched = np.where(c >= opg, np.ceil(c / opg), np.where(np.mod(opg, c) == 0, 1.0, 2.0))
        frac = np.minimum(1.0, touched / g.groups)
    split, whole = g.in_bytes - g.whole_in_bytes, g.whole_in_bytes  # the whole part stays through the layer
    in_tile = np.ceil(split * frac * in_rows / hi) + whole
    in_band_all = (np.ceil(split * in_rows / hi) + whole) * np.ones_like(c)  # every channel of a band
    w_tile = np.ceil(g.weight_bytes * c / co) * np.ones_like(r)
    out_tile = np.ceil(g.out_bytes * (c / co) * np.minimum(r, ho) / ho)
    row_factor = np.maximum(hi, n_rb * in_rows) / hi  # halo re-reads; a streamed input is read in full
    arrays = (c, r, n_cb, n_rb, frac, in_tile, in_band_all, w_tile, out_tile, row_factor)
    for a in arrays:
        a.setflags(write=False)  # shared between calls through the cache
    return arrays


@dataclass(frozen=True)
class _Frontier:
    """The best tile of a plan for any capacity, as steps: from ``need[i]`` bytes on (up to the next
    step) the best tile that fits is ``best[i]``; below ``need[0]`` none fits. Only the steps where
    the best tile changes are kept, so a capacity between two steps learns nothing finer
    (``Capacity.fitting``)."""

    need: list[float]
    best: list[int]  # flat tile index

    @classmethod
    def build(cls, need: np.ndarray, *keys: np.ndarray) -> "_Frontier":
        """``keys``: the arrays to minimise, most significant first (ties: the smaller index)."""
        flat_need = need.ravel()
        order = np.argsort(flat_need, kind="stable")
        ks = [k.ravel()[order].tolist() for k in keys]
        needs = flat_need[order].tolist()
        steps: list[float] = []
        best: list[int] = []
        cur_key = None
        for pos, idx in enumerate(order.tolist()):
            key = tuple(k[pos] for k in ks) + (idx,)
            if cur_key is None or key < cur_key:
                cur_key = key
                if steps and steps[-1] == needs[pos]:  # a better tile at the same need: it wins there
                    best[-1] = idx
                else:
                    steps.append(needs[pos])
                    best.append(idx)
        return cls(need=steps, best=best)

    def pick(self, capacity: Capacity) -> int | None:
        i = capacity.fitting(self.need) - 1
        return self.best[i] if i >= 0 else None


@dataclass(frozen=True)
class _PlanArrays:
    """Per-tile quantities of each plan that depend on the geometry alone (cached)."""

    c: np.ndarray
    r: np.ndarray
    n_cb: np.ndarray
    n_rb: np.ndarray
    w_tile: np.ndarray
    ki_need: np.ndarray  # keep_in: SRAM per tile
    ki_tiles: np.ndarray
    ow_peak: np.ndarray  # overwrite: peak SRAM per band height r (index r - 1)
    kio: _Frontier  # keep_in_out over channel blocks: the largest block that fits
    ki: _Frontier  # keep_in: the fewest tiles that fit
    ow: _Frontier  # overwrite: the tallest band that fits
    stream_best: tuple  # per loop order: _Frontier by (read bytes, transfers)
    stream: tuple  # per loop order: (name, need, read bytes, transfers)
    min_sram: int


@lru_cache(maxsize=4096)
def _plans(g: TileGeometry, n_in_tensors: int) -> _PlanArrays:
    c, r, n_cb, n_rb, frac, in_tile, in_band_all, w_tile, out_tile, row_factor = _grid(g)
    in_b, w_b = g.in_bytes - g.whole_in_bytes, g.weight_bytes  # in_b: the part split by rows
    whole = g.whole_in_bytes  # read once: every tile holds it
    shape = np.broadcast_shapes(c.shape, r.shape)
    stream = []
    # channel-block outer: weights once, inputs once per block (only the groups the block reads)
    stream.append(("channel-outer", np.broadcast_to(in_tile + w_tile + out_tile, shape),
                   np.broadcast_to(np.ceil(in_b * frac * n_cb * row_factor) + whole + w_b, shape),
                   np.broadcast_to(n_cb * n_rb * n_in_tensors + (n_cb if w_b else 0) + n_cb * n_rb, shape)))
    # row-band outer: inputs once (with halo), weights once per band unless one block holds them all
    stream.append(("row-outer", np.broadcast_to(in_band_all + w_tile + out_tile, shape),
                   np.broadcast_to(np.ceil(in_b * row_factor) + whole + np.where(n_cb > 1, w_b * n_rb, w_b), shape),
                   np.broadcast_to(n_rb * n_in_tensors + (np.where(n_cb > 1, n_rb * n_cb, 1) if w_b else 0)
                                   + n_rb * n_cb, shape)))
    ki_need = np.broadcast_to(g.in_bytes + w_tile + out_tile, shape)
    ki_tiles = np.broadcast_to(n_cb * n_rb, shape)
    ow_peak = _overwrite_peak(g)
    return _PlanArrays(c=c, r=r, n_cb=n_cb, n_rb=n_rb, w_tile=w_tile, ow_peak=ow_peak,
                       ki_need=ki_need, ki_tiles=ki_tiles, stream=tuple(stream),
                       min_sram=int(min(s[1].min() for s in stream)),
                       kio=_Frontier.build(g.in_bytes + g.out_bytes + w_tile[0], -c[0]),
                       ki=_Frontier.build(ki_need, ki_tiles),
                       ow=_Frontier.build(ow_peak, -np.arange(1, len(ow_peak) + 1)),
                       stream_best=tuple(_Frontier.build(need, read, tr) for _, need, read, tr in stream))


def _overwrite_peak(g: TileGeometry) -> np.ndarray:
    """Peak SRAM of the overwrite plan for every band height r = 1..out_rows.

    While band k (output rows k*r .. (k+1)*r - 1) is computed, the input rows before
    k*r*stride - pad are consumed and their space holds output; resident are the input
    rows not yet consumed, the output rows produced so far (this band included) and all
    weights.
    """
    ho, hi = max(1, g.out_rows), max(1, g.in_rows)
    r = np.arange(1, ho + 1, dtype=float)[:, None]
    k = np.arange(ho, dtype=float)[None, :]
    valid = k < np.ceil(ho / r)  # band k exists for this r
    consumed = np.clip(k * r * g.stride_rows - g.pad_rows, 0, hi)
    split = g.in_bytes - g.whole_in_bytes  # the whole part is consumed only at the end
    mem = (np.ceil(split * (hi - consumed) / hi) + g.whole_in_bytes
           + np.ceil(g.out_bytes * np.minimum(ho, (k + 1) * r) / ho) + g.weight_bytes)
    return np.where(valid, mem, 0).max(axis=1)


def min_sram(g: TileGeometry) -> int:
    """The smallest SRAM in which some plan of this layer fits."""
    return _plans(g, 1).min_sram


class _Call(NamedTuple):
    """What a layer brings to the plan search besides its geometry."""

    capacity: Capacity
    missing_in_bytes: int  # inputs not resident: read from DRAM by any plan
    dirty_in_bytes: int  # resident inputs with no valid DRAM copy: written back before streaming
    n_missing: int
    n_dirty: int
    read_back_bytes: int  # what a later reader reads back of an output left in DRAM


# A candidate: (DRAM bytes incl. the read-back, rank: keep more first, transfers, TileChoice's
# fields): only the winner is built.
_Candidate = tuple[float, int, int, tuple]


def choose_plan(g: TileGeometry, capacity: int | Capacity, *, missing_in_bytes: int, dirty_in_bytes: int,
                n_in_tensors: int, n_missing: int, n_dirty: int = 0, out_read_back: bool,
                inputs_die: bool = False) -> TileChoice | None:
    """The cheapest feasible plan in ``capacity`` bytes, or None if nothing fits.

    ``inputs_die``: no later layer reads any input, so output bands may overwrite them.
    """
    capacity = as_capacity(capacity)
    key = (g, n_in_tensors, missing_in_bytes, dirty_in_bytes, n_missing, n_dirty, out_read_back, inputs_die)
    known = _CHOICES.get(key)
    if known is None:
        if len(_CHOICES) >= _MAX_CHOICES:
            _CHOICES.clear()
        known = _CHOICES[key] = _Answers()
    k = capacity.fitting(known.lo) - 1  # the interval starting at or below the capacity, if any
    if k >= 0 and not capacity.fits(known.hi[k]):
        return known.choice[k]
    fresh = capacity.fresh()
    choice = _choose(g, fresh, missing_in_bytes, dirty_in_bytes, n_in_tensors, n_missing, n_dirty,
                     out_read_back, inputs_die)
    capacity.narrow(fresh.lo, fresh.hi)
    known.add(fresh.lo, fresh.hi, choice)
    return choice


class _Answers:
    """One call's choices so far: the choice for every capacity in [lo[k], hi[k]) (disjoint, by lo).

    Capacities that ask the same questions and get the same answers reach the same choice
    (perfsim.sim.capacity), so the intervals of one call never overlap.
    """

    __slots__ = ("lo", "hi", "choice")

    def __init__(self):
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.choice: list[TileChoice | None] = []

    def add(self, lo: float, hi: float, choice: TileChoice | None) -> None:
        k = bisect_right(self.lo, lo)
        self.lo.insert(k, lo)
        self.hi.insert(k, hi)
        self.choice.insert(k, choice)


# choose_plan's answers by call (geometry and everything else but the capacity). A sweep over SRAM
# sizes asks a layer the same question at many capacities; most are answered here.
_CHOICES: dict[tuple, _Answers] = {}
_MAX_CHOICES = 8192


def _choose(g: TileGeometry, capacity: Capacity, missing_in_bytes: int, dirty_in_bytes: int,
            n_in_tensors: int, n_missing: int, n_dirty: int, out_read_back: bool,
            inputs_die: bool) -> TileChoice | None:
    P = _plans(g, n_in_tensors)
    call = _Call(capacity, missing_in_bytes, dirty_in_bytes, n_missing, n_dirty,
                 g.out_bytes if out_read_back else 0)
    candidates = [_keep_in_out(g, P, call), _overwrite(g, P, call) if inputs_die else None,
                  _keep_in(g, P, call), *_stream(g, P, call)]
    feasible = [c for c in candidates if c is not None]
    if not feasible:
        return None
    best = min(feasible, key=lambda x: (x[0], x[1], x[2]))  # the first of equals, as a stable sort
    return TileChoice(*best[3])


def _keep_in_out(g: TileGeometry, P: _PlanArrays, call: _Call) -> _Candidate | None:
    """Stream weight blocks past resident inputs and output (the largest block that fits)."""
    w_b = g.weight_bytes
    k = P.kio.pick(call.capacity) if w_b > 0 else None
    if k is None:
        return None
    blocks = int(P.n_cb[0, k])
    transfers = call.n_missing + blocks
    read = call.missing_in_bytes + w_b
    return (read, 0, transfers, (
        Plan.KEEP_IN_OUT, blocks, g.out_rows, int(P.c[0, k]), "", read, 0, 0, 0,
        transfers, int(g.in_bytes + g.out_bytes + P.w_tile[0, k]), True, True))


def _overwrite(g: TileGeometry, P: _PlanArrays, call: _Call) -> _Candidate | None:
    """Output bands take the place of consumed input rows; everything stays on chip."""
    k = P.ow.pick(call.capacity) if g.out_rows > 1 else None
    if k is None:
        return None
    rows = k + 1  # the tallest band that fits: fewest tiles
    bands = -(-g.out_rows // rows)
    transfers = call.n_missing + (1 if g.weight_bytes else 0)
    read = call.missing_in_bytes + g.weight_bytes
    return (read, 0, transfers, (
        Plan.OVERWRITE, bands, rows, g.out_channels, "row-bands", read, 0, 0, 0, transfers,
        int(P.ow_peak[k]), True, True))


def _keep_in(g: TileGeometry, P: _PlanArrays, call: _Call) -> _Candidate | None:
    """Resident inputs; weight blocks and output tiles stream (bytes fixed: fewest tiles wins)."""
    k = P.ki.pick(call.capacity)
    if k is None:
        return None
    ri, ci = np.unravel_index(k, P.ki_need.shape)
    nt = int(P.ki_tiles[ri, ci])
    blocks = int(P.n_cb[0, ci])
    transfers = call.n_missing + (blocks if g.weight_bytes else 0) + nt
    read = call.missing_in_bytes + g.weight_bytes
    out_b, rb_bytes = g.out_bytes, call.read_back_bytes
    return (read + out_b + rb_bytes, 1, transfers, (
        Plan.KEEP_IN, nt, int(P.r[ri, 0]), int(P.c[0, ci]), "", read, out_b, rb_bytes, 0, transfers,
        int(P.ki_need[ri, ci]), True, False))


def _stream(g: TileGeometry, P: _PlanArrays, call: _Call) -> list[_Candidate]:
    """Nothing resident; dirty inputs are written back first. One candidate per loop order."""
    write = call.dirty_in_bytes + g.out_bytes
    rb_bytes = call.read_back_bytes
    out = []
    for (order, need, read, transfers), frontier in zip(P.stream, P.stream_best):
        k = frontier.pick(call.capacity)  # least traffic, then fewest transfers
        if k is None:
            continue
        ri, ci = np.unravel_index(k, need.shape)
        nt = int(P.n_cb[0, ci] * P.n_rb[ri, 0])
        rd = int(read[ri, ci])
        tr = int(transfers[ri, ci]) + call.n_dirty
        out.append((float(rd + write + rb_bytes), 2, tr, (
            Plan.STREAM, nt, int(P.r[ri, 0]), int(P.c[0, ci]), order, rd, int(write),
            int(call.dirty_in_bytes + rb_bytes), max(0, rd - (call.missing_in_bytes + g.weight_bytes)), tr,
            int(need[ri, ci]), False, False)))
    return out
