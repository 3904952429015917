"""Every profile YAML written before the hardware description was regrouped into parts (the shipped ones,
and the calibrated ones kept with the host validation runs, with their tables and grouped-conv models)
loads to exactly the fields and values it loaded to then (tests/data/profiles_resolved.json)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from perfsim.hardware.description import FIELDS, HardwareProfile
from perfsim.hardware.loader import load_profile

ROOT = Path(__file__).resolve().parent.parent
RECORDED = json.loads((Path(__file__).parent / "data" / "profiles_resolved.json").read_text())["profiles"]
FILES = {p.name: p for p in sorted(ROOT.glob("hardware_profiles/*.yaml")) + sorted(ROOT.glob("benchmarks/*/*.yaml"))}


def test_every_recorded_profile_is_still_in_the_repository():
    assert set(RECORDED) <= set(FILES), sorted(set(RECORDED) - set(FILES))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_an_old_profile_loads_to_the_same_fields(name):
    resolved = load_profile(str(FILES[name])).resolved()
    assert list(resolved) == list(FIELDS)
    assert hashlib.sha256(json.dumps(resolved).encode()).hexdigest() == RECORDED[name]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_profile_round_trips_through_its_parts(name):
    p = load_profile(str(FILES[name]))
    assert HardwareProfile.from_fields({k: v for k, v in p.resolved().items()
                                        if not (p.systolic and k == "matrix_flops")}) == p
    assert load_profile(p) == p


def test_flat_fields_land_in_their_parts():
    p = load_profile("systolic_32x32_45nm", sram_bytes="2MiB", weight_bits=4, overlap=True,
                     kernel_overhead={"default": "2us"}, memory_policy="paper")
    assert (p.memory.sram_bytes, p.formats.weight_bits, p.schedule.overlap) == (2**21, 4, True)
    assert (p.kernels.overhead, p.memory.policy) == ({"default": 2e-6}, "paper")
    assert (p.matrix.array.rows, p.matrix.array.dataflow, p.matrix.flops) == (32, "ws", 2 * 32 * 32 * 1e9)
    assert p.energy.per_mac == pytest.approx(0.23e-12) and p.energy.priced
    assert all(p.field(f) == v for f, v in p.resolved().items())
    faster = p.with_fields(dram_bandwidth=2e9, array_rows=64)
    assert faster.memory.dram_bandwidth == 2e9 and faster.matrix.flops == 2 * 64 * 32 * 1e9
    assert faster == load_profile(p, dram_bandwidth="2GB/s", array_rows=64)
    plain = p.with_fields(matrix_flops=3e12)  # a peak replaces the array, as in a profile file
    assert plain.matrix.array is None and plain == load_profile(p, matrix_flops=3e12)
