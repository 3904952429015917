"""perfsim sweep: --vary specs, the CSV, the knee, bad input, and the Dask scheduler."""
from __future__ import annotations

import pandas as pd
import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.hardware.loader import load_profile
from perfsim.explore.vary import parse_vary
from perfsim.report.sweep import knee
from perfsim.sim.batch import TOTAL_COLUMNS

BASE = load_profile("edge_1mb")


@pytest.mark.parametrize("spec, field, values", [
    ("sram_bytes=16KiB..128KiB:x2", "sram_bytes", (16384, 32768, 65536, 131072)),
    ("sram_bytes=1KiB..3KiB:+1KiB", "sram_bytes", (1024, 2048, 3072)),
    ("sram_bytes=1KiB..1MiB:n3", "sram_bytes", (1024, 32768, 1048576)),
    ("dram_bandwidth=0.5GB/s..2GB/s:x2", "dram_bandwidth", (0.5e9, 1e9, 2e9)),
    ("dram_bandwidth=1GB/s,4GB/s", "dram_bandwidth", (1e9, 4e9)),
    ("overlap=false,true", "overlap", (False, True)),
    ("weights=stream,resident", "weights", ("stream", "resident")),
    ("weight_bits=4..8:+2", "weight_bits", (4, 6, 8)),
    ("matrix_flops=1TFLOPS", "matrix_flops", (1e12,)),
])
def test_vary_specs(spec, field, values):
    axis = parse_vary(spec, BASE)
    assert axis.field == field and axis.values == values


@pytest.mark.parametrize("spec, needle", [
    ("foo=1,2", "'foo'"),  # unknown field
    ("name=a,b", "'name'"),  # not a swept field
    ("sram_bytes=1MiB..1KiB:x2", "empty range"),
    ("sram_bytes=0..4:+1", "sram_bytes"),  # outside LIMITS (must be positive)
    ("sram_bytes=1KiB..2TiB:x2", "sram_bytes"),  # above 1 TiB
    ("dram_bandwidth=1GB/s..2GB/s:x1", "factor"),
    ("dram_bandwidth=1GB/s..2GB/s:+0GB/s", "step"),
    ("sram_bytes=1KiB..2KiB:n0", "count"),
    ("sram_bytes=1..1TiB:+1", "more than"),  # 10^12 values: refused before they are built
    ("sram_bytes=1KiB..2KiB", "START..END"),
    ("sram_bytes=1KiB..2KiB:y2", "xFACTOR"),
    ("sram_bytes=abc", "sram_bytes"),
    ("overlap=false..true:x2", "list the values"),
    ("sram_bytes", "FIELD=VALUES"),
    ("activation_bits=0,8", "activation_bits"),
])
def test_bad_vary_is_one_line_exit_2(isolated, capsys, spec, needle):
    rc, out, err = cli_run(capsys, "sweep", "mobilenet", "--vary", spec)
    assert_input_error(rc, out, err, needle)
    assert not (isolated / "reports").exists()


def test_a_field_varied_twice_is_refused(isolated, capsys):
    rc, out, err = cli_run(capsys, "sweep", "mobilenet", "--vary", "overlap=true", "--vary", "overlap=false")
    assert_input_error(rc, out, err, "overlap", "twice")


def test_knee_is_the_least_value_from_which_on_nothing_spills():
    assert knee([1, 2, 3, 4], [5, 0, 3, 0], [True] * 4) == 4  # a later spill moves it
    assert knee([4, 3, 2, 1], [0, 0, 0, 9], [True] * 4) == 2  # order of points does not matter
    assert knee([1, 2], [0, 0], [False, True]) == 2  # a point that does not fit is no knee
    assert knee([1, 2], [1, 1], [True, True]) is None


def test_sweep_cli_writes_a_tidy_csv_and_plots(isolated, capsys):
    rc, out, err = cli_run(capsys, "sweep", "mobilenet", "mobilenet_v1", "--vary", "sram_bytes=64KiB..4MiB:x2",
                           "--vary", "dram_bandwidth=1GB/s,2GB/s", "--out", "sw")
    assert rc == 0, err
    frame = pd.read_csv(isolated / "sw" / "sweep.csv")
    assert len(frame) == 2 * 7 * 2
    assert list(frame.columns) == ["model", "point", "sram_bytes", "dram_bandwidth", "fits", *TOTAL_COLUMNS]
    assert {p.name for p in (isolated / "sw").iterdir()} >= {"sweep.csv", "sweep.json",
                                                            "latency_vs_sram_bytes.png",
                                                            "latency_sram_bytes_x_dram_bandwidth.png"}
    import json
    doc = json.loads((isolated / "sw" / "sweep.json").read_text())
    knees = doc["knee"]["by_model"]
    for model in ("mobilenet", "mobilenet_v1"):
        part = frame[(frame.model == model) & (frame.dram_bandwidth == 1e9)].sort_values("sram_bytes")
        at = knees[model]
        assert (part[part.sram_bytes >= at].spill_bytes == 0).all()
        assert part[part.sram_bytes < at].empty or part[part.sram_bytes < at].spill_bytes.iloc[-1] > 0
        assert "knee (sram_bytes, no spills from here on)" in out


def test_sweep_on_a_dask_cluster_gives_the_same_table(isolated, capsys):
    distributed = pytest.importorskip("distributed")
    args = ["sweep", "mobilenet", "--vary", "sram_bytes=32KiB..1MiB:x2", "--vary", "overlap=false,true",
            "--vary", "weight_bits=4,8"]
    rc, _, err = cli_run(capsys, *args, "--out", "local", "--no-plots")
    assert rc == 0, err
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        rc, _, err = cli_run(capsys, *args, "--out", "dask", "--no-plots", "--scheduler", c.scheduler_address)
    assert rc == 0, err
    local = (isolated / "local" / "sweep.csv").read_text()
    assert local == (isolated / "dask" / "sweep.csv").read_text()


def test_an_unreachable_scheduler_is_one_line(isolated, capsys):
    pytest.importorskip("distributed")
    rc, out, err = cli_run(capsys, "sweep", "mobilenet", "--vary", "overlap=true", "--scheduler", "tcp://127.0.0.1:9")
    assert_input_error(rc, out, err, "--scheduler")
