"""The property tests that need torch: every zoo model, and the torch-free test graphs' twins.

tests/test_properties.py and tests/test_simulate.py build their graphs without torch
(tests/graphs.py). Here each of those networks is also written as a PyTorch module and
lowered: the two graphs must be equal (names aside), so the torch-free tests test the
graphs perfsim really simulates. Then SPEC's invariants on every zoo model at 43 SRAM sizes.
"""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from torch import nn

import graphs
from invariants import check_sweep, compulsory, prof
from perfsim.frontends import zoo
from perfsim.ir.graph import Graph
from perfsim.frontends.lowering import lower
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from test_properties import EXAMPLES


class RandomNet(nn.Module):
    """A conv stack built from a static plan (so torch.fx can trace it)."""

    def __init__(self, c_in: int, plan: list[tuple]):
        super().__init__()
        self.plan = plan
        self.mods = nn.ModuleList()
        c = c_in
        for kind, arg in plan:
            if kind == "conv":
                k, cout, stride = arg
                self.mods.append(nn.Sequential(nn.Conv2d(c, cout, k, stride, k // 2, bias=False),
                                               nn.BatchNorm2d(cout), nn.ReLU()))
                c = cout
            elif kind == "dw":
                self.mods.append(nn.Sequential(nn.Conv2d(c, c, 3, arg, 1, groups=c, bias=False),
                                               nn.BatchNorm2d(c), nn.ReLU6()))
            elif kind == "group":
                g = arg if c % arg == 0 else 1
                self.mods.append(nn.Conv2d(c, c, 3, 1, 1, groups=g, bias=True))
            elif kind == "res":
                self.mods.append(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                               nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)))
            elif kind == "dense":
                self.mods.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, arg, 3, 1, 1, bias=False)))
                c += arg
            elif kind == "pool":
                self.mods.append(nn.MaxPool2d(2) if arg == "max" else nn.AvgPool2d(2))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        for (kind, _), mod in zip(self.plan, self.mods):
            if kind == "res":
                x = F.relu(mod(x) + x)
            elif kind == "dense":
                x = torch.cat([x, mod(x)], 1)
            else:
                x = mod(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DagNet(nn.Module):
    """A random DAG: each step reads an arbitrary earlier value (long skips), adds or concatenates two."""

    def __init__(self, c_in: int, steps: list[tuple]):
        super().__init__()
        self.prog = []
        self.mods = nn.ModuleList()
        chans, down = [c_in], [0]
        for kind, pick, arg in steps:
            src = pick % len(chans)
            c = chans[src]
            if kind == "conv":
                k, cout, stride = arg
                self.mods.append(nn.Sequential(nn.Conv2d(c, cout, k, stride, k // 2, bias=False),
                                               nn.BatchNorm2d(cout), nn.ReLU()))
                self.prog.append(("m", src, len(self.mods) - 1))
                chans.append(cout)
                down.append(down[src] + (stride == 2))
            elif kind == "dw":
                self.mods.append(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c),
                                               nn.ReLU6()))
                self.prog.append(("m", src, len(self.mods) - 1))
                chans.append(c)
                down.append(down[src])
            elif kind == "bnrelu_conv":
                self.mods.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, arg, 3, 1, 1, bias=False)))
                self.prog.append(("m", src, len(self.mods) - 1))
                chans.append(arg)
                down.append(down[src])
            elif kind in ("add", "cat"):
                j = graphs.merge_partner(kind, src, arg, chans, down)
                if j is None:
                    continue
                self.prog.append((kind, src, j))
                chans.append(c if kind == "add" else c + chans[j])
                down.append(down[src])
        self.head = nn.Linear(chans[-1], 10)

    def forward(self, x):
        vals = [x]
        for op, a, b in self.prog:
            if op == "m":
                vals.append(self.mods[b](vals[a]))
            elif op == "add":
                vals.append(vals[a] + vals[b])
            else:
                vals.append(torch.cat([vals[a], vals[b]], 1))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(vals[-1], 1), 1))


def same_graph(a: Graph, b: Graph) -> None:
    """Equal but for names: the layers, their tensors, the network's inputs, outputs and params."""
    def unnamed(layer):
        return dataclasses.replace(layer, name="", ops=())
    assert [unnamed(x) for x in a.layers] == [unnamed(x) for x in b.layers]
    assert (a.tensors, a.inputs, a.outputs, a.params, a.input_shape) == \
        (b.tensors, b.inputs, b.outputs, b.params, b.input_shape)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=graphs.random_plans())
