"""``perfsim calibrate``: the micro-benchmarks lower to the labels they calibrate, the fit recovers a
known machine, the profile it writes reads back, and a file it did not write is never replaced.
No timing is asserted (timings are the machine's; speed lives in benchmarks/)."""
from __future__ import annotations

import math

import pytest

from perfsim.host import benchmarks, calibrate as cal, fits as fitting
from perfsim.errors import InputError
from perfsim.host.measure import Spread
from perfsim.hardware.description import HardwareProfile
from perfsim.hardware.efficiency import MATRIX_LABELS
from perfsim.hardware.loader import load_profile
from perfsim.ir.gemm import matrix_dims


@pytest.mark.parametrize("quick", [True, False])
def test_every_benchmark_lowers_to_the_label_it_calibrates(quick):
    seen = set()
    for bench in benchmarks.benches(quick):
        _, layer = benchmarks.lowered(bench)  # raises if the module lowers to another label or several rows
        seen.add(bench.label)
    assert MATRIX_LABELS <= seen
    assert {"batchnorm", "relu", "add", "maxpool", "global_avgpool", "softmax", "layernorm", "gelu"} <= seen
    # every label is one a profile accepts
    load_profile("edge_1mb", efficiency={label: 0.5 for label in seen})


def _spread(t):
    return Spread(median_s=t, q1_s=t * 0.99, q3_s=t * 1.01, n=5)


def test_the_fit_recovers_a_known_overhead_and_efficiency():
    """Times made from overhead + 2 MACs / (peak * eff): the fit gives back overhead and eff."""
    peak, overhead, eff = 1e11, 20e-6, 0.4
    points = []
    for bench in benchmarks.benches(False):
        if bench.label == "conv_pw":
            _, layer = benchmarks.lowered(bench)
            points.append((layer, _spread(overhead + 2 * layer.macs / (peak * eff))))
    fit = fitting.fit_label("conv_pw", points, peak)
    assert fit.overhead_s == pytest.approx(overhead, rel=0.05)  # the smallest shape has a little work
    assert isinstance(fit.efficiency, float) and fit.efficiency == pytest.approx(eff, rel=0.05)
    assert fit.median_abs_error < 0.05 and fit.unit == "matrix"


def test_fractions_that_differ_by_size_become_a_table():
    peak, overhead = 1e11, 10e-6
    points = []
    for bench in benchmarks.benches(False):
        if bench.label == "conv_group":
            _, layer = benchmarks.lowered(bench)
            eff = 0.02 * min(matrix_dims(layer, 1))  # narrow groups run far below peak
            points.append((layer, _spread(overhead + 2 * layer.macs / (peak * min(eff, 1.0)))))
    fit = fitting.fit_label("conv_group", points, peak)
    assert isinstance(fit.efficiency, dict)
    assert fit.efficiency[2] == pytest.approx(0.04, rel=0.1) and fit.efficiency[32] == pytest.approx(0.64, rel=0.1)


def _tiny_run(monkeypatch):
    """calibrate() with a handful of benchmarks and small memory sizes (seconds, not a minute)."""
    few = [b for b in benchmarks.benches(True) if b.label in ("conv_dw", "relu")]
    monkeypatch.setattr(cal, "benches", lambda quick: few)
    large = [b for b in benchmarks.tiled_benches(True) if b.label == "relu"]
    monkeypatch.setattr(cal, "tiled_benches", lambda quick: large)
    monkeypatch.setattr(cal, "measure_memory", lambda quick, samples, llc: {
        2 ** k: cal.Measured(value=v, q1=v * 0.9, q3=v * 1.1, n=3, unit="B/s")
        for k, v in ((18, 6e10), (20, 7e10), (22, 3e10), (24, 2.8e10), (28, 7e9))})
    return cal.calibrate(quick=True, threads=1, name="tiny")


