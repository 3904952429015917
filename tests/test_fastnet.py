"""FastNet (paper 003): structure, parameter count vs the paper, MACs cross-checked by two tools."""
from __future__ import annotations

import operator

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from perfsim.frontends import zoo  # noqa: E402
from perfsim.models.fastnet import FastNet, fastnet  # noqa: E402

# The architecture written out independently of the module (Keras cifar10.py):
# ("conv", out_channels, kernel) units and "pool" (2x2 max, stride 2).
ARCH = (
    [("conv", 64, 3)] + [("conv", 128, 3)] * 3 + ["pool"]
    + [("conv", 128, 3)] * 3 + ["pool"]
    + [("conv", 128, 3)] * 3 + ["pool"]
    + [("conv", 128, 3)] * 2 + ["pool"]
    + [("conv", 128, 1)] * 3
)


def closed_form(num_classes: int, side: int = 32) -> dict[str, int]:
    """Params (weights + biases + BN gamma/beta) and conv+FC MACs from the architecture list."""
    c, h, params, macs, convs = 3, side, 0, 0, 0
    for item in ARCH:
        if item == "pool":
            h //= 2
            continue
        _, out, k = item
        params += 2 * c  # BN gamma, beta on the unit's input
        params += out * c * k * k + out  # conv weight + bias
        macs += out * c * k * k * h * h  # "same" padding, stride 1
        c, convs = out, convs + 1
    params += c * num_classes + num_classes
    macs += c * num_classes
    return {"params": params, "macs": macs, "convs": convs}


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_params_match_paper_and_closed_form(num_classes):
    model = fastnet(num_classes=num_classes)
    n = trainable_params(model)
    assert n == closed_form(num_classes)["params"]
    # The paper prints "1.6 M" for both data sets: anything that rounds to 1.6M.
    assert round(n / 1e6, 1) == 1.6, n
    paper = zoo.get("fastnet").paper["params"]
    assert abs(n - paper) <= 0.05e6
    # Keras' summary also counts BN moving mean/variance; still 1.6M.
    running = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert round((n + running) / 1e6, 1) == 1.6


def test_structure_follows_keras_code():
    model = fastnet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == closed_form(10)["convs"] == 15  # "FastNet is a 15 layer" network
    assert [c.kernel_size[0] for c in convs] == [3] * 12 + [1] * 3
    assert all(c.bias is not None and c.stride == (1, 1) for c in convs)
    assert all(c.padding == (c.kernel_size[0] // 2,) * 2 for c in convs)
    # The first unit's BN normalises the raw 3-channel image, before the first conv.
    assert bns[0].num_features == 3
    assert [b.num_features for b in bns] == [c.in_channels for c in convs]
    assert bns[0].momentum == pytest.approx(0.05) and bns[0].eps == pytest.approx(1e-3)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    # Unit order is BN -> ReLU -> conv.
    unit = model.features.unit1
    assert [type(m) for m in unit.children()] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d]


def test_registry_builds_fastnet():
    spec = zoo.get("fastnet")
    model = spec.build(num_classes=100)
    assert isinstance(model, FastNet) and model.classifier.out_features == 100
    assert spec.input_shape == (3, 32, 32)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape(num_classes):
    torch.manual_seed(0)
    model = fastnet(num_classes=num_classes).eval()
    out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, num_classes)
    assert torch.isfinite(out).all()
    # The pool is global, so other sizes work too (resolution multiplier).
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, num_classes)


def test_fx_traces_with_allowed_ops_only():
    torch.manual_seed(0)
    model = fastnet().eval()
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(gm(x), model(x))
    allowed_modules = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
                       nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten)
    allowed_functions = {torch.flatten, operator.add, torch.add, torch.cat}
    mods = dict(gm.named_modules())
    kinds = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = mods[node.target]
            assert isinstance(mod, allowed_modules), (node.target, type(mod))
            kinds[type(mod)] = kinds.get(type(mod), 0) + 1
        elif node.op == "call_function":
            assert node.target in allowed_functions, node.target
        elif node.op == "call_method":
            assert node.target in ("view", "flatten", "reshape"), node.target
    assert kinds == {nn.BatchNorm2d: 15, nn.ReLU: 15, nn.Conv2d: 15, nn.MaxPool2d: 4,
                     nn.AdaptiveAvgPool2d: 1, nn.Linear: 1}


def torch_counter_macs(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x)
    counts = counter.get_flop_counts()["Global"]
    names = {str(k) for k in counts}
    assert names <= {"aten.convolution", "aten.addmm", "aten.mm"}, names
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def fvcore_macs(model, x) -> int:
    fvcore_nn = pytest.importorskip("fvcore.nn")
    analysis = (fvcore_nn.FlopCountAnalysis(model, x)
                .unsupported_ops_warnings(False).uncalled_modules_warnings(False))
    by_op = analysis.by_operator()
    return int(by_op.get("conv", 0) + by_op.get("linear", 0) + by_op.get("addmm", 0)
               + by_op.get("matmul", 0))


@pytest.mark.parametrize("num_classes,side", [(10, 32), (100, 32), (10, 16)])
def test_macs_agree_between_tools_and_closed_form(num_classes, side):
    model = fastnet(num_classes=num_classes).eval()
    x = torch.randn(1, 3, side, side)
    expected = closed_form(num_classes, side)["macs"]
    with torch.no_grad():
        assert torch_counter_macs(model, x) == expected
        assert fvcore_macs(model, x) == expected
    if side == 32:
        # 525.7M conv MACs (the paper gives no compute figure); the FC adds in*out.
        assert expected == 525_729_792 + 128 * num_classes


def test_dropout_option_is_off_by_default_and_traceable():
    model = fastnet(dropout=0.2)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1
    assert trainable_params(model) == trainable_params(fastnet())
    torch.fx.symbolic_trace(model)
    with pytest.raises(ValueError):
        fastnet(dropout=1.0)


def test_initialisation_is_keras_like():
    torch.manual_seed(0)
    model = fastnet()
    conv = model.features.unit2.conv  # 64 -> 128, 3x3: fan_in 576
    std = (2.0 / 576) ** 0.5
    w = conv.weight.detach()
    assert w.abs().max() <= 2 * std + 1e-6  # truncated at 2 std
    # A normal truncated at 2 std has std 0.88 of the untruncated one (Keras 2.1 behaviour).
    assert w.std().item() == pytest.approx(0.88 * std, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
