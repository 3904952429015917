"""SPEC's invariants, property-tested on random conv graphs (residual adds, concats) and random DAGs.

Torch-free: the graphs come from tests/graphs.py (ops fused by perfsim.ir.fuse, as a traced
module's are; tests/test_properties_zoo.py checks they equal perfsim.lower's graphs of the
same networks in PyTorch, and property-tests every zoo model).

- SRAM occupancy never exceeds capacity;
- DRAM reads >= input + weights (weights streamed);
- more bandwidth or more FLOPS never raises latency; overlap never slower than serial;
- with unbounded SRAM, traffic equals the compulsory traffic (input + weights + outputs);
- more SRAM never raises total traffic (and a network that runs keeps running).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphs import dag_net, dag_plans, random_net, random_plans
from invariants import check_single, check_sweep, compulsory, prof
from perfsim.errors import DoesNotFitError
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate

# more examples for a stress run: PERFSIM_PROPERTY_EXAMPLES=2000 pytest tests/test_properties.py
EXAMPLES = int(os.environ.get("PERFSIM_PROPERTY_EXAMPLES", "60"))


@st.composite
def networks(draw):
    return random_net(*draw(random_plans()))


@st.composite
def dag_networks(draw):
    return dag_net(*draw(dag_plans()))


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
        faster = load_profile(base, **{field: base.field(field) * factor})
        assert simulate(graph, faster).latency_s <= r0.latency_s * (1 + 1e-12)
    assert simulate(graph, load_profile(base, overlap=True)).latency_s <= r0.latency_s * (1 + 1e-12)
    # resident weights: never more per-inference traffic than streaming them
    res = simulate(graph, load_profile(base, weights="resident"))
    assert res.summary["dram_read_bytes"] <= r0.summary["dram_read_bytes"]
    check_single(graph, res)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dag_networks(), sizes=st.lists(st.integers(512, 2**19), min_size=4, max_size=10, unique=True),
       variant=st.sampled_from([{}, {"fold_batchnorm": False}, {"weights": "resident"}, {"dram_latency": "100ns"}]))
def test_random_dags_invariants_across_sram(graph, sizes, variant):
    check_sweep(graph, sizes, **variant)
    big = simulate(graph, prof(sram_bytes=2**30, **variant))
    net_in, weights, net_out, s = compulsory(graph, big)
    streamed = weights if s["preload_bytes"] == 0 else 0
    assert (s["dram_read_bytes"], s["dram_write_bytes"]) == (net_in + streamed, net_out)
