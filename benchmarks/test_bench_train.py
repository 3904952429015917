"""Training speed: one epoch of MobileNet (alpha 0.25) on the digits set (1,347 images, 28x28).

Run with ``pytest benchmarks/test_bench_train.py --benchmark-enable``; needs scikit-learn.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_digits_epoch_mobilenet_025(benchmark, tmp_path):
    from perfsim.accuracy.data import load_splits
    from perfsim.accuracy.recipes import apply_overrides, recipe_for
    from perfsim.accuracy.config import NetOptions, RunConfig
    from perfsim.accuracy.train import fit

    splits = load_splits("digits", None, 28)
    recipe = apply_overrides(recipe_for("mobilenet", "digits"), {"epochs": 1, "batch_size": 32})
    config = RunConfig(net=NetOptions("mobilenet", 10, 0.25), dataset="digits", recipe=recipe, threads=1)
    runs = iter(range(1000))

    def one_epoch():
        return fit(config, *splits, tmp_path / str(next(runs)), log=lambda s: None)

    rows = benchmark.pedantic(one_epoch, rounds=2, iterations=1)
    assert len(rows) == 1
