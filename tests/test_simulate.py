"""The simulator on small networks whose traffic and time are worked out by hand.

Torch-free: the graphs come from tests/graphs.py (their PyTorch twins lower to the same
graphs: tests/test_properties_zoo.py).
"""
from __future__ import annotations

import pytest

import graphs
from perfsim.errors import DoesNotFitError
from perfsim.hardware.loader import load_profile
from perfsim.sim.results import COLUMNS
from perfsim.sim.simulator import simulate


def profile(**kw):
    base = dict(sram_bytes=10**6, dram_bandwidth=1e9, matrix_flops=1e12, vector_flops=1e10, bias_bits=32)
    base.update(kw)
    return load_profile("edge_1mb", **base)


@pytest.fixture(scope="module")
def skip_graph():
    return graphs.skip_net()


def test_unbounded_sram_moves_only_compulsory_traffic(skip_graph):
    r = simulate(skip_graph, profile())
    s = r.summary
    assert s["dram_read_bytes"] == 48 + 12 + 16 + 16
    assert s["dram_write_bytes"] == 64  # the network output
    assert s["spill_bytes"] == 0
    assert [row.sram_used_bytes for row in r.rows] == [124, 144, 208, 192]


def test_spill_is_written_and_read_back(skip_graph):
    # 200 B: at c2, y (dirty, next used by the add) must make room -> spilled, then read back at the add
    r = simulate(skip_graph, profile(sram_bytes=200))
    stem, c1, c2, add = r.rows
    assert c2.spill_bytes == 64 and c2.dram_write_bytes == 64
    assert add.dram_read_bytes == 64 and add.dram_write_bytes == 64
    s = r.summary
    assert s["dram_read_bytes"] == 48 + 12 + 16 + 16 + 64
    assert s["dram_write_bytes"] == 64 + 64
    assert s["spill_bytes"] == 64
    assert all(row.sram_used_bytes <= 200 for row in r.rows)


def test_timing_rules(skip_graph):
    p = profile(sram_bytes=200, dram_latency="10ns")
    r = simulate(skip_graph, p)
    stem = r.rows[0]
    assert stem.t_data_s == pytest.approx((48 + 12) / 1e9 + 2 * 10e-9)
    assert stem.t_matrix_s == pytest.approx(2 * 4 * 16 * 3 / 1e12)
    assert stem.t_total_s == pytest.approx(stem.t_data_s + stem.t_matrix_s)
    add = r.rows[3]
    assert add.t_vector_s == pytest.approx(64 / 1e10)
    assert add.bound in ("data", "vector")
    over = simulate(skip_graph, profile(sram_bytes=200, dram_latency="10ns", overlap=True))
    for a, b in zip(r.rows, over.rows):
        assert b.t_total_s == pytest.approx(max(a.t_data_s, a.t_matrix_s + a.t_vector_s))
    assert over.latency_s <= r.latency_s
    assert r.summary["latency_s"] == pytest.approx(sum(row.t_total_s for row in r.rows))


def test_batch_scales_activations_not_weights(skip_graph):
    one = simulate(skip_graph, profile())
    four = simulate(skip_graph, profile(), batch=4)
    assert four.summary["macs"] == 4 * one.summary["macs"]
    assert four.summary["dram_read_bytes"] == 4 * 48 + 12 + 16 + 16
    assert four.rows[0].in_shape == "4x3x4x4"
    assert four.summary["latency_per_sample_s"] == pytest.approx(four.latency_s / 4)


def test_resident_weights_preload_and_fallback(skip_graph):
    r = simulate(skip_graph, profile(weights="resident"))
    assert r.summary["preload_bytes"] == 12 + 16 + 16
    assert r.summary["dram_read_bytes"] == 48
    # pinned weights are resident: they count in every layer's SRAM figure
    assert [row.sram_used_bytes for row in r.rows] == [48 + 64 + 44, 64 + 64 + 44, 64 + 64 + 64 + 44,
                                                        64 + 64 + 64 + 44]
    small = simulate(skip_graph, profile(weights="resident", sram_bytes=200))
    assert small.summary["preload_bytes"] == 0
    assert any("stream instead" in n for n in small.summary["notes"])


