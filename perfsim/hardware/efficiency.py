"""Efficiency and overhead (SPEC "Efficiency and overhead"): how far below its unit's peak each op label
runs and what each kernel costs besides, as a profile states them (``KernelCosts``) and as ``perfsim
calibrate`` measures them. The models here turn those entries into numbers: a table read between its points
(``table_value``, ``log2_position``) and a grouped conv's model of its time (``GroupedConvModel``).

Labels are the report's op column (``conv_dw``, ``linear``, ``relu``...); a conv label's ``.strided`` entry
is for its rows with a stride above 1. docs/hardware.md says how each entry is measured and read.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from functools import lru_cache
from math import log2
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..units import parse_quantity, shown
from .parts import Part, fraction, whole

MAX_TABLE_ENTRIES = 64  # points of one efficiency table
MAX_FIRST_TOUCH = 1e-6  # s/B: 1 MB/s, far slower than any memory
MAX_ROW_BLOCK = 1024  # output positions a matrix kernel computes at once
MAX_TABLE_KEY = 2**31  # a matrix product's dimension
MAX_GROUPED_AXIS = 16  # points of a grouped-conv table's channel axis

CONV_LABELS = ("conv", "conv_pw", "conv_dw", "conv_group")
STRIDED = ".strided"  # a conv label's entry for its rows with a stride above 1 (sim.timing.label_key)
STRIDED_LABELS = tuple(c + STRIDED for c in CONV_LABELS)
MATRIX_LABELS = frozenset({*CONV_LABELS, "linear", "matmul", *STRIDED_LABELS, "conv_dw.view"})
# a label's entry for the rows whose main kernel runs another code path (``Layer.variant``): PyTorch's math
# attention runs a NaN-safe softmax, ~4.5x slower per element than softmax here; a depthwise conv on a
# token view copies its input first, 2-3x its time on a contiguous map (docs/hardware.md)
VIEW = ".view"
VARIANT_LABELS = ("softmax.safe", "conv_dw" + VIEW)
# vector labels whose entry may be a table by the row an output reads whole (``Layer.row_length``): a
# softmax over rows of 49 runs at half the rate of one over rows of 256 (docs/hardware.md)
ROW_LABELS = frozenset({"softmax", "softmax.safe", "layernorm", "groupnorm"})


def _labels() -> frozenset[str]:
    from ..ir.graph import OpKind
    return frozenset({k.value for k in OpKind} | set(CONV_LABELS) | set(STRIDED_LABELS) | set(VARIANT_LABELS))


# --------------------------------------------------------------------------
# Reading a table: linear in log2 between its points, held beyond its ends
# --------------------------------------------------------------------------


def log2_position(axis: Sequence[int], x: float) -> tuple[int, float]:
    """Where ``x`` falls on an ascending axis, linearly in log2: ``(i, w)`` with the value
    ``(1 - w) * at(axis[i]) + w * at(axis[i + 1])``; ``(0, 0.0)`` at or below the first point,
    ``(len - 2, 1.0)`` at or above the last."""
    if x <= axis[0]:
        return 0, 0.0
    if x >= axis[-1]:
        return len(axis) - 2, 1.0
    i = bisect_left(axis, x) - 1
    lo, hi = axis[i], axis[i + 1]
    return i, (log2(x) - log2(lo)) / (log2(hi) - log2(lo))


def table_value(table: Mapping[int, Any], x: int, m: int = 1) -> float:
    """A table's value at ``x`` (``log2_position``). A table of tables (by the smallest dimension, then by
    M) is read at ``m`` inside, then between its rows."""
    keys = list(table)

    def at(key: int) -> float:
        v = table[key]
        return table_value(v, m) if isinstance(v, Mapping) else v

    if x <= keys[0]:
        return at(keys[0])
    if x >= keys[-1]:
        return at(keys[-1])
    i, w = log2_position(keys, x)
    lo, hi = keys[i], keys[i + 1]
    return at(lo) + w * (at(hi) - at(lo))


def _bilinear(axis: Sequence[int], tables: Sequence[Sequence[Sequence[float]]], x: int, y: int) -> list[float]:
    """Each table at (x, y), linear in log2 of both between the axis's points, held beyond its ends."""
    (i, fx), (j, fy) = log2_position(axis, max(x, 1)), log2_position(axis, max(y, 1))
    return [(1 - fx) * (1 - fy) * t[i][j] + fx * (1 - fy) * t[i + 1][j] + (1 - fx) * fy * t[i][j + 1]
            + fx * fy * t[i + 1][j + 1] for t in tables]


# --------------------------------------------------------------------------
# A grouped conv's model of its time
# --------------------------------------------------------------------------


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


class GroupedConvModel(BaseModel):
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


# --------------------------------------------------------------------------
# Entries by op label, as a profile writes them
# --------------------------------------------------------------------------

Entry = float | GroupedConvModel | dict[int, float] | dict[int, dict[int, float]]


