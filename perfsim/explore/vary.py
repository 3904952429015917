"""``--vary FIELD=SPEC``: a sweep's axes, from the command line's grammar to checked values in base units.

``START..END:xFACTOR`` (geometric), ``START..END:+STEP`` (linear), ``START..END:nCOUNT`` (log-spaced) or a
list ``a,b,c``, with the units profiles use; any flat profile field but the name and description. Every
value is checked against the profile's own rules on the base profile (one line naming the field).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..sim.batch import Axis
from ..units import parse_quantity, shown

if TYPE_CHECKING:
    from ..hardware.description import HardwareProfile


FIXED_FIELDS = ("name", "description")  # never swept
MAX_POINTS = 5_000_000  # a grid larger than this is refused before it is built


def _field_kind(field: str) -> str:
    """How a field's values are read: a quantity kind, 'int', 'bool' or 'text'."""
    from ..hardware.description import field_type
    from ..hardware.parts import QUANTITY_FIELDS
    if field in QUANTITY_FIELDS:
        return QUANTITY_FIELDS[field]
    return {int: "int", bool: "bool", float: "float"}.get(field_type(field), "text")


def _known_fields() -> list[str]:
    from ..hardware.description import FIELDS
    return [f for f in FIELDS if f not in FIXED_FIELDS]


def _value(text: str, field: str, kind: str) -> Any:
    """One value as written on the command line, in base units."""
    text = text.strip()
    if not text:
        raise InputError(f"--vary {field}: an empty value")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise InputError(f"--vary {field}: {shown(text)} is not a whole number") from None
    if kind == "float":
        return _float(text, field)
    if kind in ("bool", "text"):
        from ..hardware.loader import parse_override
        return parse_override(f"{field}={text}")[1]
    return parse_quantity(text, kind, field=f"--vary {field}")