def test_a_calibrated_profile_records_its_measurements_and_reads_back(tmp_path, monkeypatch):
    p = _tiny_run(monkeypatch)
    c = p.calibration
    assert c.threads == 1 and c.quick and c.host["cpu"]
    assert set(c.fits) == {"conv_dw", "relu"} and set(p.kernels.efficiency) == {"conv_dw", "relu"}
    assert all(m.q1 <= m.value <= m.q3 and m.n >= 1 for m in c.measurements.values())
    assert any(k.startswith("gemm_") for k in c.measurements) and any(k.startswith("elementwise_") for k in c.measurements)
    assert p.matrix.flops >= max(m.value for k, m in c.measurements.items() if k.startswith("gemm_"))
    assert (p.schedule.fold_batchnorm, p.schedule.fuse_activation, p.formats.activation_bits) == (False, False, 32)  # eager float32
    out = tmp_path / "hardware_profiles" / "host.yaml"
    cal.write_profile(p, out)
    back = load_profile(str(out))
    assert back == p
    assert not [x for x in out.parent.iterdir() if x.name != "host.yaml"]  # no temporary left
    cal.write_profile(p, out)  # its own file: replaced
    s = c.measurements["stability"]  # one network's forward in two fresh processes, start and end
    assert s.unit == "relative" and s.n >= 18 and 0 <= s.value <= s.q3
    probe = c.measurements["speed_probe"]  # the machine's speed through the benchmarks (validate compares)
    assert probe.unit == "s" and probe.n >= 2 and 0 < probe.q1 <= probe.value <= probe.q3 < 1.0


def test_calibrate_says_how_far_timings_move_between_runs():
    steady = cal.stability([1.00, 1.01, 0.99] * 5, [1.02, 1.01, 1.03] * 5, threads=1)["stability"]
    assert steady.value == pytest.approx(0.02, abs=1e-3) and steady.q3 < 0.05
    moving = cal.stability([1.0] * 15, [1.3] * 15, threads=2)["stability"]
    assert moving.value == pytest.approx(0.3)
    from perfsim.hardware.calibration import Calibration
    base = dict(perfsim_version="x", date="d", threads=2)
    assert Calibration(**base, measurements={"stability": moving}).unstable() == pytest.approx(0.3)
    assert Calibration(**base, measurements={"stability": steady}).unstable() is None
    assert Calibration(**base).unstable() is None  # a profile calibrated before the check


def test_never_replaces_a_file_calibrate_did_not_write(tmp_path):
    mine = tmp_path / "host.yaml"
    mine.write_text("extends: edge_1mb\nname: host\n")
    p = load_profile("edge_1mb")
    with pytest.raises(InputError, match="not written by perfsim calibrate"):
        cal.write_profile(p, mine)
    assert mine.read_text() == "extends: edge_1mb\nname: host\n"
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InputError, match="not a file"):
        cal.write_profile(p, tmp_path / "dir.yaml")
    cal.write_profile(p, mine, force=True)
    assert load_profile(str(mine)) == p


def test_the_yaml_has_text_keys_only():
    p = HardwareProfile.from_fields(dict(name="t", sram_bytes=1024, dram_bandwidth=1e9, matrix_flops=1e12,
                                         vector_flops=1e10, efficiency={"conv_group": {2: 0.1, 8: 0.4}}))
    text = cal.profile_yaml(p)
    assert "'2': 0.1" in text and math.isfinite(load_profile(p).kernels.efficiency["conv_group"][8])


def test_threads_must_be_sensible():
    with pytest.raises(InputError, match="--threads"):
        cal.calibrate(quick=True, threads=0 or -1)


