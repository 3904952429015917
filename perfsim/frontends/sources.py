"""Where models come from: one ``ModelSource`` type for zoo names and outside models.

The MODEL argument names one of five kinds of source (docs/sources.md):

- ``mobilenet``: a zoo model (``perfsim.frontends.zoo``);
- ``path/to/net.py:factory``: a factory in a Python file (split at the last ``:`` whose
  left side ends in ``.py``, so a ``:`` in a folder name works);
- ``torchvision:resnet50``, ``timm:efficientnet_b0``: a classification model of those
  libraries, built without pretrained weights;
- ``model.onnx``: an ONNX file (``perfsim.frontends.onnx``).

``load_graph`` checks the options against the source and every size against its bound
before anything is built, then takes the lowered graph from the cache or builds it. Torch,
torchvision and timm are imported only on a cache miss.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from math import prod
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import InputError
from ..ir.graph import Graph
from . import cache, zoo

# Bounds checked before anything is allocated (docs/sources.md).
MAX_INPUT_ELEMENTS = 2**24  # C*H*W of the input: 16,777,216 (3x2364x2364), 64 MiB at fp32
MAX_CLASSES = 1_000_000  # --classes
MAX_PARAMS = 10**9  # parameters + buffers of a built model, counted on the meta device first

_MISSING_LIBRARY = "{0} is not installed: pip install 'perfsim[{0}]' (with torch==2.13.0 on the same pip line)"
_LIBRARY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
_FORMS = "a zoo name, path/to/file.py:factory, torchvision:NAME, timm:NAME or file.onnx"


class SourceKind(str, Enum):
    ZOO = "zoo"
    FILE = "file"
    TORCHVISION = "torchvision"
    TIMM = "timm"
    ONNX = "onnx"


_LIBRARIES = {"torchvision": SourceKind.TORCHVISION, "timm": SourceKind.TIMM}


class UserCodeError(InputError):
    """The user's own code failed (import, factory, ``sys.exit``): bad input, but one that may
    depend on the environment (a missing package, a data file), so it is never cached."""

    cacheable = False


def _show(text: object, limit: int = 80) -> str:
    """A user value in a message: repr, shortened."""
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 5] + "...'"


def parse_shape(text: str) -> tuple[int, int, int]:
    """CxHxW (or 1xCxHxW) as three positive sizes; the element bound is checked separately."""
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise InputError(f"--input-shape expects CxHxW such as 3x224x224, got {_show(text)}") from None
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise InputError(f"--input-shape expects three positive sizes CxHxW, got {_show(text)}")
    return dims  # type: ignore[return-value]


def check_input_shape(shape: tuple[int, ...]) -> None:
    if prod(shape) > MAX_INPUT_ELEMENTS:
        raise InputError(f"input shape {'x'.join(map(str, shape))} has {prod(shape):,} elements; "
                         f"perfsim takes at most {MAX_INPUT_ELEMENTS:,}")


@dataclass(frozen=True)
class ModelOptions:
    """What the command line may change about a model; ``None`` means the source's default."""

    num_classes: int | None = None
    width: float | None = None  # width multiplier alpha in (0, 1]
    resolution: float = 1.0  # resolution multiplier rho in (0, 1]: scales the input's side
    input_shape: tuple[int, int, int] | None = None  # C, H, W

    def check(self) -> None:
        if not (0.0 < self.resolution <= 1.0):
            raise InputError(f"--resolution must be in (0, 1], got {self.resolution}")
        if self.width is not None and not (0.0 < self.width <= 1.0):
            raise InputError(f"--width must be in (0, 1], got {self.width}")
        if self.num_classes is not None and not (1 <= self.num_classes <= MAX_CLASSES):
            raise InputError(f"--classes must be between 1 and {MAX_CLASSES:,}, got {_show(self.num_classes)}")
        if self.input_shape is not None:
            check_input_shape(zoo.scaled_shape(self.input_shape, self.resolution))


# Which options apply to which kind of source (a zoo model checks --width against its own spec).
_OPTION_KINDS: tuple[tuple[str, Callable[[ModelOptions], bool], frozenset[SourceKind]], ...] = (
    ("--classes", lambda o: o.num_classes is not None,
     frozenset({SourceKind.ZOO, SourceKind.FILE, SourceKind.TORCHVISION, SourceKind.TIMM})),
    ("--width", lambda o: o.width is not None and o.width != 1.0, frozenset({SourceKind.ZOO, SourceKind.FILE})),
    ("--resolution", lambda o: o.resolution != 1.0,
     frozenset({SourceKind.ZOO, SourceKind.FILE, SourceKind.TORCHVISION, SourceKind.TIMM})),
)


