"""Accuracy cells of a paper report: the paper's figure, and perfsim's measured one where a user has
run ``perfsim train`` and ``perfsim eval`` (the ``eval.json`` files under ``--results DIR``, read by
:func:`perfsim.accuracy.pareto.measured_points`). Torch-free.
"""
from __future__ import annotations

from pathlib import Path

from .published import Figure, Row, row

__all__ = ["Measured", "measured", "accuracy_row"]

# (model, data set) -> (top-1, top-5 or None, the eval.json it came from), width 1 only: the papers'
# networks are their full-width ones.
Measured = dict[tuple[str, str], tuple[float, "float | None", str]]


def measured(results: Path | None, models: list[str]) -> Measured:
    """The best measured top-1 (and its top-5) of each (model, data set) under ``results``."""
    if results is None:
        return {}
    from ..accuracy.pareto import measured_points
    best: Measured = {}
    for p in measured_points(Path(results), models):
        if p.width != 1.0:
            continue
        key = (p.model, p.dataset)
        if key not in best or p.top1 > best[key][0]:
            best[key] = (p.top1, p.top5, p.citation)
    return best


def accuracy_row(section: str, table: str, where: str, network: str, dataset: str, metric: str,
                 printed: str, found: Measured) -> Row:
    """``metric`` is ``top-1`` or ``top-5``; the paper's figure is in percent."""
    fig = Figure.parse(printed)
    hit = found.get((network, dataset))
    value = None if hit is None else (hit[0] if metric == "top-1" else hit[1])
    quantity = f"{metric} accuracy, {dataset}"
    if value is None:
        from ..accuracy.data import NUM_CLASSES
        how = (f"not measured: train and evaluate it (perfsim train {network} --dataset {dataset}, then "
               "perfsim eval) and give the folder of eval.json files as --results" if dataset in NUM_CLASSES else
               f"not measured: perfsim train takes {', '.join(sorted(NUM_CLASSES))}, not {dataset}; an eval.json "
               f"of {network} on {dataset} under --results would be shown here")
        return row(section, table, where, network, quantity, printed, "not measured", ("not measured", how),
                   fig.value, None)
    pct = 100.0 * value
    diff = pct - fig.value
    side = (f"{abs(diff):.2f} points {'above' if diff > 0 else 'below'}" if abs(diff) >= 0.005
            else "equal to")
    how = f"measured {pct:.2f} % ({hit[2]}), {side} the paper's {printed}"
    return row(section, table, where, network, quantity, printed, f"{pct:.2f} %", ("measured", how), fig.value, pct)
