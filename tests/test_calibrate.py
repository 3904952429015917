"""``perfsim calibrate``: the micro-benchmarks lower to the labels they calibrate, the fit recovers a
known machine, the profile it writes reads back, and a file it did not write is never replaced.
No timing is asserted (timings are the machine's; speed lives in benchmarks/)."""
from __future__ import annotations

import math

import pytest

from perfsim import calibrate as cal
from perfsim.errors import InputError
from perfsim.hosttime import Spread
from perfsim.profile import MATRIX_LABELS, HardwareProfile, load_profile
from perfsim.timing import gemm_min_dim


@pytest.mark.parametrize("quick", [True, False])
def test_every_benchmark_lowers_to_the_label_it_calibrates(quick):
    seen = set()
    for bench in cal.benches(quick):
        _, layer = cal._lowered(bench)  # raises if the module lowers to another label or several rows
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
    for bench in cal.benches(False):
        if bench.label == "conv_pw":
            _, layer = cal._lowered(bench)
            points.append((layer, _spread(overhead + 2 * layer.macs / (peak * eff))))
    fit = cal.fit_label("conv_pw", points, peak)
    assert fit.overhead_s == pytest.approx(overhead, rel=0.05)  # the smallest shape has a little work
    assert isinstance(fit.efficiency, float) and fit.efficiency == pytest.approx(eff, rel=0.05)
    assert fit.median_abs_error < 0.05 and fit.unit == "matrix"


def test_fractions_that_differ_by_size_become_a_table():
    peak, overhead = 1e11, 10e-6
    points = []
    for bench in cal.benches(False):
        if bench.label == "conv_group":
            _, layer = cal._lowered(bench)
            eff = 0.02 * gemm_min_dim(layer, 1)  # narrow groups run far below peak
            points.append((layer, _spread(overhead + 2 * layer.macs / (peak * min(eff, 1.0)))))
    fit = cal.fit_label("conv_group", points, peak)
    assert isinstance(fit.efficiency, dict)
    assert fit.efficiency[2] == pytest.approx(0.04, rel=0.1) and fit.efficiency[32] == pytest.approx(0.64, rel=0.1)


def _tiny_run(monkeypatch):
    """calibrate() with a handful of benchmarks and small memory sizes (seconds, not a minute)."""
    few = [b for b in cal.benches(True) if b.label in ("conv_dw", "relu")]
    monkeypatch.setattr(cal, "benches", lambda quick: few)
    monkeypatch.setattr(cal, "measure_memory", lambda quick, samples, llc: (
        {"copy_1048576": cal.Measured(value=2e10, q1=1.9e10, q3=2.1e10, n=3, unit="B/s")}, 1e10, 2 ** 20))
    return cal.calibrate(quick=True, threads=1, name="tiny")


def test_a_calibrated_profile_records_its_measurements_and_reads_back(tmp_path, monkeypatch):
    p = _tiny_run(monkeypatch)
    c = p.calibration
    assert c.threads == 1 and c.quick and c.host["cpu"]
    assert set(c.fits) == {"conv_dw", "relu"} and set(p.efficiency) == {"conv_dw", "relu"}
    assert all(m.q1 <= m.value <= m.q3 and m.n >= 1 for m in c.measurements.values())
    assert any(k.startswith("gemm_") for k in c.measurements) and any(k.startswith("elementwise_") for k in c.measurements)
    assert p.matrix_flops >= max(m.value for k, m in c.measurements.items() if k.startswith("gemm_"))
    assert (p.fold_batchnorm, p.fuse_activation, p.activation_bits) == (False, False, 32)  # eager float32
    out = tmp_path / "hardware_profiles" / "host.yaml"
    cal.write_profile(p, out)
    back = load_profile(str(out))
    assert back == p
    assert not [x for x in out.parent.iterdir() if x.name != "host.yaml"]  # no temporary left
    cal.write_profile(p, out)  # its own file: replaced


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
    p = HardwareProfile(name="t", sram_bytes=1024, dram_bandwidth=1e9, matrix_flops=1e12, vector_flops=1e10,
                        efficiency={"conv_group": {2: 0.1, 8: 0.4}})
    text = cal.profile_yaml(p)
    assert "'2': 0.1" in text and math.isfinite(load_profile(p).efficiency["conv_group"][8])


def test_threads_must_be_sensible():
    with pytest.raises(InputError, match="--threads"):
        cal.calibrate(quick=True, threads=0 or -1)
