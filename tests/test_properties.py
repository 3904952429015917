"""SPEC's invariants, property-tested on random conv graphs (residual adds, concats) and the zoo.

- SRAM occupancy never exceeds capacity;
- DRAM reads >= input + weights (weights streamed);
- more bandwidth or more FLOPS never raises latency; overlap never slower than serial;
- with unbounded SRAM, traffic equals the compulsory traffic (input + weights + outputs);
- more SRAM never raises total traffic (and a network that runs keeps running).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from perfsim import zoo
from perfsim.errors import DoesNotFitError
from perfsim.lowering import lower
from perfsim.profile import load_profile
from perfsim.simulate import simulate

BASE = load_profile("edge_1mb")
# more examples for a stress run: PERFSIM_PROPERTY_EXAMPLES=2000 pytest tests/test_properties.py
EXAMPLES = int(os.environ.get("PERFSIM_PROPERTY_EXAMPLES", "60"))


def prof(**kw):
    return load_profile(BASE, **kw)


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


block = st.one_of(
    st.tuples(st.just("conv"), st.tuples(st.sampled_from([1, 3]), st.sampled_from([4, 8, 16, 24]),
                                         st.sampled_from([1, 1, 2]))),
    st.tuples(st.just("dw"), st.sampled_from([1, 2])),
    st.tuples(st.just("group"), st.sampled_from([2, 4])),
    st.tuples(st.just("res"), st.none()),
    st.tuples(st.just("dense"), st.sampled_from([4, 8])),
    st.tuples(st.just("pool"), st.sampled_from(["max", "avg"])),
)


@st.composite
def networks(draw):
    c_in = draw(st.sampled_from([3, 8]))
    hw = draw(st.sampled_from([8, 12, 16, 20]))
    plan = draw(st.lists(block, min_size=1, max_size=8))
    # keep spatial sizes >= 1 for the pools and strides
    size, safe = hw, []
    for kind, arg in plan:
        shrinks = (kind == "pool") or (kind == "conv" and arg[2] == 2) or (kind == "dw" and arg == 2)
        if shrinks and size < 4:
            continue
        size = size // 2 if kind == "pool" else (size + 1) // 2 if shrinks else size
        safe.append((kind, arg))
    torch.manual_seed(0)
    return lower(RandomNet(c_in, safe), (c_in, hw, hw))


def compulsory(graph, result):
    s = result.summary
    weights = sum(r.weight_bytes for r in result.rows)
    net_in = sum(-(-graph.tensors[t].numel * result.batch * result.profile.activation_bits // 8)
                 for t in graph.inputs)
    net_out = sum(-(-graph.tensors[t].numel * result.batch * result.profile.activation_bits // 8)
                  for t in graph.outputs)
    return net_in, weights, net_out, s


def check_single(graph, result):
    net_in, weights, net_out, s = compulsory(graph, result)
    cap = result.profile.sram_bytes
    assert s["peak_sram_bytes"] <= cap
    assert all(r.sram_used_bytes <= cap for r in result.rows)
    streamed = weights if s["preload_bytes"] == 0 else 0  # resident weights were preloaded
    assert s["dram_read_bytes"] >= net_in + streamed
    assert s["dram_write_bytes"] >= net_out
    assert all(r.t_total_s >= 0 for r in result.rows)


def check_sweep(graph, sizes, batch=1, **fields):
    """Traffic never rises with SRAM; once a size runs, every larger one does."""
    prev = None
    ran = False
    for size in sorted(sizes):
        try:
            r = simulate(graph, prof(sram_bytes=int(size), **fields), batch=batch)
        except DoesNotFitError:
            assert not ran, f"ran at a smaller SRAM but not at {size} B"
            continue
        ran = True
        check_single(graph, r)
        traffic = r.summary["dram_read_bytes"] + r.summary["dram_write_bytes"]
        if prev is not None:
            assert traffic <= prev[1], f"traffic rose from {prev[1]} B at {prev[0]} B to {traffic} B at {size} B"
        prev = (size, traffic)
    return prev


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=networks(), sizes=st.lists(st.integers(256, 2**20), min_size=3, max_size=8, unique=True),
       batch=st.sampled_from([1, 1, 2]), latency=st.sampled_from(["0s", "0s", "100ns"]),
       fold=st.sampled_from([True, True, False]))
def test_random_graphs_invariants_across_sram(graph, sizes, batch, latency, fold):
    check_sweep(graph, sizes, batch, dram_latency=latency, fold_batchnorm=fold)
    big = simulate(graph, prof(sram_bytes=2**30), batch=batch)
    net_in, weights, net_out, s = compulsory(graph, big)
    assert s["dram_read_bytes"] == net_in + weights
    assert s["dram_write_bytes"] == net_out
    assert s["spill_bytes"] == 0 and s["refetch_bytes"] == 0


@settings(max_examples=max(1, EXAMPLES * 2 // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=networks(), size=st.integers(2048, 2**20), factor=st.floats(1.0, 16.0),
       latency=st.sampled_from(["0s", "50ns"]))
def test_random_graphs_faster_hardware_is_never_slower(graph, size, factor, latency):
    base = prof(sram_bytes=size, dram_latency=latency)
    try:
        r0 = simulate(graph, base)
    except DoesNotFitError:
        return
    for field in ("dram_bandwidth", "matrix_flops", "vector_flops"):
        faster = load_profile(base, **{field: getattr(base, field) * factor})
        assert simulate(graph, faster).latency_s <= r0.latency_s * (1 + 1e-12)
    assert simulate(graph, load_profile(base, overlap=True)).latency_s <= r0.latency_s * (1 + 1e-12)
    # resident weights: never more per-inference traffic than streaming them
    res = simulate(graph, load_profile(base, weights="resident"))
    assert res.summary["dram_read_bytes"] <= r0.summary["dram_read_bytes"]
    check_single(graph, res)


ZOO = [s.name for s in zoo.specs() if importlib.util.find_spec(s.module_name) is not None]
# 16 KiB .. 16 MiB, 41 points, not only powers of two
ZOO_SIZES = sorted(set(int(round(x)) for x in np.geomspace(16 * 1024, 16 * 2**20, 41)) | {10**6, 3 * 2**19})


@pytest.fixture(scope="module")
def zoo_graphs():
    from perfsim.pipeline import ModelRequest, graph_for
    return {name: graph_for(ModelRequest(name), use_cache=False)[0] for name in ZOO}


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
        assert simulate(graph, load_profile(base, **{field: getattr(base, field) * 3})).latency_s <= r0.latency_s


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
                partners = [j for j in range(len(chans)) if j != src and down[j] == down[src]
                            and (kind == "cat" or chans[j] == c)]
                if not partners:
                    continue
                j = partners[arg % len(partners)]
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


dag_step = st.one_of(
    st.tuples(st.just("conv"), st.integers(0, 99), st.tuples(st.sampled_from([1, 3]), st.sampled_from([4, 8, 16, 32]),
                                                             st.sampled_from([1, 1, 1, 2]))),
    st.tuples(st.just("dw"), st.integers(0, 99), st.none()),
    st.tuples(st.just("bnrelu_conv"), st.integers(0, 99), st.sampled_from([4, 8, 24])),
    st.tuples(st.sampled_from(["add", "cat"]), st.integers(0, 99), st.integers(0, 99)),
)


@st.composite
def dag_networks(draw):
    c_in = draw(st.sampled_from([3, 8]))
    hw = draw(st.sampled_from([8, 12, 16]))
    steps = draw(st.lists(dag_step, min_size=2, max_size=10))
    torch.manual_seed(0)
    return lower(DagNet(c_in, steps), (c_in, hw, hw))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dag_networks(), sizes=st.lists(st.integers(512, 2**19), min_size=4, max_size=10, unique=True),
       variant=st.sampled_from([{}, {"fold_batchnorm": False}, {"weights": "resident"}, {"dram_latency": "100ns"}]))
def test_random_dags_invariants_across_sram(graph, sizes, variant):
    check_sweep(graph, sizes, **variant)
    big = simulate(graph, prof(sram_bytes=2**30, **variant))
    net_in, weights, net_out, s = compulsory(graph, big)
    streamed = weights if s["preload_bytes"] == 0 else 0
    assert (s["dram_read_bytes"], s["dram_write_bytes"]) == (net_in + streamed, net_out)
