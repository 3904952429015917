"""Energy per row and in the summary (docs/systolic.md, perfsim/energy.py). Torch-free."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphs import random_net, random_plans
from invariants import prof
from perfsim.errors import InputError
from perfsim.ir.graph import Unit
from perfsim.hardware.loader import load_profile
from perfsim.sim.simulator import simulate
from test_systolic import ARRAY, net

PRICES = dict(energy_per_mac="0.2pJ", energy_per_sram_byte="1.25pJ", energy_per_dram_byte="160pJ")


def test_no_energy_fields_no_energy():
    r = simulate(net(), load_profile("edge_1mb"))
    assert all(x.energy_j == x.energy_mac_j == x.energy_sram_j == x.energy_dram_j == 0.0 for x in r.rows)
    assert r.totals.energy_j == 0.0


@pytest.mark.parametrize("array", [{}, ARRAY])
def test_each_term_is_its_count_times_its_price(array):
    r = simulate(net(), load_profile("edge_1mb", **PRICES, **array), batch=2)
    for x in r.rows:
        assert x.energy_mac_j == pytest.approx(x.macs * 0.2e-12, rel=1e-12)
        assert x.energy_dram_j == pytest.approx((x.dram_read_bytes + x.dram_write_bytes) * 160e-12, rel=1e-12)
        assert x.energy_sram_j == pytest.approx(x.sram_access_bytes * 1.25e-12, rel=1e-12)
        assert x.energy_j == pytest.approx(x.energy_mac_j + x.energy_sram_j + x.energy_dram_j, rel=1e-12)
        # every operand passes through SRAM at least once, and every DRAM byte
        dram = x.dram_read_bytes + x.dram_write_bytes
        if not array or x.unit is not Unit.MATRIX:
            assert x.sram_access_bytes == x.in_bytes + x.weight_bytes + x.out_bytes + dram
    s = r.totals
    for key in ("energy_mac_j", "energy_sram_j", "energy_dram_j", "energy_j", "sram_access_bytes"):
        assert getattr(s, key) == pytest.approx(sum(getattr(x, key) for x in r.rows), rel=1e-12)
    assert s.energy_j > 0


def test_the_array_rereads_streamed_operands():
    plain = simulate(net(), load_profile("edge_1mb", **PRICES))
    tiny = simulate(net(), load_profile("edge_1mb", **PRICES, **{**ARRAY, "array_rows": 4, "array_cols": 4}))
    big = simulate(net(), load_profile("edge_1mb", **PRICES, **ARRAY))
    assert tiny.totals.sram_access_bytes > big.totals.sram_access_bytes  # more folds, more re-reads
    assert plain.totals.energy_mac_j == big.totals.energy_mac_j  # MACs cost the same on any unit


def test_the_shipped_45nm_profile_cites_horowitz():
    p = load_profile("systolic_32x32_45nm")
    assert p.energy.per_mac == pytest.approx(0.23e-12) and p.energy.per_sram_byte == pytest.approx(12.5e-12)
    assert p.energy.per_dram_byte == pytest.approx(162.5e-12)
    from importlib import resources
    text = (resources.files("perfsim.hardware_profiles") / "systolic_32x32_45nm.yaml").read_text()
    assert "Horowitz" in text and "ISSCC 2014" in text


@pytest.mark.parametrize("value", ["-1pJ", "2uJ", "1pW", "lots"])
def test_bad_energies_are_refused(value):
    with pytest.raises(InputError, match="energy_per_mac"):
        load_profile("edge_1mb", energy_per_mac=value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=random_plans(), sizes=st.lists(st.integers(1024, 2**20), min_size=2, max_size=5, unique=True))
def test_more_sram_never_more_dram_energy(plan, sizes):
    graph = random_net(*plan)
    prev = None
    for size in sorted(sizes):
        try:
            r = simulate(graph, prof(sram_bytes=size, **PRICES, **ARRAY))
        except InputError:
            continue
        if prev is not None:
            assert r.totals.energy_dram_j <= prev * (1 + 1e-12)
        prev = r.totals.energy_dram_j
