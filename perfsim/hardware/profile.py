"""Hardware profiles: validated, frozen, unit-bearing configuration.

A profile is a YAML file in ``hardware_profiles/``. Lookup order for a name:
``./hardware_profiles/NAME.yaml`` in the working directory, then the profiles
shipped with perfsim. A path (anything ending in .yaml/.yml or containing a
path separator) is read as given. ``extends: other`` inherits another profile's
fields; ``overrides`` (``--set field=value``) apply last.

Profiles are read defensively (they may come from anywhere): at most
``MAX_PROFILE_BYTES``, no YAML anchors or aliases, nesting at most ``MAX_NESTING``
deep, string keys only, no duplicate keys, ``extends`` chains at most
``MAX_EXTENDS`` long, and every number in a physically sensible range (``LIMITS``),
so everything computed from a profile is finite. docs/model.md lists the bounds.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..files import TooLarge, read_bounded
from ..units import format_bytes, parse_quantity, shown

# Fields SPEC.md reserves for later issues: known names, not yet simulated (issue 11 made the
# systolic array and energy fields real: docs/systolic.md).
RESERVED_FIELDS: tuple[str, ...] = ()

# A systolic matrix unit (docs/systolic.md): given together, instead of ``matrix_flops``.
ARRAY_FIELDS = ("array_rows", "array_cols", "array_clock", "dataflow")
ENERGY_FIELDS = ("energy_per_mac", "energy_per_sram_byte", "energy_per_dram_byte")

_QUANTITY_FIELDS = {
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

# Physically sensible ranges, in base units (docs/model.md). Outside them a profile is refused:
# within them every latency, time and plot coordinate perfsim computes is a finite float.
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

MAX_PROFILE_BYTES = 256 * 1024  # a profile is a dozen lines; a calibrated one carries ~200 measurements
MAX_NESTING = 10  # mappings/sequences inside each other (a calibrated one needs 9: its grouped-conv tables)
MAX_EXTENDS = 16  # profiles in one extends chain
MAX_INT_CHARS = 64  # a YAML integer literal longer than this is refused before it is converted
MAX_NAME_CHARS = 200  # a profile name becomes part of a report folder name
MAX_LISTED = 20  # known profiles named in an "unknown profile" message


MAX_TABLE_ENTRIES = 64  # points of one efficiency table
MAX_FIRST_TOUCH = 1e-6  # s/B: 1 MB/s, far slower than any memory
MAX_ROW_BLOCK = 1024  # output positions a matrix kernel computes at once
MAX_TABLE_KEY = 2**31  # a matrix product's dimension
MAX_GROUPED_AXIS = 16  # points of a grouped-conv table's channel axis


CONV_LABELS = ("conv", "conv_pw", "conv_dw", "conv_group")
STRIDED = ".strided"  # a conv label's entry for its rows with a stride above 1 (timing.label_key)
STRIDED_LABELS = tuple(c + STRIDED for c in CONV_LABELS)


def _labels() -> frozenset[str]:
    from ..ir.graph import OpKind
    return frozenset({k.value for k in OpKind} | set(CONV_LABELS) | set(STRIDED_LABELS))


MATRIX_LABELS = frozenset({*CONV_LABELS, "linear", "matmul", *STRIDED_LABELS})


def _fraction(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: must be a number in (0, 1], got {shown(v)}")
    x = float(v)
    if not 0 < x <= 1:
        raise ValueError(f"{where}: must be a fraction in (0, 1], got {shown(v)}")
    return x


def _table_key(label: str, k: Any) -> int:
    key = int(k) if isinstance(k, str) and k.strip().isdecimal() and len(k) < 12 else k
    if isinstance(key, bool) or not isinstance(key, int) or not 1 <= key <= MAX_TABLE_KEY:
        raise ValueError(f"{label}: table keys are matrix dimensions (whole numbers >= 1), got {shown(k)}")
    return key


def _efficiency_table(label: str, v: Any, inner: bool = False) -> dict[int, Any]:
    """A table by the smallest matrix dimension; its values fractions, or (one level) tables by M."""
    if label not in MATRIX_LABELS:
        raise ValueError(f"{label}: a table by matrix dimension is only for matrix ops ({', '.join(sorted(MATRIX_LABELS))})")
    if not v or len(v) > MAX_TABLE_ENTRIES:
        raise ValueError(f"{label}: a table needs 1 to {MAX_TABLE_ENTRIES} points")
    out: dict[int, Any] = {}
    for k, x in v.items():
        key = _table_key(label, k)
        if isinstance(x, Mapping) and not inner:
            out[key] = _efficiency_table(label, x, inner=True)
        else:
            out[key] = _fraction(x, f"{label}[{key}]")
    if len({isinstance(x, dict) for x in out.values()}) > 1:
        raise ValueError(f"{label}: a table's values are all fractions or all tables by M")
    return dict(sorted(out.items()))


class GroupedKernel(BaseModel):
    """A grouped conv's time for one kernel area (kh x kw), by channels read and written per group:
    ``overhead + groups x per_group[read][written] + groups x positions x per_position[read][written]``,
    the tables read bilinearly in log2 of the channels, ``per_group`` held at its edges and
    ``per_position`` read per channel pair (``time``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overhead: float = Field(ge=0, le=1)  # seconds per call
    channels: tuple[int, ...]  # the tables' axes, ascending, for channels read and written alike
    per_group: tuple[tuple[float, ...], ...]  # seconds, [read][written]
    per_position: tuple[tuple[float, ...], ...]  # seconds per output position of one group

    @model_validator(mode="after")
    def _square(self) -> "GroupedKernel":
        n = len(self.channels)
        if not 2 <= n <= MAX_GROUPED_AXIS or list(self.channels) != sorted(set(self.channels)) \
                or not 1 <= self.channels[0] <= self.channels[-1] <= MAX_TABLE_KEY:
            raise ValueError(f"channels: 2 to {MAX_GROUPED_AXIS} ascending whole numbers >= 1")
        for name in ("per_group", "per_position"):
            rows = getattr(self, name)
            if len(rows) != n or any(len(r) != n for r in rows):
                raise ValueError(f"{name}: a {n} x {n} table (channels read x channels written)")
            if not all(math.isfinite(x) and 0 <= x <= 1 for r in rows for x in r):
                raise ValueError(f"{name}: seconds between 0 and 1")
        return self

    def time(self, groups: int, positions: int, read: int, written: int, position_scale: float = 1.0) -> float:
        """Seconds of one call; ``position_scale`` multiplies the per-position cost (another kernel area).
        The per-position cost is read as a cost per position and channel pair (per MAC), between the axis's
        points and beyond its ends alike, times ``read x written``: held flat per position, a group of 128
        channels cost what a group of 32 does, a quarter of its MACs (docs/hardware.md)."""
        c, u = _bilinear(self.channels, (self.per_group, _per_mac(self.channels, self.per_position)), read, written)
        return self.overhead + groups * c + groups * positions * u * read * written * position_scale


@lru_cache(maxsize=256)
def _per_mac(axis: tuple[int, ...], per_position: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    """A per-position table as seconds per position and channel pair, built once per table (a row's timing
    reads it; keyed by value, so a changed copy of a kernel never reads a stale one)."""
    return tuple(tuple(u / (axis[i] * axis[j]) for j, u in enumerate(row)) for i, row in enumerate(per_position))


def _bilinear(axis: Sequence[int], tables: Sequence[Sequence[Sequence[float]]], x: int, y: int) -> list[float]:
    """Each table at (x, y), linear in log2 of both between the axis's points, held beyond its ends."""
    def at(v: int) -> tuple[int, float]:
        lv = math.log2(max(v, 1))
        if lv <= math.log2(axis[0]):
            return 0, 0.0
        if lv >= math.log2(axis[-1]):
            return len(axis) - 2, 1.0
        i = max(k for k in range(len(axis) - 1) if math.log2(axis[k]) <= lv)
        return i, (lv - math.log2(axis[i])) / (math.log2(axis[i + 1]) - math.log2(axis[i]))
    (i, fx), (j, fy) = at(x), at(y)
    return [(1 - fx) * (1 - fy) * t[i][j] + fx * (1 - fy) * t[i + 1][j] + (1 - fx) * fy * t[i][j + 1]
            + fx * fy * t[i + 1][j + 1] for t in tables]


class GroupedConv(BaseModel):
    """``conv_group``'s efficiency from a model of its time (docs/hardware.md): a ``GroupedKernel`` per
    kernel area (1 for 1x1, 9 for 3x3; another area reads the nearest one, its per-position cost scaled
    by the areas' ratio), times ``scale`` (what a network adds), as a fraction of ``flops`` (the matrix
    peak the times were measured against)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flops: float = Field(ge=1.0, le=1e18)
    scale: float = Field(1.0, gt=0, le=1e3)
    kernels: dict[int, GroupedKernel]

    @field_validator("kernels", mode="before")
    @classmethod
    def _areas(cls, v: Any) -> Any:
        if not isinstance(v, Mapping) or not 1 <= len(v) <= 4:
            raise ValueError("kernels: 1 to 4 kernel areas (1 for 1x1, 9 for 3x3) to their tables")
        return {_table_key("kernels", k): x for k, x in v.items()}

    def fraction(self, macs: int, area: int, groups: int, positions: int, read: int, written: int) -> float:
        near = min(self.kernels, key=lambda a: (abs(math.log2(a) - math.log2(max(area, 1))), a))
        seconds = self.scale * self.kernels[near].time(groups, positions, read, written, area / near)
        return 1.0 if seconds <= 0 else min(1.0, 2 * macs / (self.flops * seconds))


def _grouped(label: str, x: Any) -> GroupedConv:
    if label != "conv_group":
        raise ValueError(f"{label}: a grouped-conv model is only for conv_group")
    if isinstance(x, GroupedConv):
        return x
    try:
        return GroupedConv.model_validate(x)
    except ValueError as e:
        errors = getattr(e, "errors", None)
        first = errors()[0] if callable(errors) else None
        where = ".".join(str(p) for p in first["loc"]) if first else ""
        raise ValueError(f"{label}: {where + ': ' if where else ''}{first['msg'] if first else e}") from None


def _efficiency_entry(label: str, x: Any) -> Any:
    """A fraction; for a matrix op a table by the smallest dimension (of tables by M); for conv_group a
    model of its time, ``{flops, scale, kernels}`` (``GroupedConv``)."""
    if isinstance(x, GroupedConv) or (isinstance(x, Mapping) and "kernels" in x):
        return _grouped(label, x)
    return _efficiency_table(label, x) if isinstance(x, Mapping) else _fraction(x, label)


def _by_label(v: Any, what: str, convert: Callable[[str, Any], Any], also: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapping by op label (the report's op column, and ``also``), each value converted."""
    if not isinstance(v, Mapping):
        raise ValueError(f"must map {what}")
    known = _labels() | set(also)
    out: dict[str, Any] = {}
    for label, x in v.items():
        if label not in known:
            raise ValueError(f"unknown op label {shown(label)} (labels are the report's op column: "
                             "conv, conv_pw, conv_dw, conv_group, linear, matmul, relu, batchnorm, ...; "
                             "conv_dw.strided and the like for strided convs)")
        out[label] = convert(label, x)
    return out


def _seconds(label: str, x: Any) -> float:
    t = parse_quantity(x, "seconds", field=f"kernel_overhead.{label}")
    if not 0 <= t <= 1:
        raise ValueError(f"{label}: must be between 0 s and 1 s")
    return t


def _whole(v: Any, what: str, lo: int, hi: int, unit: str = "") -> int:
    """A whole number in [lo, hi] (text of digits accepted)."""
    if isinstance(v, str) and len(v) <= 20 and v.strip().isdecimal() and v.strip().isascii():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be a whole number of {what}")
    if not lo <= v <= hi:
        raise ValueError(f"must be between {lo} and {hi}{unit}")
    return v


class Measured(BaseModel):
    """One calibration measurement: the median of repeats and its quartiles, in ``unit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    q1: float
    q3: float
    n: int = Field(ge=1)
    unit: str = Field(max_length=40)
    what: str = Field("", max_length=300)


class KindFit(BaseModel):
    """The line ``time = overhead + work / (peak * efficiency)`` fitted to one op label's micro-benchmarks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shapes: int = Field(ge=1)
    overhead_s: float = Field(ge=0)
    efficiency: float | GroupedConv | dict[int, float] | dict[int, dict[int, float]]
    median_abs_error: float = Field(ge=0)  # of the fitted time, relative, over the shapes measured
    unit: Literal["matrix", "vector"]


class Calibration(BaseModel):
    """What ``perfsim calibrate`` measured on a machine, and how (SPEC "Efficiency and overhead")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    perfsim_version: str = Field(max_length=40)
    date: str = Field(max_length=40)
    host: dict[str, str | int] = Field(default_factory=dict)
    threads: int = Field(ge=1)
    allocator: Literal["keep", "system"] = "system"  # freed memory kept, or glibc's own (hosttime.set_allocator)
    quick: bool = False
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after
    measurements: dict[str, Measured] = Field(default_factory=dict)
    fits: dict[str, KindFit] = Field(default_factory=dict)


class HardwareProfile(BaseModel):
    """One accelerator. Values are in base units (bytes, B/s, s, FLOP/s) once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", max_length=MAX_NAME_CHARS)
    description: str = Field("", max_length=2000)
    sram_bytes: int
    dram_bandwidth: float
    dram_latency: float = 0.0
    matrix_flops: float | None = None  # required, unless a systolic array gives it (2 * rows * cols * clock)
    vector_flops: float
    activation_bits: int = 8
    weight_bits: int = 8
    bias_bits: int = 32
    fold_batchnorm: bool = True
    fuse_activation: bool = True
    weights: Literal["stream", "resident"] = "stream"
    overlap: bool = False
    memory_policy: Literal["liveness", "paper"] = "liveness"
    # SPEC "Efficiency and overhead": fraction of the unit's peak by op label (a number, or for a matrix
    # op a table by the smallest dimension of its matrix product), and seconds per kernel by label
    efficiency: dict[str, float | GroupedConv | dict[int, float] | dict[int, dict[int, float]]] = Field(
        default_factory=dict)
    kernel_overhead: dict[str, float] = Field(default_factory=dict)
    # a further factor on the efficiency of a row whose working set does not fit in SRAM (tiles > 1)
    tiled_efficiency: dict[str, float] = Field(default_factory=dict)
    # seconds per byte of each output a row that does not fit in SRAM writes (its main kernel's, and an
    # unfolded BN's): a host's first touch of freshly allocated pages (docs/hardware.md)
    first_touch: float = 0.0
    # by op label, the block of output positions a matrix kernel computes at once: a row of M positions
    # costs ceil(M / block) x block of them (oneDNN's 1x1 convs run 7x7 maps as 8x8, docs/hardware.md)
    row_block: dict[str, int] = Field(default_factory=dict)
    calibration: Calibration | None = None
    # docs/systolic.md: a systolic matrix unit instead of matrix_flops, and energy per access
    array_rows: int | None = None
    array_cols: int | None = None
    array_clock: float | None = None
    dataflow: Literal["os", "ws", "is"] | None = None
    energy_per_mac: float = 0.0
    energy_per_sram_byte: float = 0.0
    energy_per_dram_byte: float = 0.0

    @field_validator("sram_bytes", mode="before")
    @classmethod
    def _sram(cls, v: Any) -> int:
        b = _quantity_in_range("sram_bytes", v)
        if not float(b).is_integer():
            raise ValueError(f"must be a whole number of bytes, got {b}")
        return int(b)

    @field_validator("dram_bandwidth", "dram_latency", "matrix_flops", "vector_flops", "array_clock",
                     *ENERGY_FIELDS, mode="before")
    @classmethod
    def _rate(cls, v: Any, info) -> float | None:
        if v is None and info.field_name in ("matrix_flops", "array_clock"):
            return None  # one of the two ways to give the matrix unit
        return _quantity_in_range(info.field_name, v)

    @field_validator("activation_bits", "weight_bits", "bias_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> int:
        return _whole(v, "bits", *BITS_RANGE, unit=" bits")

    @field_validator("array_rows", "array_cols", mode="before")
    @classmethod
    def _side(cls, v: Any) -> int | None:
        return None if v is None else _whole(v, "processing elements", *ARRAY_SIDE_RANGE)

    @model_validator(mode="after")
    def _matrix_unit(self) -> "HardwareProfile":
        """Either ``matrix_flops`` or a whole systolic array (all of ARRAY_FIELDS), whose peak it then is."""
        given = [f for f in ARRAY_FIELDS if getattr(self, f) is not None]
        if not given:
            if self.matrix_flops is None:
                raise ValueError("give matrix_flops, or a systolic array (array_rows, array_cols, array_clock, "
                                 "dataflow)")
            return self
        if len(given) < len(ARRAY_FIELDS):
            missing = ", ".join(f for f in ARRAY_FIELDS if f not in given)
            raise ValueError(f"a systolic array needs {', '.join(ARRAY_FIELDS)}; missing {missing}")
        peak = 2.0 * self.array_rows * self.array_cols * self.array_clock
        if self.matrix_flops is not None and self.matrix_flops != peak:
            raise ValueError("give matrix_flops or a systolic array (array_rows, ...), not both: "
                             "the array's peak is 2 * array_rows * array_cols * array_clock")
        lo, hi, text = LIMITS["matrix_flops"]
        if not lo <= peak <= hi:
            raise ValueError(f"the array's peak 2 * rows * cols * clock must be between {text}")
        self.__dict__["matrix_flops"] = peak  # frozen: set once, while validating
        return self

    @property
    def systolic(self) -> bool:
        """The matrix unit is a systolic array (docs/systolic.md)."""
        return self.array_rows is not None

    @field_validator("efficiency", mode="before")
    @classmethod
    def _efficiency(cls, v: Any) -> dict[str, Any]:
        return _by_label(v, "op labels (conv_dw, linear, relu, ...) to fractions of peak", _efficiency_entry)

    @field_validator("tiled_efficiency", mode="before")
    @classmethod
    def _tiled(cls, v: Any) -> dict[str, float]:
        return _by_label(v, "op labels to fractions (0, 1]", lambda label, x: _fraction(x, label))

    @field_validator("row_block", mode="before")
    @classmethod
    def _row_block(cls, v: Any) -> dict[str, int]:
        def block(label: str, x: Any) -> int:
            if label not in MATRIX_LABELS:
                raise ValueError(f"{label}: a row block is for matrix ops ({', '.join(sorted(MATRIX_LABELS))})")
            try:
                return _whole(x, "output positions", 1, MAX_ROW_BLOCK)
            except ValueError as e:
                raise ValueError(f"{label}: {e}") from None
        return _by_label(v, "op labels of matrix ops to output positions per block, e.g. {conv_pw: 16}", block)

    @field_validator("first_touch", mode="before")
    @classmethod
    def _first_touch(cls, v: Any) -> float:
        if isinstance(v, str) and len(v) <= 40:  # YAML reads 1e-10 (no dot) as text
            try:
                v = float(v.strip())
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_FIRST_TOUCH:
            raise ValueError(f"must be seconds per byte, between 0 and {MAX_FIRST_TOUCH:g}")
        return float(v)

    @field_validator("kernel_overhead", mode="before")
    @classmethod
    def _overhead(cls, v: Any) -> dict[str, float]:
        return _by_label(v, "op labels (or 'default') to seconds per kernel, e.g. {conv_dw: 120us}", _seconds,
                         also=("default",))

    def __hash__(self) -> int:  # frozen, but its tables are dicts: hash the canonical dump
        return hash(self.model_dump_json())

    def resolved(self) -> dict[str, Any]:
        """Every field with its value in base units (what summary.json records)."""
        return self.model_dump()


def _quantity_in_range(field: str, v: Any) -> float:
    """A quantity field parsed into base units and held to ``LIMITS``."""
    x = parse_quantity(v, _QUANTITY_FIELDS[field], field=field)
    lo, hi, text = LIMITS[field] if field in LIMITS else ARRAY_LIMITS[field]
    if lo > 0 and x <= 0:
        raise ValueError("must be positive")
    if x < 0:
        raise ValueError("must not be negative")
    if not lo <= x <= hi:
        raise ValueError(f"must be between {text}")
    return x


def _shipped_dir():
    return resources.files("perfsim.hardware_profiles")


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def _key(origin: Any) -> str:
    """One spelling per file, so that an ``extends`` cycle is seen however its paths are written."""
    return str(origin.resolve()) if isinstance(origin, Path) else str(origin)


def _cut(text: object, limit: int = 200) -> str:
    """One line of at most about ``limit`` characters (for messages that echo text from a file)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------
# Reading YAML that may be hostile
# --------------------------------------------------------------------------


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a profile may not use: an alias, deep nesting, a duplicate or non-text key."""


class _ProfileLoader(yaml.SafeLoader):
    """PyYAML's safe loader for untrusted profiles.

    Refuses anchors and aliases outright (an alias bomb of a few hundred bytes expands to
    gigabytes; a profile has no use for them), nesting deeper than ``MAX_NESTING`` (the
    composer recurses), mapping keys that are not text, duplicate keys (PyYAML keeps the
    last silently) and integer literals longer than ``MAX_INT_CHARS`` characters.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem="YAML anchors and aliases (& and *) are not allowed in a profile",
                           problem_mark=event.start_mark)
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested:
            self._depth += 1
            if self._depth > MAX_NESTING:
                raise _Refused(problem=f"nested more than {MAX_NESTING} levels deep", problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                what = shown(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise _Refused(problem=f"keys must be field names (text), got {what}",
                               problem_mark=key_node.start_mark)
            if key_node.value in keys:
                raise _Refused(problem=f"duplicate key {shown(key_node.value)}", problem_mark=key_node.start_mark)
            keys.add(key_node.value)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INT_CHARS:
            raise _Refused(problem=f"a number of {len(node.value)} characters is not a sensible value",
                           problem_mark=node.start_mark)
        return super().construct_yaml_int(node)


_ProfileLoader.add_constructor("tag:yaml.org,2002:int", _ProfileLoader.construct_yaml_int)


def _line(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def _load_yaml(text: str, label: str) -> Any:
    """Parse one profile document with the hardened loader; every failure is an InputError."""
    try:
        return yaml.load(text, Loader=_ProfileLoader)  # a SafeLoader subclass: no arbitrary objects
    except _Refused as e:
        raise InputError(f"{label}: {e.problem}{_line(e)}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{label}: malformed YAML{_line(e)}: {_cut(getattr(e, 'problem', None) or e)}") from None
    except (ValueError, OverflowError) as e:  # a constructor's own check, e.g. the date 2001-02-30
        raise InputError(f"{label}: malformed YAML: {_cut(e)}") from None


def _is_file(p: Any) -> bool:
    """``p.is_file()``, false for names the OS refuses (too long, NUL bytes) instead of raising."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def _read_text(p: Any, name: str) -> str:
    """The file's text, reading at most MAX_PROFILE_BYTES (+1 to see that it is longer)."""
    try:
        data = read_bounded(p, MAX_PROFILE_BYTES)
    except TooLarge:
        raise InputError(f"profile {shown(name)}: {_cut(p)} is larger than {MAX_PROFILE_BYTES // 1024} KiB; "
                         "a profile is a few lines of YAML (a calibrated one, its measurements)") from None
    except OSError as e:
        raise InputError(f"profile {shown(name)}: cannot read {_cut(p)}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"profile {shown(name)}: cannot read {_cut(p)}: not UTF-8 text") from None


def _chain(keys: tuple[str, ...]) -> str:
    return " -> ".join(Path(k).name for k in keys)


def _known() -> str:
    names = list_profiles()
    more = f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else ""
    return ", ".join(_cut(n, 60) for n in names[:MAX_LISTED]) + more


def _find(name: str, relative_to: Path | None = None, seen: tuple[str, ...] = ()) -> tuple[str, Any]:
    """Return (text, origin) of the named profile; origin is a Path or a resource.

    A local ``./hardware_profiles/NAME.yaml`` that ``extends: NAME`` means the shipped
    profile of that name (it refines it), not itself; without a shipped one it is a cycle.
    """
    if _looks_like_path(name):
        try:
            p = Path(name).expanduser()
        except RuntimeError:  # ~someone with no home folder: the name as written
            p = Path(name)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        if not _is_file(p):
            raise InputError(f"profile file not found: {_cut(name)}")
        return _read_text(p, name), p
    local = Path.cwd() / "hardware_profiles" / f"{name}.yaml"
    local_found = _is_file(local)
    if local_found and _key(local) not in seen:
        return _read_text(local, name), local
    shipped = _shipped_dir() / f"{name}.yaml"
    if _is_file(shipped):
        return _read_text(shipped, name), shipped
    if local_found:
        raise InputError(f"profile {shown(name)}: 'extends' cycle: {_chain(seen + (_key(local),))}")
    raise InputError(f"unknown profile {shown(name)}; known profiles: {_known()}")


def _read(name: str, relative_to: Path | None, seen: tuple[str, ...]) -> dict[str, Any]:
    if len(seen) >= MAX_EXTENDS:
        raise InputError(f"profile {shown(name)}: 'extends' chain longer than {MAX_EXTENDS} profiles "
                         f"({_chain(seen[:3])} -> ...)")
    text, origin = _find(name, relative_to, seen)
    key = _key(origin)
    if key in seen:
        raise InputError(f"profile {shown(name)}: 'extends' cycle: {_chain(seen + (key,))}")
    data = _load_yaml(text, f"profile {shown(name)}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"profile {shown(name)}: expected a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", Path(str(origin)).stem if isinstance(origin, Path) else Path(origin.name).stem)
    data = layer_over({}, data, f"profile {shown(name)}")  # one file gives one kind of matrix unit
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if isinstance(parent, bool) or not isinstance(parent, (str, int)) or not str(parent).strip():
        raise InputError(f"profile {shown(name)}: 'extends' must name one profile, got {shown(parent)}")
    base_dir = origin.parent if isinstance(origin, Path) else None
    merged = _read(str(parent), base_dir, seen + (key,))
    merged.pop("description", None)
    return layer_over(merged, data, f"profile {shown(name)}")


def parse_override(item: str) -> tuple[str, Any]:
    """``field=value`` from the command line; the value is read as YAML (true, 8, 256KiB).

    Text that is not YAML is taken as written; YAML a profile may not use (an alias, a
    duplicate key, deep nesting) is refused.
    """
    if "=" not in item:
        raise InputError(f"--set expects field=value, got {shown(item)}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not raw.strip():
        return key, ""
    try:
        value = yaml.load(raw, Loader=_ProfileLoader)  # a SafeLoader subclass: no arbitrary objects
    except _Refused as e:
        raise InputError(f"--set {_cut(key, 60)}: {e.problem}") from None
    except (yaml.YAMLError, ValueError, OverflowError):
        value = raw
    return key, value


def layer_over(base: Mapping[str, Any], top: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``top``'s fields over ``base``'s. A matrix unit given in ``top`` (``matrix_flops``, or a systolic
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


def build_profile(data: Mapping[str, Any], label: str = "profile") -> HardwareProfile:
    data = dict(data)
    reserved = [k for k in data if k in RESERVED_FIELDS]
    if reserved:
        raise InputError(
            f"{label}: field {shown(reserved[0])} is reserved for a later version of perfsim "
            "and is not simulated yet"
        )
    try:
        return HardwareProfile(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _cut(".".join(str(p) for p in err["loc"]), 60) or "profile"
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if isinstance(given, (str, int, float)) and not isinstance(given, bool) and err["type"] != "extra_forbidden":
            msg += f" (got {shown(given)})"
        if err["type"] == "extra_forbidden":
            known = ", ".join(n for n in HardwareProfile.model_fields)
            msg = f"unknown field (known fields: {known})"
        raise InputError(f"{label}: {loc}: {msg}") from None
    except InputError as e:  # raised by parse_quantity inside a validator
        raise InputError(f"{label}: {e}") from None


def load_profile(name_or_path: str | HardwareProfile = "edge_1mb", **overrides: Any) -> HardwareProfile:
    """Load a profile by registry name or path and apply field overrides."""
    if isinstance(name_or_path, HardwareProfile):
        data = name_or_path.model_dump()
        if name_or_path.systolic:
            data.pop("matrix_flops")  # derived from the array
    else:
        data = _read(str(name_or_path), None, ())
    label = f"profile {shown(data.get('name', name_or_path))}"
    if overrides:
        data = layer_over(data, overrides, label)
    return build_profile(data, label)


def list_profiles() -> list[str]:
    """Names of the shipped profiles and of those in ./hardware_profiles/."""
    found = {p.name[:-5] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml")}
    local = Path.cwd() / "hardware_profiles"
    if local.is_dir():
        found |= {p.stem for p in local.glob("*.yaml")}
    return sorted(found)


def describe(profile: HardwareProfile) -> str:
    """One line: the numbers a person compares profiles by."""
    array = (f" ({profile.array_rows}x{profile.array_cols} {profile.dataflow} array at {profile.array_clock / 1e9:g} GHz)"
             if profile.systolic else "")
    return (f"SRAM {format_bytes(profile.sram_bytes)}, DRAM {profile.dram_bandwidth / 1e9:g} GB/s, "
            f"matrix {profile.matrix_flops / 1e12:g} TFLOPS{array}, vector {profile.vector_flops / 1e9:g} GFLOPS, "
            f"{profile.weights} weights, {'overlap' if profile.overlap else 'serial'}, {profile.memory_policy}")