def test_sram_is_the_level_2_cache_else_the_first_fall_of_the_copy_bandwidth():
    rates = {2 ** k: cal.Measured(value=v, q1=v, q3=v, n=1, unit="B/s")
             for k, v in ((18, 6e10), (20, 7e10), (21, 4.4e10), (22, 3e10), (24, 2.9e10), (28, 7e9))}
    sram, bw, how = cal.sram_and_bandwidth(rates, {1: 48 * 1024, 2: 2 ** 21, 3: 2 ** 28}, threads=1)
    assert sram == 2 ** 21 and bw == 2.9e10 and "level-2" in how  # 8x the SRAM: the next level's bandwidth
    assert cal.sram_and_bandwidth(rates, {1: 48 * 1024, 2: 2 ** 21}, threads=2)[0] == 2 ** 22
    sram, bw, how = cal.sram_and_bandwidth(rates, {}, threads=1)
    assert sram == 2 ** 20 and "measured" in how  # 2 MiB fell below 3/4 of the best so far


def test_the_synthetic_networks_lower_and_cover_the_labels():
    from perfsim.host.context import NETWORKS
    from perfsim.frontends.lowering import lower
    from perfsim.sim.timing import strided
    labels = set()
    for name, (make, shape) in NETWORKS.items():
        graph = lower(make().eval(), shape, name=name)
        labels |= {layer.op + (".strided" if strided(layer) else "") for layer in graph.layers}
    # the strided convs' entries too; a conv on a token view takes its label's fit in context (with_strided)
    assert MATRIX_LABELS - {"conv_dw.view"} <= labels
    assert {"add", "maxpool", "softmax", "layernorm"} <= {label.split("+")[0] for label in labels}
    from perfsim.host.context import ContextFit, with_strided
    dw = ContextFit(1.5, 20e-6, 9, (1.0,))
    assert with_strided({"conv_dw": dw}, ["conv_dw", "conv_dw.view", "conv_dw.strided"]) == {
        "conv_dw": dw, "conv_dw.view": dw, "conv_dw.strided": dw}


def _calls(factor, overhead, works, out_bytes=0, area=0):
    from perfsim.host.context import ContextCall
    return [ContextCall(factor * w + overhead, 5e-6, w, out_bytes, area) for w in works]


def test_in_context_a_label_gets_a_factor_on_work_and_its_own_overhead():
    from perfsim.host.context import ContextCall, fit_context
    fit = fit_context(_calls(2.0, 30e-6, [10e-6, 40e-6, 100e-6, 400e-6]))
    assert fit.affine and fit.factor == pytest.approx(2.0) and fit.overhead_s == pytest.approx(30e-6)
    assert fit.ratios == pytest.approx([1.0] * 4)
    # never faster than the warm loop: a fit below 1 is held at 1, the overhead refitted
    held = fit_context(_calls(0.5, 200e-6, [10e-6, 40e-6, 100e-6, 400e-6]))
    assert held.factor == 1.0 and held.affine and held.overhead_s > 0
    # too few calls, or too alike in size: the factor held at 1, the overhead the median of measured - work
    few = fit_context([ContextCall(2e-6 * k, 1e-6, 1e-6 * k - 1e-6, 0) for k in (2, 3, 4)])
    assert not few.affine and few.factor == 1.0 and few.overhead_s == pytest.approx(4e-6)
    alike = fit_context(_calls(2.0, 30e-6, [100e-6, 120e-6, 150e-6, 200e-6]))
    assert not alike.affine and alike.factor == 1.0
    assert alike.overhead_s == pytest.approx(30e-6 + 135e-6)  # the median call's excess: 2 x 135 - 135 + 30
    assert fit_context([ContextCall(1e-6, 1e-6, 5e-6, 0)] * 3).overhead_s == 0.0  # faster than the fit: no negative
    # ... and a call the fit then gives no time at all (no work, no overhead) does not divide by zero
    none = fit_context([ContextCall(1e-6, 1e-6, 0.0, 0)] + [ContextCall(1e-6, 1e-6, 5e-6, 0)] * 2)
    assert none.overhead_s == 0.0 and none.ratios == pytest.approx((0.2, 0.2))


