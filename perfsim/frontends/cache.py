"""Cache of lowered graphs (and of failed lowerings), so a repeated ``perfsim run`` skips torch.

Where: ``$PERFSIM_CACHE_DIR`` (``~`` expanded), else ``$XDG_CACHE_HOME/perfsim``, else
``~/.cache/perfsim``. One file per key, written atomically (a temporary file renamed over
the entry), so concurrent runs never leave a half-written entry: the last complete one wins.

Key (``key``): what the caller says identifies the model and its options, plus the installed
torch version, perfsim's version and a hash of every ``.py`` file of the perfsim package
(lowering included). Entry: a header line (the key, a manifest of source files with their
sha256, the graph's sha256 or the stored error) and the graph as one JSON line. The manifest
lists every source file outside the standard library, site-packages and perfsim itself that
the model's build imported (``record_imports``), so editing any of them is a miss.

A lookup that cannot read, parse or validate an entry (truncated, wrong types, unknown op
kind, a folder in its place, no permission, a changed or missing manifest file) is a miss:
the model is lowered again and the entry replaced. Nothing unvalidated is ever served.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Literal

from ..errors import DoesNotFitError, InputError, UnsupportedOpError
from ..files import sha256_file, sha256_text, write_atomic
from ..ir.graph import Graph

FORMAT = 2
MAX_ENTRY_BYTES = 512 * 2**20  # a larger file in the cache folder is not ours: a miss
_ERRORS: dict[str, type[InputError]] = {c.__name__: c for c in (InputError, UnsupportedOpError, DoesNotFitError)}
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the perfsim package (this module is in frontends/)
_PROGRAM = frozenset({"__main__", "__mp_main__"})  # the running program (torch aliases it), not a model's source


def cache_dir() -> Path:
    if os.environ.get("PERFSIM_CACHE_DIR"):
        return Path(os.environ["PERFSIM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "perfsim"


def installed_version(package: str) -> str | None:
    """A distribution's version from its metadata (no import), or None when absent."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def package_digest() -> str:
    """sha256 over every .py file of the perfsim package (path and bytes), lowering included."""
    h = hashlib.sha256()
    for f in sorted(_PACKAGE_DIR.rglob("*.py")):
        h.update(f.relative_to(_PACKAGE_DIR).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def key(**parts: Any) -> str:
    """The cache key of a model: the caller's parts plus the versions and the package hash."""
    from .._version import __version__
    payload = dict(parts, torch=installed_version("torch"), perfsim=__version__, package=package_digest())
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:40]


# --------------------------------------------------------------------------
# The manifest: the source files a build imported
# --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    roots.add(str(_PACKAGE_DIR))  # perfsim itself: covered by package_digest
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots if r))


def _user_file(module: ModuleType | None) -> Path | None:
    """The module's source file if it is the user's (not stdlib, site-packages or perfsim)."""
    f = getattr(module, "__file__", None)
    if not isinstance(f, str) or not os.path.isabs(f) or module.__name__ in _PROGRAM:
        return None
    real = os.path.realpath(f)
    parts = set(Path(real).parts)
    if real.startswith(_library_roots()) or {"site-packages", "dist-packages"} & parts:
        return None
    return Path(real) if os.path.isfile(real) else None


def _references(module: ModuleType) -> Iterator[str]:
    """Names of the modules a module's globals come from (imports already done earlier too)."""
    parent = module.__name__.rpartition(".")[0]
    if parent:
        yield parent
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            yield value.__name__
            continue
        with contextlib.suppress(Exception):
            origin = getattr(value, "__module__", None)
            if isinstance(origin, str):
                yield origin


def user_files(names: Iterable[str]) -> list[Path]:
    """The user source files of these modules and, transitively, of the modules they reference."""
    todo, seen, files = list(names), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        path = _user_file(module)
        if path is None:
            continue
        files.add(path)
        todo.extend(_references(module))
    return sorted(files)


