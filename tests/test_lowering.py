"""Lowering and counting: closed forms per op kind, fusion rules, unsupported ops."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perfsim.errors import InputError, UnsupportedOpError
from perfsim.frontends.lowering import lower


def rows(graph):
    return {layer.name: layer for layer in graph.layers}


@pytest.mark.parametrize("cin,cout,k,stride,groups,hw", [
    (3, 32, 3, 1, 1, 28),     # regular
    (16, 32, 3, 2, 4, 15),    # grouped, odd size, stride 2
    (32, 32, 3, 1, 32, 14),   # depthwise
    (32, 64, 1, 1, 1, 14),    # pointwise
    (8, 24, 5, 2, 2, 17),     # 5x5 grouped
    (12, 12, 3, 2, 12, 9),    # depthwise stride 2
])
def test_conv_macs_closed_form(cin, cout, k, stride, groups, hw):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    g = lower(nn.Sequential(conv), (cin, hw, hw))
    (layer,) = g.layers
    ho = (hw + 2 * (k // 2) - k) // stride + 1
    assert layer.out_shape == (1, cout, ho, ho)
    assert layer.macs == ho * ho * cout * (cin // groups) * k * k
    assert layer.params == cout * (cin // groups) * k * k
    assert layer.groups == groups
    expected_op = "conv_dw" if groups == cin and groups > 1 else "conv_group" if groups > 1 else \
        "conv_pw" if k == 1 else "conv"
    assert layer.op == expected_op


def test_linear_macs_and_bias():
    g = lower(nn.Sequential(nn.Flatten(), nn.Linear(48, 10)), (3, 4, 4))
    (layer,) = g.layers
    assert layer.macs == 48 * 10
    assert layer.params == 48 * 10 + 10
    assert (layer.weight_elems, layer.bias_elems) == (480, 10)
    # weight bytes: ceil(480*8/8) + ceil(10*32/8)
    assert layer.weight_bytes(8, 32, True) == 480 + 40
    assert layer.weight_bytes(4, 16, True) == 240 + 20


def test_conv_bn_relu_is_one_layer_and_folds():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    g = lower(net, (3, 10, 10))
    (layer,) = g.layers
    assert layer.ops == ("0", "1", "2")
    assert layer.params == 8 * 27 + 16  # BN's weight and bias count; running stats never do
    n = 8 * 10 * 10
    assert layer.vector_ops(fold_batchnorm=True, fuse_activation=True) == 0
    assert layer.vector_ops(fold_batchnorm=False, fuse_activation=True) == 2 * n
    assert layer.vector_ops(fold_batchnorm=True, fuse_activation=False) == n
    # folding creates 8 biases; unfolded BN stores 2 values per channel at bias_bits
    assert layer.weight_bytes(8, 32, True) == 216 + 8 * 4
    assert layer.weight_bytes(8, 32, False) == 216 + 16 * 4
    assert layer.params_inference(True) == 216 + 8


def test_relu6_costs_two_ops_when_unfused():
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.ReLU6())
    (layer,) = lower(net, (3, 5, 5)).layers
    assert layer.vector_ops(True, False) == 2 * 4 * 25


class PoolThenBN(nn.Module):
    """FastNet-style: max-pool -> BN -> ReLU -> conv: the BN cannot fold, it is the conv's prologue."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv1(F.relu(self.bn(self.pool(self.conv0(x)))))


def test_bn_after_pool_is_a_prologue():
    g = lower(PoolThenBN(), (3, 8, 8))
    names = [layer.name for layer in g.layers]
    assert names == ["conv0", "pool", "conv1"]
    r = rows(g)
    n = 8 * 4 * 4
    assert r["pool"].op == "maxpool"
    assert r["pool"].vector_ops(True, True) == (4 - 1) * n  # k^2 - 1 per output element
    # prologue BN (2/elem) and ReLU (1/elem) run in conv1's input stage, whatever the switches
    assert r["conv1"].vector_ops(True, True) == 3 * n
    assert r["conv1"].prologue_bn_channels == 8
    assert r["conv1"].params == 8 * 8 * 9 + 8 + 16
    # unfolded BN stores 2 values per channel at bias_bits; conv1 keeps its own bias
    assert r["conv1"].weight_bytes(8, 32, True) == 576 + (8 + 16) * 4