def test_a_slow_stretch_of_the_machine_is_read_at_the_calibrations_speed():
    """Benchmarks timed while the probe ran twice as slow (a stretch of 5) are read at half their times;
    one slow probe alone moves nothing (the window's median); the quartiles move with the median."""
    from perfsim.host.measure import Spread
    results = [(i, None, Spread(median_s=1.0, q1_s=0.9, q3_s=1.2, n=9)) for i in range(12)]
    probes = [1.0] * 3 + [2.0] * 5 + [1.0] * 4
    probes[10] = 3.0  # a single blip
    read = cal.at_speed(results, probes, 1.0)
    medians = [s.median_s for _, _, s in read]
    assert medians[:2] == [1.0, 1.0] and medians[4:7] == [0.5, 0.5, 0.5] and medians[9:] == [1.0] * 3
    assert read[5][2].q1_s == pytest.approx(0.45) and read[5][2].q3_s == pytest.approx(0.6) and read[5][2].n == 9
    assert [b for b, _, _ in read] == list(range(12))


def test_in_context_times_are_read_at_the_benchmarks_speed(monkeypatch):
    """The synthetic networks run after the micro-benchmarks, in another process: a machine twice as slow
    then (by the speed probe) would double every in-context factor. Each network's times are read at the
    benchmarks' probe instead: the same timings with a reference probe twice theirs are twice as long."""
    import dataclasses

    import perfsim.host.measure as hosttime
    from perfsim.host.context import measure_context
    real, seen = hosttime.time_module, {}

    def once(module, shape, **kw):  # each network timed once, then replayed with a probe of 400 us
        key = (type(module).__name__, tuple(shape))
        if key not in seen:
            seen[key] = dataclasses.replace(real(module, shape, **{**kw, "repeats": 1, "warmup": 0}), probe_s=400e-6)
        return seen[key]

    monkeypatch.setattr(hosttime, "time_module", once)
    profile = load_profile("edge_1mb")
    kw = dict(threads=1, repeats=1, progress=lambda _: None)
    plain, same, slower = (measure_context(profile, **kw, reference_s=r) for r in (None, 400e-6, 800e-6))
    assert plain.keys() == same.keys() == slower.keys() and plain
    for key in plain:
        assert [c.measured for c in same[key]] == pytest.approx([c.measured for c in plain[key]])
        assert [c.measured for c in slower[key]] == pytest.approx([2 * c.measured for c in plain[key]])


def test_a_grouped_conv_is_fitted_in_context_per_kernel_area():
    from perfsim.host.context import apply_fits, context_fits
    samples = {("conv_group", False): _calls(1.0, 30e-6, [10e-6, 40e-6, 100e-6, 400e-6], area=1)
               + _calls(1.0, 80e-6, [20e-6, 60e-6, 100e-6, 200e-6], area=9)}
    fits, _ = context_fits(samples)
    areas = dict(fits["conv_group"].areas)
    assert areas[1].overhead_s == pytest.approx(30e-6) and areas[9].overhead_s == pytest.approx(80e-6)
    kernel = {"channels": [2, 8], "per_group": [[0, 0], [0, 0]], "per_position": [[1e-9, 1e-9], [1e-9, 1e-9]]}
    grouped = {"flops": 1e11, "kernels": {"1": {**kernel, "overhead": 2e-6}, "9": {**kernel, "overhead": 1e-5}}}
    p = apply_fits(load_profile("edge_1mb", efficiency={"conv_group": grouped}), fits, 0.0)
    g = p.kernels.efficiency["conv_group"]
    # the smaller overhead is the label's; the 3x3 kernel keeps the rest of its own
    assert p.kernels.overhead["conv_group"] == pytest.approx(30e-6)
    assert g.kernels[1].overhead == pytest.approx(2e-6) and g.kernels[9].overhead == pytest.approx(1e-5 + 50e-6)
    assert g.scale == 1.0


