"""Line two recordings of one forward up call by call, where they may differ. Torch-free.

``perfsim validate`` captures and times the same input, so the capture's calls and a timed forward's
are normally the same, index for index. Where they are not (a forward that takes another branch
between runs, or runs a loop another number of times, or a first forward that fills a cache), the
calls are aligned by their signature, (ATen target, module path), with difflib's sequence matcher:
the longest runs of equal signatures, in order. What matches is attributed; the rest is reported.
"""
from __future__ import annotations

from difflib import SequenceMatcher
from typing import Hashable, Sequence


def align(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` with ``a[i] == b[j]``, increasing in both: every index when the sequences are
    equal, else the matching blocks of ``SequenceMatcher`` (no junk heuristic: a network's calls repeat)."""
    if list(a) == list(b):
        return [(i, i) for i in range(len(a))]
    matcher = SequenceMatcher(None, list(a), list(b), autojunk=False)
    return [(block.a + k, block.b + k) for block in matcher.get_matching_blocks() for k in range(block.size)]
