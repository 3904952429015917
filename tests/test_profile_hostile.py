"""Hostile profiles (issue 7, points 3 and 4): bounded work, one line, exit 2, finite numbers.

A profile may come from anywhere (a colleague's file, ./hardware_profiles/ of a cloned
repository), so reading one is bounded: no YAML anchors or aliases (a 430-byte alias bomb
expands to gigabytes), bounded nesting, size and ``extends`` depth, text keys without
duplicates, every number in a physical range (docs/model.md) and error messages that never
echo a user's value at full size.
"""
from __future__ import annotations

import json
import math
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from perfsim.cli import main
from perfsim.errors import InputError
from perfsim.hardware.loader import load_profile, MAX_EXTENDS, MAX_PROFILE_BYTES, parse_override
from perfsim.hardware.parts import LIMITS

# ~430 bytes; with aliases expanded it would be 9**9 (387 million) strings
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
sram_bytes: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
description: the classic billion laughs, in a hardware profile
"""
# Bounds for work that is refused up front: generous for a loaded 2-core machine, far below
# what the unbounded behaviour needs (minutes and gigabytes).
MAX_SECONDS = 5.0
MAX_PEAK_BYTES = 8 * 2**20


@pytest.fixture(autouse=True)
def _isolated(isolated, monkeypatch):
    monkeypatch.delenv("PERFSIM_DEBUG", raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bounded(fn):
    """Run fn(); return (its result or exception, seconds, peak traced bytes)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - returned to the test, which checks its type
        out = e
    finally:
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return out, seconds, peak


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, out, err, *needles, max_chars=400):
    assert rc == 2, (rc, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfsim: error: "), err
    assert len(lines[0]) <= max_chars, lines[0][:500]
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --------------------------------------------------------------------------
# Alias bombs and other expansions
# --------------------------------------------------------------------------


def test_the_billion_laughs_profile_is_refused_quickly_in_little_memory(tmp_path):
    path = write(tmp_path / "laughs.yaml", BILLION_LAUGHS)
    assert len(path.read_bytes()) < 600
    got, seconds, peak = bounded(lambda: load_profile(str(path)))
    assert isinstance(got, InputError) and "aliases" in str(got)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES, (seconds, peak)


def test_the_billion_laughs_through_the_command_line(tmp_path, capsys):
    write(tmp_path / "laughs.yaml", BILLION_LAUGHS)
    (rc, out, err), seconds, peak = bounded(lambda: cli(capsys, "run", "mobilenet", "--profile", "laughs.yaml"))
    assert_one_line_error(rc, out, err, "laughs.yaml", "aliases")
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES, (seconds, peak)
    assert not Path("reports").exists()


def test_perfsim_profiles_with_hostile_local_files_stays_bounded(tmp_path, capsys):
    local = tmp_path / "hardware_profiles"
    write(local / "laughs.yaml", BILLION_LAUGHS)
    write(local / "deep.yaml", "sram_bytes: " + "[" * 20_000 + "]" * 20_000 + "\n")
    write(local / "dup.yaml", "extends: edge_1mb\nsram_bytes: 1MB\nsram_bytes: 2MB\n")
    write(local / "huge.yaml", "# " + "x" * (2 * MAX_PROFILE_BYTES) + "\n")
    write(local / "loop.yaml", "extends: loop\n")
    write(local / "fine.yaml", "extends: edge_1mb\nsram_bytes: 2MB\n")
    os.mkfifo(local / "fifo.yaml")  # opening it would block: never opened
    (rc, out, err), seconds, peak = bounded(lambda: cli(capsys, "profiles"))
    assert rc == 0, err
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES, (seconds, peak)
    warnings = err.splitlines()
    assert len(warnings) == 6, err  # one line per broken file, fifo included
    assert all(w.startswith("perfsim: warning: skipped") and len(w) < 400 for w in warnings), err
    for needle in ("aliases", "nested", "duplicate key", "larger than", "cycle"):
        assert any(needle in w for w in warnings), (needle, err)
    assert "fine" in out and "edge_1mb" in out


@pytest.mark.parametrize("text, needle", [
    ("base: &b 1MB\nsram_bytes: *b\n", "aliases"),
    ("sram_bytes: &only 1MB\n", "aliases"),  # an anchor alone: refused as well
    ("<<: {sram_bytes: 1MB}\n", "keys must be field names"),  # a merge key
    ("sram_bytes: " + "[" * 100 + "]" * 100 + "\n", "nested"),
    ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 40)) + "  " * 40 + "c: 1\n", "nested"),
    ("extends: edge_1mb\nsram_bytes: 1MB\nsram_bytes: 2MB\n", "duplicate key 'sram_bytes'"),
    ("extends: edge_1mb\ndescription: {a: 1, a: 2}\n", "duplicate key 'a'"),
    ("extends: edge_1mb\n1: 2\n", "keys must be field names"),
    ("extends: edge_1mb\ntrue: 2\n", "keys must be field names"),
    ("extends: edge_1mb\n~: 2\n", "keys must be field names"),
    ("extends: edge_1mb\n? [a, b]\n: 2\n", "keys must be field names"),
    ("extends: edge_1mb\nsram_bytes: " + "9" * 400 + "\n", "400 characters"),
    ("extends: edge_1mb\nsram_bytes: " + "9" * 5000 + "\n", "5000 characters"),
    ("extends: edge_1mb\nsram_bytes: 0x" + "f" * 300 + "\n", "characters"),
    ("extends: edge_1mb\nsram_bytes: 2001-02-30\n", "malformed YAML"),
    ("extends: edge_1mb\n--- \nsram_bytes: 1MB\n", "malformed YAML"),
    ("extends: edge_1mb\nsram_bytes: !!python/object:os.system ls\n", "malformed YAML"),
])
def test_yaml_a_profile_may_not_use_is_one_line_exit_2(tmp_path, capsys, text, needle):
    write(tmp_path / "odd.yaml", text)
    (rc, out, err), seconds, peak = bounded(lambda: cli(capsys, "run", "mobilenet", "--profile", "odd.yaml"))
    assert_one_line_error(rc, out, err, needle)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES, (seconds, peak)


