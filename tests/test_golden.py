"""Golden output: the front-door run's report, committed under reports/, must not drift silently.

`perfsim run mobilenet --profile edge_1mb` is compared number by number with
reports/mobilenet/edge_1mb/ (layers.csv and summary.json; the plots there are for
people to look at). When a modelling change is intended, regenerate and review the diff:

    PERFSIM_REGEN_GOLDEN=1 pytest tests/test_golden.py
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from perfsim.cli import main

GOLDEN = Path(__file__).resolve().parent.parent / "reports" / "mobilenet" / "edge_1mb"


def test_front_door_report_matches_golden(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(tmp_path / "cache"))
    regen = bool(os.environ.get("PERFSIM_REGEN_GOLDEN"))
    assert main(["run", "mobilenet", "--profile", "edge_1mb"] + ([] if regen else ["--no-plots"])) == 0
    fresh = tmp_path / "reports" / "mobilenet" / "edge_1mb"
    if regen:
        if GOLDEN.exists():
            shutil.rmtree(GOLDEN)
        shutil.copytree(fresh, GOLDEN)
        pytest.skip("golden report regenerated: review `git diff reports/`")
    assert GOLDEN.is_dir(), "no golden report: run with PERFSIM_REGEN_GOLDEN=1"
    pd.testing.assert_frame_equal(pd.read_csv(fresh / "layers.csv"), pd.read_csv(GOLDEN / "layers.csv"),
                                  check_exact=False, rtol=1e-12)
    got = json.loads((fresh / "summary.json").read_text())
    want = json.loads((GOLDEN / "summary.json").read_text())
    for d in (got, want):
        d.pop("perfsim_version")
    assert _close(got, want)


def _close(a, b) -> bool:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert len(a) == len(b)
        return all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12), (a, b)
        return True
    assert a == b, (a, b)
    return True
