"""The model registry: every network perfsim knows by name.

This module is torch-free on purpose: listing models, resolving a name and
building a cache key never import torch. Building the network (``spec.build``)
imports the model's module from ``perfsim.models`` (the top-level ``models/``
folder of the repository), which does.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a network without building it."""

    name: str
    factory: str  # "module:function" inside perfsim.models
    input_shape: tuple[int, int, int]  # C, H, W at resolution multiplier 1
    num_classes: int
    source: str  # paper / code the definition follows
    description: str
    supports_width: bool = False  # factory takes ``width`` (width multiplier alpha)
    class_choices: tuple[int, ...] = ()  # allowed num_classes; empty means any
    count_convention: str = ""  # the paper's own way of counting, reported beside MACs ("condensenet")
    # Published figures the tests compare against (documentation, not oracles).
    paper: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module_name(self) -> str:
        return "perfsim.models." + self.factory.split(":")[0]

    def load_factory(self) -> Callable[..., Any]:
        mod_name, fn_name = self.factory.split(":")
        module = importlib.import_module("perfsim.models." + mod_name)
        return getattr(module, fn_name)

    def factory_kwargs(self, *, num_classes: int | None = None, width: float | None = None) -> dict[str, Any]:
        """Check the options against what this network has; the factory's keyword arguments."""
        kwargs: dict[str, Any] = {"num_classes": num_classes or self.num_classes}
        if width is not None and width != 1.0:
            if not self.supports_width:
                raise InputError(f"model {self.name!r} has no width multiplier (--width)")
            kwargs["width"] = width
        if self.class_choices and kwargs["num_classes"] not in self.class_choices:
            raise InputError(
                f"model {self.name!r} is defined for {' or '.join(map(str, self.class_choices))} "
                f"classes, not {kwargs['num_classes']}"
            )
        return kwargs

    def build(self, *, num_classes: int | None = None, width: float | None = None):
        """Instantiate the network (imports torch)."""
        return self.load_factory()(**self.factory_kwargs(num_classes=num_classes, width=width))

    def input_shape_at(self, resolution: float = 1.0) -> tuple[int, int, int]:
        """Input shape with the resolution multiplier rho applied to the spatial side."""
        if not (0.0 < resolution <= 1.0):
            raise InputError(f"--resolution must be in (0, 1], got {resolution}")
        return scaled_shape(self.input_shape, resolution)


def scaled_shape(shape: tuple[int, ...], resolution: float) -> tuple[int, int, int]:
    """C, H, W with the resolution multiplier rho applied to each spatial side (at least 1).
    At rho = 1 the shape is returned as given: an absurd size stays an int for the bound check."""
    c, h, w = shape
    if resolution == 1.0:
        return (c, h, w)
    return (c, max(1, round(h * resolution)), max(1, round(w * resolution)))


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:75] + "...'"
        raise InputError(
            f"unknown model {shown}; known models: {', '.join(sorted(_REGISTRY))} "
            "(or path/to/file.py:factory, torchvision:NAME, timm:NAME, file.onnx)"
        ) from None


def names() -> list[str]:
    return list(_REGISTRY)


def specs() -> list[ModelSpec]:
    return list(_REGISTRY.values())


# --------------------------------------------------------------------------
# The zoo. Definitions: ../shared/ZOO.md, transcribed into each module's docstring.
# --------------------------------------------------------------------------
register(ModelSpec(
    name="mobilenet",
    factory="mobilenet:mobilenet_cifar",
    input_shape=(3, 28, 28),
    num_classes=10,
    source="MobileNet on CIFAR-10 (seed paper 001, Table 1)",
    description="MobileNet CIFAR variant, 27 conv layers, 28x28 crops",
    supports_width=True,
    paper={"table4_rows": 27, "top1_cifar10": {1.0: 0.82, 0.75: 0.78}},
))
register(ModelSpec(
    name="mobilenet_v1",
    factory="mobilenet:mobilenet_v1",
    input_shape=(3, 224, 224),
    num_classes=1000,
    source="MobileNet v1 (Howard et al. 2017); clcNet paper 002, Table 5",
    description="MobileNet v1 224, ImageNet",
    supports_width=True,
    paper={"macs": 569e6, "params": 4.2e6, "top1_imagenet": 0.706},
))
register(ModelSpec(
    name="clcnet_a",
    factory="clcnet:clcnet_a",
    input_shape=(3, 224, 224),
    num_classes=1000,
    source="clcNet (paper 002), (a,b,c,d)=(1,1,5,2); dqzhang17/clcnet.torch",
    description="clcNet-A: interlaced grouped conv + grouped 1x1 blocks",
    paper={"macs": 343e6, "params": 3.25e6, "top1_imagenet": 0.704},
))
register(ModelSpec(
    name="clcnet_b",
    factory="clcnet:clcnet_b",
    input_shape=(3, 224, 224),
    num_classes=1000,
    source="clcNet (paper 002), (a,b,c,d)=(1,1,7,3); dqzhang17/clcnet.torch",
    description="clcNet-B: interlaced grouped conv + grouped 1x1 blocks",
    paper={"macs": 425e6, "params": 4.1e6, "top1_imagenet": 0.716},
))
register(ModelSpec(
    name="clcnet_ap",
    factory="clcnet:clcnet_ap",
    input_shape=(3, 224, 224),
    num_classes=1000,
    source="clcNet (paper 002), Table 4 ablation: clcNet-A with IGC replaced by plain GC",
    description="clcNet-Ap: clcNet-A without channel interlace (fails FCRF)",
    paper={"top1_imagenet": 0.677},
))
register(ModelSpec(
    name="condensenet",
    factory="condensenet:condensenet86_condensed",
    input_shape=(3, 32, 32),
    num_classes=10,
    source="CondenseNet-86 (baseline of paper 000); ShichenLiu/CondenseNet",
    description="CondenseNet-86, condensed test-time network, CIFAR",
    count_convention="condensenet",
    paper={"flops_condensenet_convention": 65.81e6, "params": 0.52e6, "top1_cifar10": 0.9424},
))
register(ModelSpec(
    name="condensenext",
    factory="condensenext:condensenext_condensed",
    input_shape=(3, 32, 32),
    num_classes=10,
    source="CondenseNeXt (paper 000), reconstructed from the text",
    description="CondenseNeXt reconstruction, condensed test-time network, CIFAR",
    count_convention="condensenet",
    paper={"flops": 23.80e6, "params": 0.16e6, "size_mb": 2.9, "top1_cifar10": 0.9228},
))
register(ModelSpec(
    name="fastnet",
    factory="fastnet:fastnet",
    input_shape=(3, 32, 32),
    num_classes=10,
    source="FastNet (paper 003); johnolafenwa/FastNet cifar10.py",
    description="FastNet, BN-ReLU-conv units, CIFAR-10/100",
    class_choices=(10, 100),
    paper={"params": 1.6e6, "top1_cifar10": 0.9398, "top1_cifar100": 0.7081},
))
