"""What the simulator returns: one ``LayerResult`` per layer and a ``Summary`` of the network, in a
``SimResult``. Torch-free, no numpy. The report and the CLI read these records; they never import the
simulator. (The records the stages hand each other, ``Traffic``, ``Plan`` and ``Bound``, are in
``perfsim.sim.records``.)

``COLUMNS`` is the order of ``layers.csv`` (SPEC "Results and reports"); the order of
``Summary``'s fields is the order of ``summary.json``'s keys.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from ..ir.graph import OpKind, Unit
from .records import Bound, Plan

if TYPE_CHECKING:  # the profile module is only needed for the annotation
    from ..hardware.description import HardwareProfile

# Report columns, SPEC order; later columns follow ``bound``.
COLUMNS = (
    "layer", "op", "unit", "in_shape", "out_shape", "kernel", "stride", "groups", "macs", "flops",
    "vector_ops", "params", "weight_bytes", "in_bytes", "out_bytes", "sram_used_bytes",
    "dram_read_bytes", "dram_write_bytes", "spill_bytes", "tiles", "t_data_s", "t_matrix_s",
    "t_vector_s", "t_total_s", "bound",
    # extras
    "refetch_bytes", "transfers", "plan", "t_overhead_s",
    # systolic array and energy (docs/systolic.md)
    "matrix_cycles", "utilization", "sram_access_bytes", "energy_mac_j", "energy_sram_j", "energy_dram_j",
    "energy_j",
)


class LayerResult(NamedTuple):
    """One report row (``COLUMNS``), plus ``kind``: the row's main op kind, to decide by.

    A named tuple rather than a frozen dataclass: both are immutable records with named
    fields, but a frozen dataclass's ``__init__`` sets its 29 fields one ``object.__setattr__``
    at a time, which was half of ``simulate``'s time (benchmarks/test_bench.py).
    """

    layer: str
    op: str  # the row's label (conv_dw, batchnorm+relu, ...): for people, not for decisions
    unit: Unit
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
    bound: Bound
    refetch_bytes: int
    transfers: int
    plan: Plan
    t_overhead_s: float  # fixed cost of the row's kernels (kernel_overhead, first_touch), in t_total_s
    matrix_cycles: int  # cycles on the systolic array (0 without one, or off the matrix unit)
    utilization: float  # achieved MAC rate during t_matrix_s / the matrix unit's peak (0 off it)
    sram_access_bytes: int  # bytes read from and written to SRAM (perfsim.hardware.energy)
    energy_mac_j: float
    energy_sram_j: float
    energy_dram_j: float
    energy_j: float
    kind: OpKind

    def as_tuple(self) -> tuple:
        """The row's cells in ``COLUMNS`` order, as plain values (enums become their text)."""
        return tuple(v.value if isinstance(v, Enum) else v for v in self[:_N_COLUMNS])


_N_COLUMNS = len(COLUMNS)
assert LayerResult._fields[:_N_COLUMNS] == COLUMNS, "LayerResult's fields start with COLUMNS, in order"


@dataclass(frozen=True, slots=True)
class BoundCounts:
    data: int
    matrix: int
    vector: int

    def to_dict(self) -> dict[str, int]:
        return {"data": self.data, "matrix": self.matrix, "vector": self.vector}


@dataclass(frozen=True, slots=True)
class Summary:
    """The network's totals: ``summary.json``, key for key in field order (SPEC's keys, then extras)."""

    model: str
    profile: HardwareProfile  # written resolved
    perfsim_version: str
    batch: int
    input_shape: tuple[int, ...]
    latency_s: float
    latency_per_sample_s: float
    macs: int
    flops: int
    vector_ops: int
    params: int
    params_inference: int
    model_size_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    spill_bytes: int
    refetch_bytes: int
    preload_bytes: int
    peak_sram_bytes: int
    layers: int
    tiled_layers: int
    bound_counts: BoundCounts
    t_data_s: float
    t_matrix_s: float
    t_vector_s: float
    t_overhead_s: float
    notes: tuple[str, ...]
    matrix_cycles: int
    utilization: float  # 2 * MACs of matrix rows / (matrix peak * their t_matrix_s)
    sram_access_bytes: int
    energy_mac_j: float
    energy_sram_j: float
    energy_dram_j: float
    energy_j: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of ``summary.json``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "profile":
                value = value.resolved()
            elif isinstance(value, BoundCounts):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class SimResult:
    """What ``simulate`` returns: one row per layer and the totals."""

    rows: tuple[LayerResult, ...]
    totals: Summary

    @property
    def model(self) -> str:
        return self.totals.model

    @property
    def profile(self) -> HardwareProfile:
        return self.totals.profile

    @property
    def batch(self) -> int:
        return self.totals.batch

    @property
    def notes(self) -> tuple[str, ...]:
        return self.totals.notes

    @property
    def latency_s(self) -> float:
        return self.totals.latency_s

    @cached_property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict (``totals.to_dict()``, built once)."""
        return self.totals.to_dict()

    def to_frame(self):
        import pandas as pd  # at the edge: the core stays dataclasses
        return pd.DataFrame([r.as_tuple() for r in self.rows], columns=list(COLUMNS))
