"""``perfsim calibrate``'s fits: from the benchmarks' times to a profile's kernels (docs/hardware.md).

Per op label, the smallest shape's time is its per-kernel overhead and each other shape's time beyond it
gives a fraction of the unit's peak (``fit_label``; a matrix label's fractions become a table by the
smallest dimension of the matrix product when they differ by size); ``conv_group`` gets a model of its
time over the grid instead (``fit_grouped``). Shapes that do not fit in SRAM give ``tiled_efficiency``
(``fit_tiled``), pairs of maps the row block (``fit_row_blocks``). The in-context fits are
``perfsim.host.context``'s.
"""
from __future__ import annotations

import math
from statistics import median
from typing import Any, Sequence

from ..hardware.calibration import KindFit, Measured
from ..hardware.description import HardwareProfile
from ..hardware.efficiency import MATRIX_LABELS, ROW_LABELS, GroupedConvModel
from .benchmarks import Bench, built
from .measure import Spread

FLAT = 0.15  # a label's fractions within this of their median are one number, not a table
# at one dimension, fractions further apart than this become a table by M (``_table``): a 1x1 depthwise conv's
# spanned 164x (49 to 12,544 positions); in five calibrations every other dimension of every label stayed
# within 13x (a strided 1x1 conv's two shapes; noise and the overhead's subtraction on tiny maps)
BY_M = 20.0


def _work(label: str, layer: Any) -> int:
    return 2 * layer.macs if label in MATRIX_LABELS else layer.vector_ops(False, False)


def _beyond_overhead(label: str, points: list[tuple[Any, Spread]]
                     ) -> tuple[float, list[tuple[int, Any, Spread]], list[tuple[int, Any, float]]]:
    """A label's shapes by work; its overhead (the smallest shape's time); and (work, layer, time beyond
    the overhead) of each shape whose time exceeds it by more than 25 % (the others are overhead-bound:
    they say nothing about the rate)."""
    work = sorted(((_work(label, layer), layer, s) for layer, s in points), key=lambda w: w[0])
    overhead = work[0][2].median_s
    beyond = [(ops, layer, s.median_s - overhead) for ops, layer, s in work[1:]
              if ops > 0 and s.median_s - overhead > 0.25 * overhead]
    return overhead, work, beyond


def label_rates(label: str, points: list[tuple[Any, Spread]]) -> list[float]:
    """Ops per second of each shape beyond the label's overhead."""
    return [ops / extra for ops, _, extra in _beyond_overhead(label, points)[2]]


def _table(fractions: list[tuple[int, int, float]]) -> float | dict[int, Any]:
    """Fractions (smallest dimension, M, fraction) as one number when they agree within FLAT, else a table
    by the smallest dimension (the median at each). A table of tables by M as well (which profiles accept)
    was tried: it followed clcNet's grouped convs better but the noise of single benchmark points cost
    CondenseNet's ranking (docs/hardware.md), so calibrate writes one level -- except where the fractions
    at one dimension differ by more than ``BY_M`` (beyond any noise seen): a 1x1 depthwise conv's cost is
    per channel, ~4-6 us each here, so its fraction rises with the positions (0.0002 at 7x7, 0.04 at
    112x112), and that dimension gets a table by M (the others then one entry each)."""
    mid = median(f for _, _, f in fractions)
    if all(abs(f - mid) <= FLAT * mid for _, _, f in fractions):
        return round(max(mid, 1e-6), 6)
    by_dim: dict[int, list[tuple[int, float]]] = {}
    for d, m, f in fractions:
        by_dim.setdefault(d, []).append((m, f))
    out: dict[int, Any] = {}
    for d, pts in sorted(by_dim.items()):
        fs = [f for _, f in pts]
        if max(fs) > BY_M * min(fs) and len({m for m, _ in pts}) == len(pts):  # positions set the rate
            out[d] = {m: round(max(f, 1e-6), 6) for m, f in sorted(pts)}
        else:
            out[d] = round(max(median(fs), 1e-6), 6)
    if any(isinstance(v, dict) for v in out.values()):  # a profile's table is all one level or all two
        out = {d: v if isinstance(v, dict) else {1: v} for d, v in out.items()}
    return out


