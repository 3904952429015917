"""Model sources (docs/sources.md): MODEL parsed into one ``ModelSource`` type, options refused
where they do not apply, sizes bounded before anything is built, user code kept in its place,
and torchvision / timm / ONNX models run end to end through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cli_checks import assert_input_error, cli_run

from perfsim.frontends import sources
from perfsim.errors import InputError
from perfsim.frontends.sources import MAX_CLASSES, MAX_INPUT_ELEMENTS, MAX_PARAMS, ModelOptions, ModelSource, SourceKind



@pytest.fixture(autouse=True)
def _env(isolated, monkeypatch):
    monkeypatch.delenv("PERFSIM_DEBUG", raising=False)


def flop_counter_macs(module, shape) -> int:
    """torch's own count of the same forward: an independent reference for MACs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros((1, *shape)))
    return counter.get_total_flops() // 2


# --------------------------------------------------------------------------
# Parsing MODEL
# --------------------------------------------------------------------------

PARSED = {
    "mobilenet": (SourceKind.ZOO, "mobilenet", None),
    "nets.py:small": (SourceKind.FILE, "small", "nets.py"),
    "a/b/nets.py:small": (SourceKind.FILE, "small", "a/b/nets.py"),
    "we:ird/nets.py:small": (SourceKind.FILE, "small", "we:ird/nets.py"),  # ':' in a folder name
    "x.py:y/nets.py:make": (SourceKind.FILE, "make", "x.py:y/nets.py"),  # the last ':' after '.py'
    "C:/models/nets.py:make": (SourceKind.FILE, "make", "C:/models/nets.py"),
    "torchvision:resnet50": (SourceKind.TORCHVISION, "resnet50", None),
    "timm:efficientnet_b0": (SourceKind.TIMM, "efficientnet_b0", None),
    "timm:resnet10t.c3_in1k": (SourceKind.TIMM, "resnet10t.c3_in1k", None),  # a pretrained tag
    "model.onnx": (SourceKind.ONNX, "model", "model.onnx"),
    "dir:x/Model.ONNX": (SourceKind.ONNX, "Model", "dir:x/Model.ONNX"),
    "torchvision:net.py:make": (SourceKind.FILE, "make", "torchvision:net.py"),  # a path wins
}


@pytest.mark.parametrize("text", list(PARSED))
def test_parse_every_kind(text):
    kind, name, path = PARSED[text]
    src = ModelSource.parse(text)
    assert (src.kind, src.name, src.path) == (kind, name, Path(path) if path else None)
    assert ModelSource.parse(str(src)) == src  # str() gives back the MODEL argument


BAD_MODELS = {
    "": ["empty"],
    "   ": ["empty"],
    "nets.py": ["factory", "nets.py:make_model"],
    "nets.py:": ["factory"],
    "nets.py:1abc": ["factory", "Python name"],
    "nets.py:a-b": ["factory"],
    "nets.py:make\nx": ["factory"],
    "foo:bar": ["unknown model source", "'foo'", "torchvision:NAME"],
    "torchvision:": ["torchvision:resnet18"],
    "timm:../../etc/passwd": ["timm:resnet18"],
    "torchvision:res net": ["torchvision:resnet18"],
    "timm:" + "a" * 300: ["timm:resnet18"],
}


@pytest.mark.parametrize("text", list(BAD_MODELS))
def test_malformed_model_arguments_are_one_line(capsys, text):
    rc, out, err = cli_run(capsys, "run", text, "--no-plots")
    assert_input_error(rc, out, err, *BAD_MODELS[text])
    assert len(err) < 400  # a hostile argument is shown shortened


@pytest.mark.parametrize("text", ["no_such_net", "x" * 10_000, "a\x00b", "../../etc/passwd", "nope.py:f",
                                  "dir/" + "n" * 5000 + ".py:f", "nul\x00.py:f", "missing.onnx"])