class Dense(nn.Module):
    """A DenseNet-style block: each layer reads the concat of everything before it."""

    def __init__(self, c0=8, growth=4, n=3):
        super().__init__()
        self.stem = nn.Conv2d(3, c0, 3, padding=1, bias=False)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c0 + i * growth) for i in range(n))
        self.convs = nn.ModuleList(nn.Conv2d(c0 + i * growth, growth, 3, padding=1, bias=False) for i in range(n))

    def forward(self, x):
        x = self.stem(x)
        for bn, conv in zip(self.bns, self.convs):
            x = torch.cat([x, conv(F.relu(bn(x)))], 1)
        return x


def test_concat_is_its_parts_and_bn_on_shared_concat_is_prologue():
    g = lower(Dense(), (3, 6, 6))
    assert [layer.name for layer in g.layers] == ["stem", "convs.0", "convs.1", "convs.2"]
    r = rows(g)
    stem_out = r["stem"].output
    # the last dense layer reads every part of the concat: stem + two earlier growth tensors
    assert r["convs.2"].inputs == (stem_out, r["convs.0"].output, r["convs.1"].output)
    assert r["convs.2"].prologue_bn_channels == 16
    # network output: the final concat, i.e. all four parts
    assert set(g.outputs) == {stem_out, r["convs.0"].output, r["convs.1"].output, r["convs.2"].output}
    assert r["convs.1"].in_shape == (1, 12, 6, 6)


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
        self.b = nn.Conv2d(8, 8, 1, groups=2, bias=False)

    def forward(self, x):
        x = self.a(x)
        n, c, h, w = x.size()
        x = x.view(n, 4, c // 4, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.b(x)


def test_channel_shuffle_makes_no_row():
    g = lower(Shuffle(), (8, 5, 5))
    assert [layer.name for layer in g.layers] == ["a", "b"]
    assert g.layers[1].inputs == (g.layers[0].output,)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x):
        y = F.relu(self.c1(x))
        return F.relu(self.c2(y) + x)


def test_residual_add_and_relu_are_vector_rows():
    g = lower(Residual(), (4, 6, 6))
    ops = [layer.op for layer in g.layers]
    assert ops == ["conv", "conv", "add", "relu"]
    r = g.layers
    assert r[2].vector_ops(True, True) == 4 * 36
    assert r[3].vector_ops(True, True) == 4 * 36
    assert set(r[2].inputs) == {r[1].output, g.inputs[0]}


def test_pooling_and_softmax_closed_forms():
    class Head(nn.Module):
        def forward(self, x):
            a = F.avg_pool2d(x, 2)
            b = F.adaptive_avg_pool2d(a, 1).flatten(1)
            return F.softmax(b, dim=1)

    g = lower(Head(), (6, 8, 8))
    avg, gap, sm = g.layers
    assert avg.vector_ops(True, True) == 4 * 6 * 4 * 4  # k^2 per output element
    assert gap.vector_ops(True, True) == 6 * 4 * 4  # 1 per input element
    assert sm.vector_ops(True, True) == 5 * 6


def test_gather_reads_whole_source():
    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("idx", torch.tensor([0, 2, 4]))
            self.c0 = nn.Conv2d(3, 6, 1, bias=False)
            self.c1 = nn.Conv2d(3, 2, 1, bias=False)

        def forward(self, x):
            return self.c1(torch.index_select(self.c0(x), 1, self.idx))

    g = lower(Gather(), (3, 4, 4))
    c0, c1 = g.layers
    assert c1.inputs == (c0.output,)
    assert c1.in_shape == (1, 3, 4, 4)


@pytest.mark.parametrize("bad,op", [(nn.ConvTranspose2d(4, 4, 2), "aten.convolution (transposed)"),
                                    (nn.FractionalMaxPool2d(2, output_size=3), "aten.fractional_max_pool2d")])
def test_unsupported_module_is_named(bad, op):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), bad)
    with pytest.raises(UnsupportedOpError, match=rf"{re.escape(op)} ×1 \(first at '1' \({type(bad).__name__}\)\)"):
        lower(net, (3, 8, 8))


def test_unsupported_function_is_named():
    class M(nn.Module):
        def forward(self, x):
            return torch.fft.rfft2(x).abs()

    with pytest.raises(UnsupportedOpError, match="aten._fft_r2c"):
        lower(M(), (3, 4, 4))


