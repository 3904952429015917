"""From a model name (or ``file.py:factory``) to a lowered graph, through the cache."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from . import zoo
from .cache import cache_key, cached_graph
from .errors import InputError
from .graph import Graph


@dataclass(frozen=True)
class ModelRequest:
    model: str  # registry name or path/to/file.py:factory
    num_classes: int | None = None
    width: float | None = None
    resolution: float = 1.0
    input_shape: tuple[int, int, int] | None = None  # C,H,W; required for a file model


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise InputError(f"--input-shape expects CxHxW such as 3x224x224, got {text!r}") from None
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise InputError(f"--input-shape expects three positive sizes CxHxW, got {text!r}")
    return dims  # type: ignore[return-value]


def is_file_model(model: str) -> bool:
    return ":" in model and model.split(":")[0].endswith(".py")


def _load_file_factory(model: str):
    path_text, factory = model.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"model file not found: {path_text}")
    name = "perfsim_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"cannot import {path_text}: {type(e).__name__}: {e}") from None
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        raise InputError(f"{path_text} has no callable {factory!r}")
    return fn, path


def _folder_digest(path: Path, limit: int = 200) -> str:
    """Hash of the model file and the Python files beside it (the helpers it likely imports),
    so editing either invalidates the cached graph; ``--no-cache`` covers anything further away."""
    h = hashlib.sha256(path.read_bytes())
    for f in sorted(path.parent.glob("*.py"))[:limit]:
        if f.resolve() != path.resolve():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _is_module(obj) -> bool:
    import torch.nn
    return isinstance(obj, torch.nn.Module)


def graph_for(req: ModelRequest, *, use_cache: bool = True) -> tuple[Graph, dict]:
    """Lower the requested model (or take it from the cache). Returns (graph, info)."""
    if not (0.0 < req.resolution <= 1.0):
        raise InputError(f"--resolution must be in (0, 1], got {req.resolution}")
    if req.width is not None and not (0.0 < req.width <= 1.0):
        raise InputError(f"--width must be in (0, 1], got {req.width}")
    if req.num_classes is not None and req.num_classes < 1:
        raise InputError(f"--classes must be positive, got {req.num_classes}")
    if is_file_model(req.model):
        if req.input_shape is None:
            raise InputError("a model given as file.py:factory needs --input-shape CxHxW")
        c, h, w = req.input_shape
        shape = (c, max(1, round(h * req.resolution)), max(1, round(w * req.resolution)))
        path = Path(req.model.rsplit(":", 1)[0])
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        digest = _folder_digest(path)
        key = cache_key(file=str(path.resolve()), factory=req.model.rsplit(":", 1)[1], digest=digest,
                        shape=shape, classes=req.num_classes, width=req.width)
        name = Path(req.model.rsplit(":", 1)[0]).stem + "_" + req.model.rsplit(":", 1)[1]

        def build() -> Graph:
            from .lowering import lower
            fn, _ = _load_file_factory(req.model)
            kwargs = {}
            if req.num_classes is not None:
                kwargs["num_classes"] = req.num_classes
            if req.width is not None:
                kwargs["width"] = req.width
            try:
                module = fn(**kwargs)
            except Exception as e:  # the user's code failed: bad input, not a perfsim fault
                raise InputError(f"{req.model} raised {type(e).__name__}: {e}") from None
            if not _is_module(module):
                raise InputError(f"{req.model} returned {type(module).__name__}, not a torch.nn.Module")
            return lower(module, shape, name=name)
        info = {"source": str(path), "input_shape": shape}
    else:
        spec = zoo.get(req.model)
        spec.factory_kwargs(num_classes=req.num_classes, width=req.width)  # bad options fail before the cache
        shape = req.input_shape or spec.input_shape_at(req.resolution)
        if req.input_shape is not None and req.resolution != 1.0:
            c, h, w = req.input_shape
            shape = (c, max(1, round(h * req.resolution)), max(1, round(w * req.resolution)))
        classes = req.num_classes or spec.num_classes
        key = cache_key(model=spec.name, digest=spec.source_digest(), shape=shape, classes=classes,
                        width=req.width or 1.0)
        name = spec.name

        def build() -> Graph:
            from .lowering import lower
            module = spec.build(num_classes=classes, width=req.width)
            return lower(module, shape, name=name)
        info = {"source": spec.source, "input_shape": shape}
    graph, hit = cached_graph(key, build, enabled=use_cache)
    info["cache_hit"] = hit
    return graph, info