@pytest.fixture(scope="module")
def wide_graph():
    return graphs.wide()


@pytest.fixture(scope="module")
def wide_skip_graph():
    return graphs.wide(skip=True)


def test_tiling_keeps_input_and_output_when_they_fit(wide_skip_graph):
    row = simulate(wide_skip_graph, profile(sram_bytes=8400)).rows[0]
    assert row.plan == "keep_in_out" and row.tiles == 2
    assert row.dram_read_bytes == 4096 + 256 and row.refetch_bytes == 0
    assert row.sram_used_bytes <= 8400


def test_tiling_keeps_input_and_streams_output(wide_skip_graph):
    row = simulate(wide_skip_graph, profile(sram_bytes=5000)).rows[0]
    assert row.plan == "keep_in" and row.tiles > 1
    assert row.dram_read_bytes == 4096 + 256 and row.dram_write_bytes == 4096 == row.spill_bytes
    assert row.sram_used_bytes <= 5000


def test_output_bands_overwrite_a_dying_input(wide_graph):
    """SPEC: an output band may overwrite input rows already consumed (the input has no later reader)."""
    (row,) = simulate(wide_graph, profile(sram_bytes=5000)).rows
    assert row.plan == "overwrite" and row.tiles > 1
    # compulsory traffic only: the input and weights in, the network output out; nothing spilled
    assert (row.dram_read_bytes, row.dram_write_bytes, row.spill_bytes) == (4096 + 256, 4096, 0)
    # one 16-row band of 16 channels: peak = input not yet consumed + output so far + weights
    rows_per_band = 16 // row.tiles
    assert row.sram_used_bytes == max(4096 * (16 - k * rows_per_band) // 16 + 256 * rows_per_band * (k + 1) + 256
                                      for k in range(row.tiles))
    assert row.sram_used_bytes <= 5000


def test_tiling_streams_everything_when_nothing_fits(wide_graph):
    (row,) = simulate(wide_graph, profile(sram_bytes=600)).rows
    assert row.plan == "stream"
    assert row.dram_read_bytes >= 4096 + 256
    assert row.refetch_bytes == row.dram_read_bytes - (4096 + 256)
    assert row.sram_used_bytes <= 600


def test_layer_that_cannot_fit_names_the_smallest_sram(wide_graph):
    with pytest.raises(DoesNotFitError) as e:
        simulate(wide_graph, profile(sram_bytes=100))
    msg = str(e.value)
    assert "'conv'" in msg
    need = int(msg.rsplit("is ", 1)[1].split(" B")[0])
    simulate(wide_graph, profile(sram_bytes=need))  # the quoted size really runs it
    with pytest.raises(DoesNotFitError):
        simulate(wide_graph, profile(sram_bytes=need - 1))


def test_dense_block_spills_on_small_sram_not_on_large():
    """Dense connectivity keeps every earlier feature map alive until the last reader."""
    g = graphs.dense_block()
    big = simulate(g, profile(sram_bytes="1MiB"))
    assert big.summary["spill_bytes"] == 0
    small = simulate(g, profile(sram_bytes="6KiB"))
    assert small.summary["spill_bytes"] > 0
    assert small.summary["peak_sram_bytes"] <= 6 * 1024
    # every concat part stays alive to the end: the final output is all of them, written once
    live_parts = len(g.outputs)
    assert live_parts == 7


