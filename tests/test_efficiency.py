"""SPEC "Efficiency and overhead": per-label fractions of peak (numbers or tables by the smallest matrix
dimension) and per-kernel overheads. Torch-free: graphs from tests/graphs.py."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphs
from graphs import random_net, random_plans
from invariants import check_sweep, prof
from perfsim.errors import DoesNotFitError, InputError
from perfsim.ir.fuse import fuse
from perfsim.ir.graph import Op, OpKind
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from perfsim.hardware.efficiency import table_value
from perfsim.ir.gemm import matrix_dims
from perfsim.sim.timing import row_efficiency, row_overhead

MATRIX = ("conv", "conv_pw", "conv_dw", "conv_group", "linear", "matmul")


def _one(kind: OpKind, in_shape, out_shape, macs, *, kernel=None, groups=1, name="m", stride=1):
    op = Op(name=name, path=name, kind=kind, target="t", inputs=("input",), in_shapes=(in_shape,),
            out_shape=out_shape, kernel=kernel, stride=(stride, stride) if kernel else None,
            padding=(kernel[0] // 2, kernel[1] // 2) if kernel else None, dilation=(1, 1) if kernel else None,
            groups=groups, macs=macs, weight_elems=1)
    return fuse("g", in_shape, [op], [("input", in_shape)], [name], 1).layers[0]


def conv_layer(cin, cout, k, groups, hw):
    return _one(OpKind.CONV, (1, cin, hw, hw), (1, cout, hw, hw), hw * hw * cout * (cin // groups) * k * k,
                kernel=(k, k), groups=groups)


def test_the_smallest_matrix_dimension_reads_the_product_of_each_kind():
    def gemm_min_dim(layer, batch):
        return min(matrix_dims(layer, batch))

    assert gemm_min_dim(conv_layer(32, 32, 3, 32, 14), 1) == 1  # depthwise: one output channel per group
    assert gemm_min_dim(conv_layer(64, 64, 3, 32, 14), 1) == 2  # two channels per group
    assert gemm_min_dim(conv_layer(64, 128, 1, 1, 2), 1) == 4  # pointwise on 2x2: four positions
    assert gemm_min_dim(conv_layer(64, 128, 1, 1, 2), 8) == 32  # the batch adds positions
    assert gemm_min_dim(conv_layer(256, 256, 3, 1, 14), 1) == 196
    linear = _one(OpKind.LINEAR, (1, 1024), (1, 1000), 1024 * 1000)
    assert gemm_min_dim(linear, 1) == 1 and gemm_min_dim(linear, 16) == 16
    tokens = _one(OpKind.LINEAR, (1, 197, 768), (1, 197, 3072), 197 * 768 * 3072)
    assert gemm_min_dim(tokens, 1) == 197
    scores = _one(OpKind.MATMUL, (1, 12, 197, 64), (1, 12, 197, 197), 12 * 197 * 197 * 64)
    assert gemm_min_dim(scores, 1) == 64  # heads are separate products


def test_table_is_log_linear_between_points_and_flat_beyond():
    t = {2: 0.1, 8: 0.5, 32: 0.9}
    assert table_value(t, 1) == 0.1 and table_value(t, 2) == 0.1 and table_value(t, 64) == 0.9
    assert table_value(t, 4) == pytest.approx(0.3)  # half-way from 2 to 8 in log2
    assert table_value(t, 16) == pytest.approx(0.7)
    assert table_value({5: 0.4}, 1000) == 0.4


def test_a_label_slows_only_its_rows_on_its_unit():
    g = graphs.conv_bn_act("relu6")
    base = simulate(g, prof())
    label = base.rows[0].op
    slow = simulate(g, prof(efficiency={label: 0.25}))
    assert slow.rows[0].t_matrix_s == pytest.approx(4 * base.rows[0].t_matrix_s)
    assert slow.rows[0].t_data_s == base.rows[0].t_data_s and slow.rows[0].t_vector_s == base.rows[0].t_vector_s
    other = simulate(g, prof(efficiency={"linear": 0.25, "add": 0.5}))
    assert other.latency_s == base.latency_s  # labels the graph does not have change nothing


def test_a_vector_row_reads_its_label_then_its_kind():
    layer = _one(OpKind.ADD, (1, 8, 4, 4), (1, 8, 4, 4), 0)
    assert row_efficiency({"add": 0.5}, layer, 1) == (1.0, 0.5)
    assert row_efficiency({"relu": 0.5}, layer, 1) == (1.0, 1.0)  # a missing label is 1.0


def test_a_table_follows_the_smallest_dimension():
    table = {"conv_group": {2: 0.05, 32: 0.8}}
    narrow, wide = conv_layer(64, 64, 3, 32, 8), conv_layer(64, 64, 3, 2, 8)
    assert narrow.op == wide.op == "conv_group"
    assert row_efficiency(table, narrow, 1) == (0.05, 1.0)
    assert row_efficiency(table, wide, 1) == (0.8, 1.0)


def test_a_strided_conv_reads_its_strided_entry_and_falls_back_to_its_label():
    from perfsim.sim.timing import strided
    flat = conv_layer(32, 32, 3, 32, 8)
    down = _one(OpKind.CONV, (1, 32, 8, 8), (1, 32, 4, 4), 16 * 32 * 9, kernel=(3, 3), groups=32, stride=2)
    assert flat.op == down.op == "conv_dw" and strided(down) and not strided(flat)
    table = {"conv_dw": 0.5, "conv_dw.strided": 0.125}
    assert row_efficiency(table, flat, 1) == (0.5, 1.0)
    assert row_efficiency(table, down, 1) == (0.125, 1.0)
    assert row_efficiency({"conv_dw": 0.5}, down, 1) == (0.5, 1.0)  # no strided entry: the label's
    # the overhead of the strided main kernel only; its BN and activation keep theirs
    ovh = {"conv_dw": 10e-6, "conv_dw.strided": 40e-6, "batchnorm": 3e-6}
    assert row_overhead(ovh, down, True, True) == pytest.approx(40e-6)
    assert row_overhead(ovh, flat, True, True) == pytest.approx(10e-6)
    g = graphs.conv_bn_act("relu")
    assert simulate(g, prof(efficiency={"conv.strided": 0.01})).latency_s == simulate(g, prof()).latency_s
    p = load_profile("edge_1mb", efficiency={"conv_pw.strided": {"16": 0.2, "64": 0.4}},
                     kernel_overhead={"conv.strided": "9us"})
    assert p.kernels.efficiency["conv_pw.strided"] == {16: 0.2, 64: 0.4} and p.kernels.overhead["conv.strided"] == 9e-6


def _softmax(target: str, rows: int, length: int):
    op = Op(name="s", path="s", kind=OpKind.SOFTMAX, target=target, inputs=("input",),
            in_shapes=((1, rows, length),), out_shape=(1, rows, length), vector_ops=5 * rows * length,
            reduce_dims=(-1,))
    return fuse("g", (1, rows, length), [op], [("input", (1, rows, length))], ["s"], 0).layers[0]


def test_a_safe_softmax_reads_its_own_entry_and_falls_back_to_softmax():
    """PyTorch's math attention runs the NaN-safe softmax (~4.5x slower per element here, issue 20): its row
    reads ``softmax.safe`` first, in efficiency and overhead alike; a plain softmax never does."""
    safe, plain = _softmax("aten._safe_softmax.default", 64, 49), _softmax("aten._softmax.default", 64, 49)
    assert (safe.op, safe.variant, plain.variant) == ("softmax", "safe", "")
    table = {"softmax": 0.4, "softmax.safe": 0.1}
    assert row_efficiency(table, safe, 1) == (1.0, 0.1) and row_efficiency(table, plain, 1) == (1.0, 0.4)
    assert row_efficiency({"softmax": 0.4}, safe, 1) == (1.0, 0.4)  # no entry of its own: softmax's
    assert row_overhead({"softmax": 2e-6, "softmax.safe": 9e-6}, safe, True, True) == pytest.approx(9e-6)
    assert load_profile("edge_1mb", kernel_overhead={"softmax.safe": "9us"}).kernels.overhead["softmax.safe"] == 9e-6


def test_a_row_label_reads_a_table_by_the_rows_length():
    """A softmax over rows of 49 ran at half the rate of one over rows of 256 (issue 20): a row label's entry
    may be a table by the row an output reads whole, read as matrix tables are (log2, flat beyond)."""
    short, long_ = _softmax("aten._softmax.default", 512, 49), _softmax("aten._softmax.default", 128, 256)
    assert (short.row_length, long_.row_length) == (49, 256)
    table = {"softmax": {16: 0.1, 256: 0.5}}
    assert row_efficiency(table, long_, 1) == (1.0, 0.5)
    assert row_efficiency(table, short, 1)[1] == pytest.approx(table_value(table["softmax"], 49))
    assert 0.1 < row_efficiency(table, short, 1)[1] < 0.5
    p = load_profile("edge_1mb", efficiency={"layernorm": {"64": 0.2, "768": 0.6}})
    assert p.kernels.efficiency["layernorm"] == {64: 0.2, 768: 0.6}
    with pytest.raises(InputError, match="a table is only for matrix ops"):
        load_profile("edge_1mb", efficiency={"relu": {16: 0.5}})  # relu reads no row
    with pytest.raises(InputError, match=r"softmax\[16\]: must be a number"):
        load_profile("edge_1mb", efficiency={"softmax": {16: {49: 0.5}}})  # one level only


def test_a_row_block_rounds_a_matrix_rows_output_positions_up():
    """oneDNN's convs computed a 7x7 map in the time of an 8x8 one: with ``row_block`` a row of M output
    positions costs ceil(M / block) x block of them; a strided conv reads only ``label.strided``."""
    from perfsim.hardware.description import HardwareProfile
    from perfsim.sim.timing import row_block_factor, unit_efficiencies
    base = load_profile("edge_1mb")
    blocked = load_profile("edge_1mb", row_block={"conv_pw": "16"})
    assert blocked.kernels.row_block == {"conv_pw": 16}
    seven, eight = conv_layer(256, 256, 1, 1, 7), conv_layer(256, 256, 1, 1, 8)
    assert unit_efficiencies(blocked, seven, 1, 1) == (pytest.approx(49 / 64), 1.0)
    assert unit_efficiencies(blocked, eight, 1, 1) == (1.0, 1.0) == unit_efficiencies(base, seven, 1, 1)
    assert unit_efficiencies(blocked, seven, 4, 1)[0] == pytest.approx(196 / 208)  # the batch adds positions
    assert row_block_factor(16, 196) == pytest.approx(196 / 208) and row_block_factor(None, 49) == 1.0
    assert unit_efficiencies(blocked, conv_layer(256, 256, 3, 1, 7), 1, 1) == (1.0, 1.0)  # conv: no entry
    down = _one(OpKind.CONV, (1, 64, 14, 14), (1, 64, 7, 7), 49 * 64 * 64, kernel=(1, 1), stride=2)
    assert unit_efficiencies(blocked, down, 1, 1) == (1.0, 1.0)
    strided_block = load_profile("edge_1mb", row_block={"conv_pw.strided": 16})
    assert unit_efficiencies(strided_block, down, 1, 1)[0] == pytest.approx(49 / 64)
    g = graphs.conv_bn_act("relu")
    assert simulate(g, prof(row_block={"conv_pw": 16})).latency_s >= simulate(g, prof()).latency_s
    assert HardwareProfile.from_fields(dict(sram_bytes=1, dram_bandwidth=1, matrix_flops=1, vector_flops=1)).kernels.row_block == {}


@pytest.mark.parametrize("value, match", [({"relu": 16}, "matrix ops"), ({"conv_pw": 0}, "between 1 and"),
                                          ({"conv_pw": 2.5}, "whole number"), ({"nope": 4}, "unknown op label"),
                                          (16, "must map")])
def test_a_bad_row_block_is_an_input_error(value, match):
    with pytest.raises(InputError, match=match):
        load_profile("edge_1mb", row_block=value)


def test_a_matrix_rows_own_vector_work_runs_at_its_kinds_efficiency():
    from perfsim.sim.timing import matrix_row_vector_efficiency
    g = graphs.conv_bn_act("relu")
    layer = g.layers[0]
    ops = {label: n for label, n, _ in layer.vector_kernels}
    assert set(ops) == {"batchnorm", "relu"} and layer.vector_ops(False, False) == sum(ops.values())
    eager = {"fold_batchnorm": False, "fuse_activation": False}
    peak = prof().vector.flops
    base = simulate(g, prof(**eager)).rows[0]
    slow = simulate(g, prof(**eager, efficiency={"batchnorm": 0.5, "relu": 0.25})).rows[0]
    assert base.t_vector_s == pytest.approx(sum(ops.values()) / peak)
    assert slow.t_vector_s == pytest.approx(ops["batchnorm"] / (0.5 * peak) + ops["relu"] / (0.25 * peak))
    assert slow.t_matrix_s == base.t_matrix_s
    # BN folded and ReLU fused: the row runs no vector kernel of its own, so nothing changes
    assert simulate(g, prof(efficiency={"batchnorm": 0.5, "relu": 0.25})).latency_s == simulate(g, prof()).latency_s
    half = simulate(g, prof(fold_batchnorm=False, efficiency={"batchnorm": 0.5, "relu": 0.25})).rows[0]
    assert half.t_vector_s == pytest.approx(ops["batchnorm"] / (0.5 * peak))
    assert matrix_row_vector_efficiency({"add": 0.1, "conv": 0.2}, layer, False, False) == 1.0  # exactly


def test_kernel_overhead_counts_the_kernels_a_row_runs():
    g = graphs.conv_bn_act("relu")  # conv + BN + ReLU: one row
    layer = g.layers[0]
    ovh = {"default": 1e-6, layer.op: 10e-6, "batchnorm": 3e-6}
    assert row_overhead(ovh, layer, True, True) == pytest.approx(10e-6)  # BN folded, ReLU fused: one kernel
    assert row_overhead(ovh, layer, False, True) == pytest.approx(13e-6)
    assert row_overhead(ovh, layer, False, False) == pytest.approx(14e-6)  # ReLU at the default
    assert row_overhead({}, layer, False, False) == 0.0
    r = simulate(g, prof(kernel_overhead={"default": "1us", layer.op: "10us", "batchnorm": "3us"},
                         fold_batchnorm=False, fuse_activation=False)).rows[0]
    assert r.t_overhead_s == pytest.approx(14e-6)
    assert r.t_total_s == pytest.approx(r.t_data_s + r.t_matrix_s + r.t_vector_s + 14e-6)


def test_overhead_adds_after_overlap_and_to_the_summary():
    g = graphs.two_convs()
    p = prof(overlap=True, kernel_overhead={"default": "5us"})
    r = simulate(g, p)
    for row in r.rows:
        assert row.t_total_s == pytest.approx(max(row.t_data_s, row.t_matrix_s + row.t_vector_s) + row.t_overhead_s)
    assert r.totals.t_overhead_s == pytest.approx(5e-6 * sum(len(x.kernels) for x in g.layers))
    assert r.latency_s == pytest.approx(sum(row.t_total_s for row in r.rows))


def test_defaults_are_specs_numbers_bit_for_bit():
    g = graphs.dense_block()
    a, b = simulate(g, prof()), simulate(g, prof(efficiency={}, kernel_overhead={}))
    assert [x.as_tuple() for x in a.rows] == [x.as_tuple() for x in b.rows]
    assert all(x.t_overhead_s == 0.0 for x in a.rows)


@pytest.mark.parametrize("fields, match", [
    ({"efficiency": {"conv_dw": 0}}, "fraction"),
    ({"efficiency": {"conv_dw": 1.5}}, "fraction"),
    ({"efficiency": {"conv_dw": math.nan}}, "fraction"),
    ({"efficiency": {"conv_dw": True}}, "number"),
    ({"efficiency": {"warp": 0.5}}, "unknown op label"),
    ({"efficiency": {"relu": {2: 0.5}}}, "only for matrix ops"),
    ({"efficiency": {"conv_group": {}}}, "1 to 64 points"),
    ({"efficiency": {"conv_group": {0: 0.5}}}, "whole numbers"),
    ({"efficiency": {"conv_group": {str(i): 0.5 for i in range(1, 70)}}}, "1 to 64 points"),
    ({"efficiency": [0.5]}, "must map"),
    ({"kernel_overhead": {"relu": "-1us"}}, "between 0 s and 1 s"),
    ({"kernel_overhead": {"relu": "2s"}}, "between 0 s and 1 s"),
    ({"kernel_overhead": {"relu": "fast"}}, "cannot read"),
    ({"kernel_overhead": {"nope": "1us"}}, "unknown op label"),
    ({"efficiency": {"conv_group.strided": {"kernels": {}}}}, "only for conv_group"),  # a table, not the model
    ({"efficiency": {"relu.strided": 0.5}}, "unknown op label"),
    ({"calibration": {"threads": 0}}, "calibration"),
])
def test_bad_efficiency_and_overhead_are_one_line_input_errors(fields, match):
    with pytest.raises(InputError, match=match) as e:
        load_profile("edge_1mb", **fields)
    assert "\n" not in str(e.value)


def test_a_yaml_table_with_text_keys_reads_as_numbers(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("extends: edge_1mb\nname: t\nefficiency:\n  conv_group: {'2': 0.1, '16': 0.6}\n  relu: 0.5\n"
                    "kernel_overhead: {default: 2us, conv_dw: 100us}\n")
    p = load_profile(str(path))
    assert p.kernels.efficiency == {"conv_group": {2: 0.1, 16: 0.6}, "relu": 0.5}
    assert p.kernels.overhead == {"default": pytest.approx(2e-6), "conv_dw": pytest.approx(1e-4)}
    assert hash(p) == hash(load_profile(str(path)))


@st.composite
def efficiency_tables(draw):
    labels = draw(st.lists(st.sampled_from(MATRIX + ("relu", "add", "batchnorm", "maxpool")), unique=True, max_size=6))
    frac = st.floats(0.01, 1.0)
    out = {}
    for label in labels:
        if label == "conv_group" and draw(st.booleans()):  # a model of its time (calibrate writes one)
            t = st.floats(0, 1e-5)
            out[label] = {"flops": draw(st.floats(1e9, 1e13)), "scale": draw(st.floats(0.5, 3.0)), "kernels": {
                area: {"overhead": draw(t), "channels": [2, 8, 32],
                       "per_group": [[draw(t) for _ in range(3)] for _ in range(3)],
                       "per_position": [[draw(st.floats(0, 1e-7)) for _ in range(3)] for _ in range(3)]}
                for area in draw(st.lists(st.sampled_from([1, 9]), min_size=1, max_size=2, unique=True))}}
        elif label in MATRIX and draw(st.booleans()):
            keys = draw(st.lists(st.integers(1, 4096), min_size=1, max_size=5, unique=True))
            out[label] = {k: draw(frac) for k in keys}
        else:
            out[label] = draw(frac)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=random_plans(), table=efficiency_tables(), overhead=st.floats(0, 1e-4),
       first_touch=st.sampled_from([0.0, 1e-10, 3e-9]),
       row_block=st.sampled_from([{}, {"conv": 16, "conv_pw": 8, "linear": 4, "conv_dw.strided": 32}]),
       sizes=st.lists(st.integers(2048, 2**20), min_size=3, max_size=6, unique=True))
def test_invariants_hold_with_efficiency_and_overhead(plan, table, overhead, first_touch, row_block, sizes):
    """SPEC's invariants under any efficiency, overhead, first touch and row block; lower efficiency is
    never faster."""
    graph = random_net(*plan)
    fields = {"efficiency": table, "kernel_overhead": {"default": overhead}, "first_touch": first_touch,
              "row_block": row_block}
    check_sweep(graph, sizes, **fields)
    try:
        fast = simulate(graph, prof(sram_bytes=max(sizes)))
        slow = simulate(graph, prof(sram_bytes=max(sizes), **fields))
    except DoesNotFitError:
        return
    assert slow.latency_s >= fast.latency_s * (1 - 1e-12)
    assert [r.dram_read_bytes for r in slow.rows] == [r.dram_read_bytes for r in fast.rows]  # time, not traffic
    for r in slow.rows:
        assert r.t_total_s == pytest.approx(r.t_data_s + r.t_matrix_s + r.t_vector_s + r.t_overhead_s)


def test_tiled_efficiency_slows_only_rows_that_do_not_fit():
    g = graphs.two_convs()
    roomy = simulate(g, prof(sram_bytes=2**30))
    assert all(r.tiles == 1 for r in roomy.rows)
    label = roomy.rows[0].op
    assert simulate(g, prof(sram_bytes=2**30, tiled_efficiency={label: 0.5})).latency_s == roomy.latency_s
    sizes = [2**k for k in range(10, 22)]
    for size in sizes:
        try:
            tight = simulate(g, prof(sram_bytes=size))
        except DoesNotFitError:
            continue
        if any(r.tiles > 1 for r in tight.rows):
            slow = simulate(g, prof(sram_bytes=size, tiled_efficiency={label: 0.5}))
            for a, b in zip(tight.rows, slow.rows):
                factor = 2 if (a.tiles > 1 and a.op == label) else 1
                assert b.t_matrix_s == pytest.approx(factor * a.t_matrix_s)
            return
    pytest.fail("no SRAM size tiles this graph")


def test_first_touch_adds_per_fresh_output_byte_only_where_a_row_does_not_fit():
    g = graphs.two_convs()
    assert simulate(g, prof(sram_bytes=2**30, first_touch=1e-9)).latency_s == simulate(g, prof(sram_bytes=2**30)).latency_s
    for size in [2**k for k in range(10, 22)]:
        try:
            tight = simulate(g, prof(sram_bytes=size, fold_batchnorm=False))
        except DoesNotFitError:
            continue
        if any(r.tiles > 1 for r in tight.rows):
            touched = simulate(g, prof(sram_bytes=size, fold_batchnorm=False, first_touch=1e-9))
            for layer, a, b in zip(g.layers, tight.rows, touched.rows):
                fresh = len(layer.kernels) + len(layer.bn_kernels)  # BN unfolded writes its own output
                extra = 1e-9 * a.out_bytes * fresh if a.tiles > 1 else 0.0
                assert b.t_overhead_s == pytest.approx(a.t_overhead_s + extra)
                assert b.t_total_s == pytest.approx(a.t_total_s + extra)
            return
    pytest.fail("no SRAM size tiles this graph")


@pytest.mark.parametrize("value", [-1e-9, 1.0, "fast", True, float("nan"), "nan", "1" * 50, [1e-10]])
def test_bad_first_touch_is_an_input_error(value):
    with pytest.raises(InputError, match="first_touch"):
        load_profile("edge_1mb", first_touch=value)


def test_first_touch_reads_from_yaml_as_written_by_hand(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("extends: edge_1mb\nname: p\nfirst_touch: 1e-10\n")  # YAML 1.1: text, not a float
    assert load_profile(str(f)).kernels.first_touch == pytest.approx(1e-10)


@pytest.mark.parametrize("value, match", [({"conv_dw": 0}, "fraction"), ({"nope": 0.5}, "unknown op label"),
                                          ("half", "must map")])
def test_bad_tiled_efficiency_is_an_input_error(value, match):
    with pytest.raises(InputError, match=match):
        load_profile("edge_1mb", tiled_efficiency=value)


def test_a_table_of_tables_reads_positions_inside_the_smallest_dimension():
    t = {2: {49: 0.01, 784: 0.04}, 8: {49: 0.05, 784: 0.2}}
    assert table_value(t, 2, 49) == 0.01 and table_value(t, 2, 784) == 0.04
    assert table_value(t, 2, 196) == pytest.approx(0.025)  # half-way from 49 to 784 in log2
    assert table_value(t, 4, 784) == pytest.approx(0.12)  # then half-way from 2 to 8
    small, large = conv_layer(64, 64, 3, 32, 7), conv_layer(64, 64, 3, 32, 28)
    assert row_efficiency({"conv_group": t}, small, 1) == (0.01, 1.0)
    assert row_efficiency({"conv_group": t}, large, 1) == (0.04, 1.0)
    p = load_profile("edge_1mb", efficiency={"conv_group": {"2": {"49": 0.01, "784": 0.04}}})
    assert p.kernels.efficiency["conv_group"] == {2: {49: 0.01, 784: 0.04}}
    with pytest.raises(InputError, match="all fractions or all tables"):
        load_profile("edge_1mb", efficiency={"conv_group": {2: 0.1, 8: {49: 0.2}}})
    with pytest.raises(InputError, match="must be a number"):
        load_profile("edge_1mb", efficiency={"conv_group": {2: {49: {1: 0.5}}}})  # two levels at most


def test_a_depthwise_conv_reads_its_table_by_kernel_area():
    """conv_dw's product always has N = 1: its table is by K, the kernel area (issue 20: ConvNeXt's 7x7
    depthwise convs ran 3x faster per MAC than the 3x3 ones that set the table)."""
    from perfsim.ir.gemm import table_key
    from perfsim.sim.timing import entry_value
    table = {9: 0.05, 25: 0.1, 49: 0.2}
    three, seven = conv_layer(96, 96, 3, 96, 28), conv_layer(96, 96, 7, 96, 28)
    assert (table_key(three, 1), table_key(seven, 1)) == (9, 49)
    assert entry_value(table, three, 1) == 0.05 and entry_value(table, seven, 1) == 0.2
    assert entry_value(table, conv_layer(96, 96, 5, 96, 28), 1) == 0.1
    # every other product keeps its smallest dimension, a one-channel dense conv too
    assert table_key(conv_layer(64, 1, 3, 1, 14), 1) == 1 and table_key(conv_layer(64, 64, 3, 32, 14), 1) == 2