def _existing_file(path: Path) -> Path:
    try:
        if path.is_file():
            return path.resolve()
    except (OSError, ValueError):  # a name too long, a NUL byte
        pass
    raise InputError(f"model file not found: {_show(str(path), 200)}")


@dataclass(frozen=True)
class ModelSource:
    """A model to lower: its kind, its name in that kind, and its file (file and onnx kinds)."""

    kind: SourceKind
    name: str  # zoo name, factory name, torchvision/timm model name, or the ONNX file's stem
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        if not text or not text.strip():
            raise InputError(f"MODEL is empty: give {_FORMS}")
        for i in reversed([i for i, ch in enumerate(text) if ch == ":"]):
            if text[:i].endswith(".py"):
                factory = text[i + 1:]
                if not factory.isidentifier():
                    raise InputError(f"the factory after ':' in {_show(text)} must be a Python name")
                return cls(SourceKind.FILE, factory, Path(text[:i]))
        if text.endswith(".py"):
            raise InputError(f"a model file needs its factory function: {_show(text + ':make_model')}")
        if text.lower().endswith(".onnx"):
            return cls(SourceKind.ONNX, Path(text).stem or "onnx", Path(text))
        prefix, colon, rest = text.partition(":")
        if colon:
            if prefix not in _LIBRARIES:
                raise InputError(f"unknown model source {_show(prefix)} in {_show(text)}: give {_FORMS}")
            if not _LIBRARY_NAME.fullmatch(rest):
                raise InputError(f"{prefix}: needs a model name such as {prefix}:resnet18, got {_show(rest)}")
            return cls(_LIBRARIES[prefix], rest)
        return cls(SourceKind.ZOO, text)

    def __str__(self) -> str:
        """The MODEL argument that names this source."""
        if self.kind is SourceKind.FILE:
            return f"{self.path}:{self.name}"
        if self.kind is SourceKind.ONNX:
            return str(self.path)
        return self.label

    @property
    def label(self) -> str:
        """The model's name in reports."""
        if self.kind is SourceKind.FILE:
            return f"{self.path.stem}_{self.name}"
        if self.kind in (SourceKind.TORCHVISION, SourceKind.TIMM):
            return f"{self.kind.value}:{self.name}"
        return self.name

    def check(self, options: ModelOptions) -> None:
        """Refuse options that do not apply and sizes over their bounds; find files and libraries."""
        options.check()
        for flag, given, kinds in _OPTION_KINDS:
            if given(options) and self.kind not in kinds:
                raise InputError(f"{flag} does not apply to {self.kind.value} model {_show(str(self))}"
                                 + (" (give --input-shape instead)" if flag == "--resolution" else ""))
        if self.kind is SourceKind.ZOO:
            spec = zoo.get(self.name)
            spec.factory_kwargs(num_classes=options.num_classes, width=options.width)
            check_input_shape(zoo.scaled_shape(options.input_shape or spec.input_shape, options.resolution))
        elif self.kind is SourceKind.FILE:
            _existing_file(self.path)
            if options.input_shape is None:
                raise InputError("a model given as file.py:factory needs --input-shape CxHxW")
        elif self.kind is SourceKind.ONNX:
            _existing_file(self.path)
        for library in self._libraries():
            if cache.installed_version(library) is None:
                raise InputError(_MISSING_LIBRARY.format(library))

    def _libraries(self) -> tuple[str, ...]:
        return {SourceKind.TORCHVISION: ("torchvision",), SourceKind.TIMM: ("timm", "torchvision"),
                SourceKind.ONNX: ("onnx",)}.get(self.kind, ())

    def identity(self) -> dict[str, Any]:
        """What the cache key holds of the source: name, resolved file, versions it came from."""
        ident: dict[str, Any] = {"kind": self.kind.value, "name": self.name}
        if self.path is not None:
            ident["path"] = str(_existing_file(self.path))
        if self.kind is SourceKind.ONNX:
            ident["sha256"] = hashlib.sha256(_existing_file(self.path).read_bytes()).hexdigest()
        ident.update({lib: cache.installed_version(lib) for lib in self._libraries()})
        return ident

    def module_name(self) -> str | None:
        """The Python module the model is defined in (the root of its source manifest)."""
        if self.kind is SourceKind.ZOO:
            return zoo.get(self.name).module_name
        if self.kind is SourceKind.FILE:
            return "perfsim_user_" + hashlib.sha256(str(_existing_file(self.path)).encode()).hexdigest()[:12]
        return None


