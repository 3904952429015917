"""Timing: a row's bytes and ops -> seconds (SPEC "Timing"). Pure, torch-free.

    data   = (DRAM read + write bytes) / dram_bandwidth + transfers * dram_latency
    matrix = 2 * MACs / (matrix_flops * matrix_efficiency)
    vector = vector ops / (vector_flops * vector_efficiency)
    total  = data + matrix + vector, or max(data, matrix + vector) with ``overlap``
    bound  = the largest of data, matrix, vector (ties in that order)

The efficiencies are the hook for SPEC's reserved profile field ``efficiency: {op kind:
fraction}``, which scales the peak of the unit that runs that kind (kinds are the ``op``
column's values; a missing kind is 1.0). The profile has no such field yet, so
``efficiencies`` gives 1.0 and the times are SPEC's bit for bit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, NamedTuple

from .graph import Unit
from .results import Bound

if TYPE_CHECKING:
    from .profile import HardwareProfile


class LayerTimes(NamedTuple):
    data_s: float
    matrix_s: float
    vector_s: float
    total_s: float
    bound: Bound


def efficiency_table(profile: HardwareProfile) -> Mapping[str, float]:
    """The profile's ``efficiency`` by op label: empty until the profile carries the field."""
    return getattr(profile, "efficiency", None) or {}  # reserved by SPEC, not a profile field yet


def efficiencies(table: Mapping[str, float], op: str, unit: Unit) -> tuple[float, float]:
    """(matrix, vector) fraction of peak for a row labelled ``op`` running on ``unit``:
    ``table[op]`` for the unit that runs the row's op (1.0 when missing), 1.0 for the other."""
    fraction = table.get(op, 1.0)
    return (fraction, 1.0) if unit is Unit.MATRIX else (1.0, fraction)


def layer_times(profile: HardwareProfile, *, dram_bytes: int, transfers: int, macs: int, vector_ops: int,
                matrix_efficiency: float = 1.0, vector_efficiency: float = 1.0) -> LayerTimes:
    """One row's time terms."""
    p = profile
    data = dram_bytes / p.dram_bandwidth + transfers * p.dram_latency
    matrix = 2 * macs / (p.matrix_flops * matrix_efficiency)
    vector = vector_ops / (p.vector_flops * vector_efficiency)
    total = max(data, matrix + vector) if p.overlap else data + matrix + vector
    bound = Bound.DATA
    if matrix > data:
        bound = Bound.MATRIX
    if vector > max(data, matrix):
        bound = Bound.VECTOR
    return LayerTimes(data_s=data, matrix_s=matrix, vector_s=vector, total_s=total, bound=bound)
