"""Every zoo model's counts against independent counters and against its paper.

Conv + linear MACs must equal torch.utils.flop_counter (FLOPs / 2) and fvcore's
conv + linear counts exactly; params equal PyTorch's count; BN and global
average pooling match fvcore's counts (fvcore: BN 2 per element in eval mode,
adaptive average pooling 1 per input element).
"""
from __future__ import annotations

import warnings

import pytest
import torch

from perfsim.frontends import zoo
from perfsim.ir.graph import OpKind
from perfsim.frontends.lowering import lower

AVAILABLE = [s.name for s in zoo.specs()]  # every registered model: a missing module fails, never drops a test


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            spec = zoo.get(name)
            torch.manual_seed(0)
            model = spec.build().eval()
            cache[name] = (model, lower(model, spec.input_shape, name=name), spec)
        return cache[name]
    return get


def test_registry_has_the_whole_zoo():
    assert set(zoo.names()) >= {"mobilenet", "mobilenet_v1", "clcnet_a", "clcnet_b", "clcnet_ap", "condensenet",
                                "condensenext", "fastnet"}


@pytest.mark.parametrize("name", AVAILABLE)
def test_macs_match_torch_flop_counter(name, built):
    from torch.utils.flop_counter import FlopCounterMode
    model, graph, spec = built(name)
    x = torch.zeros(1, *spec.input_shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() == 2 * graph.macs


@pytest.mark.parametrize("name", AVAILABLE)
def test_counts_match_fvcore(name, built):
    from fvcore.nn import FlopCountAnalysis
    model, graph, spec = built(name)
    x = torch.zeros(1, *spec.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = fca.by_operator()
    assert by_op.get("conv", 0) + by_op.get("linear", 0) + by_op.get("addmm", 0) + by_op.get("matmul", 0) \
        == graph.macs
    bn = sum(op.vector_ops for op in graph.ops if op.kind is OpKind.BATCHNORM)
    assert by_op.get("batch_norm", 0) == bn
    gap = sum(op.vector_ops for op in graph.ops if op.kind is OpKind.GLOBAL_AVGPOOL)
    assert by_op.get("adaptive_avg_pool2d", 0) + by_op.get("mean", 0) == gap


@pytest.mark.parametrize("name", AVAILABLE)
def test_params_column_sums_to_pytorch_count(name, built):
    model, graph, _ = built(name)
    assert sum(layer.params for layer in graph.layers) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", AVAILABLE)
def test_no_unsupported_op_and_every_row_is_costed(name, built):
    _, graph, _ = built(name)
    assert graph.layers
    for layer in graph.layers:
        assert layer.macs > 0 or layer.vector_ops_fixed > 0, layer


def test_mobilenet_v1_against_clcnet_table5(built):
    _, graph, _ = built("mobilenet_v1")
    assert abs(graph.macs - 569e6) / 569e6 < 0.005
    assert 4.15e6 <= graph.params < 4.25e6  # "4.2M" as printed


def test_mobilenet_cifar_has_27_conv_layers(built):
    _, graph, _ = built("mobilenet")
    convs = [layer for layer in graph.layers if layer.kind is OpKind.CONV]
    assert len(convs) == 27
    assert [layer.op for layer in graph.layers[-2:]] == ["global_avgpool", "linear"]
    assert graph.layers[-1].out_shape == (1, 10)


@pytest.mark.parametrize("width", [1.0, 0.75, 0.5])
def test_mobilenet_width_multiplier_scales_every_layer(width):
    from perfsim.models.mobilenet import mobilenet_cifar
    graph = lower(mobilenet_cifar(width=width), (3, 28, 28))
    stem = graph.layers[0]
    assert stem.out_shape[1] == round(32 * width)  # alpha applies to the stem too
    assert graph.layers[-1].in_shape == (1, round(256 * width))


def test_resolution_multiplier_scales_macs():
    from perfsim.models.mobilenet import mobilenet_cifar
    m = mobilenet_cifar()
    full = lower(m, zoo.get("mobilenet").input_shape_at(1.0))
    half = lower(m, zoo.get("mobilenet").input_shape_at(0.5))
    assert half.input_shape == (1, 3, 14, 14)
    convs_full = sum(layer.macs for layer in full.layers if layer.kind is OpKind.CONV)
    convs_half = sum(layer.macs for layer in half.layers if layer.kind is OpKind.CONV)
    # every spatial size halves (28->14->7->4 with padding): close to rho^2 but not exact
    assert 0.24 < convs_half / convs_full < 0.30


def test_condensenet_convention_from_the_graph(built):
    """CondenseNet-86 condensed: 65.81M in the CondenseNet papers' convention; ~62.4M pure conv+FC MACs."""
    from perfsim.ir.conventions import condensenet_flops
    from perfsim.models.condensenet import condensenet_flops as hooks_count
    model, graph, _ = built("condensenet")
    ours = condensenet_flops(graph)
    assert round(ours / 1e6, 2) == 65.81
    assert ours == hooks_count(model)  # the model file's independent count, with forward hooks
    assert round(graph.macs / 1e6, 1) == 62.4
    assert round(sum(layer.params for layer in graph.layers) / 1e6, 2) == 0.52