def fit_grouped(points: list[tuple[Any, Spread]], peak: float, channels: Sequence[int]) -> KindFit:
    """``conv_group``'s model of its time (``hardware.efficiency.GroupedConvModel``): per kernel area (1, 9), a call overhead
    shared by all its shapes and per cell of (channels read, written) a cost per group and per group and
    output position, by least squares in relative error over the shapes on the grid; a negative cost is
    dropped and the rest refitted, a cell without shapes takes its nearest cell's."""
    import numpy as np

    from ..ir.gemm import grouped_dims
    kernels = {}
    errors = []
    shapes = [(grouped_dims(layer, 1), s.median_s) for layer, s in points]
    for area in (1, 9):
        pts = [((g, m, r, w), t) for (a, g, m, r, w), t in shapes if a == area and r in channels and w in channels]
        cells = sorted({(r, w) for (_, _, r, w), _ in pts})
        if len(pts) < 3 or not cells:
            continue
        x = np.zeros((len(pts), 1 + 2 * len(cells)))
        for i, ((g, m, r, w), t) in enumerate(pts):
            j = cells.index((r, w))
            x[i, 0], x[i, 1 + 2 * j], x[i, 2 + 2 * j] = 1 / t, g / t, g * m / t
        keep = np.ones(x.shape[1], dtype=bool)
        coef = np.zeros(x.shape[1])
        while True:
            sol, *_ = np.linalg.lstsq(x[:, keep], np.ones(len(pts)), rcond=None)
            coef[:] = 0
            coef[keep] = sol
            if (coef >= 0).all():
                break
            keep &= coef > 0  # drop the negative ones (and keep what stays positive), refit
        errors += list(np.abs(x @ coef - 1))
        fitted = {cell: (coef[1 + 2 * j], coef[2 + 2 * j]) for j, cell in enumerate(cells)}

        def nearest(r: int, w: int) -> tuple[float, float]:
            if (r, w) in fitted:
                return fitted[(r, w)]
            near = min(fitted, key=lambda c: (abs(math.log2(c[0] / r)) + abs(math.log2(c[1] / w)), c))
            return fitted[near]
        table = [[nearest(r, w) for w in channels] for r in channels]
        kernels[area] = {"overhead": float(coef[0]), "channels": list(channels),
                         "per_group": [[float(f"{c:.4g}") for c, _ in row] for row in table],
                         "per_position": [[float(f"{u:.4g}") for _, u in row] for row in table]}
    model = GroupedConvModel(flops=peak, kernels=kernels)
    return KindFit(shapes=len(points), overhead_s=0.0, efficiency=model,
                   median_abs_error=round(float(median(errors)), 4) if errors else 0.0, unit="matrix")


def fit_label(label: str, points: list[tuple[Any, Spread]], peak: float) -> KindFit:
    """Overhead = the smallest shape's time; each larger shape's time beyond it is work at a fraction of
    ``peak``; a matrix label's fractions become a table by ``matrix_dims``, a row label's (softmax, layernorm)
    by the row's length, unless they agree within FLAT."""
    from ..ir.gemm import matrix_dims, table_key
    from ..sim.timing import entry_value
    is_matrix = label in MATRIX_LABELS
    overhead, work, beyond = _beyond_overhead(label, points)
    if not beyond:  # every shape is overhead-bound: the largest says the most
        ops, layer, s = work[-1]
        beyond = [(ops, layer, max(s.median_s - overhead, 1e-9))]
    fractions: list[tuple[int, int, float]] = []
    for ops, layer, extra in beyond:
        if label in ROW_LABELS:  # a row-wise kernel: by the row's length
            key, m = layer.row_length, 1
        else:
            key, m = table_key(layer, 1), matrix_dims(layer, 1)[0]
        fractions.append((key, m, min(1.0, ops / (peak * extra))))
    tabled = is_matrix or label in ROW_LABELS
    efficiency = _table(fractions) if tabled else round(max(median(f for _, _, f in fractions), 1e-6), 6)
    errors = [abs(overhead + ops / (peak * entry_value(efficiency, layer, 1)) - s.median_s) / s.median_s
              for ops, layer, s in work]
    return KindFit(shapes=len(work), overhead_s=overhead, efficiency=efficiency,
                   median_abs_error=round(median(errors), 4), unit="matrix" if is_matrix else "vector")


