"""SPEC's invariants with a systolic matrix unit (docs/systolic.md), property-tested. Torch-free.

- a larger array (more rows, more columns) or a faster clock never raises a row's cycles or time,
  nor the network's latency, on every dataflow;
- more SRAM never raises traffic, SRAM occupancy never exceeds capacity, and with unbounded SRAM the
  traffic is the compulsory one (the memory plan does not see the array);
- utilisation stays in (0, 1].
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphs import random_net, random_plans
from invariants import check_sweep, compulsory, prof
from perfsim.errors import DoesNotFitError
from perfsim.ir.graph import Unit
from perfsim.sim.simulator import simulate
from perfsim.hardware.systolic import array_cycles
from perfsim.ir.gemm import Gemm

EXAMPLES = int(os.environ.get("PERFSIM_PROPERTY_EXAMPLES", "60"))
dataflows = st.sampled_from(["os", "ws", "is"])
sides = st.integers(1, 160)


def array(rows=32, cols=32, clock="1GHz", dataflow="ws"):
    return dict(array_rows=rows, array_cols=cols, array_clock=clock, dataflow=dataflow)


@st.composite
def networks(draw):
    return random_net(*draw(random_plans()))


@settings(max_examples=EXAMPLES * 20, deadline=None)
@given(g=st.integers(1, 64), m=st.integers(1, 3000), n=st.integers(1, 300), k=st.integers(1, 600),
       rows=sides, cols=sides, more_rows=st.integers(0, 100), more_cols=st.integers(0, 100), df=dataflows)
def test_a_larger_array_never_takes_more_cycles(g, m, n, k, rows, cols, more_rows, more_cols, df):
    gemm = Gemm(g, m, n, k)
    small, _ = array_cycles(gemm, rows, cols, df)
    assert array_cycles(gemm, rows + more_rows, cols, df)[0] <= small
    assert array_cycles(gemm, rows, cols + more_cols, df)[0] <= small
    assert array_cycles(gemm, rows + more_rows, cols + more_cols, df)[0] <= small
    assert small * rows * cols >= g * m * n * k  # never above the peak


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=networks(), rows=sides, cols=sides, grow=st.integers(1, 64), df=dataflows,
       batch=st.sampled_from([1, 2]), overlap=st.booleans())
def test_more_array_or_clock_is_never_slower(graph, rows, cols, grow, df, batch, overlap):
    base = prof(sram_bytes=2**22, overlap=overlap, **array(rows, cols, "1GHz", df))
    r0 = simulate(graph, base, batch=batch)
    for bigger in (array(rows + grow, cols, "1GHz", df), array(rows, cols + grow, "1GHz", df),
                   array(rows, cols, "1.5GHz", df)):
        r1 = simulate(graph, prof(sram_bytes=2**22, overlap=overlap, **bigger), batch=batch)
        assert r1.latency_s <= r0.latency_s * (1 + 1e-12)
        for a, b in zip(r0.rows, r1.rows):
            assert b.t_matrix_s <= a.t_matrix_s * (1 + 1e-12)
            assert (a.dram_read_bytes, a.dram_write_bytes) == (b.dram_read_bytes, b.dram_write_bytes)
    for row in r0.rows:
        assert (0 < row.utilization <= 1 + 1e-12) if row.unit is Unit.MATRIX and row.macs else row.utilization == 0


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=networks(), sizes=st.lists(st.integers(256, 2**20), min_size=3, max_size=8, unique=True),
       df=dataflows, side=st.sampled_from([8, 32, 128]))
def test_more_sram_never_more_traffic_on_an_array(graph, sizes, df, side):
    check_sweep(graph, sizes, **array(side, side, "700MHz", df))
    big = simulate(graph, prof(sram_bytes=2**30, **array(side, side, "700MHz", df)))
    net_in, weights, net_out, s = compulsory(graph, big)
    assert (s["dram_read_bytes"], s["dram_write_bytes"]) == (net_in + weights, net_out)


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=networks(), size=st.integers(2048, 2**20), factor=st.floats(1.0, 16.0))
def test_faster_memory_and_vector_unit_never_slower_on_an_array(graph, size, factor):
    base = prof(sram_bytes=size, **array())
    try:
        r0 = simulate(graph, base)
    except DoesNotFitError:
        return
    for field in ("dram_bandwidth", "vector_flops"):
        faster = prof(sram_bytes=size, **array(), **{field: base.field(field) * factor})
        assert simulate(graph, faster).latency_s <= r0.latency_s * (1 + 1e-12)
