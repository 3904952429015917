"""perfsim compare: the totals table equals each model's own simulation; plots; bad input."""
from __future__ import annotations

import json

import pandas as pd

from cli_checks import assert_input_error, cli_run
from perfsim.explore.compare import COMPARE_COLUMNS


def test_compare_table_is_each_models_summary(isolated, capsys):
    rc, out, err = cli_run(capsys, "compare", "mobilenet", "fastnet", "--out", "c")
    assert rc == 0, err
    frame = pd.read_csv(isolated / "c" / "compare.csv")
    assert list(frame.columns) == list(COMPARE_COLUMNS)
    assert list(frame.model) == ["mobilenet", "fastnet"]
    for model in ("mobilenet", "fastnet"):
        rc, js, err = cli_run(capsys, "run", model, "--json", "--no-plots", "--out", f"r_{model}")
        s = json.loads(js)
        row = frame[frame.model == model].iloc[0]
        for k in COMPARE_COLUMNS[1:]:
            want = s["bound_counts"][k[6:]] if k.startswith("bound_") else s[k]
            assert row[k] == want, k
    assert {"latency_by_term.png", "latency_vs_macs.png", "compare.json"} <= {p.name for p in (isolated / "c").iterdir()}
    assert "mobilenet" in out and "fastnet" in out


def test_compare_bad_input(isolated, capsys):
    assert_input_error(*cli_run(capsys, "compare", "nosuchmodel", "mobilenet"), "nosuchmodel")
    assert_input_error(*cli_run(capsys, "compare"), "at least one model")
    assert_input_error(*cli_run(capsys, "compare", "mobilenet", "--profile", "nosuch"), "nosuch")
    assert not (isolated / "reports").exists()
