"""The real learning check: MobileNet (alpha 0.25) learns scikit-learn's digits on the CPU.

A short run with the RMSprop recipe (lr 5e-3, cosine decay, batch 32, 6 epochs) must reach at
least 90 % on the held-out quarter (measured: about 95 % in about 25 s on one core).
"""
from __future__ import annotations

import json

import pytest

from cli_checks import cli_run

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_mobilenet_learns_digits(capsys, tmp_path):
    out = tmp_path / "digits"
    rc, stdout, err = cli_run(capsys, "train", "mobilenet", "--dataset", "digits", "--width", "0.25",
                              "--epochs", "6", "--batch-size", "32", "--lr", "0.005",
                              "--set", "schedule=cosine", "--threads", "1", "--out", out)
    assert rc == 0, err
    assert "flip           False" in stdout  # digits are not mirror-symmetric
    rc, stdout, err = cli_run(capsys, "eval", "mobilenet", "--checkpoint", out / "checkpoint.pt",
                              "--threads", "1")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["dataset"] == "digits" and result["images"] == 450 and result["input_side"] == 28
    assert result["top1"] >= 0.90, result


def test_digits_split_is_fixed_and_resized():
    import numpy as np

    from perfsim.accuracy.data import load_digits

    (xtr, ytr), (xte, yte) = load_digits(28)
    assert xtr.shape == (1347, 3, 28, 28) and xte.shape == (450, 3, 28, 28) and xtr.dtype == np.uint8
    assert np.bincount(yte).min() >= 43  # stratified (44 or 45 of each of the 10 digits, 43 of the rarest)
    (xtr2, _), _ = load_digits(28)
    np.testing.assert_array_equal(xtr, xtr2)
    assert 200 < int(xtr.max()) <= 255 and np.array_equal(xtr[:, 0], xtr[:, 2])
