"""The systolic matrix unit (docs/systolic.md): closed forms, profile rules, rows and timing. Torch-free."""
from __future__ import annotations

from math import ceil

import pytest

from graphs import Net
from perfsim.errors import InputError
from perfsim.ir.graph import Unit
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from perfsim.hardware.systolic import array_cycles, operand_elements, spatial
from perfsim.ir.gemm import Gemm, gemm_dims

ARRAY = dict(array_rows=32, array_cols=32, array_clock="1GHz", dataflow="ws")


def net():
    n = Net((3, 16, 16))
    x = n.relu(n.bn(n.conv(n.input, 32, 3, padding=1)))
    x = n.relu(n.bn(n.conv(x, 32, 3, padding=1, groups=32)))  # depthwise
    x = n.relu(n.bn(n.conv(x, 48, 1)))
    x = n.conv(x, 48, 3, padding=1, groups=4)  # grouped
    return n.build(n.linear(n.flatten(n.global_avgpool(x)), 10))


def test_scalesim_fold_formula_on_whole_folds():
    # every fold fills the array: SCALE-Sim's 2R + C + T - 2 (ws, is) and R + C + T - 2 (os) per fold
    g = Gemm(1, m=800, n=64, k=64)  # every side a multiple of 32
    for df, fill in (("ws", 2), ("is", 2), ("os", 1)):
        sr, sc, t = spatial(g, df)
        folds = ceil(sr / 32) * ceil(sc / 32)
        assert array_cycles(g, 32, 32, df) == (folds * (fill * 32 + 32 + t - 2), folds)


def test_partial_folds_fill_and_drain_only_what_they_use():
    # the first conv of a 28x28 network: K = 27 rows of 32, N = 32, T = 784
    assert array_cycles(Gemm(1, 784, 32, 27), 32, 32, "ws") == (2 * 27 + 32 + 782, 1)
    # a row fold of 8 after four of 32 (K = 136)
    assert array_cycles(Gemm(1, 100, 32, 136), 32, 32, "ws") == (2 * 136 + 5 * 32 + 5 * 98, 5)


def test_groups_share_a_fold_on_the_diagonal_when_it_saves_cycles():
    dw = Gemm(32, m=784, n=1, k=9)  # depthwise 3x3 over 32 channels, ws: Sr = 9, Sc = 1
    packed = 3  # 32 // 9 groups per fold
    assert array_cycles(dw, 32, 32, "ws") == (2 * 32 * 9 + 32 + ceil(32 / packed) * 782, ceil(32 / packed))
    # is: T = N = 1: packing would add cycles, so groups fold one after another
    assert array_cycles(dw, 32, 32, "is")[1] == 32 * ceil(784 / 32)


def test_gemm_dims_multiply_to_the_rows_macs():
    g = net()
    for batch in (1, 3):
        for layer in g.layers:
            if layer.unit is Unit.MATRIX:
                d = gemm_dims(layer, batch)
                assert d.groups * d.m * d.n * d.k == layer.macs * batch, layer.name


def test_rows_carry_cycles_utilisation_and_time():
    p = load_profile("edge_1mb", **ARRAY)
    r = simulate(net(), p, batch=2)
    for row, layer in zip(r.rows, net().layers):
        if row.unit is Unit.MATRIX:
            cycles, _ = array_cycles(gemm_dims(layer, 2), 32, 32, "ws")
            assert row.matrix_cycles == cycles > 0
            assert row.t_matrix_s == pytest.approx(cycles / 1e9, rel=1e-12)
            assert 0 < row.utilization <= 1 + 1e-12
            assert row.utilization == pytest.approx(row.macs / (cycles * 32 * 32), rel=1e-9)
        else:
            assert row.matrix_cycles == 0 and row.utilization == 0.0
    assert r.totals.matrix_cycles == sum(x.matrix_cycles for x in r.rows)
    assert 0 < r.totals.utilization <= 1 + 1e-12


def test_efficiency_scales_the_arrays_time_and_overhead_adds():
    base = load_profile("edge_1mb", **ARRAY)
    slow = load_profile(base, efficiency={"conv": 0.5}, kernel_overhead={"default": "1us"})
    a, b = simulate(net(), base), simulate(net(), slow)
    for x, y in zip(a.rows, b.rows):
        assert y.matrix_cycles == x.matrix_cycles
        factor = 2.0 if x.op == "conv" else 1.0  # a matrix row never falls back: conv_dw, conv_pw stay at 1
        assert y.t_matrix_s == pytest.approx(x.t_matrix_s * factor, rel=1e-12)
        assert y.t_overhead_s > 0 and y.t_total_s > x.t_total_s


def test_the_peak_is_derived_and_the_plain_profile_unchanged():
    p = load_profile("systolic_32x32")
    assert p.systolic and p.matrix.flops == 2 * 32 * 32 * 1e9 and p.matrix.array.dataflow == "ws"
    assert load_profile("systolic_128x128").matrix.flops == 2 * 128 * 128 * 1e9
    assert load_profile(p, sram_bytes="2MB").matrix.flops == p.matrix.flops  # a profile round-trips
    plain = load_profile(p, matrix_flops="3TFLOPS")  # a later matrix_flops replaces the array
    assert not plain.systolic and plain.matrix.array is None and plain.matrix.flops == 3e12
    assert not load_profile("edge_1mb").systolic


def test_matrix_flops_and_an_array_together_is_an_error(tmp_path):
    with pytest.raises(InputError, match="not both"):
        load_profile("edge_1mb", matrix_flops="1TFLOPS", **ARRAY)
    f = tmp_path / "both.yaml"
    f.write_text("extends: systolic_32x32\nmatrix_flops: 2.048TFLOPS\narray_rows: 32\n")
    with pytest.raises(InputError, match="not both"):
        load_profile(str(f))


@pytest.mark.parametrize("fields, needle", [
    ({"array_rows": 32}, "missing array_cols"),
    ({**ARRAY, "dataflow": "rs"}, "dataflow"),
    ({**ARRAY, "array_rows": 0}, "array_rows"),
    ({**ARRAY, "array_cols": 1.5}, "array_cols"),
    ({**ARRAY, "array_clock": "1GB/s"}, "array_clock"),
    ({**ARRAY, "array_clock": "0Hz"}, "array_clock"),
    ({**ARRAY, "array_rows": 65536, "array_cols": 65536, "array_clock": "1THz"}, "peak"),
])
def test_bad_arrays_are_refused_in_one_line(fields, needle):
    with pytest.raises(InputError, match=needle):
        load_profile("edge_1mb", **fields)


def test_operand_traffic_stationary_once_streamed_per_fold():
    g = Gemm(1, m=100, n=64, k=64)  # 2 x 2 folds on 32 x 32
    assert operand_elements(g, 32, 32, "ws") == (100 * 64 * 2, 64 * 64, 100 * 64 * 2)
    assert operand_elements(g, 32, 32, "os") == (100 * 64 * 2, 64 * 64 * 4, 100 * 64)
    assert operand_elements(g, 32, 32, "is") == (100 * 64, 64 * 64 * 4, 100 * 64 * 2)
