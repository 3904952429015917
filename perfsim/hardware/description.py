"""The hardware description: a ``HardwareProfile`` made of small parts (``perfsim.hardware.parts``,
``KernelCosts``), read and written as SPEC's flat fields.

A profile file, ``--set`` and ``--vary`` name SPEC's fields (``sram_bytes``, ``matrix_flops``, ``array_rows``,
``energy_per_mac``...); ``FIELDS`` says which part holds each. Code reads the parts
(``profile.memory.sram_bytes``, ``profile.matrix.array``); ``resolved()`` gives the flat fields back, in
``FIELDS`` order, as ``summary.json`` records them.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..units import format_bytes
from .calibration import Calibration
from .efficiency import KernelCosts
from .parts import EnergyPrices, Formats, MatrixUnit, Memory, Schedule, SystolicArray, VectorUnit

MAX_NAME_CHARS = 200  # a profile name becomes part of a report folder name

# SPEC's flat field -> where the profile holds it (part, attribute[, attribute]), in summary.json's order
FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "description": ("description",),
    "sram_bytes": ("memory", "sram_bytes"),
    "dram_bandwidth": ("memory", "dram_bandwidth"),
    "dram_latency": ("memory", "dram_latency"),
    "matrix_flops": ("matrix", "flops"),
    "vector_flops": ("vector", "flops"),
    "activation_bits": ("formats", "activation_bits"),
    "weight_bits": ("formats", "weight_bits"),
    "bias_bits": ("formats", "bias_bits"),
    "fold_batchnorm": ("schedule", "fold_batchnorm"),
    "fuse_activation": ("schedule", "fuse_activation"),
    "weights": ("memory", "weights"),
    "overlap": ("schedule", "overlap"),
    "memory_policy": ("memory", "policy"),
    "efficiency": ("kernels", "efficiency"),
    "kernel_overhead": ("kernels", "overhead"),
    "tiled_efficiency": ("kernels", "tiled_efficiency"),
    "first_touch": ("kernels", "first_touch"),
    "row_block": ("kernels", "row_block"),
    "calibration": ("calibration",),
    "array_rows": ("matrix", "array", "rows"),
    "array_cols": ("matrix", "array", "cols"),
    "array_clock": ("matrix", "array", "clock"),
    "dataflow": ("matrix", "array", "dataflow"),
    "energy_per_mac": ("energy", "per_mac"),
    "energy_per_sram_byte": ("energy", "per_sram_byte"),
    "energy_per_dram_byte": ("energy", "per_dram_byte"),
}
# A systolic matrix unit (docs/systolic.md): given together, instead of ``matrix_flops``.
ARRAY_FIELDS = ("array_rows", "array_cols", "array_clock", "dataflow")
ENERGY_FIELDS = ("energy_per_mac", "energy_per_sram_byte", "energy_per_dram_byte")
_MATRIX_FIELDS = ("matrix_flops",) + ARRAY_FIELDS
_WHERE = {path: flat for flat, path in FIELDS.items()}


class UnknownField(ValueError):
    """A field name the profile does not have."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


class HardwareProfile(BaseModel):
    """One accelerator, in parts. Values are in base units (bytes, B/s, s, FLOP/s, Hz, J) once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", max_length=MAX_NAME_CHARS)
    description: str = Field("", max_length=2000)
    memory: Memory
    matrix: MatrixUnit
    vector: VectorUnit
    formats: Formats = Field(default_factory=Formats)
    schedule: Schedule = Field(default_factory=Schedule)
    kernels: KernelCosts = Field(default_factory=KernelCosts)
    energy: EnergyPrices = Field(default_factory=EnergyPrices)
    calibration: Calibration | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "HardwareProfile":
        """A profile from SPEC's flat fields (as a YAML file writes them). Raises ``UnknownField`` for a
        name that is not a field, pydantic's ``ValidationError`` for a bad value (``field_of`` names it)."""
        return cls.model_validate(group(fields))

    @property
    def systolic(self) -> bool:
        """The matrix unit is a systolic array (docs/systolic.md)."""
        return self.matrix.array is not None

    def field(self, name: str) -> Any:
        """The value of SPEC's flat field ``name`` (None for an array field without an array)."""
        value: Any = self
        for attr in FIELDS[name]:
            value = None if value is None else getattr(value, attr)
        return value

    def resolved(self) -> dict[str, Any]:
        """Every flat field with its value in base units, in ``FIELDS`` order (what summary.json records)."""
        dump = self.model_dump()
        out = {}
        for flat, path in FIELDS.items():
            value: Any = dump
            for attr in path:
                value = None if value is None else value[attr]
            out[flat] = value
        return out

    def with_fields(self, **changes: Any) -> "HardwareProfile":
        """This profile with some flat fields changed to values already validated on it (a sweep's points):
        each part copied with its change, the matrix unit rebuilt when its peak or array changes."""
        update: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for flat, value in changes.items():
            path = FIELDS[flat]
            if flat in _MATRIX_FIELDS:
                continue
            if len(path) == 1:
                update[path[0]] = value
            else:
                parts.setdefault(path[0], {})[path[1]] = value
        for part, values in parts.items():
            update[part] = getattr(self, part).model_copy(update=values)
        if any(f in changes for f in _MATRIX_FIELDS):
            base = {f: self.field(f) for f in _MATRIX_FIELDS}
            merged = layer_over(base, {f: changes[f] for f in _MATRIX_FIELDS if f in changes}, "profile")
            update["matrix"] = MatrixUnit.model_validate(group(merged)["matrix"])
        return self.model_copy(update=update)

    def __hash__(self) -> int:  # frozen, but its tables are dicts: hash the canonical dump
        return hash(self.model_dump_json())


