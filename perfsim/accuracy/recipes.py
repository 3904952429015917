"""Each paper's training recipe, as data: what ``perfsim train`` does unless told otherwise.

A :class:`Recipe` holds every choice of a training run (optimiser, learning-rate schedule, batch,
augmentation, loss, regularisers). ``RECIPES`` maps a zoo model to its recipe; every field names
its source (``sources``): the paper's text, the authors' public code, or ``perfsim`` where the
paper is silent. Any field can be overridden (``perfsim train --set field=value``).
Torch-free; the recipes are documented in docs/training.md.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InputError

__all__ = ["Recipe", "RECIPES", "recipe_for", "apply_overrides", "lr_for", "DIGITS_CHANGES"]


class Recipe(BaseModel):
    """One training recipe. Learning rates are per iteration (see :func:`lr_for`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    optimizer: Literal["sgd", "rmsprop", "adam"]
    lr: float = Field(gt=0, le=10)
    momentum: float = Field(default=0.0, ge=0, lt=1)  # SGD / RMSprop momentum
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    rmsprop_alpha: float = Field(default=0.9, gt=0, lt=1)  # TensorFlow's RMSprop decay
    rmsprop_eps: float = Field(default=1e-10, gt=0)  # TensorFlow 1.x's default epsilon
    schedule: Literal["constant", "cosine", "linear", "step"] = "constant"
    milestones: tuple[int, ...] = ()  # step schedule: epochs (0-based) where a factor starts
    factors: tuple[float, ...] = ()  # step schedule: lr multiplier from each milestone on
    epochs: int = Field(ge=1, le=100_000)
    batch_size: int = Field(ge=1, le=65_536)
    crop: int | None = Field(default=None, ge=1, le=4096)  # training crop side; None = image side
    padding: int = Field(default=4, ge=0, le=64)  # zero padding before the random crop
    flip: bool = True  # random horizontal flips
    loss: Literal["cross_entropy", "class_balanced_focal"] = "cross_entropy"
    focal_gamma: float = Field(default=2.0, ge=0, le=10)
    cb_beta: float = Field(default=0.9999, ge=0, lt=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    group_lasso: float = Field(default=0.0, ge=0)  # CondenseNet's learned group conv regulariser
    own: bool = False  # the recipe is perfsim's own (the paper trained on another data set)
    sources: tuple[tuple[str, str], ...] = ()  # (field or topic, where it comes from)

    @model_validator(mode="after")
    def _steps(self) -> "Recipe":
        if len(self.milestones) != len(self.factors):
            raise ValueError("milestones and factors need the same number of entries")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError("milestones must be increasing")
        return self

    def choices(self) -> dict:
        """The recipe as plain data (for the printed config, config.json and checkpoints)."""
        return self.model_dump(mode="json")


_CIFAR_AUG = ("augmentation", "standard CIFAR augmentation: 4-pixel zero padding, random 32x32 "
              "crop, random horizontal flip (Lee et al. / He et al.; ResNet, WideResNet, CondenseNet)")

MOBILENET = Recipe(
    optimizer="rmsprop", lr=1e-3, momentum=0.0, weight_decay=0.0, schedule="constant",
    epochs=60, batch_size=128, crop=28, padding=0, flip=True,
    sources=(
        ("optimizer", "paper 001 sec. 4: 'trained on CIFAR10 in TensorFlow using RMSprop'"),
        ("augmentation", "paper 001 sec. 4: random left-right flip and cropping 32x32 -> 28x28; "
                         "per-channel mean/std normalisation"),
        ("epochs", "paper 001 Figs. 3-4: 60 epochs"),
        ("lr, batch_size, schedule, rmsprop_alpha/eps", "perfsim (paper silent): TensorFlow's RMSprop "
                                                        "defaults, lr 1e-3 constant, batch 128"),
        ("weight_decay", "perfsim: 0 ('less regularization' for small models, paper 001 sec. 4)"),
    ))

CONDENSENET = Recipe(
    optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="cosine",
    epochs=200, batch_size=64, group_lasso=1e-5,
    sources=(
        ("optimizer, schedule, epochs", "paper 000 sec. VI and Table I: SGD, Nesterov 0.9, cosine "
                                        "learning rate, 200 epochs"),
        ("lr, weight_decay, batch_size, group_lasso", "ShichenLiu/CondenseNet main.py defaults: lr 0.1, "
                                                      "wd 1e-4, batch 64, group-lasso lambda 1e-5"),
        ("condensation", "learned group convs condense at 1/6, 1/3, 1/2 of training (C = 4)"),
        _CIFAR_AUG,
    ))

CONDENSENEXT = CONDENSENET.model_copy(update=dict(
    loss="class_balanced_focal",
    sources=CONDENSENET.sources + (
        ("dropout", "paper 000 sec. VI: 0.1 (built into the model, before each learned 1x1 conv)"),
        ("loss", "paper 000 sec. IV: class-balanced focal loss (Cui et al. 2019)"),
        ("focal_gamma, cb_beta", "perfsim (paper silent): gamma 2 (Lin et al.), beta 0.9999 (Cui et al.)"),
    )))

FASTNET = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="step",
    milestones=(80, 120, 160, 180), factors=(1e-1, 1e-2, 1e-3, 5e-4),
    epochs=200, batch_size=128,
    sources=(
        ("optimizer, lr, milestones, epochs", "paper 003 'Experiment setup': Adam 1e-3, divided at "
                                              "80/120/160/180, 200 epochs, he_normal init (in the model)"),
        ("factors, batch_size", "johnolafenwa/FastNet cifar10.py lr_schedule: x0.1, x0.01, x0.001, "
                                "x0.0005; batch 128"),
        ("augmentation", "paper 003: 'similar to Wide Resnet' (pad 4, crop, flip); the authors' code "
                         "also rotates by up to 10 degrees, which perfsim does not"),
    ))

CLCNET_CIFAR = Recipe(
    optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="linear",
    epochs=200, batch_size=128, own=True,
    sources=(
        ("optimizer, lr, weight_decay, schedule", "paper 002 sec. 5: SGD, Nesterov 0.9, lr 0.1, wd 1e-4, "
                                                  "polynomial (power 1 = linear) decay -- on ImageNet"),
        ("epochs, batch_size", "perfsim's own CIFAR adaptation (paper 002 trained ImageNet only, "
                               "100 epochs): 200 epochs, batch 128"),
        _CIFAR_AUG,
    ))

RECIPES: dict[str, Recipe] = {
    "mobilenet": MOBILENET,
    "condensenet": CONDENSENET,
    "condensenext": CONDENSENEXT,
    "fastnet": FASTNET,
    "clcnet_a": CLCNET_CIFAR,
    "clcnet_b": CLCNET_CIFAR,
    "clcnet_ap": CLCNET_CIFAR,
    # paper 002 reports its recipe reproduces MobileNet v1's accuracy; perfsim reuses it on CIFAR
    "mobilenet_v1": CLCNET_CIFAR,
}

# The digits set (8x8 scans, 1,347 training images): no flips (digits are not mirror-symmetric),
# no crop (the image is resized to the model's input), a short run.
DIGITS_CHANGES = {"flip": False, "padding": 0, "crop": None}


def recipe_for(model: str, dataset: str) -> Recipe:
    """The default recipe of a zoo model on a data set."""
    try:
        recipe = RECIPES[model]
    except KeyError:
        raise InputError(f"no training recipe for model {model!r}; recipes exist for "
                         f"{', '.join(sorted(RECIPES))}") from None
    if dataset == "digits":
        recipe = recipe.model_copy(update=DIGITS_CHANGES)
    return recipe


def _parse_value(field: str, text: str):
    if field in ("milestones", "factors"):
        return tuple(x for x in text.split(",") if x.strip())
    if text.lower() in ("none", "null"):
        return None
    return text


def apply_overrides(recipe: Recipe, overrides: dict[str, object]) -> Recipe:
    """A copy of ``recipe`` with ``field: value`` overrides, validated (strings are parsed)."""
    if not overrides:
        return recipe
    data = recipe.model_dump()
    for field, value in overrides.items():
        if field not in Recipe.model_fields or field == "sources":
            raise InputError(f"unknown recipe field {field!r}; fields: "
                             f"{', '.join(f for f in Recipe.model_fields if f != 'sources')}")
        data[field] = _parse_value(field, value) if isinstance(value, str) else value
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "recipe"
        raise InputError(f"bad recipe value for {where}: {err['msg']}") from None


def lr_for(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate of iteration ``step`` (0-based). Cosine and linear decay per iteration over
    ``epochs * steps_per_epoch`` (CondenseNet's cosine, clcNet's power-1 polynomial); the step
    schedule changes at epoch boundaries (the Keras LearningRateScheduler FastNet used)."""
    total = recipe.epochs * steps_per_epoch
    t = min(step, total)
    if recipe.schedule == "cosine":
        return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * t / total))
    if recipe.schedule == "linear":
        return recipe.lr * (1.0 - t / total)
    if recipe.schedule == "step":
        epoch = step // steps_per_epoch
        factor = 1.0
        for milestone, f in zip(recipe.milestones, recipe.factors):
            if epoch >= milestone:
                factor = f
        return recipe.lr * factor
    return recipe.lr