def test_a_strided_label_without_calls_in_context_takes_its_labels_fit():
    from perfsim.host.context import apply_fits, fit_context, with_strided
    fits = {"conv_group": fit_context(_calls(1.5, 40e-6, [10e-6, 40e-6, 100e-6, 400e-6])),
            "conv_dw.strided": fit_context(_calls(2.0, 90e-6, [10e-6, 40e-6, 100e-6, 400e-6]))}
    out = with_strided(fits, ["conv_group", "conv_group.strided", "conv_dw", "conv_dw.strided", "relu"])
    assert out["conv_group.strided"] is fits["conv_group"]  # inherited
    assert out["conv_dw.strided"] is fits["conv_dw.strided"] and "conv_dw" not in out and "relu" not in out
    p = load_profile("edge_1mb", efficiency={"conv_group": 0.6, "conv_group.strided": 0.3},
                     kernel_overhead={"conv_group": "5us", "conv_group.strided": "7us"})
    q = apply_fits(p, {"conv_group": fits["conv_group"]}, 0.0)
    assert q.kernels.efficiency["conv_group.strided"] == pytest.approx(0.3 / 1.5)
    assert q.kernels.overhead["conv_group.strided"] == pytest.approx(40e-6)


def test_first_touch_is_the_excess_per_output_byte_of_rows_that_do_not_fit():
    from perfsim.host.context import ContextCall, apply_fits, context_fits
    works = [10e-6, 40e-6, 100e-6, 400e-6]
    samples = {("conv", False): _calls(2.0, 30e-6, works),
               # rows that do not fit: the in-SRAM fit plus 100 us per MB of output
               ("conv", True): [ContextCall(2.0 * w + 30e-6 + b * 1e-10, 5e-6, w, b) for w, b in
                                zip(works, (1_000_000, 2_000_000, 3_000_000))],
               ("batchnorm", True): [ContextCall(1e-6 + w + b * 1e-10, 1e-6, w, b) for w, b in
                                     ((1e-5, 10**6), (2e-5, 4 * 10**6))],
               ("relu", True): [ContextCall(1e-3, 1e-6, 1e-6, 10**6)] * 5}  # in place: no fresh output, not counted
    fits, (first_touch, n) = context_fits(samples)
    assert set(fits) == {"conv"} and n == 5 and first_touch == pytest.approx(1e-10)
    base = load_profile("edge_1mb", efficiency={"conv": {16: 0.5, 64: 0.9}, "relu": 0.5},
                        kernel_overhead={"conv": "10us", "relu": "2us"})
    p = apply_fits(base, fits, first_touch)
    assert p.kernels.efficiency["conv"] == {16: 0.25, 64: 0.45} and p.kernels.efficiency["relu"] == 0.5
    assert p.kernels.overhead["conv"] == pytest.approx(30e-6) and p.kernels.overhead["relu"] == pytest.approx(2e-6)
    assert p.kernels.first_touch == pytest.approx(1e-10)
    # a grouped conv's model takes the factor as its scale
    grouped = {"flops": 1e11, "kernels": {"9": {"overhead": 1e-5, "channels": [2, 8], "per_group": [[0, 0], [0, 0]],
                                                "per_position": [[1e-9, 1e-9], [1e-9, 1e-9]]}}}
    g = apply_fits(load_profile("edge_1mb", efficiency={"conv_group": grouped}),
                   {"conv_group": fits["conv"]}, 0.0)
    assert g.kernels.efficiency["conv_group"].scale == pytest.approx(2.0)
    # faster than predicted beyond SRAM: no negative first touch; too few such calls: none
    assert context_fits({("conv", True): [ContextCall(1e-6, 1e-6, 1e-6, 10**6)] * 3})[1] == (0.0, 3)
    assert context_fits({("conv", True): [ContextCall(1e-3, 1e-6, 1e-6, 10**6)] * 2})[1] == (0.0, 2)


