"""The parts of a hardware description, each a small validated record with units in its values
(LLMCompass's ``hardware_model`` splits a device the same way): the memory system, the matrix unit (a
peak, or a systolic array), the vector unit, numeric formats, what the compiler does with a layer, and
energy prices. ``perfsim.hardware.description`` composes them into a ``HardwareProfile``.

Every number is held to a physically sensible range (``LIMITS``, docs/model.md), so everything computed
from a profile is finite. Values are in base units once parsed (bytes, B/s, s, FLOP/s, Hz, J).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..units import parse_quantity, shown

# Physically sensible ranges, in base units (docs/model.md), by the profile field's name. Outside them a
# profile is refused: within them every latency, time and plot coordinate perfsim computes is finite.
LIMITS: dict[str, tuple[float, float, str]] = {
    "sram_bytes": (1, 2**40, "1 B and 1 TiB"),
    "dram_bandwidth": (1.0, 1e15, "1 B/s and 1 PB/s (1e15 B/s)"),
    "dram_latency": (0.0, 1.0, "0 s and 1 s"),
    "matrix_flops": (1.0, 1e18, "1 FLOPS and 1e18 FLOPS"),
    "vector_flops": (1.0, 1e18, "1 FLOPS and 1e18 FLOPS"),
    "energy_per_mac": (0.0, 1e-6, "0 J and 1 uJ"),
    "energy_per_sram_byte": (0.0, 1e-6, "0 J and 1 uJ"),
    "energy_per_dram_byte": (0.0, 1e-6, "0 J and 1 uJ"),
}
ARRAY_SIDE_RANGE = (1, 2**16)  # PEs along one side of a systolic array
# fields that only come together (a systolic array): held to these ranges as LIMITS' fields are
ARRAY_LIMITS: dict[str, tuple[float, float, str]] = {"array_clock": (1.0, 1e12, "1 Hz and 1 THz")}
BITS_RANGE = (1, 64)

# the kind of quantity of each field that carries units (perfsim.units)
QUANTITY_FIELDS = {
    "sram_bytes": "bytes",
    "dram_bandwidth": "bytes_per_s",
    "dram_latency": "seconds",
    "matrix_flops": "flops",
    "vector_flops": "flops",
    "array_clock": "hertz",
    "energy_per_mac": "joules",
    "energy_per_sram_byte": "joules",
    "energy_per_dram_byte": "joules",
}


def quantity_in_range(field: str, v: Any) -> float:
    """A quantity field (by its profile name) parsed into base units and held to ``LIMITS``."""
    x = parse_quantity(v, QUANTITY_FIELDS[field], field=field)
    lo, hi, text = LIMITS[field] if field in LIMITS else ARRAY_LIMITS[field]
    if lo > 0 and x <= 0:
        raise ValueError("must be positive")
    if x < 0:
        raise ValueError("must not be negative")
    if not lo <= x <= hi:
        raise ValueError(f"must be between {text}")
    return x


def whole(v: Any, what: str, lo: int, hi: int, unit: str = "") -> int:
    """A whole number in [lo, hi] (text of digits accepted)."""
    if isinstance(v, str) and len(v) <= 20 and v.strip().isdecimal() and v.strip().isascii():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be a whole number of {what}")
    if not lo <= v <= hi:
        raise ValueError(f"must be between {lo} and {hi}{unit}")
    return v


def fraction(v: Any, where: str) -> float:
    """A number in (0, 1]."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: must be a number in (0, 1], got {shown(v)}")
    x = float(v)
    if not 0 < x <= 1:
        raise ValueError(f"{where}: must be a fraction in (0, 1], got {shown(v)}")
    return x


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Memory(Part):
    """On-chip SRAM, the DRAM bus, and how the memory plan uses them (SPEC "Memory model")."""

    sram_bytes: int
    dram_bandwidth: float  # B/s, one shared bus for reads and writes
    dram_latency: float = 0.0  # s per transfer
    weights: Literal["stream", "resident"] = "stream"
    policy: Literal["liveness", "paper"] = "liveness"  # the profile's memory_policy

    @field_validator("sram_bytes", mode="before")
    @classmethod
    def _sram(cls, v: Any) -> int:
        b = quantity_in_range("sram_bytes", v)
        if not float(b).is_integer():
            raise ValueError(f"must be a whole number of bytes, got {b}")
        return int(b)

    @field_validator("dram_bandwidth", "dram_latency", mode="before")
    @classmethod
    def _rate(cls, v: Any, info) -> float:
        return quantity_in_range(info.field_name, v)