def _float(text: str, field: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise InputError(f"--vary {field}: {shown(text)} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"--vary {field}: {shown(text)} is not finite")
    return x


def _count(field: str, n: float) -> int:
    if n > MAX_POINTS:
        raise InputError(f"--vary {field}: the range has more than {MAX_POINTS:,} values")
    return int(n)


def _range(field: str, kind: str, lo_text: str, hi_text: str, step_text: str) -> list[Any]:
    """lo..hi:xF (geometric, factor F > 1), lo..hi:+S (linear, step S > 0), lo..hi:nN (N log-spaced)."""
    if kind in ("bool", "text"):
        raise InputError(f"--vary {field}: a range needs a numeric field; list the values (a,b)")
    lo, hi = _value(lo_text, field, kind), _value(hi_text, field, kind)
    if hi < lo:
        raise InputError(f"--vary {field}: empty range {lo_text.strip()}..{hi_text.strip()} (the end is below the start)")
    build = {"x": _geometric, "+": _linear, "n": _spaced}.get(step_text[:1])
    if build is None:
        raise InputError(f"--vary {field}: after ':' write xFACTOR, +STEP or nCOUNT, got {shown(step_text)}")
    return build(field, kind, lo, hi, step_text[1:])


def _geometric(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    f = _float(arg, field)
    if not f > 1:
        raise InputError(f"--vary {field}: the factor after :x must be above 1, got {shown(arg)}")
    if lo <= 0:
        raise InputError(f"--vary {field}: a geometric range needs a positive start")
    n = _count(field, math.floor(math.log(hi / lo) / math.log(f) + 1e-9) + 1)
    return [lo * f ** k for k in range(n)]


def _linear(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    step = _value(arg, field, kind)
    if not step > 0:
        raise InputError(f"--vary {field}: the step after :+ must be positive, got {shown(arg)}")
    n = _count(field, math.floor((hi - lo) / step + 1e-9) + 1)
    return [lo + k * step for k in range(n)]


def _spaced(field: str, kind: str, lo: float, hi: float, arg: str) -> list[float]:
    n = _count(field, _int_arg(arg, field))
    if n == 1:
        return [lo]
    if lo <= 0:
        raise InputError(f"--vary {field}: log-spaced points (:n) need a positive start")
    values = [float(v) for v in np.geomspace(lo, hi, n)]
    values[0], values[-1] = lo, hi
    return values


def _int_arg(text: str, field: str) -> int:
    if not text.strip().isdecimal() or int(text) < 1:
        raise InputError(f"--vary {field}: the count after :n must be a positive whole number, got {shown(text)}")
    return int(text)


def _whole(field: str, kind: str, values: list[Any]) -> list[Any]:
    """Byte counts and bits are whole numbers: ranges are rounded to them, repeats dropped (order kept)."""
    if kind in ("bytes", "int"):
        values = [int(round(v)) for v in values]
    return list(dict.fromkeys(values))


def parse_vary(spec: str, base: HardwareProfile) -> Axis:
    """``FIELD=SPEC`` -> an ``Axis``; every value is checked against the profile's rules (LIMITS)."""
    if "=" not in spec:
        raise InputError(f"--vary expects FIELD=VALUES, got {shown(spec)}")
    field, text = (s.strip() for s in spec.split("=", 1))
    known = _known_fields()
    if field not in known:
        raise InputError(f"--vary: unknown profile field {shown(field)} (fields: {', '.join(known)})")
    kind = _field_kind(field)
    if ".." in text:
        lo_text, rest = text.split("..", 1)
        hi_text, sep, step_text = rest.rpartition(":")
        if not sep:
            raise InputError(f"--vary {field}: a range is START..END:xFACTOR, :+STEP or :nCOUNT, got {shown(text)}")
        values = _range(field, kind, lo_text, hi_text, step_text.strip())
        is_range = True
    else:
        is_range = False
        values = [_value(v, field, kind) for v in text.split(",")]
    values = _whole(field, kind, values)
    if not values:
        raise InputError(f"--vary {field}: no values")
    _check_values(field, values, base, is_range=is_range)
    return Axis(field=field, values=tuple(values), spec=spec)


def _check_values(field: str, values: Sequence[Any], base: HardwareProfile, *, is_range: bool) -> None:
    """Values on the base profile: the profile's own validation (LIMITS), one line naming the field.
    A range is an interval, so its least and greatest values stand for all of it."""
    from ..hardware.loader import load_profile
    for v in (min(values), max(values)) if is_range else values:
        try:
            load_profile(base, **{field: v})
        except InputError as e:
            raise InputError(f"--vary {field}: {e}") from None


def check_grid(axes: Sequence[Axis]) -> int:
    """The number of points; refuses repeated fields, a peak varied with an array (one replaces the
    other) and grids over ``MAX_POINTS``."""
    from ..hardware.description import ARRAY_FIELDS
    seen = set()
    for a in axes:
        if a.field in seen:
            raise InputError(f"--vary {a.field}: given twice")
        seen.add(a.field)
    array = sorted(seen & set(ARRAY_FIELDS))
    if "matrix_flops" in seen and array:
        raise InputError(f"--vary: matrix_flops and {array[0]} cannot vary together (a matrix_flops replaces the "
                         "systolic array; vary one)")
    n = math.prod(len(a.values) for a in axes)
    if n > MAX_POINTS:
        raise InputError(f"--vary: the grid has {n:,} points, more than {MAX_POINTS:,}")
    return n


def grid_index(axes: Sequence[Axis]) -> np.ndarray:
    """[points, axes] indices into each axis's values, the first axis varying slowest."""
    shape = tuple(len(a.values) for a in axes)
    if not shape:
        return np.zeros((1, 0), dtype=np.int64)
    return np.indices(shape).reshape(len(shape), -1).T.astype(np.int64)


def points_of(axes: Sequence[Axis]) -> Callable[[int], dict[str, Any]]:
    """Point number -> its varied fields (for messages)."""
    shape = tuple(len(a.values) for a in axes)

    def field_values(point: int) -> dict[str, Any]:
        idx = np.unravel_index(point, shape) if shape else ()
        return {a.field: a.values[i] for a, i in zip(axes, idx)}
    return field_values