def test_columns_are_specs_in_order(skip_graph):
    spec = ("layer, op, unit, in_shape, out_shape, kernel, stride, groups, macs, flops, vector_ops, params, "
            "weight_bytes, in_bytes, out_bytes, sram_used_bytes, dram_read_bytes, dram_write_bytes, spill_bytes, "
            "tiles, t_data_s, t_matrix_s, t_vector_s, t_total_s, bound").split(", ")
    assert list(COLUMNS[: len(spec)]) == spec
    df = simulate(skip_graph, profile()).to_frame()
    assert list(df.columns[: len(spec)]) == spec


def test_summary_totals_equal_column_sums(skip_graph):
    r = simulate(skip_graph, profile(sram_bytes=200))
    df = r.to_frame()
    for key in ("macs", "flops", "vector_ops", "params", "dram_read_bytes", "dram_write_bytes", "spill_bytes",
                "refetch_bytes"):
        assert r.summary[key] == df[key].sum(), key
    assert r.summary["model_size_bytes"] == df["weight_bytes"].sum()
    assert r.summary["peak_sram_bytes"] == df["sram_used_bytes"].max()
    assert sum(r.summary["bound_counts"].values()) == len(df)


def test_bad_batch_is_an_input_error(skip_graph):
    from perfsim.errors import InputError
    with pytest.raises(InputError):
        simulate(skip_graph, profile(), batch=0)