def test_random_net_builder_equals_lowering(plan):
    c_in, hw, blocks = plan
    same_graph(graphs.random_net(c_in, hw, blocks), lower(RandomNet(c_in, blocks), (c_in, hw, hw)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=graphs.dag_plans())
def test_dag_net_builder_equals_lowering(plan):
    c_in, hw, steps = plan
    same_graph(graphs.dag_net(c_in, hw, steps), lower(DagNet(c_in, steps), (c_in, hw, hw)))


class SkipNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1, bias=False)
        self.c1 = nn.Conv2d(4, 4, 1, bias=False)
        self.c2 = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x):
        y = self.stem(x)
        return y + self.c2(self.c1(y))


class Wide(nn.Module):
    def __init__(self, skip: bool):
        super().__init__()
        self.skip = skip
        self.conv = nn.Conv2d(16, 16, 1, bias=False)

    def forward(self, x):
        return self.conv(x) + x if self.skip else self.conv(x)


class DenseBlock(nn.Module):
    def __init__(self, c0=16, growth=8, n=6):
        super().__init__()
        self.stem = nn.Conv2d(3, c0, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c0 + i * growth), nn.ReLU(),
                          nn.Conv2d(c0 + i * growth, growth, 3, padding=1, bias=False))
            for i in range(n))

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class TieNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 32, 1)
        self.c3, self.c4 = nn.Conv2d(32, 24, 3, padding=1), nn.Conv2d(24, 26, 3, padding=1)
        self.c5 = nn.Conv2d(40, 26, 1)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(a)
        e = self.c4(self.c3(b))
        return self.c5(torch.cat([a, b], 1)) + e


SIMULATE_TEST_NETS = {
    "skip_net": (graphs.skip_net, lambda: SkipNet(), (3, 4, 4)),
    "wide": (graphs.wide, lambda: Wide(skip=False), (16, 16, 16)),
    "wide_skip": (lambda: graphs.wide(skip=True), lambda: Wide(skip=True), (16, 16, 16)),
    "dense_block": (graphs.dense_block, lambda: DenseBlock(), (3, 16, 16)),
    "conv_bn_act": (graphs.conv_bn_act, lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                                              nn.BatchNorm2d(8), nn.ReLU6()), (3, 8, 8)),
    "two_convs": (graphs.two_convs, lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                                          nn.Conv2d(16, 64, 1, bias=False)), (3, 32, 32)),
    "tie_net": (graphs.tie_net, lambda: TieNet(), (3, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(SIMULATE_TEST_NETS))
def test_simulate_test_graphs_equal_their_lowered_twins(name):
    build, module, shape = SIMULATE_TEST_NETS[name]
    built, lowered = build(), lower(module(), shape)
    same_graph(built, lowered)
    assert [x.name for x in built.layers] == [x.name for x in lowered.layers]  # error messages name layers


# --------------------------------------------------------------------------
# The zoo
# --------------------------------------------------------------------------


def test_every_zoo_module_is_installed():
    """A registered model whose module is missing is a failure, never a silently smaller test run."""
    missing = [s.name for s in zoo.specs() if importlib.util.find_spec(s.module_name) is None]
    assert not missing, f"zoo modules missing: {missing}"


ZOO = [s.name for s in zoo.specs()]  # every registered model: a missing module fails below, never drops a test
# 16 KiB .. 16 MiB, 41 points, not only powers of two
ZOO_SIZES = sorted(set(int(round(x)) for x in np.geomspace(16 * 1024, 16 * 2**20, 41)) | {10**6, 3 * 2**19})


@pytest.fixture(scope="module")
def zoo_graphs():
    from perfsim.frontends.sources import load_graph
    return {name: load_graph(name, use_cache=False).graph for name in ZOO}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_invariants_across_sram_16k_to_16m(name, zoo_graphs):
    graph = zoo_graphs[name]
    check_sweep(graph, ZOO_SIZES)
    check_sweep(graph, ZOO_SIZES, dram_latency="100ns")  # edge_256k's latency: plans weigh bytes, not time
    big = simulate(graph, prof(sram_bytes=2**34))
    net_in, weights, net_out, s = compulsory(graph, big)
    assert (s["dram_read_bytes"], s["dram_write_bytes"]) == (net_in + weights, net_out)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_faster_hardware_is_never_slower(name, zoo_graphs):
    graph = zoo_graphs[name]
    base = prof(sram_bytes=256 * 1024, dram_latency="20ns")
    r0 = simulate(graph, base)
    for field in ("dram_bandwidth", "matrix_flops", "vector_flops"):
        assert simulate(graph, load_profile(base, **{field: base.field(field) * 3})).latency_s <= r0.latency_s