@dataclass(frozen=True)
class LoweredModel:
    graph: Graph
    source: ModelSource
    input_shape: tuple[int, ...]  # C, H, W as lowered
    cache_hit: bool


def load_graph(model: str | ModelSource, options: ModelOptions = ModelOptions(), *,
               use_cache: bool = True) -> LoweredModel:
    """The lowered graph of ``model`` with ``options``, from the cache or built (imports torch)."""
    source = model if isinstance(model, ModelSource) else ModelSource.parse(model)
    source.check(options)
    key = cache.key(source=source.identity(), options=asdict(options))
    root = source.module_name()
    graph, hit = cache.cached_graph(key, lambda: _build(source, options), enabled=use_cache,
                                    roots=[root] if root else [],
                                    files=[source.path] if source.kind is SourceKind.FILE else [])
    return LoweredModel(graph=graph, source=source, input_shape=tuple(graph.input_shape[1:]), cache_hit=hit)


# --------------------------------------------------------------------------
# Building: only on a cache miss
# --------------------------------------------------------------------------


def _lowering():
    """The one place the PyTorch lowering is imported."""
    from .lowering import lower
    return lower


@contextlib.contextmanager
def _user_code(label: str):
    """Run model code with its stdout sent to stderr (its prints never mix with --json output);
    ``sys.exit`` in it is bad input, not the end of perfsim."""
    with contextlib.redirect_stdout(sys.stderr):
        try:
            yield
        except SystemExit as e:
            raise UserCodeError(f"{label} called sys.exit({_show(e.code)})") from None
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as e:
            if isinstance(e, Exception):
                raise  # perfsim's own errors, and the user's (``_call_user`` words them)
            # a user-defined BaseException is still the model's failure, not perfsim's
            raise UserCodeError(f"{label} raised {type(e).__name__}: {_show(e)}") from None


def _call_user(fn: Callable[[], Any], label: str) -> Any:
    try:
        return fn()
    except InputError:
        raise
    except Exception as e:  # the user's code failed: bad input, not a perfsim fault
        raise UserCodeError(f"{label} raised {type(e).__name__}: {e}") from None


def _build(source: ModelSource, options: ModelOptions) -> Graph:
    with _user_code(str(source)):
        if source.kind is SourceKind.ONNX:
            from .onnx import lower_onnx
            return lower_onnx(source.path, options.input_shape, name=source.label)
        module, shape = _module_and_shape(source, options)
        return _lowering()(module, shape, name=source.label)


def _module_and_shape(source: ModelSource, options: ModelOptions):
    make, default_shape = _FACTORIES[source.kind](source, options)
    # a zoo model at its own classes is known small; any other model is counted on meta first
    module = _built_module(make, source, count_first=source.kind is not SourceKind.ZOO
                           or options.num_classes is not None)
    shape = zoo.scaled_shape(options.input_shape or default_shape(module), options.resolution)
    check_input_shape(shape)
    return module, shape


def build_module(model: str | ModelSource, options: ModelOptions = ModelOptions()):
    """The real PyTorch module of ``model`` and its input shape (C, H, W), built as lowering builds it
    (imports torch). An ONNX file has no PyTorch module: refused."""
    source = model if isinstance(model, ModelSource) else ModelSource.parse(model)
    source.check(options)
    if source.kind is SourceKind.ONNX:
        raise InputError(f"{source} is an ONNX file: there is no PyTorch module to run")
    with _user_code(str(source)):
        module, shape = _module_and_shape(source, options)
    return module, tuple(shape), source


def _param_count(module: Any, label: str) -> int:
    import torch.nn
    if not isinstance(module, torch.nn.Module):
        raise UserCodeError(f"{label} returned {type(module).__name__}, not a torch.nn.Module")
    n = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    if n > MAX_PARAMS:
        raise InputError(f"{label} has {n:,} parameters and buffers; perfsim takes at most {MAX_PARAMS:,}")
    return n


def _built_module(make: Callable[[], Any], source: ModelSource, *, count_first: bool):
    """Build on the meta device first (no memory) to refuse an oversized model, then for real.
    A factory that cannot build on meta (e.g. ``.item()`` on a tensor) is counted after the real build."""
    import torch
    label = str(source)
    meta = None
    if count_first:
        try:
            with torch.device("meta"):
                meta = make()
        except Exception:
            meta = None
    if meta is not None:
        _param_count(meta, label)
        del meta
    module = make() if source.kind is SourceKind.ZOO else _call_user(make, label)
    _param_count(module, label)
    return module