@contextlib.contextmanager
def record_imports(roots: Iterable[str] = ()) -> Iterator[list[Path]]:
    """Yield a list that, on exit, holds the user source files the block imported (``sys.modules``
    before and after), plus those of ``roots`` (module names), each followed through its globals."""
    before = set(sys.modules)
    files: list[Path] = []
    try:
        yield files
    finally:
        files.extend(user_files([n for n in list(sys.modules) if n not in before] + list(roots)))


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredError:
    type: Literal["InputError", "UnsupportedOpError", "DoesNotFitError"]
    message: str


@dataclass(frozen=True)
class Header:
    format: Literal[2]
    key: str
    manifest: tuple[tuple[str, str], ...]  # (absolute path, sha256)
    graph_sha256: str | None
    error: StoredError | None


@lru_cache(maxsize=None)
def _adapter(cls: type):
    from pydantic import TypeAdapter
    return TypeAdapter(cls)


def _entry_path(k: str) -> Path:
    return cache_dir() / f"{k}.json"


def _consistent(graph: Graph) -> bool:
    """The references a simulation follows point where they should."""
    ids = {t.id for t in graph.tensors}
    return (all(layer.index == i for i, layer in enumerate(graph.layers))
            and all(set(layer.inputs) <= ids and layer.output in ids for layer in graph.layers)
            and set(graph.inputs) <= ids and set(graph.outputs) <= ids)


def _manifest_holds(manifest: Iterable[tuple[str, str]]) -> bool:
    try:
        return all(sha256_file(p) == digest for p, digest in manifest)
    except (OSError, ValueError):
        return False


def load(k: str) -> Graph | InputError | None:
    """The validated entry for key ``k``: a graph, a stored failure, or None (a miss)."""
    path = _entry_path(k)
    try:
        if path.stat().st_size > MAX_ENTRY_BYTES:
            return None
        head, _, body = path.read_bytes().partition(b"\n")
        header = _adapter(Header).validate_json(head, strict=True)
        if header.key != k or not _manifest_holds(header.manifest):
            return None
        if header.error is not None:
            return _ERRORS[header.error.type](header.error.message)
        if header.graph_sha256 != sha256_text(body):
            return None
        graph = _adapter(Graph).validate_json(body, strict=True)
        return graph if _consistent(graph) else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # pydantic's ValidationError is a ValueError
        return None


def store(k: str, outcome: Graph | InputError, manifest: Iterable[Path]) -> None:
    """Write the entry atomically; a cache that cannot be written is no reason to fail a run."""
    files = sorted({str(Path(p).resolve()) for p in manifest})
    try:
        body = b""
        error = None
        if isinstance(outcome, Graph):
            body = json.dumps(outcome.to_dict(), separators=(",", ":")).encode()
        else:
            error = {"type": type(outcome).__name__ if type(outcome).__name__ in _ERRORS else "InputError",
                     "message": str(outcome)}
        header = {"format": FORMAT, "key": k, "manifest": [[f, sha256_file(f)] for f in files],
                  "graph_sha256": sha256_text(body) if error is None else None, "error": error}
        write_atomic(_entry_path(k), json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)
    except OSError:
        pass


def cached_graph(k: str, build: Callable[[], Graph], *, enabled: bool = True, roots: Iterable[str] = (),
                 files: Iterable[Path] = ()) -> tuple[Graph, bool]:
    """Return (graph, hit). On a miss ``build`` runs (importing torch); its graph, or its
    ``InputError`` unless the error class says ``cacheable = False``, is stored with the manifest
    of what it imported (plus ``roots``' modules and ``files``). A stored failure is raised again."""
    if enabled:
        found = load(k)
        if isinstance(found, InputError):
            raise found
        if found is not None:
            return found, True
    failure: InputError | None = None
    with record_imports(roots) as imported:  # the list fills when the block ends
        try:
            graph = build()
        except InputError as e:
            failure = e
    if failure is not None:
        if enabled and getattr(failure, "cacheable", True):
            store(k, failure, [*imported, *files])
        raise failure
    if enabled:
        store(k, graph, [*imported, *files])
    return graph, False
