"""The command line, in process through ``perfsim.cli.main`` (SPEC "Command line", "Results and reports").

``main(argv)`` returns the exit status: 0 on success, 2 on bad input with exactly one
line on stderr (``perfsim: error: ...``), never a traceback, and no report left behind.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_input_error, cli_run

import perfsim
from perfsim.frontends import zoo
from perfsim.cli import cli, main

SPEC_COLUMNS = [
    "layer", "op", "unit", "in_shape", "out_shape", "kernel", "stride", "groups", "macs", "flops",
    "vector_ops", "params", "weight_bytes", "in_bytes", "out_bytes", "sram_used_bytes",
    "dram_read_bytes", "dram_write_bytes", "spill_bytes", "tiles", "t_data_s", "t_matrix_s",
    "t_vector_s", "t_total_s", "bound",
]
SPEC_SUMMARY_KEYS = [
    "model", "profile", "perfsim_version", "latency_s", "latency_per_sample_s", "macs", "flops", "vector_ops",
    "params", "params_inference", "model_size_bytes", "dram_read_bytes", "dram_write_bytes", "spill_bytes",
    "refetch_bytes", "preload_bytes", "peak_sram_bytes", "layers", "tiled_layers", "bound_counts",
]
PLOTS = ["time_per_layer.png", "sram_occupancy.png", "dram_traffic.png", "roofline.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

USER_MODELS = '''
import torch
from torch import nn


class Small(nn.Module):
    """conv 3->8 3x3 pad 1 + BN + ReLU, 2x2 max-pool, conv 8->16 3x3 pad 1 + ReLU, global pool, FC."""

    def __init__(self, num_classes=10, act=None):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = act if act is not None else nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.pool(self.act(self.bn(self.c1(x))))
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class CumProd(Small):
    def forward(self, x):
        return torch.cumprod(super().forward(x), 1)


def small(num_classes=10):
    return Small(num_classes)


def with_fractional_pool():
    return Small(act=nn.FractionalMaxPool2d(2, output_size=15))


def with_cumprod():
    return CumProd()


def leaves():
    import sys
    sys.exit(4)
'''


def small_macs(h: int, w: int, classes: int) -> int:
    """Closed form of USER_MODELS.small: c1 at HxW, c2 at the pooled size, the FC."""
    h2, w2 = h // 2, w // 2
    return h * w * 8 * 3 * 9 + h2 * w2 * 16 * 8 * 9 + 16 * classes


def mobilenet_macs(alpha: float = 1.0, side: int = 28, classes: int = 10) -> int:
    """Closed form of the CIFAR MobileNet: 3x3 stem, (dw3x3 + pw1x1) pairs with padding 1, the FC."""
    from perfsim.models.mobilenet import CIFAR_PAIRS, CIFAR_STEM, _scaled
    c, h = _scaled(CIFAR_STEM, alpha), side
    macs = h * h * c * 3 * 9
    for cout, stride in CIFAR_PAIRS:
        co = _scaled(cout, alpha)
        h = (h - 1) // stride + 1
        macs += h * h * c * 9 + h * h * co * c
        c = co
    return macs + c * classes


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _env(isolated, monkeypatch):
    monkeypatch.delenv("PERFSIM_DEBUG", raising=False)


def run_json(capsys, *args) -> dict:
    rc, out, err = cli_run(capsys, "run", *args, "--json", "--no-plots", "--out", "rep")
    assert rc == 0, err
    return json.loads(out)


def report_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name in ("layers.csv", "summary.json") or p.suffix == ".png"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, graph_cache):
    """`perfsim run mobilenet --profile edge_1mb`, with plots, once for the module."""
    work = tmp_path_factory.mktemp("default_run")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        mp.chdir(work)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["run", "mobilenet", "--profile", "edge_1mb"])
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "dir": work / "reports" / "mobilenet" / "edge_1mb"}


@pytest.fixture(scope="module")
def frame(default_run):
    import pandas as pd
    return pd.read_csv(default_run["dir"] / "layers.csv")


@pytest.fixture(scope="module")
def summary(default_run):
    return json.loads((default_run["dir"] / "summary.json").read_text())


# --------------------------------------------------------------------------
# perfsim run: the front door and its report
# --------------------------------------------------------------------------


def test_run_prints_the_table_and_totals(default_run, summary):
    from perfsim.units import format_seconds
    assert default_run["rc"] == 0, default_run["err"]
    assert default_run["err"] == ""
    out = default_run["out"]
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "layer", "op"]
    layer_lines = [ln for ln in lines[1:] if ln.strip() and ln.split()[0].isdigit()]
    assert len(layer_lines) == summary["layers"] == 29
    assert "features.0.0" in layer_lines[0] and "classifier" in layer_lines[-1]
    assert f"latency          {format_seconds(summary['latency_s'])}" in out
    for word in ("DRAM traffic", "SRAM", "bound", "MACs"):
        assert word in out
    assert "reports/mobilenet/edge_1mb" in lines[-1]


def test_report_folder_holds_csv_json_and_four_plots(default_run):
    names = {p.name for p in default_run["dir"].iterdir()}
    assert names == {"layers.csv", "summary.json", *PLOTS, ".perfsim-report.json"}
    # written atomically: no temporary or old folder left beside it
    assert [p.name for p in default_run["dir"].parent.iterdir()] == ["edge_1mb"]


@pytest.mark.parametrize("name", PLOTS)
def test_plots_are_real_pngs(default_run, name):
    data = (default_run["dir"] / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
    assert len(data) > 20_000  # bars, axes and labels, not a blank canvas


def test_layers_csv_has_specs_columns_first_in_order(frame):
    assert list(frame.columns[: len(SPEC_COLUMNS)]) == SPEC_COLUMNS
    assert len(frame) == 29
    assert frame["in_shape"].iloc[0] == "1x3x28x28" and frame["out_shape"].iloc[0] == "1x32x28x28"
    assert set(frame["bound"]) <= {"data", "matrix", "vector"}
    assert set(frame["unit"]) <= {"matrix", "vector", "none"}
    assert (frame["flops"] == 2 * frame["macs"]).all()
    assert (frame["tiles"] >= 1).all()
    total = frame["t_data_s"] + frame["t_matrix_s"] + frame["t_vector_s"]  # edge_1mb: no overlap
    assert ((frame["t_total_s"] - total).abs() <= 1e-15 + 1e-12 * total).all()


def test_summary_has_every_spec_key(summary):
    from perfsim.hardware.loader import load_profile
    missing = [k for k in SPEC_SUMMARY_KEYS if k not in summary]
    assert not missing
    assert summary["model"] == "mobilenet"
    assert summary["perfsim_version"] == perfsim.__version__
    assert summary["profile"] == json.loads(json.dumps(load_profile("edge_1mb").resolved()))
    assert summary["latency_per_sample_s"] == summary["latency_s"]
    assert summary["macs"] == mobilenet_macs()
    module = zoo.get("mobilenet").build()
    assert summary["params"] == sum(p.numel() for p in module.parameters())  # PyTorch's count


def test_csv_sums_equal_the_summary(frame, summary):
    for col in ("macs", "flops", "vector_ops", "params", "dram_read_bytes", "dram_write_bytes", "spill_bytes"):
        assert int(frame[col].sum()) == summary[col], col
    if "refetch_bytes" in frame:
        assert int(frame["refetch_bytes"].sum()) == summary["refetch_bytes"]
    assert int(frame["weight_bytes"].sum()) == summary["model_size_bytes"]
    assert math.isclose(frame["t_total_s"].sum(), summary["latency_s"], rel_tol=1e-12)
    assert int(frame["sram_used_bytes"].max()) == summary["peak_sram_bytes"]
    assert len(frame) == summary["layers"]
    assert int((frame["tiles"] > 1).sum()) == summary["tiled_layers"]
    assert frame["bound"].value_counts().to_dict() == {k: v for k, v in summary["bound_counts"].items() if v}
    assert summary["peak_sram_bytes"] <= summary["profile"]["sram_bytes"]


def test_json_prints_only_the_summary(capsys):
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--json", "--no-plots")
    assert rc == 0, err
    assert err == ""
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert out.lstrip().startswith("{") and out.rstrip().endswith("}")
    assert all(k in data for k in SPEC_SUMMARY_KEYS)
    # --json still writes the report, and --no-plots leaves the plots out
    folder = Path("reports/mobilenet/edge_1mb")
    assert sorted(p.name for p in folder.iterdir()) == [".perfsim-report.json", "layers.csv", "summary.json"]
    assert json.loads((folder / "summary.json").read_text()) == data


def test_out_writes_where_asked(capsys, tmp_path):
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", "here/there")
    assert rc == 0, err
    assert (tmp_path / "here" / "there" / "layers.csv").is_file()
    assert (tmp_path / "here" / "there" / "summary.json").is_file()
    assert not (tmp_path / "reports").exists()
    assert "here/there" in out.splitlines()[-1]


def test_out_replaces_an_earlier_report(capsys, tmp_path):
    first = run_json(capsys, "mobilenet")
    second = run_json(capsys, "mobilenet", "--set", "sram_bytes=64KiB")
    on_disk = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert on_disk == second != first


def test_batch(capsys):
    one = run_json(capsys, "mobilenet")
    four = run_json(capsys, "mobilenet", "--batch", 4)
    assert four["macs"] == 4 * one["macs"]
    assert four["flops"] == 4 * one["flops"]
    assert four["params"] == one["params"]  # weights do not multiply
    assert four["latency_per_sample_s"] == pytest.approx(four["latency_s"] / 4, rel=1e-12)
    # weights are read once per batch, so a sample costs less than alone
    assert one["latency_s"] < four["latency_s"] < 4 * one["latency_s"]
    import pandas as pd
    frame = pd.read_csv("rep/layers.csv")
    assert frame["in_shape"].iloc[0] == "4x3x28x28"


@pytest.mark.parametrize("alpha", [0.5, 0.25])
def test_width_scales_macs_as_the_closed_form(capsys, alpha):
    base = run_json(capsys, "mobilenet")
    got = run_json(capsys, "mobilenet", "--width", alpha)
    assert got["macs"] == mobilenet_macs(alpha=alpha)
    # MobileNet's cost is dominated by the 1x1 layers: roughly alpha^2
    assert 0.9 * alpha**2 < got["macs"] / base["macs"] < 1.2 * alpha**2


@pytest.mark.parametrize("rho", [0.5, 0.75])
def test_resolution_scales_macs_as_the_closed_form(capsys, rho):
    base = run_json(capsys, "mobilenet")
    got = run_json(capsys, "mobilenet", "--resolution", rho)
    side = round(28 * rho)
    assert got["macs"] == mobilenet_macs(side=side)
    assert got["input_shape"] == [1, 3, side, side]
    assert 0.8 * rho**2 < got["macs"] / base["macs"] < 1.3 * rho**2


def test_set_sram_changes_the_result(capsys):
    base = run_json(capsys, "mobilenet")
    small = run_json(capsys, "mobilenet", "--set", "sram_bytes=64KiB")
    assert small["profile"]["sram_bytes"] == 65536
    assert small["tiled_layers"] > 0 and base["tiled_layers"] == 0
    assert small["peak_sram_bytes"] <= 65536
    assert small["dram_read_bytes"] + small["dram_write_bytes"] > base["dram_read_bytes"] + base["dram_write_bytes"]
    assert small["latency_s"] > base["latency_s"]
    assert small["macs"] == base["macs"]


def test_default_report_folder_names_the_overrides(capsys, tmp_path):
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--set", "sram_bytes=64KiB", "--batch", 2,
                           "--width", 0.5)
    assert rc == 0, err
    (folder,) = [p.parent for p in (tmp_path / "reports").rglob("summary.json")]
    assert folder.parent.name == "mobilenet_w0.5"
    assert "sram_bytes=64KiB" in folder.name and folder.name.endswith("_b2")


def test_profile_given_as_a_path(capsys, tmp_path):
    (tmp_path / "chip.yaml").write_text("extends: edge_1mb\nsram_bytes: 128KiB\n")
    data = run_json(capsys, "mobilenet", "--profile", "chip.yaml")
    assert data["profile"]["name"] == "chip" and data["profile"]["sram_bytes"] == 131072


def test_a_user_model_file_gives_a_report(capsys, tmp_path):
    (tmp_path / "nets.py").write_text(USER_MODELS)
    rc, out, err = cli_run(capsys, "run", "nets.py:small", "--input-shape", "3x16x16", "--classes", 5)
    assert rc == 0, err
    folder = tmp_path / "reports" / "nets_small_c5" / "edge_1mb"
    assert {p.name for p in folder.iterdir()} == {"layers.csv", "summary.json", *PLOTS, ".perfsim-report.json"}
    s = json.loads((folder / "summary.json").read_text())
    assert s["macs"] == small_macs(16, 16, 5)
    assert s["input_shape"] == [1, 3, 16, 16]
    import pandas as pd
    frame = pd.read_csv(folder / "layers.csv")
    assert list(frame["op"])[:2] == ["conv", "maxpool"] and frame["op"].iloc[-1] == "linear"
    # a resolution multiplier applies to a file model's --input-shape too
    data = run_json(capsys, "nets.py:small", "--input-shape", "3x16x16", "--resolution", 0.5)
    assert data["macs"] == small_macs(8, 8, 10)


# --------------------------------------------------------------------------
# Bad input: exit 2, one line, no traceback, no report
# --------------------------------------------------------------------------

BAD = {
    "unknown model": (["run", "no_such_net"], ["no_such_net", "mobilenet"]),
    "unknown profile": (["run", "mobilenet", "--profile", "no_such_chip"], ["no_such_chip", "edge_1mb"]),
    "malformed YAML file": (["run", "mobilenet", "--profile", "broken.yaml"], ["malformed YAML"]),
    "malformed local profile": (["run", "mobilenet", "--profile", "local_broken"], ["malformed YAML"]),
    "negative sram": (["run", "mobilenet", "--set", "sram_bytes=-1"], ["sram_bytes", "positive"]),
    "zero sram": (["run", "mobilenet", "--set", "sram_bytes=0KiB"], ["sram_bytes"]),
    "negative bandwidth": (["run", "mobilenet", "--set", "dram_bandwidth=-1GB/s"], ["dram_bandwidth"]),
    "bad unit": (["run", "mobilenet", "--set", "dram_bandwidth=1GB"], ["dram_bandwidth", "B/s"]),
    "unknown --set field": (["run", "mobilenet", "--set", "foo=1"], ["foo", "unknown field"]),
    "energy in watts": (["run", "mobilenet", "--set", "energy_per_mac=0.2pW"], ["energy_per_mac", "joules"]),  # issue 11: a field now
    "--set without =": (["run", "mobilenet", "--set", "sram_bytes"], ["field=value"]),
    "batch 0": (["run", "mobilenet", "--batch", "0"], ["--batch"]),
    "batch negative": (["run", "mobilenet", "--batch", "-2"], ["--batch"]),
    "batch not a number": (["run", "mobilenet", "--batch", "many"], ["--batch"]),
    "width 1.5": (["run", "mobilenet", "--width", "1.5"], ["--width"]),
    "width 0": (["run", "mobilenet", "--width", "0"], ["--width"]),
    "width on a model without one": (["run", "fastnet", "--width", "0.5"], ["fastnet", "width"]),
    "resolution 0": (["run", "mobilenet", "--resolution", "0"], ["--resolution"]),
    "resolution 2": (["run", "mobilenet", "--resolution", "2"], ["--resolution"]),
    "classes 0": (["run", "mobilenet", "--classes", "0"], ["--classes"]),
    "unknown option": (["run", "mobilenet", "--frobnicate"], ["--frobnicate"]),
    "missing model": (["run"], ["MODEL"]),
    "unknown command": (["frobnicate"], ["frobnicate"]),
    "bad input shape": (["run", "mobilenet", "--input-shape", "3x0x28"], ["--input-shape"]),
    "empty input shape": (["run", "mobilenet", "--input-shape", ""], ["--input-shape"]),
    "huge input shape": (["run", "mobilenet", "--input-shape", "3x40000x40000"], ["elements"]),
    "huge classes": (["run", "mobilenet", "--classes", "1000000000"], ["--classes"]),
    "file model without a factory": (["run", "nets.py"], ["factory"]),
    "unknown source prefix": (["run", "keras:resnet"], ["keras", "torchvision:NAME"]),
    "width on torchvision": (["run", "torchvision:resnet18", "--width", "0.5"], ["--width"]),
    "unknown models source": (["models", "--source", "keras"], ["--source"]),
    "factory that exits": (["run", "nets.py:leaves", "--input-shape", "3x16x16"], ["sys.exit(4)"]),
    "unsupported module": (["run", "nets.py:with_fractional_pool", "--input-shape", "3x16x16"],
                           ["FractionalMaxPool2d"]),
    "unsupported function": (["run", "nets.py:with_cumprod", "--input-shape", "3x16x16"], ["cumprod"]),
    "file model without shape": (["run", "nets.py:small"], ["--input-shape"]),
    "missing model file": (["run", "nope.py:small", "--input-shape", "3x16x16"], ["nope.py"]),
    "missing factory": (["run", "nets.py:nothing", "--input-shape", "3x16x16"], ["nothing"]),
    "file that does not import": (["run", "syntax.py:f", "--input-shape", "3x16x16"], ["syntax.py"]),
    "shape the model cannot take": (["run", "nets.py:small", "--input-shape", "1x16x16"], ["1x16x16"]),
    "does not fit tiled": (["run", "mobilenet", "--set", "sram_bytes=64B"], ["features.0.0", "smallest SRAM"]),
    "paper perfsim does not report on": (["paper", "resnet"], ["resnet", "mobilenet", "clcnet", "fastnet", "--list"]),
    "paper results on mobilenet": (["paper", "mobilenet", "--results", "."], ["--results", "mobilenet"]),
    "out is a file": (["run", "mobilenet", "--out", "nets.py"], ["nets.py"]),
    "out under a file": (["run", "mobilenet", "--no-plots", "--out", "nets.py/rep"], ["nets.py"]),
    "negative clc-groups": (["clc-groups", "-1", "4", "4"], []),
}


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "nets.py").write_text(USER_MODELS)
    (tmp_path / "syntax.py").write_text("def f(:\n")
    (tmp_path / "broken.yaml").write_text("sram_bytes: [1MB\ndram_bandwidth: 1GB/s\n")
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "hardware_profiles" / "local_broken.yaml").write_text("extends: edge_1mb\n  sram_bytes: 1MB\n x")
    return tmp_path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line(case, capsys, inputs):
    argv, needles = BAD[case]
    rc, out, err = cli_run(capsys, *argv)
    assert_input_error(rc, out, err, *needles)
    assert out == ""
    assert report_files(inputs) == []
    assert not (inputs / "reports").exists()
    assert not (inputs / "rep").exists()


def test_does_not_fit_names_the_smallest_sram_that_runs_the_layer(capsys):
    import re
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--set", "sram_bytes=64B")
    assert_input_error(rc, out, err, "features.0.0")
    need = int(re.search(r"smallest SRAM[^0-9]*(\d+)", err).group(1))
    assert need > 64
    # one byte less still cannot run that layer; the named size can
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--set", f"sram_bytes={need - 1}B")
    assert_input_error(rc, out, err, "features.0.0")
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--json", "--set", f"sram_bytes={need}B")
    assert "'features.0.0'" not in err


def test_a_failing_run_leaves_an_existing_report_intact(capsys, tmp_path):
    rc, _, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", "rep")
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()}
    for bad in (["--set", "sram_bytes=64B"], ["--set", "foo=1"], ["--batch", "0"], ["--profile", "nope"]):
        rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", "rep", *bad)
        assert_input_error(rc, out, err)
        assert {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folders left


def test_a_run_failing_while_writing_keeps_the_old_report(capsys, tmp_path, monkeypatch):
    import perfsim.report.plot_cache as report
    rc, _, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", "rep")
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()}

    def broken_plots(result, folder):
        (Path(folder) / "time_per_layer.png").write_bytes(b"half a picture")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(report, "write_plots", broken_plots)
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--out", "rep", "--set", "sram_bytes=64KiB")
    assert_input_error(rc, out, err, "rep", "No space left")
    assert {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


@pytest.mark.parametrize("target", [".", "mine", "sub/.."])
def test_out_never_replaces_a_folder_that_is_not_a_report(capsys, tmp_path, target):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    (tmp_path / "sub").mkdir()
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", target)
    assert_input_error(rc, out, err, "--out")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert report_files(tmp_path) == []


def test_a_profile_named_dot_dot_stays_inside_reports(capsys, tmp_path):
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--set", "name=..")
    assert rc == 0, err
    (summary_path,) = (tmp_path / "reports").rglob("summary.json")
    assert summary_path.parent.parent == tmp_path / "reports" / "mobilenet"


def test_an_internal_fault_exits_1_in_one_line(capsys, monkeypatch):
    import perfsim.sim.simulator as sim

    def broken(*a, **k):
        raise ZeroDivisionError("oops")
    monkeypatch.setattr(sim, "simulate", broken)
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots")
    assert rc == 1
    assert err.startswith("perfsim: internal error: ZeroDivisionError") and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_an_interrupt_exits_130(capsys, monkeypatch):
    import perfsim.sim.simulator as sim

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(sim, "simulate", interrupted)
    rc, out, err = cli_run(capsys, "run", "mobilenet", "--no-plots")
    assert rc == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not Path("reports").exists()


def test_a_user_factory_that_raises_is_bad_input(capsys, tmp_path):
    (tmp_path / "raises.py").write_text("def f():\n    raise RuntimeError('no weights here')\n\n"
                                        "def g():\n    return 42\n")
    rc, out, err = cli_run(capsys, "run", "raises.py:f", "--input-shape", "3x8x8", "--no-plots")
    assert_input_error(rc, out, err, "no weights here")
    rc, out, err = cli_run(capsys, "run", "raises.py:g", "--input-shape", "3x8x8", "--no-plots")
    assert_input_error(rc, out, err, "raises.py:g")
    assert not Path("reports").exists()


# --------------------------------------------------------------------------
# models, profiles, --help
# --------------------------------------------------------------------------


def test_models_json_lists_the_registry(capsys):
    rc, out, err = cli_run(capsys, "models", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    available = [s.name for s in zoo.specs()]  # every registered model: none may be missing
    assert [r["name"] for r in rows] == available
    assert "mobilenet" in available
    for r in rows:
        assert r["params"] > 0 and r["macs"] > 0 and r["layers"] > 0, r
        spec = zoo.get(r["name"])
        assert r["input_shape"] == list(spec.input_shape) and r["num_classes"] == spec.num_classes
    mob = next(r for r in rows if r["name"] == "mobilenet")
    assert mob["macs"] == mobilenet_macs()
    if "mobilenet_v1" in available:  # 569M mult-adds, 4.2M params (Howard et al.)
        v1 = next(r for r in rows if r["name"] == "mobilenet_v1")
        assert v1["macs"] == pytest.approx(569e6, rel=0.01) and v1["params"] == pytest.approx(4.2e6, rel=0.02)
    if "condensenet" in available:  # the paper's own convention, named, beside pure MACs
        cn = next(r for r in rows if r["name"] == "condensenet")
        assert round(cn["flops_condensenet_convention"] / 1e6, 2) == 65.81 and cn["macs"] < 63e6
    assert "flops_condensenet_convention" not in mob


def test_models_table(capsys):
    rc, out, err = cli_run(capsys, "models")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "input"]
    assert any(ln.startswith("mobilenet ") and "3x28x28" in ln for ln in lines)


def test_profiles_lists_shipped_and_local(capsys, tmp_path):
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "hardware_profiles" / "my_chip.yaml").write_text("extends: edge_1mb\nsram_bytes: 2MB\n")
    rc, out, err = cli_run(capsys, "profiles")
    assert rc == 0, err
    names = [ln.split()[0] for ln in out.splitlines() if ln and not ln.startswith(" ")]
    assert {"edge_1mb", "edge_256k", "paper_table3", "server_16mb", "my_chip"} <= set(names)
    assert any(ln.startswith("edge_1mb") and "1 MB" in ln and "1 GB/s" in ln for ln in out.splitlines())
    rc, out, err = cli_run(capsys, "profiles", "--json")
    assert rc == 0, err
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["edge_1mb"]["sram_bytes"] == 10**6 and by_name["edge_1mb"]["dram_bandwidth"] == 1e9
    assert by_name["my_chip"]["sram_bytes"] == 2 * 10**6 and by_name["my_chip"]["matrix_flops"] == 1e12
    assert by_name["edge_256k"]["sram_bytes"] == 262144


def test_profiles_survives_one_broken_local_profile(capsys, tmp_path):
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "hardware_profiles" / "bad.yaml").write_text("sram_bytes: [\n")
    rc, out, err = cli_run(capsys, "profiles", "--json")
    assert rc == 0
    assert {p["name"] for p in json.loads(out)} >= {"edge_1mb", "server_16mb"}
    assert len(err.splitlines()) == 1 and "bad" in err and "malformed YAML" in err


@pytest.mark.parametrize("command", [[]] + [[name] for name in sorted(cli.commands)])
def test_help_on_every_command(capsys, command):
    rc, out, err = cli_run(capsys, *command, "--help")
    assert rc == 0, err
    assert out.startswith("Usage: perfsim")
    assert err == ""


def test_every_spec_command_exists():
    assert {"run", "models", "profiles", "paper"} <= set(cli.commands)


def test_bare_perfsim_shows_the_help(capsys):
    rc, out, err = cli_run(capsys)
    assert rc == 0
    assert out.startswith("Usage: perfsim") and "run" in out


def test_version(capsys):
    rc, out, err = cli_run(capsys, "--version")
    assert rc == 0 and perfsim.__version__ in out


# --------------------------------------------------------------------------
# perfsim paper mobilenet
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_json(graph_cache):
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["paper", "mobilenet", "--json"])
    assert rc == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_paper_compute_column(paper_json):
    from perfsim.papers.mobilenet_cifar import TABLE4
    c = paper_json["compute"]
    assert [r["row"] for r in c["rows"]] == list(range(1, 28))
    assert [r["paper_s"] for r in c["rows"]] == [t[1] for t in TABLE4]
    assert c["differing_rows"] == [4, 24] and c["unexplained_rows"] == []
    assert c["matching_rows"] == 25
    for r in c["rows"]:
        assert r["perfsim_s"] == pytest.approx(r["paper_s"] / (4 if r["row"] in (4, 24) else 1), rel=5e-5)
        assert ("input size" in r["note"]) == (r["row"] in (4, 24))
    assert c["rows"][0]["layer"] == "features.0.0" and c["rows"][3]["layer"] == "features.2.depthwise.0"


def test_paper_replay_first_flush_and_totals(paper_json):
    from perfsim.papers.mobilenet_cifar import TABLE4, TABLE4_PRINTED_TOTAL_S
    r = paper_json["replay"]
    assert r["first_flush_row"] == 21 and r["paper_first_flush_row"] == 25
    assert r["first_flush_total_bytes"] > 10**6
    assert r["paper_printed_total_s"] == TABLE4_PRINTED_TOTAL_S
    assert r["paper_rows_sum_s"] == pytest.approx(sum(t[2] for t in TABLE4), rel=1e-12)
    assert r["paper_rows_sum_s"] == pytest.approx(0.001335373, abs=1e-9)
    assert r["paper_total_gap_row"] == 7
    assert r["first_flush_row_1bit_weights"] is None
    assert r["peak_total_1bit_weights_bytes"] < 10**6


def test_paper_replay_total_follows_specs_rule(paper_json, capsys):
    """The replayed latency against SPEC's paper rule, worked out here from a liveness run's sizes."""
    import pandas as pd
    rc, _, err = cli_run(capsys, "run", "mobilenet", "--no-plots", "--out", "live")
    assert rc == 0, err
    f = pd.read_csv("live/layers.csv").iloc[:27]
    total, restart, latency, flush_rows = 0, True, 0.0, []
    for i, row in enumerate(f.itertuples()):
        w = row.weight_bytes
        total = (row.in_bytes + row.out_bytes + w) if restart else total + row.out_bytes + w
        restart = total > 10**6
        moved = (row.in_bytes if i == 0 else 0) + w + (total if restart else w)
        if restart:
            flush_rows.append(i + 1)
        latency += moved / 1e9 + row.t_matrix_s + row.t_vector_s
    assert flush_rows[0] == paper_json["replay"]["first_flush_row"] == 21
    assert paper_json["replay"]["conv_latency_s"] == pytest.approx(latency, rel=1e-12)
    assert paper_json["replay"]["latency_s"] > paper_json["replay"]["conv_latency_s"]  # plus pool and FC


def test_paper_text(capsys):
    rc, out, err = cli_run(capsys, "paper", "mobilenet")
    assert rc == 0, err
    assert err == ""
    rows = [ln for ln in out.splitlines() if ln[:3].strip().isdigit() and "features." in ln]
    assert len(rows) == 27
    flagged = [int(ln.split()[0]) for ln in rows if " NO " in ln]
    assert flagged == [4, 24]
    assert all("input size" in ln for ln in rows if " NO " in ln)
    assert "row 21" in out and "row 25" in out
    assert "0.001340632" in out and "0.001335373" in out
    assert "(c) known differences" in out
    diffs = out.split("(c) known differences", 1)[1]
    for fact in ("1 bit", "row 9", "13 (404,544", "10^6", "row 7", "read back"):
        assert fact in diffs, fact


def test_paper_finds_conv_rows_by_kind_not_by_kernel_text():
    """Table rows are the layers whose kind is CONV: a kernel-carrying pool ahead of them is refused."""
    from dataclasses import replace

    from perfsim.ir.graph import OpKind
    from perfsim.papers.mobilenet_analysis import conv_rows
    from perfsim.frontends.sources import load_graph
    graph = load_graph("mobilenet").graph
    assert conv_rows(graph) == list(range(27))
    assert [layer.kind for layer in graph.layers[27:]] != [OpKind.CONV] * (len(graph.layers) - 27)
    pool_first = replace(graph, layers=(replace(graph.layers[0], kind=OpKind.MAXPOOL),) + graph.layers[1:])
    assert pool_first.layers[0].kernel == (3, 3)  # the same kernel text: only the kind tells them apart
    with pytest.raises(RuntimeError, match="27"):
        conv_rows(pool_first)


def test_paper_needs_a_name(capsys):
    rc, out, err = cli_run(capsys, "paper")
    assert_input_error(rc, out, err, "needs a paper", "condensenext", "--list")


# --------------------------------------------------------------------------
# The installed console script, end to end
# --------------------------------------------------------------------------


def _script() -> list[str]:
    exe = Path(sys.executable).parent / "perfsim"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("perfsim")
    return [found] if found else [sys.executable, "-m", "perfsim.cli"]


def test_console_script_exit_codes(tmp_path, graph_cache, default_run):
    env = dict(os.environ, PERFSIM_CACHE_DIR=str(graph_cache))
    env.pop("PERFSIM_DEBUG", None)
    ok = subprocess.run(_script() + ["run", "mobilenet", "--json", "--no-plots", "--out", "rep"], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["macs"] == mobilenet_macs()
    assert (tmp_path / "rep" / "layers.csv").is_file()
    bad = subprocess.run(_script() + ["run", "mobilenet", "--set", "sram_bytes=-1MB"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("perfsim: error: ")
    usage = subprocess.run(_script() + ["run", "--nope"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 2 and len(usage.stderr.splitlines()) == 1


def test_a_cached_run_does_not_import_torch(tmp_path):
    """The graph cache lets a repeated `perfsim run` skip torch (SPEC: under 3 s)."""
    import subprocess
    import sys
    env = dict(os.environ, PERFSIM_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import sys; from perfsim.cli import main; rc = main(['run', 'mobilenet', '--no-plots', '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr); sys.exit(rc)")
    first = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "TORCH" in first.stderr.split()
    second = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and second.stderr.split()[-1] == "NOTORCH"
    assert json.loads(second.stdout) == json.loads(first.stdout)


@pytest.mark.parametrize("row", __import__("perfsim.papers.clcnet_design", fromlist=["TABLE1"]).TABLE1)
def test_clc_groups_command_reproduces_table1(capsys, row):
    """`perfsim clc-groups M L N --json` gives the paper's Table 1 (g1, g2) for A = 9."""
    m, mid, n, g1, g2 = row
    rc, out, err = cli_run(capsys, "clc-groups", str(m), str(mid), str(n), "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert (got["g1"], got["g2"]) == (g1, g2)
    assert got["cost"] == 9 * mid * m // g1 + n * mid // g2
    rc, out, _ = cli_run(capsys, "clc-groups", str(m), str(mid), str(n))
    assert rc == 0 and f"g1={g1} g2={g2}" in out


@pytest.mark.parametrize("name", [s.name for s in zoo.specs()])  # a missing module fails, never drops a test
def test_every_zoo_model_runs_on_edge_1mb(capsys, tmp_path, name):
    """No unsupported op anywhere in the zoo; the report's rows are the graph's layers."""
    rc, out, err = cli_run(capsys, "run", name, "--profile", "edge_1mb", "--no-plots", "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["model"] == name and summary["latency_s"] > 0
    import pandas as pd
    df = pd.read_csv(tmp_path / "reports" / name / "edge_1mb" / "layers.csv")
    assert len(df) == summary["layers"]
    assert df["macs"].sum() == summary["macs"]


def test_dense_network_plots_cope_with_many_rows(capsys, tmp_path):
    """CondenseNeXt has 132 rows: the plots switch to sparse index ticks and stay readable sizes."""
    rc, _, err = cli_run(capsys, "run", "condensenext", "--set", "sram_bytes=48KiB", "--out", "r")
    assert rc == 0, err
    for png in ("time_per_layer.png", "sram_occupancy.png", "dram_traffic.png", "roofline.png"):
        data = (tmp_path / "r" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert 800 <= width <= 2400 and 400 <= height <= 1000, (png, width, height)


def test_editing_a_helper_beside_a_file_model_invalidates_the_cache(capsys, tmp_path):
    (tmp_path / "blocks.py").write_text("import torch.nn as nn\nWIDTH = 8\n")
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\nimport importlib, sys\nsys.path.insert(0, __file__.rsplit('/', 1)[0])\n"
        "import blocks; importlib.reload(blocks)\n"
        "def make():\n    return nn.Sequential(nn.Conv2d(3, blocks.WIDTH, 3, padding=1, bias=False))\n")
    first = run_json(capsys, "net.py:make", "--input-shape", "3x8x8")
    (tmp_path / "blocks.py").write_text("import torch.nn as nn\nWIDTH = 16\n")
    second = run_json(capsys, "net.py:make", "--input-shape", "3x8x8")
    assert second["macs"] == 2 * first["macs"]
