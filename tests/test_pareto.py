"""perfsim pareto: measured accuracies replace the papers', each costed on the profile."""
from __future__ import annotations

import csv
import json

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.papers.accuracy import REPORTED
from perfsim.accuracy.pareto import collect_points


def _eval_json(folder, **fields):
    doc = {"format": "perfsim-eval/1", "model": "mobilenet", "width": 0.25, "num_classes": 10,
           "dataset": "digits", "input_side": 28, "top1": 0.95, "top5": None}
    doc.update(fields)
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps(doc))


def test_reported_figures_are_the_papers():
    table = {(r.model, r.width, r.dataset): r.top1 for r in REPORTED}
    assert table[("mobilenet", 1.0, "cifar10")] == 0.82 and table[("mobilenet", 0.75, "cifar10")] == 0.78
    assert table[("clcnet_b", 1.0, "imagenet")] == 0.716 and table[("fastnet", 1.0, "cifar100")] == 0.7081
    assert table[("condensenet", 1.0, "cifar10")] == 0.9424 and table[("condensenext", 1.0, "cifar10")] == 0.9228


def test_measured_replaces_paper(tmp_path):
    _eval_json(tmp_path / "r" / "a")
    _eval_json(tmp_path / "r" / "b", width=1.0, dataset="cifar10", top1=0.5)
    (tmp_path / "r" / "junk.json").write_text("{not json")
    points = collect_points(tmp_path / "r", ["mobilenet"])
    got = {(p.width, p.dataset): (p.top1, p.accuracy_source) for p in points}
    assert got == {(0.25, "digits"): (0.95, "measured"), (1.0, "cifar10"): (0.5, "measured"),
                   (0.75, "cifar10"): (0.78, "paper")}


def test_pareto_command_writes_the_table(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(tmp_path / "cache"))
    _eval_json(tmp_path / "r" / "a")
    out = tmp_path / "pareto"
    rc, stdout, err = cli_run(capsys, "pareto", "--profile", "edge_1mb", "--results", tmp_path / "r",
                              "--models", "mobilenet", "--out", out)
    assert rc == 0, err
    with open(out / "pareto.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and "measured" in stdout and "paper" in stdout
    by_width = {float(r["width"]): r for r in rows}
    assert by_width[0.25]["accuracy_source"] == "measured" and by_width[1.0]["accuracy_source"] == "paper"
    assert by_width[1.0]["citation"].startswith("paper 001")
    assert int(by_width[0.25]["macs"]) < int(by_width[0.75]["macs"]) < int(by_width[1.0]["macs"])
    assert all(float(r["latency_s"]) > 0 for r in rows)
    assert (out / "pareto_cifar10.png").is_file() and (out / "pareto_digits.png").is_file()


def test_pareto_bad_input(capsys, tmp_path):
    rc, out, err = cli_run(capsys, "pareto", "--results", tmp_path / "nowhere", "--models", "mobilenet")
    assert_input_error(rc, out, err, "nowhere")
    rc, out, err = cli_run(capsys, "pareto", "--models", "alexnet")
    assert_input_error(rc, out, err, "alexnet")
    rc, out, err = cli_run(capsys, "pareto", "--profile", "no_such_profile")
    assert_input_error(rc, out, err, "no_such_profile")
