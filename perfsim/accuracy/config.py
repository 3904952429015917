"""What a training run is made of: the network it trains (:class:`NetOptions`, built by
:func:`build_network`), the run itself (:class:`RunConfig`: network, data set, recipe, seed, device,
threads), and torch set up for it (:func:`setup_torch`).

Importing this module does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["NetOptions", "RunConfig", "build_network", "training_state_counts", "converted", "check_device",
           "setup_torch"]

# Training forms of the zoo networks whose registry entry is the converted test-time network.
TRAINING_FORMS = {"condensenet": "condensenet:condensenet86",
                  "condensenext": "condensenext:condensenext"}


@dataclass(frozen=True)
class NetOptions:
    """What identifies a trained network: a checkpoint of other options is refused."""

    model: str
    num_classes: int
    width: float = 1.0

    def as_dict(self) -> dict:
        return {"model": self.model, "num_classes": self.num_classes, "width": self.width}

    def describe(self) -> str:
        return f"{self.model} (width {self.width:g}, {self.num_classes} classes)"


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run is made of (the recipe is a :class:`perfsim.accuracy.recipes.Recipe`)."""

    net: NetOptions
    dataset: str
    recipe: Any
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    stop_after: int | None = None  # stop (checkpointed) once this many epochs are done

    def choices(self) -> dict:
        return {"net": self.net.as_dict(), "dataset": self.dataset, "seed": self.seed,
                "device": self.device, "threads": self.threads, "recipe": self.recipe.choices()}


def build_network(net: NetOptions, seed: int):
    """The training form of a zoo network, its weights drawn from ``seed`` (the caller's torch
    RNG state is left as it was)."""
    import importlib

    import torch

    from ..frontends import zoo

    spec = zoo.get(net.model)
    kwargs = spec.factory_kwargs(num_classes=net.num_classes,
                                 width=net.width if net.width != 1.0 else None)
    if net.model in TRAINING_FORMS:
        mod, fn = TRAINING_FORMS[net.model].split(":")
        factory = getattr(importlib.import_module("perfsim.models." + mod), fn)
    else:
        factory = spec.load_factory()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(**kwargs)


def training_state_counts(net: NetOptions) -> dict[str, int]:
    """What the training form of ``net`` saves besides optimizer state, counted: its parameters and
    its floating-point buffers (BN running statistics, learned-group-conv masks); integer buffers
    (step counters, condensation stages) left out. Imports torch."""
    model = build_network(net, 0)
    return {"params": sum(p.numel() for p in model.parameters()),
            "float_buffers": sum(b.numel() for b in model.buffers() if b.is_floating_point())}


def converted(model):
    """The test-time network: CondenseNet-style models are condensed, others returned as is."""
    condense = getattr(model, "condense", None)
    return condense() if callable(condense) else model


def check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda, but this torch sees no CUDA device "
                             "(torch.cuda.is_available() is False)")


def setup_torch(device: str, threads: int) -> None:
    """The device checked, the thread count set and deterministic kernels on (CPU runs are
    bit-for-bit repeatable for a seed and a thread count). Seeding is the caller's."""
    import torch

    check_device(device)
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
