"""SPEC's invariants as checks on simulator results, shared by the property tests
(tests/test_properties.py: random graphs, torch-free; tests/test_properties_zoo.py: the zoo).

- SRAM occupancy never exceeds capacity;
- DRAM reads >= input + weights (weights streamed);
- with unbounded SRAM, traffic equals the compulsory traffic (input + weights + outputs);
- more SRAM never raises total traffic (and a network that runs keeps running).
"""
from __future__ import annotations

from perfsim.errors import DoesNotFitError
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate

BASE = load_profile("edge_1mb")


def prof(**kw):
    return load_profile(BASE, **kw)


def compulsory(graph, result):
    s = result.summary
    weights = sum(r.weight_bytes for r in result.rows)
    net_in = sum(-(-graph.tensors[t].numel * result.batch * result.profile.formats.activation_bits // 8)
                 for t in graph.inputs)
    net_out = sum(-(-graph.tensors[t].numel * result.batch * result.profile.formats.activation_bits // 8)
                  for t in graph.outputs)
    return net_in, weights, net_out, s


def check_single(graph, result):
    net_in, weights, net_out, s = compulsory(graph, result)
    cap = result.profile.memory.sram_bytes
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
