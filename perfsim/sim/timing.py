"""Timing: a row's bytes and ops -> seconds (SPEC "Timing"). Pure, torch-free.

    data     = (DRAM read + write bytes) / dram_bandwidth + transfers * dram_latency
    matrix   = 2 * MACs / (matrix_flops * matrix_efficiency), or on a systolic array
               cycles / (array_clock * matrix_efficiency) (cycles from perfsim.hardware.systolic)
    vector   = vector ops / (vector_flops * vector_efficiency)
    overhead = the kernel_overhead of every kernel the row runs, plus for a row that does not fit in
               SRAM first_touch x its output bytes x the kernels that write a fresh output
    total    = data + matrix + vector + overhead, or max(data, matrix + vector) + overhead with ``overlap``
    bound    = the largest of data, matrix, vector (ties in that order)

SPEC "Efficiency and overhead": the profile's ``efficiency`` scales the peak of the unit that
runs a row, by the row's label (``conv_dw``, ``linear``, ``batchnorm+relu``...; a vector row then
by its main op's kind, ``batchnorm``); a missing label is 1.0. A strided conv reads ``conv_dw.strided``
(and the like) first, in ``efficiency`` and ``kernel_overhead`` alike. A matrix row's own vector work
(an unfolded BN, an unfused activation, a prologue) runs at its kinds' entries. For a matrix op the
entry may be a table by the smallest dimension of the row's matrix product (``gemm_min_dim``), read
between its points linearly in log2 of the dimension and held flat beyond its ends; a table of
tables adds the product's M (the positions of a conv) as a second key; ``conv_group``'s may be a
model of its time (``hardware.efficiency.GroupedConvModel``), its efficiency the row's work over that time.
``kernel_overhead`` is seconds per kernel by the same labels (``default`` for the others); a row runs
its main op, its prologue, and its epilogue BN and activation unless folded or fused away.
``tiled_efficiency`` multiplies the efficiency of a row whose working set does not fit in SRAM, and
``first_touch`` adds seconds per byte of each output such a row writes fresh (its main kernel's and
an unfolded BN's; activations run in place), and ``row_block`` rounds a matrix row's output positions
up to the block its kernel computes them in (docs/hardware.md). A profile without these fields
gives SPEC's times bit for bit.
"""
from __future__ import annotations

from bisect import bisect_left
from math import log2
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from ..ir.graph import Layer, Op, Unit
from ..hardware.efficiency import STRIDED
from .results import Bound
from ..hardware.systolic import gemm_dims as products

if TYPE_CHECKING:
    from ..hardware.description import HardwareProfile

Efficiency = Mapping[str, Any]  # label -> a fraction, or a table (of tables) of fractions


class LayerTimes(NamedTuple):
    data_s: float
    matrix_s: float
    vector_s: float
    total_s: float
    bound: Bound
    overhead_s: float = 0.0


def gemm_dims(layer: Layer, batch: int) -> tuple[int, int, int]:
    """(M, N, K) of one matrix product of the row (``perfsim.hardware.systolic.gemm_dims``, the one rule): a conv
    per group, M the output positions of the batch, N the output channels of a group, K the inputs of one
    output; a linear M rows (tokens x batch), N out and K in features; a batched matmul one head's product."""
    g = products(layer, batch)
    return max(1, g.m), max(1, g.n), max(1, g.k)


def gemm_min_dim(layer: Layer, batch: int) -> int:
    """The smallest of M, N, K (``gemm_dims``)."""
    return min(gemm_dims(layer, batch))


def table_value(table: Mapping[int, Any], x: int, m: int = 1) -> float:
    """A table's value at ``x``: linear in log2(x) between its points, flat beyond its ends. A table of
    tables (by the smallest dimension, then by M) is read at ``m`` inside, then between its rows."""
    keys = list(table)

    def at(key: int) -> float:
        v = table[key]
        return table_value(v, m) if isinstance(v, Mapping) else v

    if x <= keys[0]:
        return at(keys[0])
    if x >= keys[-1]:
        return at(keys[-1])
    i = bisect_left(keys, x)
    lo, hi = keys[i - 1], keys[i]
    w = (log2(x) - log2(lo)) / (log2(hi) - log2(lo))
    return at(lo) + w * (at(hi) - at(lo))