def test_a_profile_larger_than_the_limit_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:  # sparse: 1 GiB that costs nothing to create
        f.truncate(2**30)
    got, seconds, peak = bounded(lambda: load_profile(str(path)))
    assert isinstance(got, InputError) and "larger than" in str(got)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES


# --------------------------------------------------------------------------
# extends: cycles and depth
# --------------------------------------------------------------------------


def test_a_local_profile_extending_itself_is_a_cycle_not_unknown(tmp_path, capsys):
    write(tmp_path / "hardware_profiles" / "mine.yaml", "extends: mine\nsram_bytes: 1MB\n")
    rc, out, err = cli(capsys, "run", "mobilenet", "--profile", "mine")
    assert_one_line_error(rc, out, err, "cycle", "mine.yaml")
    assert "unknown profile" not in err


def test_local_profiles_extending_each_other_are_a_cycle(tmp_path, capsys):
    write(tmp_path / "hardware_profiles" / "ping.yaml", "extends: pong\n")
    write(tmp_path / "hardware_profiles" / "pong.yaml", "extends: ping\n")
    for name in ("ping", "pong"):
        rc, out, err = cli(capsys, "run", "mobilenet", "--profile", name)
        assert_one_line_error(rc, out, err, "cycle", "ping.yaml -> pong.yaml" if name == "ping" else "pong.yaml")
        assert "unknown profile" not in err


def test_a_local_profile_still_refines_its_shipped_namesake(tmp_path):
    write(tmp_path / "hardware_profiles" / "edge_1mb.yaml", "extends: edge_1mb\nsram_bytes: 2MB\n")
    p = load_profile("edge_1mb")
    assert p.memory.sram_bytes == 2 * 10**6 and p.memory.dram_bandwidth == 1e9