def test_simulator_core_does_not_import_torch(skip_graph, tmp_path):
    """The simulator's stages, profile and report are numpy + dataclasses; a cached CLI run never imports torch."""
    import json
    import subprocess
    import sys
    path = tmp_path / "g.json"
    path.write_text(json.dumps(skip_graph.to_dict()))
    code = (
        "import json, sys\n"
        "from perfsim.ir.graph import Graph\n"
        "from perfsim.hardware.loader import load_profile\n"
        "from perfsim.sim.simulator import simulate\n"
        "from perfsim.report.run import write_report\n"
        "import perfsim.sim.memory, perfsim.sim.results, perfsim.sim.tiling, perfsim.sim.timing\n"
        f"g = Graph.from_dict(json.load(open({str(path)!r})))\n"
        "r = simulate(g, load_profile('edge_1mb'))\n"
        f"write_report(r, {str(tmp_path / 'rep')!r}, plots=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(r.summary['dram_read_bytes'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 48 + 12 + 16 + 16


def test_these_tests_and_their_graphs_need_no_torch(tmp_path):
    """The simulator tests build their graphs with tests/graphs.py: torch may be absent."""
    import subprocess
    import sys
    from pathlib import Path
    here = Path(__file__).resolve().parent
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any 'import torch' now fails\n"
        f"sys.path.insert(0, {str(here)!r})\n"
        "import graphs, test_simulate, test_properties, test_report\n"
        "from perfsim.hardware.loader import load_profile\n"
        "from perfsim.sim.simulator import simulate\n"
        "for g in (graphs.skip_net(), graphs.wide(), graphs.wide(skip=True), graphs.dense_block(),\n"
        "          graphs.conv_bn_act(), graphs.two_convs(), graphs.tie_net(),\n"
        "          graphs.random_net(3, 16, [('res', None), ('dense', 8), ('pool', 'max'), ('dw', 2)]),\n"
        "          graphs.dag_net(3, 8, [('conv', 0, (3, 8, 1)), ('cat', 1, 0), ('add', 0, 0)])):\n"
        "    simulate(g, load_profile('edge_1mb'))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


def test_the_api_function_is_not_shadowed_by_a_submodule(skip_graph):
    """``perfsim.simulate`` stays the function after the simulator module is imported (issue 6)."""
    import importlib

    import perfsim
    importlib.import_module("perfsim.sim.simulator")
    first = perfsim.simulate(skip_graph, perfsim.load_profile("edge_1mb"))
    second = perfsim.simulate(skip_graph, perfsim.load_profile("edge_1mb"))
    assert first.summary == second.summary


def test_summary_json_keys_in_order(skip_graph):
    """SPEC's keys, then perfsim's extras, in this order (compare, sweep and pareto read them)."""
    keys = ["model", "profile", "perfsim_version", "batch", "input_shape", "latency_s", "latency_per_sample_s",
            "macs", "flops", "vector_ops", "params", "params_inference", "model_size_bytes", "dram_read_bytes",
            "dram_write_bytes", "spill_bytes", "refetch_bytes", "preload_bytes", "peak_sram_bytes", "layers",
            "tiled_layers", "bound_counts", "t_data_s", "t_matrix_s", "t_vector_s", "t_overhead_s", "notes",
            "matrix_cycles", "utilization", "sram_access_bytes", "energy_mac_j", "energy_sram_j", "energy_dram_j",
            "energy_j"]  # issue 11 (docs/systolic.md)
    r = simulate(skip_graph, profile(), batch=2)
    assert list(r.summary) == keys
    assert r.summary["input_shape"] == [2, 3, 4, 4] and isinstance(r.summary["notes"], list)
    assert r.summary["bound_counts"] == {"data": r.totals.bound_counts.data, "matrix": r.totals.bound_counts.matrix,
                                         "vector": r.totals.bound_counts.vector}
    assert r.summary["profile"] == r.profile.resolved()
    assert r.summary["latency_s"] == r.totals.latency_s == r.latency_s


def test_rows_are_typed_and_their_cells_plain(skip_graph):
    from perfsim.ir.graph import OpKind, Unit
    from perfsim.sim.records import Bound, Plan
    from perfsim.sim.results import LayerResult
    r = simulate(skip_graph, profile())
    assert LayerResult._fields[: len(COLUMNS)] == COLUMNS
    stem, add = r.rows[0], r.rows[3]
    assert stem.kind is OpKind.CONV and stem.unit is Unit.MATRIX and stem.plan is Plan.RESIDENT
    assert add.kind is OpKind.ADD and add.unit is Unit.VECTOR and isinstance(add.bound, Bound)
    cells = stem.as_tuple()
    assert len(cells) == len(COLUMNS)
    assert [type(c) for c in cells if isinstance(c, str)] == [str] * sum(isinstance(c, str) for c in cells)
    assert cells[COLUMNS.index("unit")] == "matrix" and cells[COLUMNS.index("plan")] == "resident"


def test_memory_plan_gives_one_traffic_record_per_layer(skip_graph):
    from perfsim.sim.memory import plan_memory, tensor_bytes
    from perfsim.sim.records import Plan, Traffic
    p = profile(sram_bytes=200)
    sizes = tensor_bytes(skip_graph, 1, p.formats.activation_bits)
    w = [layer.weight_bytes(p.formats.weight_bits, p.formats.bias_bits, p.schedule.fold_batchnorm) for layer in skip_graph.layers]
    plan = plan_memory(skip_graph, p, sizes, w, w)
    assert all(isinstance(t, Traffic) for t in plan.traffic) and len(plan.traffic) == 4
    c2 = plan.traffic[2]
    assert (c2.spill_bytes, c2.write_bytes, c2.plan) == (64, 64, Plan.RESIDENT)  # y spilled (test above)
    with pytest.raises(Exception):
        c2.read_bytes = 0  # frozen


def test_timing_is_a_pure_function_of_bytes_ops_and_profile():
    import numpy as np

    from perfsim.sim.records import Bound
    from perfsim.sim.simulator import BOUNDS
    from perfsim.sim.timing import Rates, RowWork, layer_times
    r = Rates.of(profile(dram_latency="10ns"))

    def work(dram_bytes=10_000, transfers=2, macs=10**6, vector_ops=10**4, matrix_efficiency=1.0, overhead_s=0.0):
        return RowWork(dram_bytes=dram_bytes, transfers=transfers, macs=macs, matrix_work=2 * macs,
                       vector_ops=vector_ops, matrix_efficiency=matrix_efficiency, vector_efficiency=1.0,
                       overhead_s=overhead_s, sram_access_bytes=0)
    t = layer_times(work(), r)
    assert t.data_s == pytest.approx(10_000 / 1e9 + 2 * 10e-9)
    assert t.matrix_s == pytest.approx(2e6 / 1e12) and t.vector_s == pytest.approx(1e4 / 1e10)
    assert t.total_s == t.data_s + t.matrix_s + t.vector_s and BOUNDS[t.bound] is Bound.DATA
    assert BOUNDS[layer_times(work(dram_bytes=0, transfers=0, vector_ops=0), r).bound] is Bound.MATRIX
    assert BOUNDS[layer_times(work(0, 0, 0, 0), r).bound] is Bound.DATA  # ties: data first
    # the hook for SPEC's reserved `efficiency`: a fraction of peak slows only the unit running the row's op
    half = layer_times(work(matrix_efficiency=0.5), r)
    assert half.matrix_s == 2 * t.matrix_s and half.vector_s == t.vector_s
    slow = layer_times(work(overhead_s=1e-5), r)
    assert slow.total_s == t.total_s + 1e-5 and slow[:3] == t[:3] and slow.bound == t.bound
    # the same rule over arrays (a sweep's points): each element is the scalar's, bit for bit
    points = r._replace(dram_bandwidth=np.array([1e9, 2e9, 1e6]), overlap=np.array([False, True, True]))
    many = layer_times(work(), points)
    for i in range(3):
        one = layer_times(work(), r._replace(dram_bandwidth=float(points.dram_bandwidth[i]),
                                              overlap=bool(points.overlap[i])))
        assert [float(np.asarray(x)[i]) if np.ndim(x) else x for x in many] == list(one)


def test_fold_and_fuse_switches_change_vector_time_and_weight_bytes():
    g = graphs.conv_bn_act("relu6")
    n = 8 * 8 * 8
    base = simulate(g, profile()).rows[0]
    assert base.vector_ops == 0 and base.t_vector_s == 0
    assert base.weight_bytes == 216 + 8 * 4  # folding creates 8 32-bit biases
    unfolded = simulate(g, profile(fold_batchnorm=False)).rows[0]
    assert unfolded.vector_ops == 2 * n and unfolded.weight_bytes == 216 + 16 * 4
    unfused = simulate(g, profile(fuse_activation=False)).rows[0]
    assert unfused.vector_ops == 2 * n  # ReLU6: 2 ops per element
    assert unfused.t_vector_s == pytest.approx(2 * n / 1e10)
    both = simulate(g, profile(fold_batchnorm=False, fuse_activation=False)).rows[0]
    assert both.vector_ops == 4 * n
    assert both.t_total_s == pytest.approx(both.t_data_s + both.t_matrix_s + both.t_vector_s)


def test_does_not_fit_also_names_the_network_wide_minimum():
    g = graphs.two_convs()
    with pytest.raises(DoesNotFitError) as e:
        simulate(g, profile(sram_bytes=64))
    whole = int(str(e.value).split("every layer of the network: ")[1].split(" B")[0])
    simulate(g, profile(sram_bytes=whole))  # the whole network runs at the quoted size
    with pytest.raises(DoesNotFitError):
        simulate(g, profile(sram_bytes=whole - 1))


def test_eviction_ties_prefer_the_smallest_that_suffices():
    """Found by an audit: with SPEC's literal tie rule (larger first), 4 more bytes of SRAM
    spilled b (2,048 B) instead of a (512 B) and total traffic rose by 18 %."""
    g = graphs.tie_net()
    traffic = []
    for size in range(11000, 11300, 4):
        s = simulate(g, profile(sram_bytes=size)).summary
        traffic.append(s["dram_read_bytes"] + s["dram_write_bytes"])
    assert all(b <= a for a, b in zip(traffic, traffic[1:]))
    r = simulate(g, profile(sram_bytes=11104))
    assert max(row.spill_bytes for row in r.rows) == 512  # a, not b
