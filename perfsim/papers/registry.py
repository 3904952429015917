"""The papers ``perfsim paper`` reports on: name -> the paper, what its report covers, and the
functions that analyse it and write it. ``perfsim paper --list`` prints this table. Torch-free
(an analysis lowers its networks through the graph cache, which imports torch only on a miss).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..registry import Registry

__all__ = ["PaperEntry", "PAPERS", "get", "names", "analyse", "text", "write"]


@dataclass(frozen=True)
class PaperEntry:
    name: str  # what `perfsim paper NAME` takes
    paper: str  # perfsim's numbering of the seed papers: 000..003
    title: str
    networks: tuple[str, ...]  # the zoo models the report lowers
    covers: str  # what the report compares
    analysis: str  # "module:function" in perfsim.papers, returning the report's data
    report: str  # module in perfsim.papers with format_text(d) and write_paper_report(d, out)

    @property
    def shared(self) -> bool:
        """Its page is the shared one (perfsim.papers.report: rows, verdicts, accuracy cells); the
        MobileNet page keeps its own row-by-row layout."""
        return self.report == "report"

    def _function(self, spec: str):
        module, _, fn = spec.partition(":")
        return getattr(importlib.import_module(f"perfsim.papers.{module}"), fn)


PAPERS: Registry = Registry("paper")
for _entry in (
    PaperEntry("mobilenet", "001", "MobileNet on CIFAR-10, with a memory and performance model", ("mobilenet",),
               "Table 4's compute column for the 27 conv layers (2*MACs / 1 TFLOPS), Table 3's memory accounting "
               "replayed (memory_policy: paper) and the liveness model on the paper's machine (edge_1mb), every "
               "difference explained", "mobilenet_analysis:analyse", "mobilenet_report"),
    PaperEntry("clcnet", "002", "clcNet: channel local convolutions (Zhang 2017)",
               ("clcnet_a", "clcnet_b", "clcnet_ap", "mobilenet_v1"),
               "Table 1's Eq. 2 minimiser (10 rows), Table 2's structure and g1 design rule on the lowered clcNet-A, "
               "Table 3's block repetitions, Table 5's mult-adds and parameters (clcNet-A/-B, MobileNet-224), Sec. "
               "5.3's reductions, clcNet-Ap's cost and FCRF (Sec. 5.2), accuracies, the training recipe; Table 6's "
               "timing is withheld", "clcnet_analysis:analyse", "report"),
    PaperEntry("condensenet", "000", "CondenseNet-86, the baseline of CondenseNeXt (Kalgaonkar & El-Sharkawy)",
               ("condensenet",),
               "Table I's CondenseNet row (FLOPs in CondenseNet's own counting, parameters, accuracy, the 16.7 MB "
               "model size as a training checkpoint) and Table II's training times on a V100 (not predicted)",
               "condense_analysis:analyse_condensenet", "report"),
    PaperEntry("condensenext", "000", "CondenseNeXt: an ultra-efficient network for embedded systems",
               ("condensenext", "condensenet"),
               "Table I's CondenseNeXt row against perfsim's reconstruction (FLOPs, parameters, model size: the gap "
               "bounded by the part the text leaves unchanged), the architecture's stated rules (cardinality, ReLU6, "
               "input), Table II's training times (not predicted), accuracy and the Sec. VI recipe",
               "condense_analysis:analyse_condensenext", "report"),
    PaperEntry("fastnet", "003", "FastNet: an efficient architecture for smart devices (Olafenwa & Olafenwa)",
               ("fastnet",),
               "the parameter count (1.6M, CIFAR-10 and -100 heads), the structure the text states (15 layers, "
               "12 3x3, three 1x1, pools, stage widths; the summary's two 1x1 units), accuracies, the training "
               "recipe, and the P100 training time (not predicted)", "fastnet_analysis:analyse", "report"),
):
    PAPERS.register(_entry.name)(_entry)


def get(name: str) -> PaperEntry:
    try:
        return PAPERS[name]
    except (KeyError, TypeError):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:55] + "...'"
        raise InputError(f"unknown paper {shown}; perfsim paper takes {', '.join(names())} "
                         "(perfsim paper --list says what each covers)") from None


def names() -> list[str]:
    return list(PAPERS)


def analyse(name: str, *, results: Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """The report's data. ``results``: a folder of ``perfsim eval`` outputs for the accuracy cells
    (the MobileNet report has none)."""
    entry = get(name)
    fn = entry._function(entry.analysis)
    if not entry.shared:
        return fn(use_cache=use_cache)
    d = fn(results=results, use_cache=use_cache)
    head = {k: d[k] for k in ("name", "paper", "title")}
    return {**head, "covers": entry.covers, **d}


def text(name: str, d: dict[str, Any]) -> str:
    return importlib.import_module(f"perfsim.papers.{get(name).report}").format_text(d)


def write(name: str, d: dict[str, Any], out: Path) -> Path:
    return importlib.import_module(f"perfsim.papers.{get(name).report}").write_paper_report(d, out)
