"""Hardware profiles and the quantities they are written in (SPEC "Hardware profile").

Units: k/M/G/T are powers of ten, Ki/Mi/Gi powers of two; a bare number is the base
unit. Profiles: validated, frozen, looked up in ./hardware_profiles/ first, then
among the shipped ones; ``extends:`` inherits, ``--set`` / keyword overrides apply
last; unknown and reserved fields, malformed YAML and impossible sizes are input errors.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsim.errors import InputError
from perfsim.hardware.description import FIELDS, HardwareProfile
from perfsim.hardware.loader import list_profiles, load_profile, parse_override
from perfsim.units import format_bytes, format_seconds, parse_quantity

EDGE_1MB = {
    "name": "edge_1mb",
    "sram_bytes": 10**6,
    "dram_bandwidth": 1e9,
    "dram_latency": 0.0,
    "matrix_flops": 1e12,
    "vector_flops": 1e10,
    "activation_bits": 8,
    "weight_bits": 8,
    "bias_bits": 32,
    "fold_batchnorm": True,
    "fuse_activation": True,
    "weights": "stream",
    "overlap": False,
    "memory_policy": "liveness",
    "efficiency": {},
    "kernel_overhead": {},
    "tiled_efficiency": {},
    "first_touch": 0.0,
    "row_block": {},
    "calibration": None,
    "array_rows": None,  # issue 11: a systolic array (docs/systolic.md), none on edge_1mb
    "array_cols": None,
    "array_clock": None,
    "dataflow": None,
    "energy_per_mac": 0.0,
    "energy_per_sram_byte": 0.0,
    "energy_per_dram_byte": 0.0,
}

FULL = """\
sram_bytes: 512KiB
dram_bandwidth: 2GB/s
dram_latency: 10ns
matrix_flops: 2TFLOPS
vector_flops: 20GFLOPS
"""


@pytest.fixture(autouse=True)
def _isolated(isolated):
    """Every test runs in an empty folder: no ./hardware_profiles/ of the repository shadows the shipped ones."""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind, expected", [
    ("1MB", "bytes", 10**6),
    ("1 MB", "bytes", 10**6),
    ("1MiB", "bytes", 2**20),
    ("1kB", "bytes", 1000),
    ("1KiB", "bytes", 1024),
    ("256KiB", "bytes", 256 * 1024),
    ("1GB", "bytes", 10**9),
    ("1GiB", "bytes", 2**30),
    ("2TB", "bytes", 2 * 10**12),
    ("1.5MiB", "bytes", 1.5 * 2**20),
    ("64B", "bytes", 64),
    ("3 bytes", "bytes", 3),
    ("1 byte", "bytes", 1),
    ("1e3kB", "bytes", 10**6),
    ("1GB/s", "bytes_per_s", 1e9),
    ("25.6GB/s", "bytes_per_s", 25.6e9),
    ("1GiB/s", "bytes_per_s", 2**30),
    ("4 GBps", "bytes_per_s", 4e9),
    ("1TFLOPS", "flops", 1e12),
    ("10GFLOPS", "flops", 1e10),
    ("8 TFLOP/s", "flops", 8e12),
    ("1flops", "flops", 1.0),  # not femto-'lops'
    ("100 flops", "flops", 100.0),
    ("5 Mflops", "flops", 5e6),
    ("100ns", "seconds", 100e-9),
    ("1ms", "seconds", 1e-3),
    ("2us", "seconds", 2e-6),
    ("0s", "seconds", 0.0),
    ("3 sec", "seconds", 3.0),
    ("0.2pJ", "joules", 0.2e-12),
    ("1GHz", "hertz", 1e9),
    ("42", "bytes", 42),
    ("  7  ", "seconds", 7.0),
    ("1e-9", "seconds", 1e-9),
    (1000, "bytes", 1000),
    (2.5e9, "bytes_per_s", 2.5e9),
    (0, "seconds", 0.0),
])
def test_parse_quantity(text, kind, expected):
    got = parse_quantity(text, kind)
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


def test_decimal_and_binary_prefixes_differ():
    assert parse_quantity("1MB", "bytes") == 1_000_000
    assert parse_quantity("1MiB", "bytes") == 1_048_576
    assert parse_quantity("1kB", "bytes") != parse_quantity("1KiB", "bytes")


@pytest.mark.parametrize("text, kind", [
    ("1MB", "bytes_per_s"),  # a size is not a bandwidth
    ("1GB/s", "bytes"),  # nor a bandwidth a size
    ("1TFLOPS", "seconds"),
    ("1 parsec", "seconds"),
    ("1 B/s", "flops"),
    ("1kiB", "bytes"),  # binary prefixes are Ki, Mi, Gi: case matters
    ("1M", "flops"),  # a prefix without a unit
    ("1G", "bytes_per_s"),
    ("abc", "bytes"),
    ("", "bytes"),
    ("1..2MB", "bytes"),
    ("MB", "bytes"),
    ("nan", "bytes"),
    ("inf", "bytes"),
    ("1e400B", "bytes"),
    (float("nan"), "bytes"),
    (float("inf"), "seconds"),
    (True, "bytes"),
    (None, "bytes"),
    ([1], "bytes"),
    ({"a": 1}, "seconds"),
])
def test_bad_quantities_are_input_errors(text, kind):
    with pytest.raises(InputError):
        parse_quantity(text, kind, field="thing")


def test_bad_unit_error_names_the_field_and_the_expected_units():
    with pytest.raises(InputError, match=r"dram_bandwidth.*B/s"):
        parse_quantity("1GB", "bytes_per_s", field="dram_bandwidth")


@given(st.integers(min_value=0, max_value=2**40))
def test_binary_kib_is_exactly_1024(n):
    assert parse_quantity(f"{n}KiB", "bytes") == n * 1024
    assert parse_quantity(f"{n} KiB", "bytes") == n * 1024


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from([("k", 10**3), ("M", 10**6), ("G", 10**9)]))
def test_decimal_prefixes_are_exact_powers_of_ten(n, prefix):
    p, scale = prefix
    assert parse_quantity(f"{n}{p}B", "bytes") == n * scale
    assert parse_quantity(f"{n}{p}B/s", "bytes_per_s") == n * scale


@given(st.integers(min_value=0, max_value=2**45))
def test_format_bytes_parses_back(n):
    text = format_bytes(n)
    back = parse_quantity(text, "bytes")
    if "." in text:  # binary, rounded to 2 decimals: within half a unit in the last place
        assert back == pytest.approx(n, rel=0.005 / 1.0 + 1e-12)
    else:  # whole decimal units or bytes: exact
        assert back == n


@given(st.floats(min_value=1e-12, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_format_seconds_parses_back(s):
    assert parse_quantity(format_seconds(s), "seconds") == pytest.approx(s, rel=1e-3)


@pytest.mark.parametrize("n, text", [
    (10**6, "1 MB"),
    (16 * 10**6, "16 MB"),  # 16 MB is also 15625 KiB: still printed as 16 MB
    (2 * 10**9, "2 GB"),
    (64_000, "64 kB"),
    (2**20, "1.00 MiB"),
    (256 * 1024, "256.00 KiB"),
    (16 * 2**20, "16.00 MiB"),
    (1536, "1.50 KiB"),
    (999, "999 B"),
    (0, "0 B"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


# --------------------------------------------------------------------------
# Shipped profiles
# --------------------------------------------------------------------------

SHIPPED = sorted(p.name[:-5] for p in resources.files("perfsim.hardware_profiles").iterdir()
                 if p.name.endswith(".yaml"))


def test_the_shipped_profiles_are_there():
    assert {"edge_1mb", "edge_256k", "paper_table3", "server_16mb"} <= set(SHIPPED)
    assert set(SHIPPED) <= set(list_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads(name):
    p = load_profile(name)
    assert isinstance(p, HardwareProfile)
    assert p.name == name
    assert p.description, "a shipped profile says what it is"
    assert p.memory.sram_bytes > 0 and isinstance(p.memory.sram_bytes, int)
    assert p.memory.dram_bandwidth > 0 and p.matrix.flops > 0 and p.vector.flops > 0 and p.memory.dram_latency >= 0
    json.dumps(p.resolved())  # base units only: plain JSON


def test_edge_1mb_is_specs_machine():
    p = load_profile("edge_1mb")
    got = {k: v for k, v in p.resolved().items() if k != "description"}
    assert got == EDGE_1MB
    assert type(got["sram_bytes"]) is int
    assert load_profile() == p  # the default profile


def test_edge_256k_extends_edge_1mb():
    p = load_profile("edge_256k")
    assert p.memory.sram_bytes == 256 * 1024
    assert p.memory.dram_bandwidth == 4e9
    assert p.memory.dram_latency == pytest.approx(100e-9)
    assert p.schedule.overlap is True
    assert "256 KiB" in p.description  # its own description, not edge_1mb's
    for k in ("matrix_flops", "vector_flops", "activation_bits", "weight_bits", "bias_bits", "weights",
              "memory_policy", "fold_batchnorm", "fuse_activation"):
        assert p.field(k) == EDGE_1MB[k], k


def test_paper_table3_is_edge_1mb_with_the_paper_policy():
    p = load_profile("paper_table3").resolved()
    assert p.pop("memory_policy") == "paper"
    expected = dict(EDGE_1MB, name="paper_table3")
    expected.pop("memory_policy")
    assert {k: v for k, v in p.items() if k != "description"} == expected


def test_server_16mb():
    p = load_profile("server_16mb")
    assert p.memory.sram_bytes == 16 * 2**20
    assert p.memory.dram_bandwidth == pytest.approx(25.6e9)
    assert p.matrix.flops == 8e12 and p.vector.flops == 1e11
    assert p.memory.weights == "resident" and p.schedule.overlap is True


# --------------------------------------------------------------------------
# extends
# --------------------------------------------------------------------------


def test_extends_a_chain_of_two_with_relative_paths(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    write(folder / "base.yaml", "description: the base\n" + FULL + "weights: resident\n")
    write(folder / "sub" / "mid.yaml", "extends: ../base.yaml\nsram_bytes: 1MiB\noverlap: true\n")
    write(folder / "sub" / "top.yaml", "extends: mid.yaml\ndram_bandwidth: 8GB/s\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative 'extends' paths are relative to the file, not the cwd
    p = load_profile(str(folder / "sub" / "top.yaml"))
    assert p.name == "top"  # the file's own name, not its parent's
    assert p.memory.dram_bandwidth == 8e9  # top
    assert p.memory.sram_bytes == 2**20 and p.schedule.overlap is True  # mid
    assert p.matrix.flops == 2e12 and p.memory.dram_latency == pytest.approx(10e-9) and p.memory.weights == "resident"  # base
    assert p.description == ""  # a description describes its own file only
    mid = load_profile(str(folder / "sub" / "mid.yaml"))
    assert mid.memory.dram_bandwidth == 2e9 and mid.memory.sram_bytes == 2**20


def test_extends_a_shipped_profile_by_name(tmp_path):
    path = write(tmp_path / "mine.yaml", "extends: edge_1mb\nname: mine\nsram_bytes: 2MB\n")
    p = load_profile(str(path))
    assert p.name == "mine" and p.memory.sram_bytes == 2 * 10**6
    assert {k: v for k, v in p.resolved().items() if k not in ("name", "sram_bytes", "description")} == \
        {k: v for k, v in EDGE_1MB.items() if k not in ("name", "sram_bytes")}


def test_extends_cycle_is_an_input_error(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\nsram_bytes: 1MB\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\ndram_bandwidth: 1GB/s\n")
    with pytest.raises(InputError, match="cycle"):
        load_profile(str(tmp_path / "a.yaml"))


def test_extends_itself_is_a_cycle(tmp_path):
    write(tmp_path / "self.yaml", "extends: self.yaml\n" + FULL)
    with pytest.raises(InputError, match="cycle"):
        load_profile(str(tmp_path / "self.yaml"))


def test_extends_cycle_spelled_with_different_paths_is_found(tmp_path):
    # each hop spells the other file differently: comparing path strings would recurse forever
    write(tmp_path / "p" / "a.yaml", "extends: ../p/b.yaml\n")
    write(tmp_path / "p" / "b.yaml", "extends: ../p/a.yaml\n")
    with pytest.raises(InputError, match="cycle"):
        load_profile(str(tmp_path / "p" / "a.yaml"))


def test_extends_a_missing_profile(tmp_path):
    write(tmp_path / "orphan.yaml", "extends: no_such_profile\n" + FULL)
    with pytest.raises(InputError, match="no_such_profile"):
        load_profile(str(tmp_path / "orphan.yaml"))


@pytest.mark.parametrize("value", ["[edge_1mb, edge_256k]", "{a: 1}", "true", "''"])
def test_extends_must_name_one_profile(tmp_path, value):
    write(tmp_path / "odd.yaml", f"extends: {value}\n" + FULL)
    with pytest.raises(InputError, match="extends"):
        load_profile(str(tmp_path / "odd.yaml"))


# --------------------------------------------------------------------------
# Lookup order
# --------------------------------------------------------------------------


def test_a_local_profile_wins_over_the_shipped_one(tmp_path):
    write(tmp_path / "hardware_profiles" / "edge_1mb.yaml", FULL)
    p = load_profile("edge_1mb")
    assert p.memory.sram_bytes == 512 * 1024 and p.memory.dram_bandwidth == 2e9
    assert p.name == "edge_1mb"


def test_a_local_profile_can_refine_its_shipped_namesake(tmp_path):
    # ./hardware_profiles/edge_1mb.yaml saying 'extends: edge_1mb' means the shipped edge_1mb, not itself
    write(tmp_path / "hardware_profiles" / "edge_1mb.yaml", "extends: edge_1mb\nsram_bytes: 2MB\n")
    p = load_profile("edge_1mb")
    assert p.memory.sram_bytes == 2 * 10**6
    assert p.memory.dram_bandwidth == 1e9 and p.matrix.flops == 1e12


def test_local_profiles_are_listed_and_found_by_name(tmp_path):
    write(tmp_path / "hardware_profiles" / "my_chip.yaml", "extends: edge_256k\nvector_flops: 1TFLOPS\n")
    assert "my_chip" in list_profiles()
    assert set(SHIPPED) <= set(list_profiles())
    p = load_profile("my_chip")
    assert p.name == "my_chip" and p.vector.flops == 1e12 and p.memory.sram_bytes == 256 * 1024


def test_the_shipped_profile_is_used_without_a_local_one(tmp_path, monkeypatch):
    # a hardware_profiles folder elsewhere (here: one level up) is not consulted
    write(tmp_path / "hardware_profiles" / "edge_1mb.yaml", FULL)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert load_profile("edge_1mb").memory.sram_bytes == 10**6


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(InputError, match=r"unknown profile 'nope'.*edge_1mb"):
        load_profile("nope")


def test_missing_profile_file():
    with pytest.raises(InputError, match="not found"):
        load_profile("does/not/exist.yaml")


# --------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------


def test_overrides_by_keyword():
    p = load_profile("edge_1mb", sram_bytes="256KiB", overlap=True, dram_latency="50ns", weight_bits=4)
    assert p.memory.sram_bytes == 262144 and p.schedule.overlap is True and p.memory.dram_latency == pytest.approx(50e-9)
    assert p.formats.weight_bits == 4
    assert p.memory.dram_bandwidth == 1e9 and p.name == "edge_1mb"
    assert load_profile("edge_1mb").memory.sram_bytes == 10**6  # the base is untouched


def test_overrides_of_a_loaded_profile():
    base = load_profile("edge_256k")
    p = load_profile(base, memory_policy="paper")
    assert p.memory.policy == "paper" and p.memory.sram_bytes == base.memory.sram_bytes and p.schedule.overlap is True
    assert base.memory.policy == "liveness"


def test_overrides_apply_after_extends(tmp_path):
    path = write(tmp_path / "x.yaml", "extends: edge_256k\nsram_bytes: 128KiB\n")
    assert load_profile(str(path), sram_bytes="1MiB").memory.sram_bytes == 2**20


@pytest.mark.parametrize("item, expected", [
    ("sram_bytes=256KiB", ("sram_bytes", "256KiB")),
    ("overlap=true", ("overlap", True)),
    ("overlap=false", ("overlap", False)),
    ("weight_bits=4", ("weight_bits", 4)),
    ("dram_bandwidth=2.5e9", ("dram_bandwidth", "2.5e9")),  # YAML 1.1 reads '2.5e9' as text; units parse it
    (" weights = resident", ("weights", "resident")),
    ("description=a=b", ("description", "a=b")),
    ("description=", ("description", "")),
])
def test_parse_override(item, expected):
    assert parse_override(item) == expected


def test_parse_override_needs_an_equals_sign():
    with pytest.raises(InputError, match="field=value"):
        parse_override("sram_bytes")


def test_overrides_via_the_command_line(capsys):
    from perfsim.cli import main
    rc = main(["run", "mobilenet", "--set", "sram_bytes=64KiB", "--set", "overlap=true",
               "--set", "dram_latency=20ns", "--json", "--no-plots", "--out", "rep"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    prof = json.loads(out)["profile"]
    assert prof["sram_bytes"] == 65536 and prof["overlap"] is True
    assert prof["dram_latency"] == pytest.approx(20e-9)
    assert prof["dram_bandwidth"] == 1e9 and prof["name"] == "edge_1mb"


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def test_unknown_key_in_a_file_is_an_error_naming_it(tmp_path):
    path = write(tmp_path / "typo.yaml", FULL + "sram_byte: 1MB\n")
    with pytest.raises(InputError, match=r"sram_byte\b.*unknown field"):
        load_profile(str(path))


def test_unknown_override_is_an_error_naming_it():
    with pytest.raises(InputError, match=r"\bfoo\b.*unknown field"):
        load_profile("edge_1mb", foo=1)


def test_specs_reserved_names_are_all_fields_now():
    # issue 11 made the systolic array and energy fields real, issue 8 efficiency and calibration
    assert {"array_rows", "array_cols", "array_clock", "dataflow", "energy_per_mac", "energy_per_sram_byte",
            "energy_per_dram_byte", "efficiency", "calibration"} <= set(FIELDS)


@pytest.mark.parametrize("text", [
    "sram_bytes: [1MB\n",
    "sram_bytes: 1MB\n  dram_bandwidth: 1GB/s\n bad: indent\n",
    "sram_bytes: 1MB\ndram_bandwidth: 'unterminated\n",
    "\tsram_bytes: 1MB\n",
])
def test_malformed_yaml_is_an_input_error(tmp_path, text):
    path = write(tmp_path / "broken.yaml", text)
    with pytest.raises(InputError, match="malformed YAML"):
        load_profile(str(path))


def test_malformed_local_profile_by_name(tmp_path):
    write(tmp_path / "hardware_profiles" / "broken.yaml", "sram_bytes: {1MB\n")
    with pytest.raises(InputError, match=r"broken.*malformed YAML"):
        load_profile("broken")


@pytest.mark.parametrize("text, match", [
    ("- sram_bytes: 1MB\n", "mapping"),
    ("just a string\n", "mapping"),
    ("", "sram_bytes"),  # an empty profile misses its required fields
    ("sram_bytes: 1MB\n", "dram_bandwidth"),
])
def test_profile_must_be_a_complete_mapping(tmp_path, text, match):
    path = write(tmp_path / "odd.yaml", text)
    with pytest.raises(InputError, match=match):
        load_profile(str(path))


@pytest.mark.parametrize("field, value", [
    ("sram_bytes", 0),
    ("sram_bytes", -1),
    ("sram_bytes", "-1MB"),
    ("sram_bytes", "0KiB"),
    ("sram_bytes", "1.5B"),  # not a whole number of bytes
    ("sram_bytes", True),
    ("dram_bandwidth", 0),
    ("dram_bandwidth", "-1GB/s"),
    ("matrix_flops", "0TFLOPS"),
    ("matrix_flops", -1e12),
    ("vector_flops", 0),
    ("dram_latency", "-1ns"),
    ("activation_bits", 0),
    ("weight_bits", 65),
    ("bias_bits", -8),
    ("weights", "cached"),
    ("memory_policy", "lru"),
    ("overlap", "sometimes"),
])
def test_impossible_values_are_input_errors_naming_the_field(field, value):
    with pytest.raises(InputError, match=field):
        load_profile("edge_1mb", **{field: value})


def test_impossible_value_in_a_file(tmp_path):
    path = write(tmp_path / "neg.yaml", "extends: edge_1mb\nsram_bytes: -64KiB\n")
    with pytest.raises(InputError, match=r"neg.*sram_bytes.*positive"):
        load_profile(str(path))


def test_error_messages_are_one_line(tmp_path):
    for make in (lambda: load_profile("edge_1mb", foo=1), lambda: load_profile("edge_1mb", sram_bytes=-1),
                 lambda: load_profile(str(write(tmp_path / "b.yaml", "a: [1\n")))):
        with pytest.raises(InputError) as e:
            make()
        assert "\n" not in str(e.value)


def test_the_profile_is_frozen():
    p = load_profile("edge_1mb")
    with pytest.raises(pydantic.ValidationError):
        p.memory.sram_bytes = 1
    with pytest.raises(pydantic.ValidationError):
        p.memory.weights = "resident"
    assert p.memory.sram_bytes == 10**6
    assert hash(p) == hash(load_profile("edge_1mb"))  # frozen models are values


def test_values_are_in_base_units():
    p = load_profile("edge_256k")
    r = p.resolved()
    assert r["sram_bytes"] == 262144 and r["dram_bandwidth"] == 4e9 and math.isclose(r["dram_latency"], 1e-7)
    assert list(r) == list(FIELDS)


@pytest.mark.parametrize("value", [True, False, 4.5, "eight"])
def test_bit_widths_must_be_whole_numbers_not_booleans(value):
    with pytest.raises(InputError, match="whole number of bits"):
        load_profile("edge_1mb", activation_bits=value)