def test_fractions_are_one_number_or_a_table_by_the_smallest_dimension():
    assert fitting._table([(2, 49, 0.01), (2, 784, 0.03), (8, 49, 0.2)]) == {2: 0.02, 8: 0.2}
    assert fitting._table([(2, 49, 0.5), (8, 784, 0.52)]) == 0.51
    # a 1x1 depthwise conv: its cost per channel makes its fraction rise 160x with the positions; that
    # dimension becomes a table by M, the others one entry each (a profile's table is one level or two)
    dw = [(1, 49, 0.0002), (1, 784, 0.0036), (1, 12544, 0.0387), (9, 196, 0.15), (9, 3136, 0.16), (49, 784, 0.6)]
    table = fitting._table(dw)
    assert table == {1: {49: 0.0002, 784: 0.0036, 12544: 0.0387}, 9: {1: 0.155}, 49: {1: 0.6}}
    from perfsim.hardware.efficiency import table_value
    assert table_value(table, 1, 784) == 0.0036 and table_value(table, 9, 49) == 0.155
    assert fitting._table([(1, 49, 0.01), (1, 784, 0.1), (9, 49, 0.2)]) == {1: 0.055, 9: 0.2}  # 10x: noise


def _grouped_points(truth, shapes):
    """(layer, spread) of grouped convs whose times come from ``truth`` (a GroupedConvModel), as calibrate
    measures them: lowered by perfsim, the time the model gives."""
    from perfsim.host.measure import Spread
    from perfsim.frontends.lowering import lower
    from perfsim.ir.gemm import grouped_dims
    out = []
    for k, cin, cout, groups, side in shapes:
        g = lower(benchmarks._conv(cin * groups, cout * groups, k, groups)(), (cin * groups, side, side))
        layer = g.layers[0]
        area, gr, m, r, w = grouped_dims(layer, 1)
        t = truth.kernels[area].time(gr, m, r, w)
        out.append((layer, Spread(median_s=t, q1_s=t, q3_s=t, n=1)))
    return out


def test_the_grouped_conv_model_is_recovered_from_its_grid():
    from perfsim.hardware.efficiency import GroupedConvModel
    ch = (2, 8, 32)
    def kernel(overhead, per_group, base):
        return {"overhead": overhead, "channels": list(ch), "per_group": [[per_group] * 3] * 3,
                "per_position": [[base * r * (1 + w / 8) for w in ch] for r in ch]}
    truth = GroupedConvModel(flops=2e11, kernels={1: kernel(6e-6, 2.7e-6, 1e-10), 9: kernel(5.4e-5, 3e-7, 9e-10)})
    shapes = [(k, r, w, g, s) for k in (1, 3) for r in ch for w in ch for g in (4, 32) for s in (7, 28)]
    fit = fitting.fit_grouped(_grouped_points(truth, shapes), 2e11, ch)
    model = fit.efficiency
    assert fit.median_abs_error < 1e-6 and fit.overhead_s == 0.0
    for area in (1, 9):
        got, want = model.kernels[area], truth.kernels[area]
        assert got.overhead == pytest.approx(want.overhead, rel=1e-4)
        for table in ("per_group", "per_position"):
            flat = [x for row in getattr(got, table) for x in row]
            assert flat == pytest.approx([x for row in getattr(want, table) for x in row], rel=1e-3), table


def test_the_row_block_is_the_one_that_best_predicts_pairs_of_maps():
    """Times made by a profile with a block of 16 (beyond the overhead) give 16 back; times in proportion
    to the MACs give no block."""
    from perfsim.host.measure import Spread
    from perfsim.ir.gemm import matrix_dims as gemm_dims
    from perfsim.sim.timing import entry_value, row_block_factor
    base = load_profile("edge_1mb", efficiency={"conv_pw": 0.5, "conv": {16: 0.4, 256: 0.8}},
                        kernel_overhead={"conv_pw": "10us", "conv": "20us"})

    def results(block):
        out = []
        for bench in benchmarks.block_benches(False):
            layer = benchmarks.built(bench)[1].layers[0]
            eff = base.kernels.efficiency[bench.label]
            t = base.kernels.overhead[bench.label] + 2 * layer.macs / (
                base.matrix.flops * entry_value(eff, layer, 1) * row_block_factor(block, gemm_dims(layer, 1)[0]))
            out.append((bench, layer, Spread(median_s=t, q1_s=t, q3_s=t, n=1)))
        return out
    blocks, measured = fitting.fit_row_blocks(base, results(16))
    assert blocks == {"conv_pw": 16, "conv": 16} and measured["row_block: conv_pw"].value == 16.0
    assert measured["row_block: conv"].n == 2
    blocks, measured = fitting.fit_row_blocks(base, results(1))
    assert blocks == {} and measured["row_block: conv_pw"].value == 1.0
    assert [b.shape[-1] for b in benchmarks.block_benches(True)] == [7, 8, 14, 16, 7, 8, 14, 16]


