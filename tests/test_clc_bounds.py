"""clcNet's group minimiser on large and hostile inputs (issue 7, point 3).

`perfsim clc-groups 128 100000000000 256` used to enumerate 10^11 candidate divisors; the
search is now trial division to sqrt (numpy blocks) plus one bisect per g1, and channel
counts are bounded by MAX_CHANNELS (2**40).
"""
from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsim.papers.clcnet_design import (
    MAX_CHANNELS,
    ClcGroups,
    _divisors,
    clc_cost,
    clc_groups,
    feasible_groups,
)
from perfsim.cli import main
from perfsim.errors import InputError


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_issue_case_answers_at_once(capsys):
    tracemalloc.start()
    t0 = time.perf_counter()
    rc, out, err = cli(capsys, "clc-groups", 128, 100_000_000_000, 256, "--json")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rc == 0, err
    got = json.loads(out)
    # g1 | gcd(128, 1e11) = 128, g2 | gcd(1e11, 256) = 256, g1*g2 <= L: both at their largest
    assert (got["g1"], got["g2"]) == (128, 256)
    assert got["cost"] == 9 * 10**11 * 128 // 128 + 256 * 10**11 // 256
    assert seconds < 5 and peak < 8 * 2**20, (seconds, peak)  # loose: it used to never return


@pytest.mark.parametrize("args", [
    [1, MAX_CHANNELS + 1, 1],
    [MAX_CHANNELS + 1, 1, 1],
    [1, 1, "9" * 400],
    [1, 1, 1, "--kernel-area", 2**40],
])
def test_beyond_the_bounds_is_one_line_exit_2(capsys, args):
    rc, out, err = cli(capsys, "clc-groups", *args)
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("perfsim: error: ") and len(err) < 300, err


def test_the_largest_channel_counts_answer(capsys):
    rc, out, err = cli(capsys, "clc-groups", MAX_CHANNELS, MAX_CHANNELS, MAX_CHANNELS, "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["g1"] * got["g2"] <= MAX_CHANNELS


def test_library_bounds():
    with pytest.raises(InputError, match="at most"):
        clc_groups(1, MAX_CHANNELS * 2, 1)
    with pytest.raises(InputError):
        _divisors(MAX_CHANNELS + 1)


@given(st.one_of(st.integers(1, 10**6), st.integers(1, 1000).map(lambda k: k * k),
                 st.sampled_from([720720, 2**20, 3**12, 999983, 963761198400, MAX_CHANNELS])))
def test_divisors_are_exactly_the_divisors(x):
    got = _divisors(x)
    assert got == sorted(set(got))
    assert all(x % d == 0 for d in got)
    if x <= 10**6:
        assert got == [d for d in range(1, x + 1) if x % d == 0]
    else:  # count from the factorisation
        n, count, p = x, 1, 2
        while p * p <= n:
            e = 0
            while n % p == 0:
                n //= p
                e += 1
            count *= e + 1
            p += 1
        count *= 2 if n > 1 else 1
        assert len(got) == count


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 3000), mid=st.integers(1, 3000), n=st.integers(1, 3000), area=st.sampled_from([1, 9, 25]))
def test_the_fast_search_equals_the_full_enumeration(m, mid, n, area):
    """M, L (here ``mid``), N: every feasible pair, and the fast minimum equals the enumeration's."""
    best = None
    for g1, g2 in feasible_groups(m, mid, n):  # g1 ascending, then g2; strictly lower cost wins
        c = clc_cost(m, mid, n, g1, g2, area)
        if best is None or c < best.cost:
            best = ClcGroups(g1, g2, c)
    assert clc_groups(m, mid, n, kernel_area=area) == best
    pairs = list(feasible_groups(m, mid, n))
    assert pairs == sorted(pairs)
    assert all(m % a == 0 and mid % a == 0 and mid % b == 0 and n % b == 0 and a * b <= mid for a, b in pairs)
    if mid <= 400:
        naive = [(a, b) for a in range(1, mid + 1) for b in range(1, mid + 1)
                 if m % a == 0 and mid % a == 0 and mid % b == 0 and n % b == 0 and a * b <= mid]
        assert pairs == naive
