"""Design tools for channel local convolutions (clcNet), torch-free.

Source: Dong-Qing Zhang, "clcNet: Improving the Efficiency of Convolutional
Neural Network using Channel Local Convolutions", arXiv:1712.06145 (2017),
Sections 3.1-3.3, Eq. (2) and Table 1; the interlace follows the author's
Torch code, dqzhang17/clcnet.torch ``models/ChannelInterlace.lua``.

Three tools:

* **Channel dependency graph (CDG).** :func:`channel_dependency` takes a stack
  of channel stages -- :class:`GroupedConv` and :class:`Interlace` -- and
  returns a boolean matrix ``D`` of shape ``(out_channels, in_channels)`` with
  ``D[o, i]`` true when output channel ``o`` of the stack depends on input
  channel ``i``. Spatial extent, stride, batch norm and ReLU do not change
  which channels an output depends on, so a CLC block (IGC 3x3 -> BN ->
  interlace -> GC 1x1 -> BN -> ReLU) is described by
  ``[GroupedConv(M, L, g1), Interlace(g1), GroupedConv(L, N, g2)]``
  (:func:`clc_block_stages`).
* **Full channel receptive field (FCRF).** :func:`has_fcrf` is true when every
  output channel depends on every input channel (paper, Sec. 3.1).
* **Group minimiser.** :func:`clc_groups` solves Eq. (2) by enumeration::

      minimise  C(g1, g2) = A*L*M/g1 + N*L/g2
      s.t.      1 <= g1 <= min(M, L),  1 <= g2 <= min(L, N),
                M mod g1 = L mod g1 = 0,  L mod g2 = N mod g2 = 0,
                g1*g2 <= L                      (the rule for FCRF, Eq. 1)

  ``C`` is the cost per output location, equal to the block's weight count.

The interlace
-------------
An interlaced grouped convolution (IGC) is a grouped convolution with ``g``
groups whose output channels are then *interlaced into fields*: field ``k``
holds the ``k``-th output channel of every group, and the fields are laid out
one after the other. With ``s = L/g`` channels per group, channel ``k`` of
group ``j`` (position ``j*s + k`` before interlacing) moves to position
``k*g + j``. This is exactly ``ChannelInterlace(L, g1)`` of the author's Torch
code (its forward index ``f_idx``) and the ShuffleNet channel shuffle with
``g`` groups (``view(g, s) -> transpose -> flatten``). Any contiguous window of
``g`` or more interlaced channels therefore contains an output of every IGC
group; each GC group reads ``L/g2`` contiguous channels, which is why the block
has FCRF exactly when ``L/g2 >= g1``, i.e. ``g1*g2 <= L``.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence, Union

import numpy as np

from ..arith import divisors
from ..errors import InputError
from ..units import shown

__all__ = [
    "GroupedConv",
    "Interlace",
    "Stage",
    "interlace_permutation",
    "channel_dependency",
    "crf_sizes",
    "has_fcrf",
    "clc_block_stages",
    "ClcGroups",
    "clc_cost",
    "feasible_groups",
    "clc_groups",
    "TABLE1",
    "MAX_CHANNELS",
]

# Eq. (2)'s inputs are channel counts: far beyond any network at 2**40, and small enough that
# the divisor search below stays a few milliseconds (2**20 trial divisors, in numpy blocks).
MAX_CHANNELS = 2**40
MAX_KERNEL_AREA = 2**20


def _check_positive_int(name: str, value: object, limit: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {shown(value)}")
    if limit is not None and value > limit:
        raise InputError(f"{name} must be at most {limit:,}, got {shown(value)}")
    return int(value)


# --------------------------------------------------------------------------
# Channel stages and the channel dependency graph
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupedConv:
    """A (grouped) convolution seen from the channel axis.

    ``groups=1`` is a regular convolution, ``groups=in_channels=out_channels``
    a depthwise one. Output channel ``o`` belongs to group ``o // (out/groups)``
    and depends on exactly the input channels of the same group.
    """

    in_channels: int
    out_channels: int
    groups: int = 1

    def __post_init__(self) -> None:
        _check_positive_int("in_channels", self.in_channels)
        _check_positive_int("out_channels", self.out_channels)
        _check_positive_int("groups", self.groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise InputError(
                f"groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )

    def output_channels(self, in_channels: int) -> int:
        if in_channels != self.in_channels:
            raise InputError(
                f"GroupedConv expects {self.in_channels} input channels, got {in_channels}"
            )
        return self.out_channels

    def dependency(self, in_channels: int) -> np.ndarray:
        """Boolean ``(out_channels, in_channels)`` matrix: block diagonal."""
        self.output_channels(in_channels)
        out_group = np.arange(self.out_channels) // (self.out_channels // self.groups)
        in_group = np.arange(self.in_channels) // (self.in_channels // self.groups)
        return out_group[:, None] == in_group[None, :]

    def propagate(self, reach: np.ndarray) -> np.ndarray:
        """Dependencies of this stage's outputs, given those of its inputs.

        ``reach[c, i]``: stage input ``c`` depends on block input ``i``. An
        output depends on what any input of its group depends on.
        """
        self.output_channels(reach.shape[0])
        per_group_reach = reach.reshape(self.groups, -1, reach.shape[1]).any(axis=1)
        return np.repeat(per_group_reach, self.out_channels // self.groups, axis=0)


@dataclass(frozen=True)
class Interlace:
    """Channel interlace into fields, for an IGC with ``groups`` groups.

    A pure permutation of the channels (see the module docstring): the channel
    count is that of the stage before it and must be a multiple of ``groups``.
    """

    groups: int

    def __post_init__(self) -> None:
        _check_positive_int("groups", self.groups)

    def output_channels(self, in_channels: int) -> int:
        if in_channels % self.groups:
            raise InputError(
                f"Interlace(groups={self.groups}) needs a channel count divisible by "
                f"{self.groups}, got {in_channels}"
            )
        return in_channels

    def dependency(self, in_channels: int) -> np.ndarray:
        """Boolean permutation matrix ``P`` with ``P[p, interlace_permutation[p]]``."""
        src = interlace_permutation(in_channels, self.groups)
        mat = np.zeros((in_channels, in_channels), dtype=bool)
        mat[np.arange(in_channels), src] = True
        return mat

    def propagate(self, reach: np.ndarray) -> np.ndarray:
        """Dependencies of the interlaced channels: a row permutation of ``reach``."""
        return reach[interlace_permutation(reach.shape[0], self.groups)]


Stage = Union[GroupedConv, Interlace]


def interlace_permutation(channels: int, groups: int) -> np.ndarray:
    """Source index of every output position of the interlace.

    ``out[p] = in[perm[p]]``. For ``p = k*groups + j`` (field ``k``, group
    ``j``), ``perm[p] = j*(channels//groups) + k``. Equal to the 0-based
    ``f_idx`` of ``ChannelInterlace(channels, groups)`` in the author's Torch
    code.
    """
    channels = _check_positive_int("channels", channels)
    groups = _check_positive_int("groups", groups)
    if channels % groups:
        raise InputError(f"groups={groups} must divide channels={channels}")
    per_group = channels // groups
    return np.arange(channels).reshape(groups, per_group).T.reshape(-1)


def channel_dependency(stages: Sequence[Stage], in_channels: int | None = None) -> np.ndarray:
    """Channel dependency graph of a stack of stages, as a boolean matrix.

    Returns ``D`` of shape ``(out_channels, in_channels)`` where ``D[o, i]`` is
    true when output channel ``o`` of the whole stack depends (through any
    path) on input channel ``i``. ``in_channels`` defaults to the input of the
    first stage, which must then be a :class:`GroupedConv`.
    """
    stages = list(stages)
    if not stages:
        raise InputError("channel_dependency needs at least one stage")
    if in_channels is None:
        first = stages[0]
        if not isinstance(first, GroupedConv):
            raise InputError("give in_channels when the first stage is not a GroupedConv")
        in_channels = first.in_channels
    channels = _check_positive_int("in_channels", in_channels)
    # reach[c, i]: current channel c depends on block input i. Each stage maps
    # it forward; this equals the boolean product of the stages' dependency()
    # matrices, in O(channels^2) per stage instead of a dense matmul.
    reach = np.eye(channels, dtype=bool)
    for stage in stages:
        if not isinstance(stage, (GroupedConv, Interlace)):
            raise InputError(f"unknown channel stage {stage!r}")
        reach = stage.propagate(reach)
    return reach


def crf_sizes(stages_or_cdg: Sequence[Stage] | np.ndarray) -> np.ndarray:
    """Channel receptive field size of every output channel (Sec. 3.1)."""
    return _as_cdg(stages_or_cdg).sum(axis=1)


def has_fcrf(stages_or_cdg: Sequence[Stage] | np.ndarray) -> bool:
    """True when every output channel depends on every input channel (FCRF).

    Accepts a list of stages or an already computed CDG matrix.
    """
    return bool(_as_cdg(stages_or_cdg).all())


def _as_cdg(stages_or_cdg: Sequence[Stage] | np.ndarray) -> np.ndarray:
    if isinstance(stages_or_cdg, np.ndarray):
        if stages_or_cdg.ndim != 2:
            raise InputError("a CDG matrix must be 2-D (out_channels, in_channels)")
        return stages_or_cdg.astype(bool)
    return channel_dependency(stages_or_cdg)


def clc_block_stages(
    m: int, l: int, n: int, g1: int, g2: int, *, interlace: bool = True
) -> list[Stage]:
    """Channel stages of a CLC block: IGC (M->L, g1) -> interlace -> GC (L->N, g2).

    ``interlace=False`` gives the clcNet-Ap block of Table 4 (plain GC -> GC).
    """
    stages: list[Stage] = [GroupedConv(m, l, g1)]
    if interlace:
        stages.append(Interlace(g1))
    stages.append(GroupedConv(l, n, g2))
    return stages


# --------------------------------------------------------------------------
# Eq. (2): the group parameters of minimal cost under the rule for FCRF
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClcGroups:
    """Result of :func:`clc_groups`: the IGC / GC group counts and their cost.

    ``cost`` is ``C(g1, g2)`` of Eq. (2): multiply-adds per output location,
    equal to the number of weights of the block.
    """

    g1: int
    g2: int
    cost: int

    def to_dict(self) -> dict[str, int]:
        """Plain dict, ready for ``json.dumps``."""
        return asdict(self)


def clc_cost(m: int, l: int, n: int, g1: int, g2: int, kernel_area: int = 9) -> int:
    """``C(g1, g2) = A*L*M/g1 + N*L/g2`` (exact when g1 | M and g2 | N)."""
    num = kernel_area * l * m * g2 + n * l * g1
    den = g1 * g2
    if num % den:
        raise InputError(f"cost is not integral for g1={g1}, g2={g2}; check divisibility")
    return num // den


def _divisors(x: int) -> list[int]:
    """The divisors of a channel count (``perfsim.arith.divisors``), bounded by ``MAX_CHANNELS``."""
    if not 1 <= x <= MAX_CHANNELS:
        raise InputError(f"cannot list the divisors of {shown(x)}: at most {MAX_CHANNELS:,}")
    return divisors(x)


def feasible_groups(m: int, l: int, n: int) -> Iterator[tuple[int, int]]:
    """All (g1, g2) meeting Eq. (2)'s constraints, g1 ascending then g2 ascending.

    g1 divides M and L (so g1 <= min(M, L)), g2 divides L and N (so g2 <= min(L, N)).
    """
    g2s = _divisors(math.gcd(l, n))
    for g1 in _divisors(math.gcd(m, l)):
        for g2 in g2s:
            if g1 * g2 > l:
                break
            yield g1, g2


def clc_groups(
    M: int, L: int, N: int, kernel_area: int = 9, *, g2: int | None = None
) -> ClcGroups:
    """Minimise Eq. (2) of the clcNet paper over integer (g1, g2).

    ``M``, ``L``, ``N``: input, intermediate (IGC output) and output channels
    of the block; ``kernel_area`` is ``A``, the IGC kernel area (9 for 3x3; the
    GC is 1x1 with stride 1). ``g2`` optionally fixes the GC group count and
    minimises over ``g1`` alone -- Section 4.1 fixes ``g2 = 2``, which gives
    Table 2's ``g1``.

    Ties (equal cost) go to the pair met first when enumerating g1 ascending,
    then g2 ascending -- the smallest g1. Table 1 has no ties, so every row is
    a unique minimum whatever the rule.

    For a fixed g1 the cost falls as g2 grows, so only the largest feasible g2
    (a bisect among the divisors of gcd(L, N)) can be that g1's minimum: the
    search is linear in the divisors of gcd(M, L), not quadratic, and channel
    counts up to ``MAX_CHANNELS`` answer in milliseconds.
    """
    m = _check_positive_int("M", M, MAX_CHANNELS)
    l = _check_positive_int("L", L, MAX_CHANNELS)
    n = _check_positive_int("N", N, MAX_CHANNELS)
    a = _check_positive_int("kernel_area", kernel_area, MAX_KERNEL_AREA)
    if g2 is not None:
        g2 = _check_positive_int("g2", g2, MAX_CHANNELS)
    g2s = _divisors(math.gcd(l, n))
    if g2 is not None:
        g2s = [g2] if g2 in g2s else []
    best: ClcGroups | None = None
    for cand1 in _divisors(math.gcd(m, l)):
        k = bisect_right(g2s, l // cand1)  # g1*g2 <= L
        if k == 0:
            continue
        cost = clc_cost(m, l, n, cand1, g2s[k - 1], a)
        if best is None or cost < best.cost:
            best = ClcGroups(cand1, g2s[k - 1], cost)
    if best is None:  # only reachable with a fixed g2
        raise InputError(
            f"g2={g2} is infeasible for M={m}, L={l}, N={n}: it must divide L and N"
        )
    return best


# Table 1 of the clcNet paper (Zhang 2017, arXiv:1712.06145): "Minimization
# results for typical input and output channels", A = 9. The text calls it
# "Table 4" by mistake. Rows in the printed order (left column, then right):
# (M, L, N, g1, g2).
TABLE1: tuple[tuple[int, int, int, int, int], ...] = (
    (32, 32, 64, 16, 2),
    (64, 64, 128, 16, 4),
    (128, 128, 256, 32, 4),
    (256, 256, 512, 32, 8),
    (512, 512, 1024, 64, 8),
    (64, 64, 64, 32, 2),
    (128, 128, 128, 32, 4),
    (256, 256, 256, 64, 4),
    (512, 512, 512, 64, 8),
    (1024, 1024, 1024, 128, 8),
)
