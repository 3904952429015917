"""Cache of lowered graphs, so a repeated ``perfsim run`` does not import torch.

Key: the model (name or file and factory, with the source's hash), its options
(classes, width, input shape), the installed torch and perfsim versions and the
hash of perfsim's lowering code. Location: ``$PERFSIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/perfsim``, else ``~/.cache/perfsim``. Entries are JSON, written
atomically; a corrupt entry is ignored and rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from .graph import Graph

_LOWERING_FILES = ("fuse.py", "graph.py")  # and every module of perfsim/lowering/


def cache_dir() -> Path:
    if os.environ.get("PERFSIM_CACHE_DIR"):
        return Path(os.environ["PERFSIM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perfsim"


def _torch_version() -> str:
    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def _code_digest() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for path in [here / name for name in _LOWERING_FILES] + sorted((here / "lowering").glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(**parts: Any) -> str:
    from . import __version__
    payload = dict(parts, torch=_torch_version(), perfsim=__version__, code=_code_digest())
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached_graph(key: str, build: Callable[[], Graph], *, enabled: bool = True) -> tuple[Graph, bool]:
    """Return (graph, hit). ``build`` runs (and imports torch) only on a miss."""
    path = cache_dir() / f"{key}.json"
    if enabled and path.is_file():
        try:
            return Graph.from_dict(json.loads(path.read_text(encoding="utf-8"))), True
        except (ValueError, KeyError, TypeError):
            pass  # corrupt or from an incompatible layout: rebuild
    graph = build()
    if enabled:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".graph.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(graph.to_dict(), f)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home is no reason to fail a run
    return graph, False
