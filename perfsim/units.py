"""Quantities with units, as profiles write them: ``1MiB``, ``1GB/s``, ``1TFLOPS``, ``0.2pJ``.

Decimal prefixes (k, M, G, T, and m, u, n, p for small values) are powers of ten;
binary prefixes (Ki, Mi, Gi, Ti) are powers of two. A bare number is taken in
the field's base unit.
"""
from __future__ import annotations

import math
import re

from .errors import InputError

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
            "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

# base unit of each kind -> accepted spellings of it (after the prefix)
_UNITS = {
    "bytes": ("B", "byte", "bytes"),
    "bytes_per_s": ("B/s", "Bps"),
    "flops": ("FLOPS", "FLOP/s", "flops", "OPS", "ops"),
    "seconds": ("s", "sec"),
    "hertz": ("Hz",),
    "joules": ("J",),
}

_NUM = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_MAX_QUANTITY_CHARS = 200  # longer text is no quantity a person writes; refused before the regex
_PATTERN = re.compile(r"^\s*" + _NUM + r"\s*(Ki|Mi|Gi|Ti|[kKMGTPmuµnpf]?)\s*([A-Za-z/]*)\s*$")


def shown(value: object, limit: int = 60) -> str:
    """A user's value as an error message shows it: its repr, cut to about ``limit`` characters.

    Never builds the repr of a large value (a container is named by its type and length, a huge
    integer by its digit count), so a hostile input cannot make a message large or slow.
    """
    if isinstance(value, str):
        text = repr(value[: limit + 1])
        return text if len(value) <= limit else text[:limit] + "...'"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 3 * limit:  # str() of a huge int is slow (and refused past 4300 digits)
            return f"a {value.bit_length() * 30103 // 100000 + 1}-digit number"
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a value of type {type(value).__name__}"


def parse_quantity(value: object, kind: str, *, field: str = "value") -> float:
    """Parse ``value`` (a number or a string with units) into the base unit of ``kind``."""
    if isinstance(value, bool):
        raise InputError(f"{field}: expected a quantity in {kind}, got {shown(value)}")
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # an int past 1.8e308
            raise InputError(f"{field}: {shown(value)} is too large") from None
    elif isinstance(value, str):
        out = _parse_text(value, kind, field)
    else:
        raise InputError(f"{field}: expected a quantity in {kind}, got {shown(value)}")
    if not math.isfinite(out):
        raise InputError(f"{field}: {shown(value)} is not finite")
    return out


def _parse_text(value: str, kind: str, field: str) -> float:
    m = _PATTERN.match(value) if len(value) <= _MAX_QUANTITY_CHARS else None
    if not m:
        raise InputError(f"{field}: cannot read {shown(value)} as a quantity in {kind}")
    number, prefix, unit = m.groups()
    accepted = _UNITS[kind]
    if prefix in _DECIMAL and prefix + unit in accepted:
        # the regex reads a unit's first letter as a prefix when it can ('1flops': femto + 'lops')
        prefix, unit = "", prefix + unit
    if unit == "" and prefix in ("", "Ki", "Mi", "Gi", "Ti") and kind == "bytes":
        unit = "B"  # '1Mi' alone is unusual but unambiguous for sizes
    if unit and unit not in accepted:
        # A prefix letter may have been read as the unit's first letter, e.g. 'ms' vs 'm'+'s'.
        raise InputError(
            f"{field}: unit {shown(unit)} in {shown(value)} is not a unit of {kind} "
            f"(expected {', '.join(accepted)})"
        )
    if not unit and prefix:
        raise InputError(f"{field}: {shown(value)} has a prefix but no unit (expected {accepted[0]})")
    scale = _BINARY.get(prefix) or _DECIMAL[prefix]
    return float(number) * scale


def format_bytes(n: float) -> str:
    """Human-readable size: binary prefixes, or decimal ones for round decimal sizes (1 MB)."""
    n = float(n)
    # decimal when the size is round in decimal but not in the binary unit of the same rank
    # (16 MB is 15625 KiB: still 16 MB; 1 MiB is never round in MB)
    for unit, scale, binary in (("GB", 10**9, 2**30), ("MB", 10**6, 2**20), ("kB", 10**3, 2**10)):
        if abs(n) >= scale and n % scale == 0 and n % binary != 0:
            return f"{n / scale:g} {unit}"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    s = float(s)
    if s == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(s) >= scale:
            return f"{s / scale:.3f} {unit}"
    return f"{s / 1e-12:.3f} ps"


def format_count(n: float) -> str:
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def time_scale(max_s: float) -> tuple[float, str]:
    """(factor, unit) that shows seconds up to ``max_s`` in s, ms, µs or ns (plot axes, tables)."""
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
        if max_s * scale >= 1:
            return scale, unit
    return 1e9, "ns"


def bytes_scale(max_b: float) -> tuple[float, str]:
    """(factor, unit) that shows bytes up to ``max_b`` in GiB, MiB, KiB or B."""
    for scale, unit in ((2.0**-30, "GiB"), (2.0**-20, "MiB"), (2.0**-10, "KiB")):
        if max_b * scale >= 1:
            return scale, unit
    return 1.0, "B"
