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

from typing import TYPE_CHECKING, Any

from ..ir.gemm import gemm_dims
from ..ir.graph import Layer, OpKind
from .systolic import operand_elements

if TYPE_CHECKING:
    from .description import HardwareProfile


def _bytes(elements: int, bits: int) -> int:
    return -(-elements * bits // 8)


def array_sram_bytes(layer: Layer, batch: int, p: HardwareProfile, weight_bytes: int) -> int:
    """Bytes a systolic array reads from and writes to SRAM for one matrix row."""
    a, f = p.matrix.array, p.formats
    ins, ws, outs = operand_elements(gemm_dims(layer, batch), a.rows, a.cols, a.dataflow)
    weight_bits = f.weight_bits if layer.kind in (OpKind.CONV, OpKind.LINEAR) else f.activation_bits
    extra = max(0, weight_bytes - _bytes(layer.weight_elems, f.weight_bits))  # biases, BN values: once
    return _bytes(ins, f.activation_bits) + _bytes(ws, weight_bits) + _bytes(outs, f.activation_bits) + extra


def sram_access_bytes(p: HardwareProfile, layer: Layer, batch: int, *, macs: int, dram_bytes: int, in_bytes: int,
                      weight_bytes: int, out_bytes: int) -> int:
    """Every byte the row moves through SRAM (module docstring)."""
    if p.systolic and macs:
        unit_bytes = array_sram_bytes(layer, batch, p, weight_bytes)
    else:
        unit_bytes = in_bytes + weight_bytes + out_bytes
    return unit_bytes + dram_bytes


def energy_terms(macs: Any, sram_bytes: Any, dram_bytes: Any, per_mac: Any, per_sram_byte: Any,
                 per_dram_byte: Any) -> tuple[Any, Any, Any, Any]:
    """(MAC, SRAM, DRAM, total) joules of a row: numbers, or arrays over a sweep's points."""
    mac_j = macs * per_mac
    sram_j = sram_bytes * per_sram_byte
    dram_j = dram_bytes * per_dram_byte
    return mac_j, sram_j, dram_j, mac_j + sram_j + dram_j