def fit_tiled(profile: HardwareProfile, results: list[tuple[Bench, Any, Spread]]) -> dict[str, float]:
    """Per label, the factor by which a row that does not fit in SRAM runs below its in-SRAM efficiency:
    the measured time beyond the row's predicted data and overhead, against its predicted compute.
    Only labels that fall by more than 15 % get an entry."""
    from ..sim.simulator import simulate
    factors: dict[str, list[float]] = {}
    for bench, _layer, spread in results:
        row = simulate(built(bench)[1], profile).rows[0]
        compute = row.t_matrix_s + row.t_vector_s
        data = 0.0 if profile.schedule.overlap and row.t_data_s <= compute else row.t_data_s  # hidden behind it
        beyond = spread.median_s - data - row.t_overhead_s
        if row.tiles > 1 and compute > 0 and beyond > 0:
            factors.setdefault(bench.label, []).append(min(1.0, compute / beyond))
    out = {}
    for label, values in factors.items():
        f = median(values)
        if f < 0.85:
            out[label] = round(max(f, 1e-6), 6)
    return out


def fit_overlap(profile: HardwareProfile, results: list[tuple[Bench, Any, Spread]]
                ) -> tuple[HardwareProfile, dict[str, Measured]]:
    """Whether a row that does not fit in SRAM moves its data while it computes (``overlap``: hardware
    prefetch streaming the next level's data) or before: each way, ``tiled_efficiency`` fitted under it and
    the shapes beyond SRAM predicted; the way with the smaller median relative error is kept (one yes-or-no
    fitted, its evidence every large shape; issue 20: ResNet-50's large 1x1 convs were predicted 29 % too
    slow with the data time added to the compute)."""
    from ..sim.simulator import simulate
    tried, out = {}, {}
    for overlap in (False, True):
        p = profile.with_fields(overlap=overlap)
        p = p.with_fields(tiled_efficiency=fit_tiled(p, results))
        errors = [abs(simulate(built(bench)[1], p).rows[0].t_total_s - s.median_s) / s.median_s
                  for bench, _layer, s in results]
        tried[overlap] = (median(errors) if errors else 0.0, p)
        q = sorted(errors) or [0.0]
        out[f"overlap: {str(overlap).lower()}"] = Measured(
            value=round(tried[overlap][0], 4), q1=round(q[len(q) // 4], 4), q3=round(q[3 * len(q) // 4], 4),
            n=len(results), unit="relative error",
            what=f"the {len(results)} shapes beyond SRAM predicted with overlap {overlap} (tiled_efficiency refitted)")
    best = min(tried, key=lambda o: (tried[o][0], o))  # a tie keeps data and compute apart
    return tried[best][1], out


ROW_BLOCKS = (1, 2, 4, 8, 16, 32)  # the candidates, output positions (the pairs: benchmarks.block_benches)


def fit_row_blocks(profile: HardwareProfile, results: list[tuple[Bench, Any, Spread]]
                   ) -> tuple[dict[str, int], dict[str, Measured]]:
    """Per label, the block of output positions (``ROW_BLOCKS``) whose rounding best predicts the ratio of
    each pair's times beyond the label's overhead, the isolated fit's efficiency otherwise as it is (least
    squares in log); a label whose best block is 1 gets none."""
    from ..ir.gemm import matrix_dims
    from ..sim.timing import entry_value, kernel_overhead_of, row_block_factor
    pairs: dict[str, list[tuple[float, tuple[Any, Any]]]] = {}  # log of the time ratio, the two rows
    for (b1, l1, s1), (b2, l2, s2) in zip(results[::2], results[1::2]):
        label = b1.label
        o = kernel_overhead_of(profile.kernels.overhead, label)
        if s1.median_s <= o or s2.median_s <= o:
            continue
        pairs.setdefault(label, []).append((math.log((s1.median_s - o) / (s2.median_s - o)), (l1, l2)))
    blocks, measured = {}, {}
    for label, obs in pairs.items():
        eff = profile.kernels.efficiency.get(label, 1.0)

        def work(layer: Any, block: int) -> float:
            return layer.macs / (entry_value(eff, layer, 1) * row_block_factor(block, matrix_dims(layer, 1)[0]))

        errors = {b: sum((r - math.log(work(l1, b) / work(l2, b))) ** 2 for r, (l1, l2) in obs) for b in ROW_BLOCKS}
        best = min(ROW_BLOCKS, key=lambda b: (round(errors[b], 6), b))
        if best > 1:
            blocks[label] = best
        measured[f"row_block: {label}"] = Measured(
            value=float(best), q1=float(best), q3=float(best), n=len(obs), unit="positions",
            what=f"the block that best predicts the times of {len(obs)} pairs of maps (a side off a multiple "
                 "of 8, the power of two above it); squared log errors: "
                 + ", ".join(f"{b}: {errors[b]:.3g}" for b in ROW_BLOCKS))
    return blocks, measured