def test_a_deep_extends_chain_is_refused_in_one_line(tmp_path, capsys):
    n = 400  # deeper than Python's recursion would survive unbounded
    for i in range(n):
        write(tmp_path / f"p{i}.yaml", f"extends: p{i + 1}.yaml\n")
    write(tmp_path / f"p{n}.yaml", "extends: edge_1mb\n")
    (rc, out, err), seconds, peak = bounded(lambda: cli(capsys, "run", "mobilenet", "--profile", "p0.yaml"))
    assert_one_line_error(rc, out, err, "extends", f"longer than {MAX_EXTENDS}")
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES


def test_an_extends_chain_at_the_limit_loads(tmp_path):
    """MAX_EXTENDS profiles in all: MAX_EXTENDS - 1 files, then the shipped edge_1mb."""
    last = MAX_EXTENDS - 2
    for i in range(last):
        write(tmp_path / f"p{i}.yaml", f"extends: p{i + 1}.yaml\n")
    write(tmp_path / f"p{last}.yaml", "extends: edge_1mb\nsram_bytes: 3MB\n")
    assert load_profile(str(tmp_path / "p0.yaml")).memory.sram_bytes == 3 * 10**6
    write(tmp_path / "p_extra.yaml", "extends: p0.yaml\n")
    with pytest.raises(InputError, match="longer than"):
        load_profile(str(tmp_path / "p_extra.yaml"))


# --------------------------------------------------------------------------
# Numbers: finite, in range, exit 2 otherwise
# --------------------------------------------------------------------------

BELOW_AND_ABOVE = {
    "sram_bytes": ["0.5", "2TiB", "1.1e12B"],
    "dram_bandwidth": ["5e-324", "0.5B/s", "1.01e15", "1e308B/s"],
    "dram_latency": ["2s", "1e300"],
    "matrix_flops": ["1e-3", "1e308", "2e18FLOPS"],
    "vector_flops": ["0.9", "1e19"],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, vs in BELOW_AND_ABOVE.items() for v in vs])
def test_absurd_values_are_refused_naming_the_range(field, value, capsys):
    rc, out, err = cli(capsys, "run", "mobilenet", "--no-plots", "--set", f"{field}={value}")
    assert_one_line_error(rc, out, err, field, "between")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf", "nan", "1e999", "1e999B/s", "9" * 400,
                                   "9" * 5000, "0x" + "f" * 400])
@pytest.mark.parametrize("field", list(LIMITS))
def test_non_finite_and_enormous_numbers_are_exit_2(field, value, capsys):
    (rc, out, err), seconds, peak = bounded(
        lambda: cli(capsys, "run", "mobilenet", "--no-plots", "--set", f"{field}={value}"))
    assert_one_line_error(rc, out, err, field)
    assert seconds < MAX_SECONDS and peak < MAX_PEAK_BYTES


@pytest.mark.parametrize("field", ["activation_bits", "weight_bits", "bias_bits"])
@pytest.mark.parametrize("value", ["0", "65", "9" * 400, ".inf", ".nan", "8.0"])
def test_bit_widths_outside_1_to_64_are_exit_2(field, value, capsys):
    rc, out, err = cli(capsys, "run", "mobilenet", "--no-plots", "--set", f"{field}={value}")
    assert_one_line_error(rc, out, err, field)