def test_data_dependent_control_flow_lowers_specialised_to_the_input():
    """No symbolic tracing: the forward runs on zeros and takes the branch zeros take."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.a(x)
            return self.b(x)

    g = lower(M(), (3, 4, 4))
    assert [layer.name for layer in g.layers if layer.macs] == ["b"]
    assert g.macs == 16 * 4 * 3 * 9


def test_wrong_input_shape_is_an_input_error():
    with pytest.raises(InputError, match="'0' expects 3 input channels"):
        lower(nn.Sequential(nn.Conv2d(3, 4, 3)), (5, 8, 8))


def test_params_column_sums_to_pytorch_count_with_shared_module():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.c(self.c(x))

    m = Shared()
    g = lower(m, (4, 5, 5))
    assert len(g.layers) == 2
    assert sum(layer.params for layer in g.layers) == sum(p.numel() for p in m.parameters()) == g.params


def test_lowering_leaves_the_module_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lower(net, (3, 8, 8))
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_graph_round_trips_through_dict():
    from perfsim.ir.graph import Graph
    g = lower(Dense(), (3, 6, 6))
    assert Graph.from_dict(g.to_dict()) == g


def test_chunk_and_split_are_views_of_their_source():
    """ShuffleNet-v2 style: chunk the channels, convolve one half, concat back."""
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 1, bias=False)
            self.branch = nn.Conv2d(4, 4, 3, padding=1, bias=False)

        def forward(self, x):
            x = self.stem(x)
            a, b = x.chunk(2, dim=1)
            c, d = torch.split(x, 4, dim=1)
            return torch.cat([a, self.branch(b), c + d], 1)

    g = lower(Split(), (3, 6, 6))
    assert [layer.op for layer in g.layers] == ["conv_pw", "conv", "add"]
    stem, branch, add = g.layers
    assert branch.inputs == (stem.output,) and branch.in_shape == (1, 4, 6, 6)
    assert add.inputs == (stem.output,)
    assert set(g.outputs) == {stem.output, branch.output, add.output}


def test_parameters_of_elementwise_ops_are_counted_and_stored():
    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 1, bias=False)
            self.g = nn.Parameter(torch.ones(1, 8, 1, 1))
            self.b = nn.Parameter(torch.zeros(1, 8, 1, 1))

        def forward(self, x):
            return self.c(x) * self.g + self.b

    m = Affine()
    g = lower(m, (3, 4, 4))
    assert sum(layer.params for layer in g.layers) == sum(p.numel() for p in m.parameters()) == 40
    mul, add = g.layers[1:]
    assert (mul.params, mul.weight_elems, add.params) == (8, 8, 8)
    assert mul.weight_bytes(8, 32, True) == 8


def test_a_parameter_concatenated_to_an_activation_is_a_copy_row_holding_it():
    """A learned token is a parameter: counted, stored at weight_bits, read by the concat's row."""
    class CatParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 2, 4, 4))

        def forward(self, x):
            return torch.cat([x, self.token], 1)

    (layer,) = lower(CatParam(), (3, 4, 4)).layers
    assert (layer.op, layer.params, layer.weight_elems) == ("copy", 32, 32)
    assert layer.vector_ops(True, True) == 5 * 16  # a materialised copy: 1 per output element


def test_a_module_called_twice_stores_its_weights_once():
    from perfsim.hardware.loader import load_profile
    from perfsim.sim.simulator import simulate

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(8, 8, 3, padding=1, bias=False)

        def forward(self, x):
            return self.c(self.c(x))

    g = lower(Twice(), (8, 4, 4))
    assert [layer.shares_weights for layer in g.layers] == [False, True]
    r = simulate(g, load_profile("edge_1mb"))
    assert r.summary["model_size_bytes"] == 576 and r.summary["params_inference"] == 576
    assert r.summary["dram_read_bytes"] == 128 + 2 * 576  # streamed: each call reads the weights
    res = simulate(g, load_profile("edge_1mb", weights="resident"))
    assert res.summary["preload_bytes"] == 576


def test_dilation_widens_the_rows_a_tile_reads():
    from perfsim.errors import DoesNotFitError
    from perfsim.hardware.loader import load_profile
    from perfsim.sim.simulator import simulate

    def need(dilation):
        net = nn.Sequential(nn.Conv2d(16, 16, 3, padding=dilation, dilation=dilation, bias=False))
        g = lower(net, (16, 32, 32))
        with pytest.raises(DoesNotFitError) as e:
            simulate(g, load_profile("edge_1mb", sram_bytes=64))
        return int(str(e.value).split("the smallest SRAM that runs it is ")[1].split(" B")[0])

    assert need(4) > need(1)
