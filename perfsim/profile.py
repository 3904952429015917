"""Hardware profiles: validated, frozen, unit-bearing configuration.

A profile is a YAML file in ``hardware_profiles/``. Lookup order for a name:
``./hardware_profiles/NAME.yaml`` in the working directory, then the profiles
shipped with perfsim. A path (anything ending in .yaml/.yml or containing a
path separator) is read as given. ``extends: other`` inherits another profile's
fields; ``overrides`` (``--set field=value``) apply last.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import InputError
from .units import parse_quantity

# Fields SPEC.md reserves for later issues: known names, not yet simulated.
RESERVED_FIELDS = (
    "array_rows", "array_cols", "array_clock", "dataflow",
    "energy_per_mac", "energy_per_sram_byte", "energy_per_dram_byte",
    "efficiency", "calibration",
)

_QUANTITY_FIELDS = {
    "sram_bytes": "bytes",
    "dram_bandwidth": "bytes_per_s",
    "dram_latency": "seconds",
    "matrix_flops": "flops",
    "vector_flops": "flops",
}


class HardwareProfile(BaseModel):
    """One accelerator. Values are in base units (bytes, B/s, s, FLOP/s) once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    sram_bytes: int
    dram_bandwidth: float
    dram_latency: float = 0.0
    matrix_flops: float
    vector_flops: float
    activation_bits: int = 8
    weight_bits: int = 8
    bias_bits: int = 32
    fold_batchnorm: bool = True
    fuse_activation: bool = True
    weights: Literal["stream", "resident"] = "stream"
    overlap: bool = False
    memory_policy: Literal["liveness", "paper"] = "liveness"

    @field_validator("sram_bytes", mode="before")
    @classmethod
    def _sram(cls, v: Any) -> int:
        b = parse_quantity(v, "bytes", field="sram_bytes")
        if b <= 0:
            raise ValueError("must be positive")
        if not float(b).is_integer():
            raise ValueError(f"must be a whole number of bytes, got {b}")
        return int(b)

    @field_validator("dram_bandwidth", "matrix_flops", "vector_flops", mode="before")
    @classmethod
    def _positive_rate(cls, v: Any, info) -> float:
        x = parse_quantity(v, _QUANTITY_FIELDS[info.field_name], field=info.field_name)
        if x <= 0:
            raise ValueError("must be positive")
        return x

    @field_validator("dram_latency", mode="before")
    @classmethod
    def _latency(cls, v: Any) -> float:
        x = parse_quantity(v, "seconds", field="dram_latency")
        if x < 0:
            raise ValueError("must not be negative")
        return x

    @field_validator("activation_bits", "weight_bits", "bias_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, str) and v.strip().isdigit()):
            raise ValueError("must be a whole number of bits")
        v = int(v)
        if not 1 <= v <= 64:
            raise ValueError("must be between 1 and 64 bits")
        return v

    def resolved(self) -> dict[str, Any]:
        """Every field with its value in base units (what summary.json records)."""
        return self.model_dump()


def _shipped_dir():
    return resources.files("perfsim.hardware_profiles")


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def _key(origin: Any) -> str:
    """One spelling per file, so that an ``extends`` cycle is seen however its paths are written."""
    return str(origin.resolve()) if isinstance(origin, Path) else str(origin)


def _read_text(p: Any, name: str) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"profile {name!r}: cannot read {p}: {getattr(e, 'strerror', None) or e}") from None


def _find(name: str, relative_to: Path | None = None, seen: tuple[str, ...] = ()) -> tuple[str, Any]:
    """Return (text, origin) of the named profile; origin is a Path or a resource.

    A local ``./hardware_profiles/NAME.yaml`` that ``extends: NAME`` means the shipped
    profile of that name (it refines it), not itself.
    """
    if _looks_like_path(name):
        p = Path(name).expanduser()
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        if not p.is_file():
            raise InputError(f"profile file not found: {name}")
        return _read_text(p, name), p
    local = Path.cwd() / "hardware_profiles" / f"{name}.yaml"
    if local.is_file() and _key(local) not in seen:
        return _read_text(local, name), local
    shipped = _shipped_dir() / f"{name}.yaml"
    if shipped.is_file():
        return _read_text(shipped, name), shipped
    raise InputError(f"unknown profile {name!r}; known profiles: {', '.join(list_profiles())}")


def _read(name: str, relative_to: Path | None, seen: tuple[str, ...]) -> dict[str, Any]:
    text, origin = _find(name, relative_to, seen)
    key = _key(origin)
    if key in seen:
        raise InputError(f"profile {name!r}: 'extends' cycle: {' -> '.join(seen + (key,))}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"profile {name!r}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"profile {name!r}: expected a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", Path(str(origin)).stem if isinstance(origin, Path) else Path(origin.name).stem)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if isinstance(parent, bool) or not isinstance(parent, (str, int)) or not str(parent).strip():
        raise InputError(f"profile {name!r}: 'extends' must name one profile, got {parent!r}")
    base_dir = origin.parent if isinstance(origin, Path) else None
    merged = _read(str(parent), base_dir, seen + (key,))
    merged.pop("description", None)
    merged.update(data)
    return merged


def parse_override(item: str) -> tuple[str, Any]:
    """``field=value`` from the command line; the value is read as YAML (true, 8, 256KiB)."""
    if "=" not in item:
        raise InputError(f"--set expects field=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def build_profile(data: Mapping[str, Any], label: str = "profile") -> HardwareProfile:
    data = dict(data)
    reserved = [k for k in data if k in RESERVED_FIELDS]
    if reserved:
        raise InputError(
            f"{label}: field {reserved[0]!r} is reserved for a later version of perfsim "
            "and is not simulated yet"
        )
    try:
        return HardwareProfile(**data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "profile"
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if isinstance(given, (str, int, float)) and not isinstance(given, bool) and err["type"] != "extra_forbidden":
            msg += f" (got {given!r})"
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
    else:
        data = _read(str(name_or_path), None, ())
    if overrides:
        data.update(overrides)
    label = f"profile {data.get('name', name_or_path)!r}"
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
    from .units import format_bytes
    return (f"SRAM {format_bytes(profile.sram_bytes)}, DRAM {profile.dram_bandwidth / 1e9:g} GB/s, "
            f"matrix {profile.matrix_flops / 1e12:g} TFLOPS, vector {profile.vector_flops / 1e9:g} GFLOPS, "
            f"{profile.weights} weights, {'overlap' if profile.overlap else 'serial'}, {profile.memory_policy}")