def test_unknown_names_and_missing_files_are_one_line(capsys, text):
    rc, out, err = cli_run(capsys, "run", text, "--no-plots", "--input-shape", "3x8x8")
    assert_input_error(rc, out, err)
    assert len(err) < 600
    assert not Path("reports").exists()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab.:/_-py onxtimvsr\x00\n"), max_size=30) | st.text(max_size=30))
def test_parse_any_text_either_gives_a_source_or_input_error(text):
    try:
        src = ModelSource.parse(text)
    except InputError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
        return
    assert isinstance(src.kind, SourceKind)
    assert ModelSource.parse(str(src)) == src


# --------------------------------------------------------------------------
# Options: refused where they do not apply, bounded everywhere
# --------------------------------------------------------------------------

REFUSED = {
    "width on torchvision": (["torchvision:resnet18", "--width", "0.5"], ["--width", "torchvision"]),
    "width on timm": (["timm:resnet10t", "--width", "0.5"], ["--width", "timm"]),
    "width on onnx": (["model.onnx", "--width", "0.5"], ["--width", "onnx"]),
    "classes on onnx": (["model.onnx", "--classes", "3"], ["--classes", "onnx"]),
    "resolution on onnx": (["model.onnx", "--resolution", "0.5"], ["--resolution", "--input-shape"]),
    "width on a zoo model without one": (["fastnet", "--width", "0.5"], ["fastnet", "width"]),
    "empty input shape": (["mobilenet", "--input-shape", ""], ["--input-shape"]),
    "blank input shape": (["mobilenet", "--input-shape", " "], ["--input-shape"]),
    "huge input shape": (["mobilenet", "--input-shape", "3x40000x40000"], ["4,800,000,000", f"{MAX_INPUT_ELEMENTS:,}"]),
    "huge input shape, file model": (["nets.py:f", "--input-shape", "3x40000x40000"], ["elements"]),
    "huge input shape, torchvision": (["torchvision:resnet18", "--input-shape", "3x40000x40000"], ["elements"]),
    "400-digit input shape": (["mobilenet", "--input-shape", "3x" + "9" * 400 + "x1"], ["elements"]),
    "huge classes on the zoo": (["mobilenet", "--classes", "1000000000"], ["--classes", f"{MAX_CLASSES:,}"]),
    "400-digit classes": (["mobilenet", "--classes", "9" * 400], ["--classes"]),
    "nan width": (["mobilenet", "--width", "nan"], ["--width"]),
    "inf resolution": (["mobilenet", "--resolution", "inf"], ["--resolution"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_options_refused_in_one_line_without_importing_torch(case, tmp_path):
    """Each refusal comes before torch (or torchvision) is imported, so it costs no memory."""
    argv, needles = REFUSED[case]
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    (tmp_path / "nets.py").write_text("def f():\n    raise AssertionError('never built')\n")
    code = ("import sys; from perfsim.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "run", *argv, "--no-plots"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PERFSIM_CACHE_DIR=str(tmp_path / "cache")))
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and lines[-1] == "NOTORCH", done.stderr
    assert_input_error(2, done.stdout, "\n".join(lines[:-1]), *needles)


# --------------------------------------------------------------------------
# A user's own model file: its code stays in its place
# --------------------------------------------------------------------------

USER = '''
import sys
import torch
from torch import nn

print("importing the model file")


class Loud(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        print("in forward")
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))


def loud(num_classes=10):
    print("building")
    return Loud(num_classes)


def leaves():
    sys.exit(3)


def leaves_quietly():
    raise SystemExit


def huge():
    return nn.Sequential(nn.Flatten(), nn.Linear(1000, 1_100_000))  # 1.1e9 parameters, 4.4 GB


def not_on_meta(num_classes=10):
    k = int(torch.tensor(num_classes).item())  # .item() cannot run on the meta device
    return Loud(k)
'''


@pytest.fixture
def user_file(tmp_path):
    folder = tmp_path / "my:models"  # a ':' in the folder name
    folder.mkdir()
    (folder / "nets.py").write_text(USER)
    return "my:models/nets.py"


def test_a_colon_in_the_folder_name_works(capsys, user_file):
    rc, out, err = cli_run(capsys, "run", f"{user_file}:loud", "--input-shape", "3x8x8", "--no-plots")
    assert rc == 0, err
    assert (Path("reports") / "nets_loud" / "edge_1mb" / "summary.json").is_file()


def test_user_prints_never_reach_json_stdout(capsys, user_file):
    rc, out, err = cli_run(capsys, "run", f"{user_file}:loud", "--input-shape", "3x8x8", "--no-plots", "--json",
                           "--no-cache")
    assert rc == 0, err
    data = json.loads(out)  # the whole of stdout is the summary
    assert data["macs"] == 8 * 8 * 8 * 3 * 9 + 8 * 10
    for said in ("importing the model file", "building", "in forward"):
        assert said in err and said not in out


@pytest.mark.parametrize("factory, needle", [("leaves", "sys.exit(3)"), ("leaves_quietly", "sys.exit(None)")])
def test_a_factory_that_exits_is_bad_input(capsys, user_file, factory, needle):
    rc, out, err = cli_run(capsys, "run", f"{user_file}:{factory}", "--input-shape", "3x8x8", "--no-plots")
    assert rc == 2, (out, err)
    last = err.splitlines()[-1]
    assert last.startswith("perfsim: error: ") and needle in last and "Traceback" not in err
    assert not Path("reports").exists()


def test_a_huge_model_is_refused_before_it_is_allocated(user_file, tmp_path):
    """Counted on the meta device: refused without taking its 4.4 GB (peak RSS of the child checked)."""
    code = ("import resource, sys; from perfsim.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "run", f"{user_file}:huge", "--input-shape", "1x1000x1",
                           "--no-plots"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PERFSIM_CACHE_DIR=str(tmp_path / "cache")))
    *lines, peak_kib = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert f"{MAX_PARAMS:,}" in lines[-1] and "1,101,100,000 parameters" in lines[-1]
    assert int(peak_kib) < 1_500_000  # torch alone is ~250 MB; the model would be 4.4 GB


def test_a_factory_that_cannot_build_on_meta_still_runs(capsys, user_file):
    rc, out, err = cli_run(capsys, "run", f"{user_file}:not_on_meta", "--input-shape", "3x8x8", "--no-plots",
                           "--json", "--classes", "4")
    assert rc == 0, err
    assert json.loads(out)["macs"] == 8 * 8 * 8 * 3 * 9 + 8 * 4


def test_classes_reach_a_file_factory_and_resolution_scales_its_shape(capsys, user_file):
    rc, out, err = cli_run(capsys, "run", f"{user_file}:loud", "--input-shape", "3x16x16", "--resolution", "0.5",
                           "--classes", "7", "--no-plots", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["input_shape"] == [1, 3, 8, 8] and data["macs"] == 8 * 8 * 8 * 3 * 9 + 8 * 7


# --------------------------------------------------------------------------
# torchvision and timm
# --------------------------------------------------------------------------


def _fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(tmp_path / "fresh-cache"))


def test_torchvision_resnet18_end_to_end(capsys, monkeypatch, tmp_path):
    from perfsim.frontends.thirdparty import import_torchvision
    tv = import_torchvision()
    _fresh_cache(monkeypatch, tmp_path)
    rc, out, err = cli_run(capsys, "run", "torchvision:resnet18", "--resolution", "0.25", "--no-plots", "--json")
    assert rc == 0, err
    data = json.loads(out)
    reference = tv.models.resnet18(weights=None)
    assert data["model"] == "torchvision:resnet18"
    assert data["input_shape"] == [1, 3, 56, 56]  # the default 224 at rho = 0.25
    assert data["macs"] == flop_counter_macs(reference, (3, 56, 56))
    assert data["params"] == sum(p.numel() for p in reference.parameters())
    assert (tmp_path / "reports" / "torchvision_resnet18_r0.25" / "edge_1mb" / "summary.json").is_file()
    # the same again is a cache hit with the same numbers
    rc, out2, err = cli_run(capsys, "run", "torchvision:resnet18", "--resolution", "0.25", "--no-plots", "--json")
    assert rc == 0 and json.loads(out2) == data


def test_torchvision_classes_and_default_shape():
    lowered = sources.load_graph("torchvision:resnet18", ModelOptions(num_classes=10), use_cache=False)
    assert lowered.input_shape == (3, 224, 224)
    assert lowered.graph.layers[-1].params == 512 * 10 + 10


def test_timm_end_to_end(capsys, monkeypatch, tmp_path):
    from perfsim.frontends.thirdparty import import_timm
    timm = import_timm()
    _fresh_cache(monkeypatch, tmp_path)
    rc, out, err = cli_run(capsys, "run", "timm:resnet10t", "--resolution", "0.25", "--no-plots", "--json")
    assert rc == 0, err
    data = json.loads(out)
    reference = timm.create_model("resnet10t", pretrained=False)
    side = reference.pretrained_cfg["input_size"][1] // 4  # timm's own default input size (176)
    assert data["input_shape"] == [1, 3, side, side] == [1, 3, 44, 44]
    assert data["macs"] == flop_counter_macs(reference, (3, side, side))
    assert data["params"] == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("model, needle", [("torchvision:no_such_net", "torchvision"),
                                           ("torchvision:fasterrcnn_resnet50_fpn", "classification"),
                                           ("timm:no_such_net", "timm")])
def test_unknown_library_names_are_one_line(capsys, model, needle):
    rc, out, err = cli_run(capsys, "run", model, "--no-plots")
    assert_input_error(rc, out, err, needle, "perfsim models --source")


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_a_missing_library_names_its_extra(capsys, monkeypatch, library):
    from perfsim.frontends import cache
    real = cache.installed_version
    monkeypatch.setattr(cache, "installed_version", lambda p: None if p == library else real(p))
    rc, out, err = cli_run(capsys, "run", f"{library}:resnet18", "--no-plots")
    assert_input_error(rc, out, err, f"pip install 'perfsim[{library}]'")


def test_models_lists_a_missing_library_in_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails as when it is not installed
    rc, out, err = cli_run(capsys, "models", "--source", "timm")
    assert_input_error(rc, out, err, "perfsim[timm]")


def test_models_lists_torchvision_and_timm_names(capsys):
    rc, out, err = cli_run(capsys, "models", "--source", "torchvision")
    assert rc == 0, err
    names = out.split()
    assert {"resnet18", "vit_b_16", "mobilenet_v3_large"} <= set(names)
    assert "fasterrcnn_resnet50_fpn" not in names  # classification models only
    rc, out, err = cli_run(capsys, "models", "--source", "timm", "--json")
    assert rc == 0, err
    assert {"resnet10t", "efficientnet_b0"} <= set(json.loads(out))
    rc, out, err = cli_run(capsys, "models", "--source", "zoo", "--json")
    assert rc == 0 and "mobilenet" in [r["name"] for r in json.loads(out)]


# --------------------------------------------------------------------------
# ONNX (perfsim.frontends.onnx)
# --------------------------------------------------------------------------


def _tiny_onnx(path: Path) -> None:
    """conv 3->8 3x3 pad 1 + ReLU, global average pool, flatten, FC 8->5, built with onnx.helper."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.zeros((8,), np.float32), "b"),
             numpy_helper.from_array(np.zeros((5, 8), np.float32), "fw"),
             numpy_helper.from_array(np.zeros((5,), np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    onnx.save(helper.make_model(graph), path)


def test_an_onnx_file_end_to_end(capsys, tmp_path):
    _tiny_onnx(tmp_path / "tiny.onnx")
    rc, out, err = cli_run(capsys, "run", "tiny.onnx", "--no-plots", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["input_shape"] == [1, 3, 16, 16]
    assert data["macs"] == 16 * 16 * 8 * 3 * 9 + 8 * 5
    assert data["params"] == 8 * 27 + 8 + 5 * 8 + 5
