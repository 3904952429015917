"""Golden paper reports: `perfsim paper NAME --out DIR` for every paper, compared with the pages
committed under reports/papers/<name>/ (paper.json and paper_rows.csv, number by number; paper.md
and paper.png are there for people to read). A verdict or a sentence that changes is a diff to
review, not a silent drift. When a change is intended, regenerate and read `git diff reports/`:

    PERFSIM_REGEN_GOLDEN=1 pytest tests/test_papers_golden.py
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from cli_checks import cli_run

GOLDEN = Path(__file__).resolve().parent.parent / "reports" / "papers"
NAMES = ("mobilenet", "clcnet", "condensenet", "condensenext", "fastnet")


def _close(a, b, where="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), where
    else:
        assert a == b, where


def _cell(x: str):
    try:
        return float(x)
    except ValueError:
        return x


@pytest.mark.parametrize("name", NAMES)
def test_paper_report_matches_golden(isolated, capsys, name):
    regen = bool(os.environ.get("PERFSIM_REGEN_GOLDEN"))
    rc, _, err = cli_run(capsys, "paper", name, "--out", "fresh")
    assert rc == 0, err
    fresh, golden = isolated / "fresh", GOLDEN / name
    if regen:
        if golden.exists():
            shutil.rmtree(golden)
        shutil.copytree(fresh, golden)
        pytest.skip("golden paper report regenerated: review `git diff reports/papers/`")
    assert golden.is_dir(), "no golden paper report: run with PERFSIM_REGEN_GOLDEN=1"
    _close(json.loads((fresh / "paper.json").read_text()), json.loads((golden / "paper.json").read_text()))
    got = list(csv.reader((fresh / "paper_rows.csv").open()))
    want = list(csv.reader((golden / "paper_rows.csv").open()))
    _close([[_cell(c) for c in r] for r in got], [[_cell(c) for c in r] for r in want])