def entry_value(entry: Any, layer: Layer, batch: int) -> float:
    """An efficiency entry for a row: a number, a table read at the row's matrix dimensions, or a grouped
    conv's model of its time (``hardware.efficiency.GroupedConvModel``) read at its groups and channels per group."""
    if isinstance(entry, float):
        return entry
    m, n, k = gemm_dims(layer, batch)
    if isinstance(entry, Mapping):
        return table_value(entry, min(m, n, k), m)
    return entry.fraction(layer.macs * batch, *grouped_dims(layer, batch))


def grouped_dims(layer: Layer, batch: int) -> tuple[int, int, int, int, int]:
    """A grouped conv row's (kernel area, groups, positions, channels read, channels written per group),
    what ``hardware.efficiency.GroupedConvModel`` reads (from ``gemm_dims``: positions M, written N, K = read x area)."""
    m, n, k = gemm_dims(layer, batch)
    area = layer.kernel[0] * layer.kernel[1] if layer.kernel else 1
    return area, max(1, layer.macs * batch // (m * n * k)), m, max(1, k // area), n


def strided(layer: Layer | Op) -> bool:
    """A conv row (or op) with a stride above 1 (PyTorch runs those on other code paths: docs/hardware.md)."""
    return layer.unit is Unit.MATRIX and layer.stride is not None and max(layer.stride) > 1


def label_key(table: Mapping[str, Any], layer: Layer, label: str) -> str:
    """The key ``label`` of a row's kernel takes in a profile's table: ``label.strided`` for a strided
    row's main op when the table has it, else ``label``."""
    if label == layer.op and strided(layer) and label + STRIDED in table:
        return label + STRIDED
    return label


def _entry(table: Mapping[str, Any], layer: Layer) -> Any:
    """A table's entry for a row: its label (``label.strided`` first for a strided conv), or for a vector
    row (``batchnorm+relu``) its main kind. A matrix row never falls back to another kind: ``conv`` is the
    dense conv's label, not ``conv_pw``'s."""
    entry = table.get(label_key(table, layer, layer.op))
    if entry is None and layer.unit is not Unit.MATRIX:
        entry = table.get(layer.kind.value)
    return entry


def row_efficiency(table: Efficiency, layer: Layer, batch: int) -> tuple[float, float]:
    """(matrix, vector) fraction of peak for ``layer``: its entry for the unit that runs it, 1.0 for the other."""
    entry = _entry(table, layer)
    if entry is None:
        return 1.0, 1.0
    fraction = entry_value(entry, layer, batch)
    return (fraction, 1.0) if layer.unit is Unit.MATRIX else (1.0, fraction)


def matrix_row_vector_efficiency(table: Efficiency, layer: Layer, fold_batchnorm: bool, fuse_activation: bool) -> float:
    """The vector efficiency of a matrix row's own vector work (an unfolded BN, an unfused activation, a
    prologue): each kernel's ops at its kind's entry (1.0 without one), as one fraction of the peak, the
    ops over the sum of ops / efficiency. Exactly 1.0 when none of its kinds has an entry."""
    total, weighted = 0, 0.0
    for label, ops, when in layer.vector_kernels:
        if (when == "bn" and fold_batchnorm) or (when == "act" and fuse_activation) or not ops:
            continue
        entry = table.get(label)
        total += ops
        weighted += ops / (entry if isinstance(entry, float) else 1.0)
    return total / weighted if total else 1.0


def tiled_factor(table: Mapping[str, float], layer: Layer, tiles: int) -> float:
    """``tiled_efficiency`` for a row whose working set does not fit in SRAM (``tiles`` > 1), else 1.0."""
    if tiles <= 1 or not table:
        return 1.0
    entry = _entry(table, layer)
    return 1.0 if entry is None else entry


def row_block_share(table: Mapping[str, int], layer: Layer | Op, label: str, batch: int) -> float:
    """``row_block_factor`` of a row (or op) whose plain label is ``label``, at ``batch``: a strided conv
    reads ``label.strided`` only, since its efficiency was measured on maps of any side (no fallback,
    unlike ``label_key``)."""
    return row_block_factor(table.get(label + STRIDED if strided(layer) else label), gemm_dims(layer, batch)[0])


def row_block_factor(block: int | None, rows: int) -> float:
    """rows / (rows rounded up to ``block``): the share of the output positions a kernel that computes them
    in blocks spends on the row's own; 1.0 without a block."""
    if not block or block <= 1 or rows < 1:
        return 1.0
    return rows / (-(-rows // block) * block)


def unit_efficiencies(p: HardwareProfile, layer: Layer, batch: int, tiles: int) -> tuple[float, float]:
    """(matrix, vector) efficiency of a row: ``efficiency`` (a matrix row's vector work at its kernels' kinds,
    ``matrix_row_vector_efficiency``) times ``row_block_share``, times ``tiled_efficiency`` for the unit
    that runs it when its working set does not fit (``tiles`` > 1)."""
    m, v = row_efficiency(p.kernels.efficiency, layer, batch) if p.kernels.efficiency else (1.0, 1.0)
    if p.kernels.row_block and layer.unit is Unit.MATRIX:
        m *= row_block_share(p.kernels.row_block, layer, layer.op, batch)
    if p.kernels.efficiency and layer.unit is Unit.MATRIX and layer.vector_kernels:
        v = matrix_row_vector_efficiency(p.kernels.efficiency, layer, p.schedule.fold_batchnorm, p.schedule.fuse_activation)
    if p.kernels.tiled_efficiency and tiles > 1:
        f = tiled_factor(p.kernels.tiled_efficiency, layer, tiles)
        m, v = (m * f, v) if layer.unit is Unit.MATRIX else (m, v * f)
    return m, v


def kernel_overhead_of(overheads: Mapping[str, float], label: str) -> float:
    """Seconds of one kernel labelled ``label`` (``default`` for a label not given)."""
    return overheads.get(label, overheads.get("default", 0.0))


def row_overhead(overheads: Mapping[str, float], layer: Layer, fold_batchnorm: bool, fuse_activation: bool) -> float:
    """Seconds of fixed cost: ``kernel_overhead`` of each kernel the row runs."""
    if not overheads:
        return 0.0
    return sum(kernel_overhead_of(overheads, label_key(overheads, layer, k))
               for k in layer.kernel_labels(fold_batchnorm, fuse_activation))


def first_touch_time(p: HardwareProfile, layer: Layer, out_bytes: int, tiles: int) -> float:
    """``first_touch`` seconds per byte of each fresh output of a row that does not fit in SRAM (``tiles``
    > 1): its ``out_bytes`` once per kernel that allocates them (the main op's, an unfolded BN's)."""
    if not p.kernels.first_touch or tiles <= 1:
        return 0.0
    kernels = len(layer.kernels) + (0 if p.schedule.fold_batchnorm else len(layer.bn_kernels))
    return p.kernels.first_touch * out_bytes * kernels


def row_fixed_time(p: HardwareProfile, layer: Layer, out_bytes: int, tiles: int) -> float:
    """A row's ``t_overhead_s``: its kernels' overhead and its first touch."""
    return (row_overhead(p.kernels.overhead, layer, p.schedule.fold_batchnorm, p.schedule.fuse_activation)
            + first_touch_time(p, layer, out_bytes, tiles))


def layer_times(profile: HardwareProfile, *, dram_bytes: int, transfers: int, macs: int, vector_ops: int,
                matrix_efficiency: float = 1.0, vector_efficiency: float = 1.0, overhead_s: float = 0.0,
                matrix_cycles: int | None = None) -> LayerTimes:
    """One row's time terms (``matrix_cycles``: the row's cycles on the profile's systolic array)."""
    p = profile
    data = dram_bytes / p.memory.dram_bandwidth + transfers * p.memory.dram_latency
    if matrix_cycles is None:
        matrix = 2 * macs / (p.matrix.flops * matrix_efficiency)
    else:
        matrix = matrix_cycles / (p.matrix.array.clock * matrix_efficiency)
    vector = vector_ops / (p.vector.flops * vector_efficiency)
    total = max(data, matrix + vector) if p.schedule.overlap else data + matrix + vector
    if overhead_s:
        total += overhead_s
    bound = Bound.DATA
    if matrix > data:
        bound = Bound.MATRIX
    if vector > max(data, matrix):
        bound = Bound.VECTOR
    return LayerTimes(data_s=data, matrix_s=matrix, vector_s=vector, total_s=total, bound=bound,
                      overhead_s=overhead_s)
