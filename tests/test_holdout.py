"""benchmarks/holdout.py (issue 20): networks measured once, predicted offline as calibrated and with the
in-context fit held out per family, each read as measured and at the calibration's speed."""
from __future__ import annotations

import argparse
import copy
import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NET = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, {out}))
""")


@pytest.fixture
def holdout(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("holdout", ROOT / "benchmarks" / "holdout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "HERE", tmp_path)
    models = {}
    for family, out in (("a", 4), ("b", 10)):
        path = tmp_path / f"net_{family}.py"
        path.write_text(NET.format(out=out))
        models[f"{path}:make"] = family
    monkeypatch.setattr(mod, "FAMILY_OF", models)
    monkeypatch.setattr(mod, "INPUT_SHAPE", {m: (3, 16, 16) for m in models})
    return mod


def test_a_run_on_a_slower_machine_is_read_at_the_calibrations_speed(holdout, tmp_path):
    """Two runs of each network, the second on a machine twice as slow (every time and its probe x2): as
    measured their spread is 100 %; read at the calibration's probe they are one run, at that speed. The
    report writes both tables and the counts of fitted numbers and samples."""
    records = []
    for model, family in holdout.FAMILY_OF.items():
        first = holdout._measure_one(model, 1, 2, "keep")
        assert first["lines_up"] and first["probe"] > 0
        first.update(run=0, family=family, busy=False)
        slow = copy.deepcopy(first)
        slow.update(run=1, probe=2 * first["probe"], whole=[2 * t for t in first["whole"]],
                    calls=[c[:3] + [2 * t for t in c[3:]] for c in first["calls"]])
        records += [first, slow]
    holdout._save(holdout._data_file(1), records)
    profile = str(ROOT / "benchmarks" / "host_validation" / "host-1t.yaml")
    net = holdout.Network(next(iter(holdout.FAMILY_OF)), [r for r in records if r["family"] == "a"])
    assert net.usable and net.has_probe
    assert holdout.predict(net, _profile(profile))["run_spread"] == pytest.approx(0.5)  # (2 - 1) / the upper run
    net.at_speed(records[0]["probe"])
    assert net.whole() == pytest.approx([records[0]["whole"][0]] * 2)
    assert holdout.predict(net, _profile(profile))["run_spread"] == pytest.approx(0.0)
    assert holdout.report(argparse.Namespace(profile=profile, threads=1, models=None)) == 0
    text = (tmp_path / "holdout-1t.md").read_text()
    assert "## As measured" in text and "## At the calibration's speed" in text and "numbers from" in text
    import pandas as pd
    frame = pd.read_csv(tmp_path / "holdout-1t.csv")
    assert len(frame) == 2 and (frame.speed_run_spread == 0).all() and (frame.run_spread == 0.5).all()
    assert set(frame.family) == {"a", "b"}


def _profile(path: str):
    from perfsim.hardware.loader import load_profile
    return load_profile(path)