@pytest.mark.parametrize("corner", [
    {"sram_bytes": "1TiB", "dram_bandwidth": "1B/s", "matrix_flops": "1", "vector_flops": "1", "dram_latency": "1s"},
    {"sram_bytes": "64KiB", "dram_bandwidth": "1e15", "matrix_flops": "1e18", "vector_flops": "1e18"},
    {"sram_bytes": "64KiB", "dram_bandwidth": "1B/s", "matrix_flops": "1e18", "vector_flops": "1"},
])
def test_every_number_is_finite_at_the_corners_of_the_ranges(corner, capsys, tmp_path):
    """The extremes the ranges allow give a finite summary, a finite CSV and all four plots."""
    sets = [a for k, v in corner.items() for a in ("--set", f"{k}={v}")]
    rc, out, err = cli(capsys, "run", "mobilenet", "--json", "--out", "rep", *sets)
    assert rc == 0, err
    summary = json.loads(out, parse_constant=lambda c: pytest.fail(f"summary holds {c}"))

    def finite(x):
        if isinstance(x, dict):
            return all(finite(v) for v in x.values())
        if isinstance(x, list):
            return all(finite(v) for v in x)
        return not isinstance(x, float) or math.isfinite(x)
    assert finite(summary) and summary["latency_s"] > 0
    csv = (tmp_path / "rep" / "layers.csv").read_text()
    assert "inf" not in csv.lower() and "nan" not in csv.lower()
    for png in ("time_per_layer.png", "sram_occupancy.png", "dram_traffic.png", "roofline.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("field", list(LIMITS))
def test_the_ends_of_each_range_are_accepted(field):
    lo, hi, _ = LIMITS[field]
    for v in (lo, hi):
        assert load_profile("edge_1mb", **{field: v}).field(field) == v


# --------------------------------------------------------------------------
# --set: the same rules
# --------------------------------------------------------------------------


@pytest.mark.parametrize("item, needle", [
    ("description=[&a [lol, lol], *a, *a]", "aliases"),
    ("name=&x edge", "aliases"),
    ("description={a: 1, a: 2}", "duplicate key"),
    ("description={1: 2}", "keys must be field names"),
    ("description=" + "[" * 200 + "]" * 200, "nested"),
    ("sram_bytes=" + "9" * 400, "400 characters"),
])
def test_set_values_follow_the_profile_rules(item, needle, capsys):
    rc, out, err = cli(capsys, "run", "mobilenet", "--no-plots", "--set", item)
    assert_one_line_error(rc, out, err, needle)


def test_set_text_that_is_not_yaml_stays_text():
    assert parse_override("description=a: b: c") == ("description", "a: b: c")
    assert parse_override("sram_bytes=2001-02-30") == ("sram_bytes", "2001-02-30")


# --------------------------------------------------------------------------
# Messages: never a user's value at full size
# --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda big: ["--set", f"sram_bytes={big}"],
    lambda big: ["--set", f"{big}=1"],
    lambda big: ["--set", f"name={big}"],
    lambda big: ["--set", f"weights={big}"],
    lambda big: ["--set", f"weight_bits={big}"],
    lambda big: ["--set", big],
    lambda big: ["--profile", big],
    lambda big: ["--profile", big + ".yaml"],
    lambda big: ["--profile", "p.yaml", "--set", f"extends={big}"],
])
def test_error_messages_truncate_the_users_value(make, capsys, tmp_path):
    write(tmp_path / "p.yaml", "extends: edge_1mb\n")
    big = "x" * 50_000
    rc, out, err = cli(capsys, "run", "mobilenet", "--no-plots", *make(big))
    assert_one_line_error(rc, out, err, max_chars=700)


def test_a_huge_value_in_a_file_is_not_echoed(tmp_path, capsys):
    write(tmp_path / "p.yaml", "extends: edge_1mb\nsram_bytes: '" + "7" * 60_000 + "'\n")
    rc, out, err = cli(capsys, "run", "mobilenet", "--profile", "p.yaml")
    assert_one_line_error(rc, out, err, "sram_bytes")


def test_an_extends_naming_a_huge_profile_is_truncated(tmp_path, capsys):
    write(tmp_path / "p.yaml", "extends: " + "y" * 60_000 + "\n")
    rc, out, err = cli(capsys, "run", "mobilenet", "--profile", "p.yaml")
    assert_one_line_error(rc, out, err, "unknown profile")


def test_unknown_profile_lists_a_bounded_number_of_names(tmp_path, capsys):
    for i in range(300):
        write(tmp_path / "hardware_profiles" / f"local_{i:03d}.yaml", "extends: edge_1mb\n")
    rc, out, err = cli(capsys, "run", "mobilenet", "--profile", "nope")
    assert_one_line_error(rc, out, err, "nope", "in all")
