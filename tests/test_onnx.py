"""ONNX import: exported zoo and torchvision models lower to the same layers as the torch front end;
each ONNX rule against closed forms on hand-built graphs; hostile files fail in one line."""
from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from perfsim.frontends import zoo  # noqa: E402
from perfsim.errors import InputError, UnsupportedOpError  # noqa: E402
from perfsim.ir.graph import OpKind  # noqa: E402
from perfsim.frontends.onnx import lower_onnx  # noqa: E402
from perfsim.hardware.loader import load_profile  # noqa: E402


def torch_lower():
    """The torch front end."""
    from perfsim.frontends.lowering import lower
    return lower


def simulate_fn():
    from perfsim.sim.simulator import simulate
    return simulate


# --------------------------------------------------------------------------
# Exported models against the torch front end
# --------------------------------------------------------------------------


def _torchvision(name: str):
    from perfsim.frontends.thirdparty import import_torchvision
    return getattr(import_torchvision().models, name)()


MODELS = {  # name: (builder, input shape C,H,W — small, the import is shape-generic)
    "mobilenet": (lambda: zoo.get("mobilenet").build(), (3, 28, 28)),
    "fastnet": (lambda: zoo.get("fastnet").build(), (3, 32, 32)),
    "condensenet": (lambda: zoo.get("condensenet").build(), (3, 32, 32)),
    "resnet18": (lambda: _torchvision("resnet18"), (3, 32, 32)),
    "mobilenet_v2": (lambda: _torchvision("mobilenet_v2"), (3, 32, 32)),
}
# Models whose exported BNs the exporter folds into a conv (condensenet's BNs all precede their conv).
FOLDING = ("mobilenet", "fastnet", "resnet18", "mobilenet_v2")


