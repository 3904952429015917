"""perfsim.sim.capacity: a plan holds for every SRAM size of its ``sram_range`` (what a sweep relies on to
plan once per range), on random conv graphs and DAGs under every memory policy and weights switch."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphs import dag_net, dag_plans, random_net, random_plans
from invariants import prof
from perfsim.sim.capacity import Capacity
from perfsim.errors import DoesNotFitError
from perfsim.sim.memory import plan_memory, tensor_bytes


def _plan(graph, p):
    sizes = tensor_bytes(graph, 1, p.formats.activation_bits)
    wbytes = [layer.weight_bytes(p.formats.weight_bits, p.formats.bias_bits, p.schedule.fold_batchnorm) for layer in graph.layers]
    stored = [0 if layer.shares_weights else b for layer, b in zip(graph.layers, wbytes)]
    try:
        plan = plan_memory(graph, p, sizes, wbytes, stored)
    except DoesNotFitError as e:
        return None, e.sram_range
    return (plan.traffic, plan.preload_bytes, plan.notes), plan.sram_range


@st.composite
def graphs(draw):
    if draw(st.booleans()):
        return random_net(*draw(random_plans()))
    return dag_net(*draw(dag_plans()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs(), size=st.integers(256, 2**20), where=st.lists(st.floats(0, 1), min_size=1, max_size=4),
       variant=st.sampled_from([{}, {"weights": "resident"}, {"memory_policy": "paper"}, {"fold_batchnorm": False}]))
def test_a_plan_holds_over_its_whole_sram_range(graph, size, where, variant):
    plan, (lo, hi) = _plan(graph, prof(sram_bytes=size, **variant))
    assert lo <= size < hi
    first = 64 if lo == -math.inf else max(math.ceil(lo), 64)
    last = 2**40 if hi == math.inf else min(math.ceil(hi) - 1, 2**40)
    for w in where + [0.0, 1.0]:  # the ends of the range too
        other = first + round(w * (last - first))
        again, same_range = _plan(graph, prof(sram_bytes=other, **variant))
        notes = lambda p: p and tuple(n.replace(str(other), str(size)) for n in p[2])  # noqa: E731  (the notes name the size)
        assert (again and again[:2], notes(again)) == (plan and plan[:2], notes(plan)), (size, other, lo, hi)
        assert same_range == (lo, hi)


def test_capacity_answers_only_the_questions_it_records():
    c = Capacity(100)
    assert c.fits(60) and not c.fits(140) and c.fits(100)
    assert (c.lo, c.hi) == (100, 140)
    assert c.fitting([10, 50, 100, 120, 200]) == 3 and (c.lo, c.hi) == (100, 120)
    with pytest.raises(TypeError):
        c - 1  # noqa: B018  (any other use of the size is an error, not an unrecorded answer)
    with pytest.raises(TypeError):
        int(c)
    with pytest.raises(TypeError):
        c <= 5  # noqa: B015
