"""Reading hardware profiles: YAML files that may come from anywhere, ``extends`` chains, ``--set`` overrides.

A profile is a YAML file in ``hardware_profiles/``. Lookup order for a name:
``./hardware_profiles/NAME.yaml`` in the working directory, then the profiles
shipped with perfsim. A path (anything ending in .yaml/.yml or containing a
path separator) is read as given. ``extends: other`` inherits another profile's
fields; ``overrides`` (``--set field=value``) apply last.

Profiles are read defensively: at most ``MAX_PROFILE_BYTES``, no YAML anchors or
aliases, nesting at most ``MAX_NESTING`` deep, string keys only, no duplicate keys,
``extends`` chains at most ``MAX_EXTENDS`` long, and every number in a physically
sensible range (``perfsim.hardware.parts.LIMITS``), so everything computed from a
profile is finite. docs/model.md lists the bounds. Every failure is one ``InputError``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from ..errors import InputError
from ..files import TooLarge, read_bounded
from ..units import shown
from .description import FIELDS, HardwareProfile, UnknownField, field_of, layer_over

MAX_PROFILE_BYTES = 256 * 1024  # a profile is a dozen lines; a calibrated one carries ~200 measurements
MAX_NESTING = 10  # mappings/sequences inside each other (a calibrated one needs 9: its grouped-conv tables)
MAX_EXTENDS = 16  # profiles in one extends chain
MAX_INT_CHARS = 64  # a YAML integer literal longer than this is refused before it is converted
MAX_LISTED = 20  # known profiles named in an "unknown profile" message


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


def build_profile(data: Mapping[str, Any], label: str = "profile") -> HardwareProfile:
    """A profile from SPEC's flat fields; any problem is one ``InputError`` naming the field."""
    try:
        return HardwareProfile.from_fields(data)
    except UnknownField as e:
        raise InputError(f"{label}: {_cut(e.field, 60)}: unknown field (known fields: {', '.join(FIELDS)})") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = _cut(field_of(err["loc"]), 60) or "profile"
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if isinstance(given, (str, int, float)) and not isinstance(given, bool) and err["type"] != "extra_forbidden":
            msg += f" (got {shown(given)})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise InputError(f"{label}: {loc}: {msg}") from None
    except InputError as e:  # raised by parse_quantity inside a validator
        raise InputError(f"{label}: {e}") from None
    except ValueError as e:  # a rule across fields (a partial systolic array)
        raise InputError(f"{label}: profile: {e}") from None


def load_profile(name_or_path: str | HardwareProfile = "edge_1mb", **overrides: Any) -> HardwareProfile:
    """Load a profile by registry name or path and apply field overrides (SPEC's flat fields)."""
    if isinstance(name_or_path, HardwareProfile):
        data = name_or_path.resolved()
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
