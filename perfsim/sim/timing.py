"""Timing: a row's bytes and ops -> seconds (SPEC "Timing"). Pure, torch-free.

    data     = (DRAM read + write bytes) / dram_bandwidth + transfers * dram_latency
    matrix   = 2 * MACs / (matrix_flops * matrix_efficiency), or on a systolic array
               cycles / (array_clock * matrix_efficiency) (cycles from perfsim.hardware.systolic)
    vector   = vector ops / (vector_flops * vector_efficiency)
    overhead = the kernel_overhead of every kernel the row runs, plus for a row that does not fit in
               SRAM first_touch x its output bytes x the kernels that write a fresh output
    total    = data + matrix + vector + overhead, or max(data, matrix + vector) + overhead with ``overlap``
    bound    = the largest of data, matrix, vector (ties in that order)

``layer_times`` is the one rule for these terms: ``simulate`` calls it with one row's numbers, a sweep
(``perfsim.sim.batch``) with arrays over its points, and both add the rows up with ``Totals``. What a
row's time depends on splits in two: ``RowWork`` (what the memory plan and the profile's other fields
fix: bytes, work, efficiencies, overhead) and ``Rates`` (the fields a sweep varies without planning
again: ``RATE_FIELDS``).

SPEC "Efficiency and overhead": the profile's ``efficiency`` scales the peak of the unit that
runs a row, by the row's label (``conv_dw``, ``linear``, ``batchnorm+relu``...; a vector row then
by its main op's kind, ``batchnorm``); a missing label is 1.0. A strided conv reads ``conv_dw.strided``
(and the like) first, in ``efficiency`` and ``kernel_overhead`` alike. A matrix row's own vector work
(an unfolded BN, an unfused activation, a prologue) runs at its kinds' entries. For a matrix op the
entry may be a table by the smallest dimension of the row's matrix product (``perfsim.ir.gemm.matrix_dims``), read
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

from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from ..hardware.efficiency import STRIDED, table_value
from ..hardware.energy import energy_terms
from ..ir.gemm import grouped_dims, matrix_dims, table_key
from ..ir.graph import Layer, Op, Unit

if TYPE_CHECKING:
    from ..hardware.description import HardwareProfile

Efficiency = Mapping[str, Any]  # label -> a fraction, or a table (of tables) of fractions


def entry_value(entry: Any, layer: Layer, batch: int) -> float:
    """An efficiency entry for a row: a number, a table read at the row's matrix dimensions, or a grouped
    conv's model of its time (``hardware.efficiency.GroupedConvModel``) read at its groups and channels per group."""
    if isinstance(entry, float):
        return entry
    if isinstance(entry, Mapping) and layer.unit is not Unit.MATRIX:
        return table_value(entry, layer.row_length)  # a row label's table (hardware.efficiency.ROW_LABELS)
    if isinstance(entry, Mapping):  # by the product's smallest dimension (ir.gemm.table_key), then by M
        return table_value(entry, table_key(layer, batch), matrix_dims(layer, batch)[0])
    return entry.fraction(layer.macs * batch, *grouped_dims(layer, batch))


def strided(layer: Layer | Op) -> bool:
    """A conv row (or op) with a stride above 1 (PyTorch runs those on other code paths: docs/hardware.md)."""
    return layer.unit is Unit.MATRIX and layer.stride is not None and max(layer.stride) > 1


def label_key(table: Mapping[str, Any], layer: Layer, label: str) -> str:
    """The key ``label`` of a row's kernel takes in a profile's table: for the row's main op,
    ``label.strided`` for a strided conv and ``label.VARIANT`` for another code path (``Layer.variant``:
    ``softmax.safe``) when the table has it; else ``label``."""
    if label == layer.op and strided(layer) and label + STRIDED in table:
        return label + STRIDED
    variant = getattr(layer, "variant", "")
    if label == layer.op and variant and f"{label}.{variant}" in table:
        return f"{label}.{variant}"
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
    return row_block_factor(table.get(label + STRIDED if strided(layer) else label), matrix_dims(layer, batch)[0])


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




# --------------------------------------------------------------------------
# The time terms: one rule for a row's numbers and for arrays over a sweep's points
# --------------------------------------------------------------------------

# The fields that change a row's time but not the memory plan, nor anything else a row's work is made of:
# a sweep varies them over arrays without planning again (``rate_fields``). matrix_flops is one of them
# unless the matrix unit is a systolic array (whose time is its cycles at its clock).
RATE_FIELDS = ("dram_bandwidth", "dram_latency", "matrix_flops", "vector_flops", "overlap", "energy_per_mac",
               "energy_per_sram_byte", "energy_per_dram_byte")


def rate_fields(profile: HardwareProfile) -> tuple[str, ...]:
    return tuple(f for f in RATE_FIELDS if not (f == "matrix_flops" and profile.systolic))


class RowWork(NamedTuple):
    """What a row's time is made of before any rate (a number per row, or an array over points)."""

    dram_bytes: Any  # read + written
    transfers: Any
    macs: Any  # at the batch
    matrix_work: Any  # 2 x MACs (FLOPs), or the row's cycles on a systolic array
    vector_ops: Any
    matrix_efficiency: Any
    vector_efficiency: Any
    overhead_s: Any  # kernel overhead and first touch
    sram_access_bytes: Any  # bytes through SRAM (perfsim.hardware.energy), for its energy