def test_a_grouped_conv_row_reads_its_model():
    from perfsim.frontends.lowering import lower
    from perfsim.hardware.efficiency import GroupedConvModel
    from perfsim.sim.timing import entry_value
    k = {"overhead": 5e-5, "channels": [2, 8], "per_group": [[1e-6, 2e-6], [3e-6, 4e-6]],
         "per_position": [[1e-9, 2e-9], [3e-9, 4e-9]]}
    model = GroupedConvModel(flops=1e11, scale=2.0, kernels={9: k})
    layer = lower(benchmarks._conv(8 * 4, 2 * 4, 3, 4)(), (32, 16, 16)).layers[0]  # 4 groups reading 8, writing 2
    seconds = 2.0 * (5e-5 + 4 * 3e-6 + 4 * 256 * 3e-9)
    assert entry_value(model, layer, 1) == pytest.approx(2 * layer.macs / (1e11 * seconds))
    # between the axis's points: linear in log2 of the channels (4 read: half-way from 2 to 8), the
    # per-position cost as a cost per channel pair (per MAC): (1e-9 / 4 + 3e-9 / 16) / 2 per pair
    layer4 = lower(benchmarks._conv(4 * 4, 2 * 4, 3, 4)(), (16, 16, 16)).layers[0]
    seconds4 = 2.0 * (5e-5 + 4 * 2e-6 + 4 * 256 * (1e-9 / 4 + 3e-9 / 16) / 2 * 4 * 2)
    assert entry_value(model, layer4, 1) == pytest.approx(2 * layer4.macs / (1e11 * seconds4))
    # beyond the axis's end the cost per channel pair is held, not the cost per position: a group reading
    # 32 channels costs 4x the per-position time of one reading 8 (held flat, it had cost the same)
    wide = lower(benchmarks._conv(32 * 4, 2 * 4, 3, 4)(), (128, 16, 16)).layers[0]
    seconds32 = 2.0 * (5e-5 + 4 * 3e-6 + 4 * 256 * 3e-9 * 4)
    assert entry_value(model, wide, 1) == pytest.approx(min(1.0, 2 * wide.macs / (1e11 * seconds32)))
    assert seconds32 > seconds + 2.0 * 4 * 256 * 3e-9 * 2  # the MACs were not free
    # a 1x1 grouped conv reads the nearest area's table, its per-position cost scaled by 1/9
    one = lower(benchmarks._conv(8 * 4, 2 * 4, 1, 4)(), (32, 16, 16)).layers[0]
    seconds1 = 2.0 * (5e-5 + 4 * 3e-6 + 4 * 256 * 3e-9 / 9)
    assert entry_value(model, one, 1) == pytest.approx(2 * one.macs / (1e11 * seconds1))