def field_type(name: str) -> Any:
    """The type a flat field holds (its part's annotation: ``int``, ``bool``, ``float``, a Literal...)."""
    model: Any = HardwareProfile
    for attr in FIELDS[name][:-1]:
        model = {"array": SystolicArray}.get(attr) or model.model_fields[attr].annotation
    return model.model_fields[FIELDS[name][-1]].annotation


def group(fields: Mapping[str, Any]) -> dict[str, Any]:
    """SPEC's flat fields -> the parts' nested mapping (``FIELDS``). An array field given as null is not
    given (a dumped profile has them); a partial array is refused, naming what is missing."""
    nested: dict[str, Any] = {}
    for flat, value in fields.items():
        path = FIELDS.get(flat) if isinstance(flat, str) else None
        if path is None:
            raise UnknownField(str(flat))
        if value is None and (flat in ARRAY_FIELDS or flat == "matrix_flops" or flat == "calibration"):
            continue
        node = nested
        for attr in path[:-1]:
            node = node.setdefault(attr, {})
        node[path[-1]] = value
    given = [f for f in ARRAY_FIELDS if fields.get(f) is not None]
    if given and len(given) < len(ARRAY_FIELDS):
        missing = ", ".join(f for f in ARRAY_FIELDS if f not in given)
        raise ValueError(f"a systolic array needs {', '.join(ARRAY_FIELDS)}; missing {missing}")
    for part in ("memory", "matrix", "vector"):  # required parts: their fields' own messages say what is missing
        nested.setdefault(part, {})
    return nested


def field_of(loc: tuple[Any, ...]) -> str:
    """A validation error's location in the parts, as SPEC's flat field (and what follows it)."""
    for n in range(len(loc), 0, -1):
        flat = _WHERE.get(tuple(str(p) for p in loc[:n]))
        if flat is not None:
            return ".".join([flat] + [str(p) for p in loc[n:]])
    if loc and loc[0] == "matrix":
        return "matrix_flops"
    return ".".join(str(p) for p in loc)


def layer_over(base: Mapping[str, Any], top: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``top``'s flat fields over ``base``'s. A matrix unit given in ``top`` (``matrix_flops``, or a systolic
    array) replaces ``base``'s, of either kind; giving both kinds in ``top`` is an error."""
    arrays = [f for f in ARRAY_FIELDS if top.get(f) is not None]  # null: not given (a dumped profile)
    flops = top.get("matrix_flops") is not None
    if arrays and flops:
        raise InputError(f"{label}: give matrix_flops or a systolic array ({arrays[0]}, ...), not both: "
                         "the array's peak is 2 * array_rows * array_cols * array_clock")
    merged = dict(base)
    if arrays:
        merged.pop("matrix_flops", None)
    elif flops:
        for f in ARRAY_FIELDS:
            merged.pop(f, None)
    merged.update(top)
    return merged


def describe(profile: HardwareProfile) -> str:
    """One line: the numbers a person compares profiles by."""
    mem, a = profile.memory, profile.matrix.array
    array = f" ({a.rows}x{a.cols} {a.dataflow} array at {a.clock / 1e9:g} GHz)" if a is not None else ""
    return (f"SRAM {format_bytes(mem.sram_bytes)}, DRAM {mem.dram_bandwidth / 1e9:g} GB/s, "
            f"matrix {profile.matrix.flops / 1e12:g} TFLOPS{array}, vector {profile.vector.flops / 1e9:g} GFLOPS, "
            f"{mem.weights} weights, {'overlap' if profile.schedule.overlap else 'serial'}, {mem.policy}")
