"""Accuracy beside cost: top-1 against predicted latency and against MACs (``perfsim pareto``).

For every zoo model with an accuracy -- measured by ``perfsim eval`` (the ``eval.json`` files
under a results folder) where one exists, else the paper's reported figure
(:mod:`perfsim.papers.accuracy`, marked ``paper``) -- the network is simulated on the profile at
the input size and class count the accuracy was measured with (so a MobileNet CIFAR figure is
costed on 28x28 crops and a clcNet ImageNet figure at 224x224), and one row is written. A
measured figure replaces the paper's for the same (model, width, data set). One plot per data set.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError

__all__ = ["AccuracyPoint", "ParetoRow", "collect_points", "pareto_rows", "write_pareto"]

COLUMNS = ("model", "width", "dataset", "num_classes", "input_side", "top1", "top5", "accuracy_source",
           "citation", "macs", "latency_s", "profile")


@dataclass(frozen=True)
class AccuracyPoint:
    model: str
    width: float
    dataset: str
    num_classes: int
    input_side: int | None  # None: the zoo's registered input
    top1: float
    top5: float | None
    accuracy_source: str  # "measured" or "paper"
    citation: str  # the eval.json path, or the paper and table

    @property
    def key(self) -> tuple[str, float, str]:
        return (self.model, self.width, self.dataset)


@dataclass(frozen=True)
class ParetoRow:
    model: str
    width: float
    dataset: str
    num_classes: int
    input_side: int
    top1: float
    top5: float | None
    accuracy_source: str
    citation: str
    macs: int
    latency_s: float
    profile: str


def paper_points(models: Iterable[str] | None = None) -> list[AccuracyPoint]:
    from ..papers.accuracy import REPORTED

    wanted = None if models is None else set(models)
    return [AccuracyPoint(r.model, r.width, r.dataset, r.num_classes, r.input_side, r.top1, r.top5,
                          "paper", r.source)
            for r in REPORTED if wanted is None or r.model in wanted]


def measured_points(results: Path, models: Iterable[str] | None = None) -> list[AccuracyPoint]:
    """The ``eval.json`` files (``perfsim eval``'s output) anywhere under ``results``."""
    if not results.is_dir():
        raise InputError(f"--results {results} is not a folder")
    wanted = None if models is None else set(models)
    points = []
    for path in sorted(results.rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("format") != "perfsim-eval/1":
            continue
        if wanted is not None and doc["model"] not in wanted:
            continue
        points.append(AccuracyPoint(doc["model"], float(doc["width"]), doc["dataset"],
                                    int(doc["num_classes"]), int(doc["input_side"]), float(doc["top1"]),
                                    doc.get("top5"), "measured", str(path)))
    return points


def collect_points(results: Path | None, models: Iterable[str] | None = None) -> list[AccuracyPoint]:
    """Measured figures, and the papers' where nothing was measured for that (model, width, data)."""
    measured = measured_points(results, models) if results is not None else []
    best: dict[tuple, AccuracyPoint] = {}
    for p in measured:  # several evaluations of one configuration: the best one is shown
        if p.key not in best or p.top1 > best[p.key].top1:
            best[p.key] = p
    papers = [p for p in paper_points(models) if p.key not in best]
    return sorted(list(best.values()) + papers, key=lambda p: (p.dataset, p.model, p.width))


def pareto_rows(points: list[AccuracyPoint], profile: str, overrides=()) -> list[ParetoRow]:
    """Simulate each point's network on ``profile``; one row per point."""
    from ..frontends import zoo
    from ..frontends.sources import ModelOptions, load_graph
    from ..hardware.loader import load_profile, parse_override
    from ..report.run import simulator

    hw = load_profile(profile, **dict(parse_override(o) for o in overrides))
    rows = []
    for p in points:
        spec = zoo.get(p.model)
        c, h, w = spec.input_shape
        side = p.input_side or h
        options = ModelOptions(num_classes=p.num_classes, width=p.width if p.width != 1.0 else None,
                               input_shape=(c, side, side))
        graph = load_graph(p.model, options).graph
        result = simulator()(graph, hw, batch=1, model=graph.name)
        rows.append(ParetoRow(p.model, p.width, p.dataset, p.num_classes, side, p.top1, p.top5,
                              p.accuracy_source, p.citation, int(result.totals.macs),
                              float(result.latency_s), hw.name))
    return rows


def _plot(rows: list[ParetoRow], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, xkey, xlabel in ((axes[0], "latency_s", "predicted latency (ms)"), (axes[1], "macs", "MACs (M)")):
        for r in rows:
            x = r.latency_s * 1e3 if xkey == "latency_s" else r.macs / 1e6
            measured = r.accuracy_source == "measured"
            ax.scatter([x], [r.top1 * 100], marker="o" if measured else "s",
                       facecolors="C0" if measured else "none", edgecolors="C0" if measured else "C1")
            label = r.model + (f" a={r.width:g}" if r.width != 1.0 else "") + ("" if measured else " (paper)")
            ax.annotate(label, (x, r.top1 * 100), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{dataset}: top-1 vs cost on {rows[0].profile} (filled: measured; hollow: paper's figure)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def write_pareto(rows: list[ParetoRow], out: Path, *, plots: bool = True) -> Path:
    """pareto.csv, pareto.json and pareto_<dataset>.png into the report folder ``out``."""
    import csv

    from ..report.folder import write_folder

    if not rows:
        raise InputError("no model has an accuracy to plot (no eval results, no paper figure)")

    def fill(folder: Path) -> None:
        with open(folder / "pareto.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
        (folder / "pareto.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        if plots:
            for dataset in sorted({r.dataset for r in rows}):
                _plot([r for r in rows if r.dataset == dataset], dataset, folder / f"pareto_{dataset}.png")

    return write_folder(out, fill)


def format_table(rows: list[ParetoRow]) -> str:
    head = f"{'model':<14}{'width':>6} {'data':<9}{'top-1':>8}  {'source':<9}{'MACs':>14}{'latency ms':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.model:<14}{r.width:>6g} {r.dataset:<9}{r.top1:>8.2%}  {r.accuracy_source:<9}"
                     f"{r.macs:>14,}{r.latency_s * 1e3:>12.4f}")
    return "\n".join(lines)