class SystolicArray(Part):
    """A weight-, output- or input-stationary array of rows x cols processing elements (docs/systolic.md)."""

    rows: int
    cols: int
    clock: float  # Hz
    dataflow: Literal["os", "ws", "is"]

    @field_validator("rows", "cols", mode="before")
    @classmethod
    def _side(cls, v: Any) -> int:
        return whole(v, "processing elements", *ARRAY_SIDE_RANGE)

    @field_validator("clock", mode="before")
    @classmethod
    def _clock(cls, v: Any) -> float:
        return quantity_in_range("array_clock", v)

    @property
    def peak_flops(self) -> float:
        return 2.0 * self.rows * self.cols * self.clock


class MatrixUnit(Part):
    """The conv / matmul unit: its peak, given (``matrix_flops``) or that of a systolic ``array``."""

    flops: float | None = None  # FLOP/s (2 per MAC); set from the array when there is one
    array: SystolicArray | None = None

    @field_validator("flops", mode="before")
    @classmethod
    def _flops(cls, v: Any) -> float | None:
        return None if v is None else quantity_in_range("matrix_flops", v)

    @model_validator(mode="after")
    def _peak(self) -> "MatrixUnit":
        """Either ``flops`` or an array, whose peak it then is (giving both is an error unless they agree)."""
        if self.array is None:
            if self.flops is None:
                raise ValueError("give matrix_flops, or a systolic array (array_rows, array_cols, array_clock, "
                                 "dataflow)")
            return self
        peak, (lo, hi, text) = self.array.peak_flops, LIMITS["matrix_flops"]
        if self.flops is not None and self.flops != peak:
            raise ValueError("give matrix_flops or a systolic array (array_rows, ...), not both: "
                             "the array's peak is 2 * array_rows * array_cols * array_clock")
        if not lo <= peak <= hi:
            raise ValueError(f"the array's peak 2 * rows * cols * clock must be between {text}")
        self.__dict__["flops"] = peak  # frozen: set once, while validating
        return self


class VectorUnit(Part):
    """Elementwise ops, pooling, softmax, normalisation."""

    flops: float  # ops/s

    @field_validator("flops", mode="before")
    @classmethod
    def _flops(cls, v: Any) -> float:
        return quantity_in_range("vector_flops", v)


class Formats(Part):
    """Storage precision: bits per activation, weight and bias (int8 inference keeps 32-bit biases)."""

    activation_bits: int = 8
    weight_bits: int = 8
    bias_bits: int = 32

    @field_validator("activation_bits", "weight_bits", "bias_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> int:
        return whole(v, "bits", *BITS_RANGE, unit=" bits")


class Schedule(Part):
    """What the compiler does with a layer: BN folded into its conv, a clamp run in the conv's output
    stage, data movement overlapped with compute (double buffering)."""

    fold_batchnorm: bool = True
    fuse_activation: bool = True
    overlap: bool = False


class EnergyPrices(Part):
    """Joules per MAC, per byte moved through SRAM and per DRAM byte (docs/systolic.md); zero: not priced."""

    per_mac: float = 0.0
    per_sram_byte: float = 0.0
    per_dram_byte: float = 0.0

    @field_validator("per_mac", "per_sram_byte", "per_dram_byte", mode="before")
    @classmethod
    def _price(cls, v: Any, info) -> float:
        return quantity_in_range("energy_" + info.field_name, v)

    @property
    def priced(self) -> bool:
        return bool(self.per_mac or self.per_sram_byte or self.per_dram_byte)
