"""The vectorised sweep gives exactly ``simulate``'s totals at every point (perfsim.sim.batch).

Random profiles and random varied fields, on the hand-built graphs of tests/graphs.py (a dense
block that spills and tiles in small SRAM, a residual net, random DAGs) and the zoo's mobilenet:
every total of every point (every number of summary.json: times, bounds, traffic, utilisation,
cycles, energy) equals a loop of ``simulate`` over the same profiles, bit for bit, and a point that
does not fit is ``fits`` false exactly where ``simulate`` raises DoesNotFitError. Bases include
calibrated profiles (efficiency tables, a grouped-conv model, overheads) and systolic arrays with
energy prices; the sweep has no fallback to ``simulate``: this test is what holds the two together.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphs import dag_net, dag_plans, dense_block, skip_net, wide
from perfsim.errors import DoesNotFitError
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from perfsim.explore.sweep import sweep_frame
from perfsim.explore.vary import grid_index
from perfsim.sim.batch import TOTAL_COLUMNS, Axis, evaluate_points

FIELD_VALUES = {
    "sram_bytes": st.integers(64, 64 * 1024),
    "dram_bandwidth": st.floats(1e6, 1e12),
    "dram_latency": st.sampled_from([0.0, 1e-9, 3e-7, 1e-5]),
    "matrix_flops": st.floats(1e6, 1e15),
    "vector_flops": st.floats(1e6, 1e13),
    "overlap": st.booleans(),
    "activation_bits": st.sampled_from([4, 8, 16]),
    "weight_bits": st.sampled_from([1, 4, 8]),
    "bias_bits": st.sampled_from([8, 32]),
    "fold_batchnorm": st.booleans(),
    "fuse_activation": st.booleans(),
    "weights": st.sampled_from(["stream", "resident"]),
    "memory_policy": st.sampled_from(["liveness", "paper"]),
    "energy_per_mac": st.sampled_from([0.0, 2.3e-13, 1e-12]),
    "energy_per_sram_byte": st.sampled_from([0.0, 1.25e-11]),
    "energy_per_dram_byte": st.floats(0.0, 2e-10),
}
# a systolic base's array: varied only on such a base (a lone array field elsewhere is refused)
ARRAY_VALUES = {
    "array_rows": st.integers(1, 128),
    "array_cols": st.integers(1, 128),
    "array_clock": st.floats(1e8, 2e9),
    "dataflow": st.sampled_from(["os", "ws", "is"]),
}


@st.composite
def grids(draw):
    systolic = draw(st.booleans())
    choices = {**FIELD_VALUES, **(ARRAY_VALUES if systolic else {})}
    fields = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True))
    if "matrix_flops" in fields and len(fields) > 1 and set(fields) & set(ARRAY_VALUES):
        fields.remove("matrix_flops")  # a peak replaces the array: the two are refused together
    axes = []
    for f in fields:
        values = draw(st.lists(choices[f], min_size=1, max_size=4, unique=True))
        axes.append(Axis(field=f, values=tuple(values)))
    # (a matrix_flops in a systolic base would replace its array)
    base = {f: draw(v) for f, v in FIELD_VALUES.items() if (f != "matrix_flops" or not systolic) and draw(st.booleans())}
    base.update({f: draw(v) for f, v in CALIBRATED.items() if draw(st.booleans())})
    if systolic:
        base.update({f: draw(v) for f, v in ARRAY_VALUES.items()})
        return load_profile("systolic_32x32", **base), axes
    return load_profile("edge_1mb", **base), axes


# a calibrated profile's fields (docs/hardware.md): the vector path computes them too
CALIBRATED = {
    "efficiency": st.fixed_dictionaries({}, optional={
        "conv": st.floats(0.05, 1.0), "conv_dw": st.floats(0.05, 1.0), "add": st.floats(0.05, 1.0),
        "conv_pw": st.dictionaries(st.integers(1, 512), st.floats(0.05, 1.0), min_size=1, max_size=4),
        "batchnorm": st.floats(0.05, 1.0), "linear": st.floats(0.05, 1.0),
        "conv_group": st.just({"flops": 1e11, "scale": 1.2, "kernels": {"1": {
            "overhead": 5e-6, "channels": [2, 16], "per_group": [[2e-6, 3e-6], [2e-6, 4e-6]],
            "per_position": [[1e-9, 4e-9], [3e-9, 9e-9]]}}})}),
    "kernel_overhead": st.fixed_dictionaries({}, optional={
        "default": st.floats(0, 1e-4), "conv": st.floats(0, 1e-4), "relu": st.floats(0, 1e-5)}),
    "tiled_efficiency": st.fixed_dictionaries({}, optional={
        "conv": st.floats(0.05, 1.0), "conv_pw": st.floats(0.05, 1.0), "add": st.floats(0.05, 1.0)}),
    "first_touch": st.sampled_from([0.0, 2e-10, 5e-9]),
}


def expected(graph, base, axes, batch):
    """The loop of simulate the sweep must equal."""
    rows = []
    for idx in grid_index(axes):
        p = load_profile(base, **{a.field: a.values[k] for a, k in zip(axes, idx)})
        try:
            s = simulate(graph, p, batch=batch).summary
        except DoesNotFitError:
            rows.append(None)
            continue
        rows.append({k: (s["bound_counts"][k[6:]] if k.startswith("bound_") else s[k]) for k in TOTAL_COLUMNS})
    return rows


def check(graph, base, axes, batch=1):
    got = evaluate_points(graph, base, axes, grid_index(axes), batch=batch)
    for i, want in enumerate(expected(graph, base, axes, batch)):
        assert bool(got["fits"][i]) == (want is not None), (i, axes)
        if want is None:
            assert math.isnan(got["latency_s"][i])
            continue
        for k in TOTAL_COLUMNS:
            assert got[k][i] == want[k], (k, i, got[k][i], want[k], axes)  # exact, not approx


GRAPHS = {"dense": dense_block(), "skip": skip_net(), "wide_skip": wide(skip=True)}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(GRAPHS))
@SETTINGS
@given(grid=grids(), batch=st.sampled_from([1, 2]))
def test_sweep_equals_simulate_on_small_graphs(name, grid, batch):
    base, axes = grid
    check(GRAPHS[name], base, axes, batch)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=dag_plans(), grid=grids())
def test_sweep_equals_simulate_on_random_dags(plan, grid):
    base, axes = grid
    check(dag_net(*plan), base, axes)


def test_the_dense_block_spills_and_tiles_in_the_swept_range():
    """The property above covers the hard cases: spills, tiles and points that do not fit."""
    axes = [Axis("sram_bytes", tuple(range(256, 32 * 1024, 512)))]
    got = evaluate_points(GRAPHS["dense"], load_profile("edge_1mb"), axes, grid_index(axes))
    fits = got["fits"]
    assert np.any(~fits) and np.any(fits)
    assert any(s > 0 for s in got["spill_bytes"][fits]) and any(t > 0 for t in got["tiled_layers"][fits])
    check(GRAPHS["dense"], load_profile("edge_1mb"), axes)


@pytest.fixture(scope="module")
def mobilenet(graph_cache_module):
    from perfsim.frontends.sources import load_graph
    return load_graph("mobilenet").graph


@pytest.fixture(scope="module")
def graph_cache_module(tmp_path_factory):
    import os
    d = tmp_path_factory.getbasetemp() / "perfsim-graph-cache"
    d.mkdir(exist_ok=True)
    old = os.environ.get("PERFSIM_CACHE_DIR")
    os.environ["PERFSIM_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("PERFSIM_CACHE_DIR", None)
    else:
        os.environ["PERFSIM_CACHE_DIR"] = old


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(grid=grids())
def test_sweep_equals_simulate_on_mobilenet(mobilenet, grid):
    base, axes = grid
    check(mobilenet, base, axes)


def test_sram_sweep_reuses_the_unbounded_plan_exactly(mobilenet):
    """Above the unbounded peak every point shares one plan; below, a plan is made once per SRAM
    range it holds for (perfsim.sim.capacity) and shared within it (all exact), in forked workers when
    there are many."""
    sizes = tuple(int(v) for v in np.geomspace(16 * 1024, 4 * 2**20, 150))
    axes = [Axis("sram_bytes", sizes)]
    for variant in ({"weights": "stream"}, {"weights": "resident"}, {"memory_policy": "paper"}):
        check(mobilenet, load_profile("edge_1mb", **variant), axes)


def test_frame_has_a_row_per_point_with_the_varied_fields(mobilenet):
    axes = [Axis("sram_bytes", (64 * 1024, 2**20)), Axis("overlap", (False, True))]
    f = sweep_frame(mobilenet, load_profile("edge_1mb"), axes, model="mobilenet")
    assert list(f.columns[:5]) == ["model", "point", "sram_bytes", "overlap", "fits"]
    assert list(f.columns[5:]) == list(TOTAL_COLUMNS)
    assert len(f) == 4 and list(f.sram_bytes) == [65536, 65536, 2**20, 2**20]


def test_a_calibrated_base_is_the_same_rule():
    base = load_profile("edge_1mb", efficiency={"conv": 0.5, "conv_pw": {4: 0.2, 64: 0.9}},
                        kernel_overhead={"default": "3us", "conv": "20us"}, tiled_efficiency={"conv": 0.5})
    axes = [Axis("sram_bytes", (256, 1024, 4096, 65536)), Axis("dram_bandwidth", (1e8, 1e9))]
    got = evaluate_points(GRAPHS["dense"], base, axes, grid_index(axes))
    want = expected(GRAPHS["dense"], base, axes, 1)
    for i, w in enumerate(want):
        if w is not None:
            assert all(got[k][i] == w[k] for k in TOTAL_COLUMNS)
    assert any(w is not None and w["t_overhead_s"] > 0 for w in want)
