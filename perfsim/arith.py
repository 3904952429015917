"""Whole-number arithmetic shared by floors that do not import each other (the tiling search, clcNet's
group minimiser). Numpy only."""
from __future__ import annotations

import math

import numpy as np


def divisors(x: int, block: int = 1 << 16) -> list[int]:
    """The divisors of ``x`` >= 1, ascending: trial division up to sqrt(x), in numpy blocks (bounded memory;
    ~10 ms at x = 2**40). Callers bound ``x``."""
    root = math.isqrt(x)
    small: list[int] = []
    for start in range(1, root + 1, block):
        d = np.arange(start, min(start + block, root + 1), dtype=np.int64)
        small += d[x % d == 0].tolist()
    return small + [x // d for d in reversed(small) if d * d != x]