def _zoo_factory(source: ModelSource, options: ModelOptions):
    spec = zoo.get(source.name)
    kwargs = spec.factory_kwargs(num_classes=options.num_classes, width=options.width)
    factory = spec.load_factory()
    return (lambda: factory(**kwargs)), (lambda _module: spec.input_shape)


def _file_factory(source: ModelSource, options: ModelOptions):
    module = _import_file(source)
    fn = getattr(module, source.name, None)
    if fn is None or not callable(fn):
        raise UserCodeError(f"{source.path} has no callable {source.name!r}")
    kwargs = {k: v for k, v in (("num_classes", options.num_classes), ("width", options.width)) if v is not None}
    return (lambda: fn(**kwargs)), (lambda _module: options.input_shape)


def _import_file(source: ModelSource) -> ModuleType:
    path, name = _existing_file(source.path), source.module_name()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise UserCodeError(f"cannot import {source.path}: {type(e).__name__}: {e}") from None
    return module


def _library(name: str) -> ModuleType:
    """torchvision or timm; failing to import it depends on the environment: never cached."""
    from . import thirdparty
    try:
        return thirdparty.import_torchvision() if name == "torchvision" else thirdparty.import_timm()
    except InputError as e:
        raise UserCodeError(str(e)) from None


def _classes(options: ModelOptions) -> dict[str, int]:
    return {} if options.num_classes is None else {"num_classes": options.num_classes}


def _torchvision_factory(source: ModelSource, options: ModelOptions):
    tv = _library("torchvision")
    if source.name not in tv.models.list_models(module=tv.models):
        raise InputError(f"unknown torchvision classification model {_show(source.name)} "
                         "(see: perfsim models --source torchvision)")
    kwargs = _classes(options)

    def default_shape(module) -> tuple[int, int, int]:
        side = getattr(module, "image_size", None)  # vision transformers are built for one size
        if isinstance(side, int):
            return (3, side, side)
        try:  # the crop the library's default weights are evaluated at (no weights are loaded)
            crop = tv.models.get_model_weights(source.name).DEFAULT.transforms().crop_size[0]
            return (3, int(crop), int(crop))
        except (ValueError, KeyError, AttributeError, IndexError, TypeError):
            return (3, 224, 224)
    return (lambda: tv.models.get_model(source.name, weights=None, **kwargs)), default_shape


def _timm_factory(source: ModelSource, options: ModelOptions):
    timm = _library("timm")
    if not timm.is_model(source.name):
        raise InputError(f"unknown timm model {_show(source.name)} (see: perfsim models --source timm)")
    kwargs = _classes(options)

    def default_shape(module) -> tuple[int, int, int]:
        size = (getattr(module, "pretrained_cfg", None) or {}).get("input_size")
        return tuple(int(s) for s in size) if size and len(size) == 3 else (3, 224, 224)
    return (lambda: timm.create_model(source.name, pretrained=False, **kwargs)), default_shape


_FACTORIES = {SourceKind.ZOO: _zoo_factory, SourceKind.FILE: _file_factory,
              SourceKind.TORCHVISION: _torchvision_factory, SourceKind.TIMM: _timm_factory}


# --------------------------------------------------------------------------
# Listings
# --------------------------------------------------------------------------


def list_names(kind: SourceKind | str) -> list[str]:
    """Names that can be run from a source: the zoo, or torchvision's / timm's classification models."""
    kind = SourceKind(kind)
    if kind is SourceKind.TORCHVISION:
        from .thirdparty import import_torchvision
        tv = import_torchvision()
        return sorted(tv.models.list_models(module=tv.models))
    if kind is SourceKind.TIMM:
        from .thirdparty import import_timm
        return list(import_timm().list_models())
    if kind is SourceKind.ZOO:
        return zoo.names()
    raise InputError(f"cannot list models of source {kind.value!r}")


def zoo_catalog(*, use_cache: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per zoo model (input shape, classes, params, MACs, layers, source), and the
    names whose module is not installed."""
    from ..ir.conventions import condensenet_flops
    rows, missing = [], []
    for spec in zoo.specs():
        if importlib.util.find_spec(spec.module_name) is None:
            missing.append(spec.name)
            continue
        graph = load_graph(spec.name, use_cache=use_cache).graph
        row = {"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes,
               "params": sum(layer.params for layer in graph.layers), "macs": graph.macs,
               "layers": len(graph.layers), "source": spec.source, "description": spec.description}
        if spec.count_convention == "condensenet":  # the paper counts differently: report both, named
            row["flops_condensenet_convention"] = condensenet_flops(graph)
        rows.append(row)
    return rows, missing
