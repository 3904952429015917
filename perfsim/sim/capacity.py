"""An SRAM capacity that remembers which capacities would have answered alike. Torch-free.

The memory plan asks only one kind of question of the SRAM size: does ``need`` bytes fit
(``need <= capacity``)? ``Capacity`` answers it and keeps the tightest interval ``[lo, hi)``
of capacities that give every answer given so far. A plan is a deterministic function of
those answers, so every capacity in the interval yields the very same plan: a sweep over
SRAM sizes plans once per interval instead of once per size (perfsim.sim.batch).

``Capacity`` has no arithmetic and no conversion to a number on purpose: a use of the
capacity that is not a recorded question fails loudly instead of escaping the interval.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

_INF = float("inf")


class Capacity:
    __slots__ = ("_bytes", "lo", "hi")

    def __init__(self, nbytes: float):
        self._bytes = nbytes
        self.lo: float = -_INF  # every capacity c with lo <= c < hi answers as this one did
        self.hi: float = _INF

    def fits(self, need: float) -> bool:
        """``need <= capacity``, recorded."""
        if need <= self._bytes:
            if need > self.lo:
                self.lo = need
            return True
        if need < self.hi:
            self.hi = need
        return False

    def fitting(self, needs: Sequence[float]) -> int:
        """How many of the ascending ``needs`` fit (``bisect_right``), recorded."""
        i = bisect_right(needs, self._bytes)
        if i > 0 and needs[i - 1] > self.lo:
            self.lo = needs[i - 1]
        if i < len(needs) and needs[i] < self.hi:
            self.hi = needs[i]
        return i

    def fresh(self) -> Capacity:
        """The same capacity, nothing asked of it yet (to learn what one computation alone depends on)."""
        return Capacity(self._bytes)

    def narrow(self, lo: float, hi: float) -> None:
        """Also answer alike only within ``[lo, hi)`` (what another capacity derived from this one learnt)."""
        self.lo, self.hi = max(self.lo, lo), min(self.hi, hi)

    def shifted(self, by: float) -> tuple[float, float]:
        """The interval of ``capacity + by`` (e.g. of the SRAM size when ``by`` bytes of it are pinned)."""
        return self.lo + by, self.hi + by

    def __repr__(self) -> str:
        return f"Capacity({self._bytes}, same for [{self.lo}, {self.hi}))"


def as_capacity(capacity: float | Capacity) -> Capacity:
    return capacity if isinstance(capacity, Capacity) else Capacity(capacity)
