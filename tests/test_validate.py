"""``perfsim validate``: measured calls line up with perfsim's rows, the statistics are right, the
report is written safely, bad input is one line. No timing is asserted."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.cli import main
from perfsim.host.validate import RowCheck, Validation, median_abs, spearman

TINY = textwrap.dedent("""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = y + self.dw(y)
            return self.fc(y.mean((2, 3)).flatten(1))

    def make():
        return Tiny()
""")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return f"{path}:make"


def test_spearman_and_median():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)  # ties take average ranks
    assert math.isnan(spearman([1, 2], [2, 1]))
    assert median_abs([-3.0, 1.0, 2.0]) == 2.0


def test_every_call_of_a_model_lines_up_with_a_row(tiny, tmp_path, monkeypatch):
    from perfsim.host.validate import validate
    monkeypatch.chdir(tmp_path)
    v = validate(tiny, "edge_1mb", threads=1, warmup=1, repeats=2,
                 options=__import__("perfsim.frontends.sources", fromlist=["ModelOptions"]).ModelOptions(input_shape=(3, 8, 8)))
    from perfsim.frontends.lowering import lower_traced
    from perfsim.frontends.sources import ModelOptions, build_module
    module, shape, _ = build_module(tiny, ModelOptions(input_shape=(3, 8, 8)))
    layers = lower_traced(module, (1,) + shape).graph.layers
    assert [r.layer for r in v.rows] == [layer.name for layer in layers]  # every row was measured
    assert sum(r.calls for r in v.rows) >= len(layers)
    conv = v.rows[0]
    assert conv.op == "conv" and conv.calls == 3  # conv, BN, ReLU: one row, three calls
    assert all(r.measured_q1_s <= r.measured_s <= r.measured_q3_s for r in v.rows)
    assert v.rows_measured_s == pytest.approx(sum(r.measured_s for r in v.rows))
    assert v.predicted_s > 0 and v.measured_s > 0 and v.threads == 1
    d = v.to_dict()
    assert d["worst_op"] in {r.op for r in v.rows} and {x["op"] for x in d["by_op"]} == {r.op for r in v.rows}
    json.dumps(d)


def test_validate_command_writes_csv_json_and_plot(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "val"
    rc = main(["validate", tiny, "--profile", "edge_1mb", "--input-shape", "3x8x8", "--threads", "1",
               "--repeats", "2", "--warmup", "0", "--out", str(out), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] and d["threads"] == 1 and -1 < d["error"] < math.inf
    assert {p.name for p in out.iterdir()} >= {"validation.csv", "validation.json", "scatter.png"}
    import pandas as pd
    frame = pd.read_csv(out / "validation.csv")
    assert list(frame.columns[:5]) == ["layer", "op", "calls", "predicted_s", "measured_s"]
    assert (frame.measured_s > 0).all()


def test_validate_refuses_what_it_cannot_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"not really")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet", "--profile", "no_such_profile"]), "unknown profile")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet", "--profile", "edge_1mb", "--repeats", "0"]),
                       "--repeats", "1<=x<=1,000")
    assert_input_error(*cli_run(capsys, *["validate", "nope_model", "--profile", "edge_1mb"]), "unknown model")
    assert_input_error(*cli_run(capsys, *["validate", "mobilenet"]), "perfsim calibrate")  # no host profile yet
    assert_input_error(*cli_run(capsys, *["validate", str(tmp_path / "m.onnx"), "--profile", "edge_1mb"]), "")


def test_the_report_folder_is_never_a_users_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_input_error(*cli_run(capsys, *["validate", tiny, "--profile", "edge_1mb", "--input-shape", "3x8x8", "--repeats", "1",
                                "--threads", "1", "--out", str(out)]), "")
    assert (out / "notes.txt").read_text() == "mine"


def test_the_allocator_setting_is_checked_and_reported_for_the_whole_process():
    import subprocess
    import sys
    code = textwrap.dedent("""
        from perfsim.errors import InputError
        from perfsim.host.measure import set_allocator
        try:
            set_allocator("jemalloc")
        except InputError as e:
            print("refused:", e)
        print(set_allocator("system"), set_allocator("keep"), set_allocator("system"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused: --allocator must be one of keep, system" in out
    # glibc here: keep takes; it has no undo, so a later "system" reports that keep still holds
    assert out.splitlines()[-1] == "system keep keep"


def test_validate_times_with_the_calibrations_allocator(tiny, tmp_path, monkeypatch):
    from perfsim.hardware.loader import load_profile
    from perfsim.frontends.sources import ModelOptions
    from perfsim.host.validate import validate
    monkeypatch.chdir(tmp_path)
    calibration = {"perfsim_version": "x", "date": "d", "threads": 1}
    assert load_profile("edge_1mb", calibration=calibration).calibration.allocator == "system"  # older files
    seen = []
    import perfsim.host.measure as hosttime
    real = hosttime.time_module
    monkeypatch.setattr(hosttime, "time_module", lambda *a, **k: seen.append(k["allocator"]) or real(*a, **k))
    options = ModelOptions(input_shape=(3, 8, 8))
    v = validate(tiny, "edge_1mb", overrides=(), threads=1, warmup=0, repeats=1, options=options)
    assert seen == ["keep"] and v.allocator in ("keep", "system")  # no calibration: keep
    path = tmp_path / "p.yaml"
    path.write_text("extends: edge_1mb\ncalibration: {perfsim_version: x, date: d, threads: 1, allocator: system}\n")
    validate(tiny, str(path), threads=1, warmup=0, repeats=1, options=options)
    assert seen[-1] == "system"
    validate(tiny, str(path), threads=1, warmup=0, repeats=1, options=options, allocator="keep")
    assert seen[-1] == "keep"


def test_worst_op_ignores_ops_with_little_time():
    rows = [RowCheck("a", "conv", 1, 1.0, 1.0, 1.0, 1.0), RowCheck("b", "relu", 1, 0.001, 0.01, 0.01, 0.01),
            RowCheck("c", "conv_dw", 1, 0.5, 1.0, 1.0, 1.0)]
    v = Validation(model="m", profile="p", threads=1, rows=rows, predicted_s=1.5, measured_s=2.0, measured_q1_s=2.0,
                   measured_q3_s=2.0, rows_measured_s=2.01, unattributed_s=0.0, unattributed_calls=0,
                   spearman=0.5, load_before=(0, 0, 0), load_after=(0, 0, 0), host={})
    assert v.worst_op()["op"] == "conv_dw"  # relu is off by 10x but holds 0.5 % of the time
    assert v.error == pytest.approx(-0.25)