class Rates(NamedTuple):
    """The rate fields (``RATE_FIELDS``) every row shares: numbers, or arrays over a sweep's points."""

    dram_bandwidth: Any  # B/s
    dram_latency: Any  # s per transfer
    matrix_rate: Any  # per second of ``RowWork.matrix_work``: matrix_flops, or a systolic array's clock
    matrix_flops: Any  # the matrix unit's peak (for utilisation)
    vector_flops: Any
    overlap: Any
    energy_per_mac: Any
    energy_per_sram_byte: Any
    energy_per_dram_byte: Any

    @classmethod
    def of(cls, profile: HardwareProfile, varied: Mapping[str, Any] | None = None) -> "Rates":
        """The profile's rates, those in ``varied`` (rate fields to arrays) taking their place."""
        v = varied or {}
        fields = {f: v[f] if f in v else profile.field(f) for f in RATE_FIELDS}
        rate = profile.matrix.array.clock if profile.systolic else fields["matrix_flops"]
        return cls(dram_bandwidth=fields["dram_bandwidth"], dram_latency=fields["dram_latency"], matrix_rate=rate,
                   matrix_flops=fields["matrix_flops"], vector_flops=fields["vector_flops"],
                   overlap=fields["overlap"], energy_per_mac=fields["energy_per_mac"],
                   energy_per_sram_byte=fields["energy_per_sram_byte"],
                   energy_per_dram_byte=fields["energy_per_dram_byte"])


class LayerTimes(NamedTuple):
    data_s: Any
    matrix_s: Any
    vector_s: Any
    total_s: Any
    bound: Any  # an index into BOUNDS (data, matrix, vector), or an array of them
    overhead_s: Any
    utilization: Any  # achieved MAC rate during matrix_s / the matrix unit's peak (0 off it)
    energy_mac_j: Any
    energy_sram_j: Any
    energy_dram_j: Any
    energy_j: Any


def _where(cond: Any, a: Any, b: Any) -> Any:
    return np.where(cond, a, b) if isinstance(cond, np.ndarray) else (a if cond else b)


def _maximum(a: Any, b: Any) -> Any:
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)


def _share(num: Any, den: Any) -> Any:
    """``num / den``, 0 where ``den`` is 0."""
    if isinstance(den, np.ndarray):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)
    return num / den if den else 0.0


def layer_times(w: RowWork, r: Rates) -> LayerTimes:
    """A row's time terms, bound, utilisation and energy (module docstring) from its work and the rates:
    numbers, or arrays over points (elementwise, the same expressions)."""
    data = w.dram_bytes / r.dram_bandwidth + w.transfers * r.dram_latency
    matrix = w.matrix_work / (r.matrix_rate * w.matrix_efficiency)
    vector = w.vector_ops / (r.vector_flops * w.vector_efficiency)
    total = _where(r.overlap, _maximum(data, matrix + vector), data + matrix + vector) + w.overhead_s
    is_vector = vector > _maximum(data, matrix)
    bound = _where(is_vector, 2, _where(matrix > data, 1, 0))
    mac_j, sram_j, dram_j, energy_j = energy_terms(w.macs, w.sram_access_bytes, w.dram_bytes, r.energy_per_mac,
                                                   r.energy_per_sram_byte, r.energy_per_dram_byte)
    return LayerTimes(data_s=data, matrix_s=matrix, vector_s=vector, total_s=total, bound=bound,
                      overhead_s=w.overhead_s, utilization=_share(2 * w.macs, r.matrix_flops * matrix),
                      energy_mac_j=mac_j, energy_sram_j=sram_j, energy_dram_j=dram_j, energy_j=energy_j)


class Totals:
    """The network's time-dependent totals, rows added in order (``add``), as ``summary.json`` names them."""

    SUMS = ("t_data_s", "t_matrix_s", "t_vector_s", "t_overhead_s", "energy_mac_j", "energy_sram_j",
            "energy_dram_j", "energy_j")

    def __init__(self) -> None:
        self.latency_s: Any = 0
        self.sums: dict[str, Any] = dict.fromkeys(self.SUMS, 0)
        self.bounds: list[Any] = [0, 0, 0]  # rows bound by data, matrix, vector

    def add(self, t: LayerTimes) -> None:
        self.latency_s = self.latency_s + t.total_s
        for k in self.SUMS:
            self.sums[k] = self.sums[k] + getattr(t, k.removeprefix("t_"))
        for code in range(3):
            self.bounds[code] = self.bounds[code] + (t.bound == code)

    def finish(self, batch: int, matrix_macs: int, matrix_flops: Any) -> dict[str, Any]:
        """``latency_s``, ``latency_per_sample_s``, the time and energy sums, the bound counts (``bound_data``,
        ``bound_matrix``, ``bound_vector``) and the matrix unit's ``utilization`` over its compute time."""
        return {"latency_s": self.latency_s, "latency_per_sample_s": self.latency_s / batch, **self.sums,
                "bound_data": self.bounds[0], "bound_matrix": self.bounds[1], "bound_vector": self.bounds[2],
                "utilization": _share(2 * matrix_macs, matrix_flops * self.sums["t_matrix_s"])}
