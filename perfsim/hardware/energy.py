"""Energy of a row: MACs, SRAM accesses and DRAM traffic, priced per access (docs/systolic.md). Pure.

    energy_mac_j  = MACs * energy_per_mac
    energy_sram_j = sram_access_bytes * energy_per_sram_byte
    energy_dram_j = (DRAM read + write bytes) * energy_per_dram_byte
    energy_j      = their sum

``sram_access_bytes`` counts every byte the row moves through SRAM: each DRAM byte once (a read
lands in SRAM, a write leaves it), plus what the compute units read and write there. A vector row,
or a matrix row on a ``matrix_flops`` unit, reads its inputs and weights once and writes its
output once (``in_bytes + weight_bytes + out_bytes``). A matrix row on a systolic array moves its
operand matrices as the dataflow streams them (``perfsim.hardware.systolic.operand_elements``: the
stationary operand once, a streamed operand once per fold across the array, partial sums once per
fold along K; the input operand is the im2col matrix, as in SCALE-Sim), at the profile's bits,
plus the row's biases (and unfolded BN values) once. Vector-unit energy and leakage are not
modelled. A profile without energy fields gives zeros.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..ir.graph import Layer, OpKind
from .systolic import gemm_dims, operand_elements

if TYPE_CHECKING:
    from .profile import HardwareProfile


class RowEnergy(NamedTuple):
    sram_access_bytes: int
    mac_j: float
    sram_j: float
    dram_j: float
    total_j: float


def _bytes(elements: int, bits: int) -> int:
    return -(-elements * bits // 8)


def array_sram_bytes(layer: Layer, batch: int, p: HardwareProfile, weight_bytes: int) -> int:
    """Bytes a systolic array reads from and writes to SRAM for one matrix row."""
    ins, ws, outs = operand_elements(gemm_dims(layer, batch), p.matrix.array.rows, p.matrix.array.cols, p.matrix.array.dataflow)
    weight_bits = p.formats.weight_bits if layer.kind in (OpKind.CONV, OpKind.LINEAR) else p.formats.activation_bits
    extra = max(0, weight_bytes - _bytes(layer.weight_elems, p.formats.weight_bits))  # biases, BN values: once
    return _bytes(ins, p.formats.activation_bits) + _bytes(ws, weight_bits) + _bytes(outs, p.formats.activation_bits) + extra


def row_energy(p: HardwareProfile, layer: Layer, batch: int, *, macs: int, dram_bytes: int, in_bytes: int,
               weight_bytes: int, out_bytes: int) -> RowEnergy:
    """The row's SRAM bytes and its energy terms (module docstring)."""
    if p.systolic and macs:
        unit_bytes = array_sram_bytes(layer, batch, p, weight_bytes)
    else:
        unit_bytes = in_bytes + weight_bytes + out_bytes
    sram = unit_bytes + dram_bytes
    mac_j = macs * p.energy.per_mac
    sram_j = sram * p.energy.per_sram_byte
    dram_j = dram_bytes * p.energy.per_dram_byte
    return RowEnergy(sram_access_bytes=sram, mac_j=mac_j, sram_j=sram_j, dram_j=dram_j,
                     total_j=mac_j + sram_j + dram_j)