@pytest.mark.parametrize("entry, needle", [
    ({"flops": 1e11, "kernels": {}}, "kernel areas"),
    ({"flops": 1e11, "kernels": {"9": {"overhead": 1e-5, "channels": [8, 2], "per_group": [[0, 0], [0, 0]],
                                       "per_position": [[0, 0], [0, 0]]}}}, "ascending"),
    ({"flops": 1e11, "kernels": {"9": {"overhead": 1e-5, "channels": [2, 8], "per_group": [[0, 0]],
                                       "per_position": [[0, 0], [0, 0]]}}}, "2 x 2"),
    ({"flops": 1e11, "kernels": {"9": {"overhead": 1e-5, "channels": [2, 8], "per_group": [[0, 0], [0, -1]],
                                       "per_position": [[0, 0], [0, 0]]}}}, "seconds"),
    ({"flops": 0, "kernels": {"9": {"overhead": 1e-5, "channels": [2, 8], "per_group": [[0, 0], [0, 0]],
                                    "per_position": [[0, 0], [0, 0]]}}}, "flops"),
    ({"flops": 1e11, "kernels": {"x": {}}}, "whole numbers"),
])
def test_a_bad_grouped_conv_model_is_one_input_error(entry, needle):
    with pytest.raises(InputError, match=needle):
        load_profile("edge_1mb", efficiency={"conv_group": entry})
    with pytest.raises(InputError, match="only for conv_group"):
        load_profile("edge_1mb", efficiency={"conv": {"flops": 1e11, "kernels": {}}})


def test_a_benchmark_is_timed_call_by_call_as_validate_times_a_layer(monkeypatch):
    """``time_calls`` sums the timed ATen calls of each forward (the capture's clock, as ``validate``
    reads a layer), never the Python around them, and takes at least ``samples`` forwards."""
    import time

    import torch

    from perfsim.host import measure as hosttime

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.003)  # Python time between calls: not a call
            return torch.relu(x) + 1

    with hosttime.host_settings(1):
        s = hosttime.time_calls(Slow(), torch.randn(8), samples=5, warmup_s=0.0, budget_s=0.0)
    assert s.n == 5 and 0 < s.median_s < 0.001

    monkeypatch.setattr(hosttime, "_timed_forward", lambda *a: ([], {0: 1e-3, 2: 2e-3}))
    s = hosttime.time_calls(torch.nn.Identity(), torch.randn(1), samples=3, warmup_s=0.0, budget_s=1.0)
    assert s.median_s == pytest.approx(3e-3) and 3 <= s.n <= 30


def test_overlap_is_the_way_the_large_shapes_were_measured():
    """Rows beyond SRAM: if their measured time is compute alone (prefetch streams the data while the
    kernel computes), calibrate keeps ``overlap``; if it is data plus compute, it does not."""
    from perfsim.host.fits import fit_overlap
    from perfsim.host.measure import Spread
    from perfsim.sim.simulator import simulate
    base = load_profile("edge_1mb", sram_bytes="256KiB", kernel_overhead={"default": "5us"})
    large = [b for b in benchmarks.tiled_benches(True) if b.label in ("conv_pw", "conv")]
    rows = [simulate(benchmarks.built(b)[1], base).rows[0] for b in large]
    assert all(r.tiles > 1 and r.t_data_s > 0 for r in rows)

    def measured(times):
        return [(b, None, Spread(t, t * 0.99, t * 1.01, 9)) for b, t in zip(large, times)]
    hidden = measured([r.t_matrix_s + r.t_overhead_s for r in rows])
    added = measured([r.t_data_s + r.t_matrix_s + r.t_overhead_s for r in rows])
    p, said = fit_overlap(base, hidden)
    assert p.schedule.overlap and said["overlap: true"].value < said["overlap: false"].value
    p, said = fit_overlap(base, added)
    assert not p.schedule.overlap and said["overlap: false"].value <= said["overlap: true"].value


def test_calibrate_measures_one_thread_unless_told():
    """Issue 20: a 2-thread calibration predicted 5 of 28 networks within both targets here, one thread 16;
    the default is one thread, `--help` says why, and the library's default matches the CLI's."""
    import inspect

    from click.testing import CliRunner

    from perfsim.cli.main import cli
    command = cli.commands["calibrate"]
    threads = next(p for p in command.params if p.name == "threads")
    assert threads.default == 1
    assert inspect.signature(cal.calibrate).parameters["threads"].default == 1
    out = " ".join(CliRunner().invoke(cli, ["calibrate", "--help"]).output.split())
    assert "One by default" in out and "16 of 28" in out