def _trained_like(model: nn.Module) -> nn.Module:
    """Random BN statistics and biases, as a trained model has. A fresh model's BN weights (ones),
    biases and running means (zeros) are equal tensors, which the exporters deduplicate (legacy) or
    drop as zero biases (dynamo's optimizer): true for a fresh model, never for a trained one."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
                m.bias.uniform_(-0.5, 0.5, generator=g)
    return model.eval()


def _export(model: nn.Module, shape, path, **kw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notes
        torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), **kw)


@dataclass
class Exported:
    model: nn.Module
    torch_graph: Any
    modules: set[str]
    files: dict[str, Path]  # "kept": BN kept (training=PRESERVE), "folded": the exporter's defaults (EVAL)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``exports(name)``: the model, its torch lowering and its ONNX files, built once per module."""
    done: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in done:
            build, shape = MODELS[name]
            model = _trained_like(build())
            folder = tmp_path_factory.mktemp(f"onnx-{name}")
            files = {"kept": folder / f"{name}_kept.onnx", "folded": folder / f"{name}_folded.onnx"}
            _export(model, shape, files["kept"], dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
            if name in FOLDING:
                _export(model, shape, files["folded"], dynamo=False)  # defaults: EVAL, do_constant_folding=True
            done[name] = Exported(model, torch_lower()(model, shape, name=name),
                                  {n for n, _ in model.named_modules() if n}, files)
        return done[name]
    return get


def _same_layers(t, o, modules) -> None:
    assert len(o.layers) == len(t.layers)
    for a, b in zip(t.layers, o.layers):
        # torch.fx names a functional call (x + y) by its node ("add_3"), ONNX by the module it is in;
        # at the top level (no module) both fall back to the call's name ("adaptive_avg_pool2d", "GlobalAveragePool")
        top_level = b.name not in modules and "." not in b.name
        assert a.name == b.name or (a.name not in modules and (b.name in modules or top_level)), (a.name, b.name)
        assert (b.kind, b.op, b.unit) == (a.kind, a.op, a.unit), a.name
        assert (b.in_shape, b.out_shape, b.kernel, b.stride, b.padding, b.groups, b.dilation) == \
            (a.in_shape, a.out_shape, a.kernel, a.stride, a.padding, a.groups, a.dilation), a.name
        assert b.macs == a.macs, a.name
        assert b.vector_ops(True, True) == a.vector_ops(True, True), a.name
        assert b.params_inference(True) == a.params_inference(True), a.name
    assert o.macs == t.macs
    assert len(o.tensors) == len(t.tensors)


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_with_bn_kept_matches_torch(exports, name):
    e = exports(name)
    t, o = e.torch_graph, lower_onnx(e.files["kept"], name=name)
    _same_layers(t, o, e.modules)
    assert [ly.params for ly in o.layers] == [ly.params for ly in t.layers]
    assert o.params == t.params == sum(ly.params for ly in o.layers)
    assert [ly.vector_ops(False, False) for ly in o.layers] == [ly.vector_ops(False, False) for ly in t.layers]


@pytest.mark.parametrize("name", FOLDING)
def test_exported_with_bn_folded_differs_by_the_folded_bn_parameters(exports, name):
    """The exporter folds conv -> BN in eval mode: each row keeps its name, kind and MACs; its
    params are the torch row's after folding (the BN's 2 per channel become the conv's bias)."""
    e = exports(name)
    t, o = e.torch_graph, lower_onnx(e.files["folded"], name=name)
    _same_layers(t, o, e.modules)
    assert [ly.params for ly in o.layers] == [ly.params_inference(True) for ly in t.layers]
    folded = sum(2 * ly.epilogue_bn_channels - (0 if ly.bias_elems else ly.epilogue_bn_channels) for ly in t.layers)
    assert folded > 0
    assert t.params - o.params == folded
    assert sum(ly.epilogue_bn_channels for ly in o.layers) == 0


@pytest.mark.parametrize("name,variant", [(n, "kept") for n in MODELS] + [(n, "folded") for n in FOLDING])
def test_exported_simulates_like_torch(exports, name, variant):
    e = exports(name)
    simulate, profile = simulate_fn(), load_profile("edge_1mb")
    rt, ro = simulate(e.torch_graph, profile), simulate(lower_onnx(e.files[variant], name=name), profile)
    assert ro.summary["latency_s"] == pytest.approx(rt.summary["latency_s"], rel=1e-12)
    assert ro.summary["model_size_bytes"] == rt.summary["model_size_bytes"]
    assert ro.summary["dram_read_bytes"] == rt.summary["dram_read_bytes"]
    assert [r.t_total_s for r in ro.rows] == pytest.approx([r.t_total_s for r in rt.rows], rel=1e-12)


def test_exported_lowers_without_torch(exports):
    """lower_onnx is torch-free: a fresh interpreter lowers the file and never imports torch."""
    e = exports("resnet18")
    code = ("import sys\nfrom perfsim.frontends.onnx import lower_onnx\n"
            f"g = lower_onnx({str(e.files['kept'])!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint(g.macs)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == e.torch_graph.macs


@pytest.mark.parametrize("optimize", [True, False])
def test_dynamo_exporter(tmp_path, optimize):
    """torch's default exporter (dynamo; needs onnxscript): names from its name_scopes metadata; its
    optimizer folds BN into the conv (the conv then carries the BN's scope: named by its weight)."""
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    model = _trained_like(_torchvision("resnet18"))
    t = torch_lower()(model, (3, 32, 32))
    _export(model, (3, 32, 32), tmp_path / "r18.onnx", dynamo=True, optimize=optimize, verbose=False)
    o = lower_onnx(tmp_path / "r18.onnx")
    _same_layers(t, o, {n for n, _ in model.named_modules() if n})
    expected = [ly.params_inference(True) for ly in t.layers] if optimize else [ly.params for ly in t.layers]
    assert [ly.params for ly in o.layers] == expected


# --------------------------------------------------------------------------
# Rules against closed forms, on hand-built graphs
# --------------------------------------------------------------------------


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name, *shape, value=None):
    arr = np.full(shape, value, np.float32) if value is not None else \
        np.random.default_rng(len(name)).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(arr, name)


def _save(tmp_path, nodes, inits, in_shape, out="y", opset=17, fname="m.onnx"):
    graph = helper.make_graph(nodes, "g", [_vi("x", in_shape)], [_vi(out, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / fname
    onnx.save(model, str(path))
    return path


def test_conv_asymmetric_and_same_padding_closed_form(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/a/Conv", pads=[0, 1, 1, 2], strides=[2, 2]),
        helper.make_node("Conv", ["c1", "w2"], ["y"], name="/b/Conv", auto_pad="SAME_UPPER", group=8,
                         dilations=[2, 2]),
    ]
    path = _save(tmp_path, nodes, [_init("w1", 8, 3, 3, 3), _init("b1", 8), _init("w2", 8, 1, 3, 3)], [1, 3, 15, 16])
    g = lower_onnx(path)
    a, b = g.layers
    ho, wo = (15 + 1 - 3) // 2 + 1, (16 + 3 - 3) // 2 + 1  # pads: top 0, left 1, bottom 1, right 2
    assert a.out_shape == (1, 8, ho, wo) and a.padding == (0, 1)  # the top/left pads (what tiling reads)
    assert a.macs == ho * wo * 8 * 3 * 9 and a.params == 8 * 27 + 8 and (a.weight_elems, a.bias_elems) == (216, 8)
    assert (a.name, a.op, a.stride) == ("a", "conv", (2, 2))
    # SAME_UPPER, dilation 2: total pad (k-1)*d = 4 per side pair, 2 at the top and left
    assert b.out_shape == (1, 8, ho, wo) and b.padding == (2, 2) and b.dilation == (2, 2)
    assert b.op == "conv_dw" and b.macs == ho * wo * 8 * 9 and b.params == 72
    assert g.params == 216 + 8 + 72


def test_gemm_matmul_bias_and_shared_weight(tmp_path):
    """Gemm (weight stored in,out with transB=0), MatMul + Add(bias) = one linear, a weight read twice counts once."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g1"], name="/fc1/Gemm"),
        helper.make_node("Unsqueeze", ["g1", "ax"], ["u"], name="/Unsqueeze"),
        helper.make_node("MatMul", ["u", "wm"], ["m"], name="/proj/MatMul"),
        helper.make_node("Add", ["m", "bm"], ["a"], name="/proj/Add"),
        helper.make_node("MatMul", ["a", "wm"], ["y"], name="/proj2/MatMul"),
    ]
    inits = [_init("wg", 48, 16), _init("bg", 16), numpy_helper.from_array(np.array([1], np.int64), "ax"),
             _init("wm", 16, 16), _init("bm", 16)]
    g = lower_onnx(_save(tmp_path, nodes, inits, [1, 3, 4, 4]))
    fc1, proj, proj2 = g.layers
    assert (fc1.name, fc1.kind, fc1.macs, fc1.params, fc1.bias_elems) == ("fc1", OpKind.LINEAR, 48 * 16, 48 * 16 + 16, 16)
    assert (proj.name, proj.kind, proj.macs, proj.params, proj.bias_elems) == ("proj", OpKind.LINEAR, 256, 272, 16)
    assert (proj2.macs, proj2.params, proj2.weight_elems, proj2.shares_weights) == (256, 0, 256, True)
    assert g.params == 48 * 16 + 16 + 256 + 16


def test_vector_rules_closed_form(tmp_path):
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["bn"], name="/bn/BatchNormalization"),
        helper.make_node("Clip", ["bn"], ["r6"], name="/act/Clip", min=0.0, max=6.0),
        helper.make_node("MaxPool", ["r6"], ["mp"], name="/pool/MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["mp"], ["ap"], name="/avg/AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["ap", "gamma"], ["sc"], name="/scale/Mul"),
        helper.make_node("Constant", [], ["half"], name="/half/Constant", value=numpy_helper.from_array(
            np.array(0.5, np.float32))),
        helper.make_node("Mul", ["sc", "half"], ["h"], name="/half/Mul"),
        helper.make_node("ReduceMean", ["h"], ["rm"], name="/gap/ReduceMean", axes=[-1, -2], keepdims=0),
        helper.make_node("Softmax", ["rm"], ["y"], name="/sm/Softmax"),
    ]
    inits = [_init("s", 4), _init("b", 4), _init("mean", 4), _init("var", 4, value=1.0), _init("gamma", 1, 4, 1, 1)]
    g = lower_onnx(_save(tmp_path, nodes, inits, [1, 4, 16, 16], opset=10))
    rows = {ly.name: ly for ly in g.layers}
    n = 4 * 16 * 16
    assert rows["bn"].op == "batchnorm+relu6" and rows["bn"].params == 8  # mean and var are buffers
    assert rows["bn"].vector_ops(True, True) == 2 * n + 2 * n
    assert rows["pool"].vector_ops(True, True) == 8 * 4 * 8 * 8 and rows["pool"].padding == (1, 1)
    assert rows["avg"].vector_ops(True, True) == 4 * 4 * 4 * 4
    assert rows["scale"].params == 4 and rows["scale"].weight_elems == 4  # a learned scale is a parameter
    assert rows["half"].params == 0 and rows["half"].weight_elems == 0  # a literal is not
    assert rows["gap"].kind is OpKind.GLOBAL_AVGPOOL and rows["gap"].vector_ops(True, True) == 4 * 4 * 4
    assert rows["sm"].vector_ops(True, True) == 5 * 4
    assert g.params == 8 + 4


def test_split_slice_gather_concat_are_rowless(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
        helper.make_node("Split", ["c", "sizes"], ["p0", "p1"], name="/Split", axis=1),
        helper.make_node("Gather", ["p0", "idx"], ["g"], name="/Gather", axis=1),
        helper.make_node("Slice", ["p1", "st", "en", "axs"], ["s"], name="/Slice"),
        helper.make_node("Concat", ["g", "s"], ["cat"], name="/Concat", axis=1),
        helper.make_node("Conv", ["cat", "w2"], ["y"], name="/conv2/Conv"),
    ]
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    inits = [_init("w", 8, 3, 1, 1), i64("sizes", [4, 4]), i64("idx", [0, 2]), i64("st", [1]), i64("en", [3]),
             i64("axs", [1]), _init("w2", 5, 4, 1, 1)]
    g = lower_onnx(_save(tmp_path, nodes, inits, [1, 3, 6, 6]))
    conv, conv2 = g.layers
    assert conv2.in_shape == (1, 4, 6, 6) and conv2.macs == 36 * 5 * 4
    assert conv2.inputs == (conv.output,)  # every piece reads the whole source
    assert g.params == 24 + 20  # indices are not parameters


# --------------------------------------------------------------------------
# Hostile and unsupported files: one InputError line
# --------------------------------------------------------------------------


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_not_onnx_truncated_and_oversized_files(tmp_path, monkeypatch):
    (tmp_path / "text.onnx").write_text("not a model\n" * 20)
    with pytest.raises(InputError) as e:
        lower_onnx(tmp_path / "text.onnx")
    assert "not a readable ONNX model" in _one_line(e)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(InputError) as e:
        lower_onnx(tmp_path / "empty.onnx")
    assert "not an ONNX model" in _one_line(e)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="/c/Conv")]
    data = _save(tmp_path, nodes, [_init("w", 64, 3, 3, 3)], [1, 3, 8, 8]).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        lower_onnx(tmp_path / "cut.onnx")
    assert "cut.onnx" in _one_line(e)
    with pytest.raises(InputError, match="not found"):
        lower_onnx(tmp_path / "absent.onnx")
    monkeypatch.setattr("perfsim.frontends.onnx.read.MAX_FILE_BYTES", 100)  # read.load_model's limit; really 2 GiB
    with pytest.raises(InputError, match="an ONNX model file is at most 2 GiB") as e:
        lower_onnx(tmp_path / "text.onnx")
    _one_line(e)


def test_unsupported_ops_listed_in_one_error(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.lstm = nn.LSTM(8, 8, batch_first=True)

        def forward(self, x):
            y, _ = self.lstm(self.conv(x).flatten(2).transpose(1, 2))
            return torch.sigmoid(torch.sigmoid(y))

    _export(Net().eval(), (3, 8, 8), tmp_path / "lstm.onnx", dynamo=False)
    with pytest.raises(UnsupportedOpError) as e:
        lower_onnx(tmp_path / "lstm.onnx")
    msg = _one_line(e)
    assert "Sigmoid x2 (first at '/Sigmoid')" in msg and "LSTM x1 (first at '/lstm/LSTM')" in msg

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node("Fancy", ["r"], ["y"], name="fancy", domain="com.example")]
    graph = helper.make_graph(nodes, "g", [_vi("x", [1, 3, 4, 4])], [_vi("y", None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(UnsupportedOpError, match=r"com\.example\.Fancy x1 \(first at 'fancy'\)"):
        lower_onnx(tmp_path / "custom.onnx")

    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], name="/bn/BN",
                          training_mode=1)  # TrainingMode.TRAINING exports this: statistics of the batch
    path = _save(tmp_path, [bn], [_init(n, 3) for n in "sbmv"], [1, 3, 4, 4], fname="train.onnx")
    with pytest.raises(UnsupportedOpError, match="BatchNormalization in training mode x1"):
        lower_onnx(path)


def test_activation_matmul_and_other_clips(tmp_path):
    mm = _save(tmp_path, [helper.make_node("MatMul", ["x", "x"], ["y"], name="/mm/MatMul")], [], [1, 3, 4, 4],
               fname="mm.onnx")
    if hasattr(OpKind, "MATMUL"):  # both operands activations: the matrix unit, no weights (SPEC)
        (layer,) = lower_onnx(mm).layers
        assert layer.kind is OpKind.MATMUL and layer.macs == 3 * 4 * 4 * 4 and layer.params == 0
    else:
        with pytest.raises(UnsupportedOpError, match="MatMul of two activations x1") as e:
            lower_onnx(mm)
        _one_line(e)
    clip = _save(tmp_path, [helper.make_node("Clip", ["x"], ["y"], name="/clip/Clip", min=-1.0, max=1.0)], [],
                 [1, 3, 4, 4], opset=10, fname="clip.onnx")
    with pytest.raises(UnsupportedOpError, match=r"Clip\(-1\.0, 1\.0\)") as e:
        lower_onnx(clip)
    _one_line(e)


def test_input_shapes(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="/c/Conv")]
    dyn = _save(tmp_path, nodes, [_init("w", 4, 3, 3, 3)], ["N", 3, "H", "W"], fname="dyn.onnx")
    with pytest.raises(InputError, match="give --input-shape") as e:
        lower_onnx(dyn)
    _one_line(e)
    g = lower_onnx(dyn, (3, 10, 12))
    assert g.input_shape == (1, 3, 10, 12) and g.macs == 8 * 10 * 4 * 27
    static = _save(tmp_path, nodes, [_init("w", 4, 3, 3, 3)], [1, 3, 8, 8], fname="static.onnx")
    assert lower_onnx(static, (3, 8, 8)).macs == lower_onnx(static).macs
    with pytest.raises(InputError, match="exported for input 1x3x8x8"):
        lower_onnx(static, (3, 16, 16))
    batch = _save(tmp_path, nodes, [_init("w", 4, 3, 3, 3)], [2, 3, 8, 8], fname="batch.onnx")
    with pytest.raises(InputError, match="batch 2"):
        lower_onnx(batch)


def test_missing_onnx_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(InputError, match=r"onnx is not installed: pip install 'perfsim\[onnx\]'"):
        lower_onnx(tmp_path / "m.onnx")