def _table_key(label: str, k: Any) -> int:
    key = int(k) if isinstance(k, str) and k.strip().isdecimal() and len(k) < 12 else k
    if isinstance(key, bool) or not isinstance(key, int) or not 1 <= key <= MAX_TABLE_KEY:
        raise ValueError(f"{label}: table keys are matrix dimensions (whole numbers >= 1), got {shown(k)}")
    return key


def _efficiency_table(label: str, v: Any, inner: bool = False) -> dict[int, Any]:
    """A table by the smallest matrix dimension (its values fractions, or one level of tables by M), or for
    a row label (``ROW_LABELS``) by the row's length."""
    if label not in MATRIX_LABELS and label not in ROW_LABELS:
        raise ValueError(f"{label}: a table is only for matrix ops ({', '.join(sorted(MATRIX_LABELS))}), by "
                         f"matrix dimension, or by row length for {', '.join(sorted(ROW_LABELS))}")
    if label in ROW_LABELS:
        inner = True  # one level: by row length
    if not v or len(v) > MAX_TABLE_ENTRIES:
        raise ValueError(f"{label}: a table needs 1 to {MAX_TABLE_ENTRIES} points")
    out: dict[int, Any] = {}
    for k, x in v.items():
        key = _table_key(label, k)
        if isinstance(x, Mapping) and not inner:
            out[key] = _efficiency_table(label, x, inner=True)
        else:
            out[key] = fraction(x, f"{label}[{key}]")
    if len({isinstance(x, dict) for x in out.values()}) > 1:
        raise ValueError(f"{label}: a table's values are all fractions or all tables by M")
    return dict(sorted(out.items()))


def _grouped(label: str, x: Any) -> GroupedConvModel:
    if label != "conv_group":
        raise ValueError(f"{label}: a grouped-conv model is only for conv_group")
    if isinstance(x, GroupedConvModel):
        return x
    try:
        return GroupedConvModel.model_validate(x)
    except ValueError as e:
        errors = getattr(e, "errors", None)
        first = errors()[0] if callable(errors) else None
        where = ".".join(str(p) for p in first["loc"]) if first else ""
        raise ValueError(f"{label}: {where + ': ' if where else ''}{first['msg'] if first else e}") from None


def efficiency_entry(label: str, x: Any) -> Any:
    """A fraction; for a matrix op a table by the smallest dimension (of tables by M); for conv_group a
    model of its time, ``{flops, scale, kernels}`` (``GroupedConvModel``)."""
    if isinstance(x, GroupedConvModel) or (isinstance(x, Mapping) and "kernels" in x):
        return _grouped(label, x)
    return _efficiency_table(label, x) if isinstance(x, Mapping) else fraction(x, label)


def by_label(v: Any, what: str, convert: Callable[[str, Any], Any], also: tuple[str, ...] = ()) -> dict[str, Any]:
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


class KernelCosts(Part):
    """Per op label: the fraction of its unit's peak a kernel reaches (``efficiency``), seconds per kernel
    (``overhead``, the profile's ``kernel_overhead``; ``default`` for the others), a further factor when a
    row does not fit in SRAM (``tiled_efficiency``), seconds per byte of a fresh output beyond SRAM
    (``first_touch``) and the block of output positions a matrix kernel computes at once (``row_block``).
    Empty: SPEC's times bit for bit."""

    efficiency: dict[str, Entry] = Field(default_factory=dict)
    overhead: dict[str, float] = Field(default_factory=dict)
    tiled_efficiency: dict[str, float] = Field(default_factory=dict)
    first_touch: float = 0.0
    row_block: dict[str, int] = Field(default_factory=dict)

    @field_validator("efficiency", mode="before")
    @classmethod
    def _efficiency(cls, v: Any) -> dict[str, Any]:
        return by_label(v, "op labels (conv_dw, linear, relu, ...) to fractions of peak", efficiency_entry)

    @field_validator("overhead", mode="before")
    @classmethod
    def _overhead(cls, v: Any) -> dict[str, float]:
        return by_label(v, "op labels (or 'default') to seconds per kernel, e.g. {conv_dw: 120us}", _seconds,
                        also=("default",))

    @field_validator("tiled_efficiency", mode="before")
    @classmethod
    def _tiled(cls, v: Any) -> dict[str, float]:
        return by_label(v, "op labels to fractions (0, 1]", lambda label, x: fraction(x, label))

    @field_validator("row_block", mode="before")
    @classmethod
    def _row_block(cls, v: Any) -> dict[str, int]:
        def block(label: str, x: Any) -> int:
            if label not in MATRIX_LABELS:
                raise ValueError(f"{label}: a row block is for matrix ops ({', '.join(sorted(MATRIX_LABELS))})")
            try:
                return whole(x, "output positions", 1, MAX_ROW_BLOCK)
            except ValueError as e:
                raise ValueError(f"{label}: {e}") from None
        return by_label(v, "op labels of matrix ops to output positions per block, e.g. {conv_pw: 16}", block)

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
