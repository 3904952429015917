"""The recipes as data: schedules, overrides, and what each paper's recipe says."""
from __future__ import annotations

import math

import pytest

from perfsim.errors import InputError
from perfsim.accuracy.recipes import RECIPES, apply_overrides, lr_for, recipe_for


def test_fastnet_step_schedule_follows_the_authors_code():
    r = RECIPES["fastnet"]
    lrs = {e: lr_for(r, e * 10, 10) for e in (0, 79, 80, 119, 120, 160, 180, 199)}
    assert lrs[0] == lrs[79] == 1e-3
    assert math.isclose(lrs[80], 1e-4) and math.isclose(lrs[119], 1e-4)
    assert math.isclose(lrs[120], 1e-5) and math.isclose(lrs[160], 1e-6)
    assert math.isclose(lrs[180], 5e-7) and math.isclose(lrs[199], 5e-7)


def test_cosine_and_linear_decay_per_iteration():
    cos, lin = RECIPES["condensenet"], RECIPES["clcnet_a"]
    total = cos.epochs * 7
    assert lr_for(cos, 0, 7) == 0.1 and math.isclose(lr_for(cos, total // 2, 7), 0.05)
    assert lr_for(cos, total - 1, 7) < 1e-5
    assert math.isclose(lr_for(lin, lin.epochs * 7 // 4, 7), 0.075)
    assert lr_for(RECIPES["mobilenet"], 12345, 7) == 1e-3


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "step"])
def test_lr_for_closed_forms_at_every_step(schedule):
    """4 epochs of 5 iterations (T = 20), and past the end; the step schedule halves from epoch 1
    and drops to 1 % from epoch 3 (0-based)."""
    r = apply_overrides(RECIPES["condensenet"], {"schedule": schedule, "epochs": 4, "lr": 0.2,
                                                 "milestones": "1,3", "factors": "0.5,0.01"})
    for step in range(23):
        t = min(step, 20)
        expect = {"cosine": 0.5 * 0.2 * (1 + math.cos(math.pi * t / 20)), "linear": 0.2 * (1 - t / 20),
                  "constant": 0.2, "step": 0.2 * (1.0 if step < 5 else 0.5 if step < 15 else 0.01)}[schedule]
        assert lr_for(r, step, 5) == pytest.approx(expect, rel=1e-12, abs=1e-15), step


def test_paper_recipes():
    assert RECIPES["mobilenet"].optimizer == "rmsprop" and RECIPES["mobilenet"].crop == 28
    assert RECIPES["condensenext"].loss == "class_balanced_focal" and RECIPES["condensenext"].nesterov
    assert RECIPES["condensenet"].loss == "cross_entropy" and RECIPES["condensenet"].group_lasso == 1e-5
    assert RECIPES["clcnet_b"].own and not RECIPES["fastnet"].own
    digits = recipe_for("mobilenet", "digits")
    assert not digits.flip and digits.crop is None and digits.optimizer == "rmsprop"


def test_overrides_are_validated():
    r = apply_overrides(RECIPES["fastnet"], {"milestones": "5,9", "factors": "0.5,0.1", "crop": "none"})
    assert r.milestones == (5, 9) and r.factors == (0.5, 0.1) and r.crop is None
    for bad in ({"lr": "-1"}, {"optimizer": "sgdx"}, {"milestones": "9,5", "factors": "1,1"},
                {"sources": "x"}, {"epochs": "many"}, {"schedule": "warmup"}):
        with pytest.raises(InputError):
            apply_overrides(RECIPES["fastnet"], bad)
    with pytest.raises(InputError, match="no training recipe"):
        recipe_for("resnet", "cifar10")
