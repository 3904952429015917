"""The papers' reported accuracies, as data (for ``perfsim pareto`` when no measured figure exists).

Transcribed from the papers (perfsim's paper numbering: 000 CondenseNeXt, 001 MobileNet on CIFAR-10,
002 clcNet, 003 FastNet). Each figure names its table; top-1/top-5 are fractions. ``input_side`` is
the image side the figure was measured at (CIFAR-10 crops of 28 for the MobileNet CIFAR variant).
Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReportedAccuracy", "REPORTED"]


@dataclass(frozen=True)
class ReportedAccuracy:
    model: str  # zoo name
    dataset: str  # cifar10, cifar100, imagenet
    top1: float
    source: str  # paper and table
    width: float = 1.0
    top5: float | None = None
    input_side: int | None = None  # None: the zoo's registered input
    note: str = ""

    @property
    def num_classes(self) -> int:
        return {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[self.dataset]


REPORTED: tuple[ReportedAccuracy, ...] = (
    ReportedAccuracy("mobilenet", "cifar10", 0.82, "paper 001, Table 2 (test loss 0.91)", width=1.0,
                     input_side=28),
    ReportedAccuracy("mobilenet", "cifar10", 0.78, "paper 001, Table 2 (test loss 0.95)", width=0.75,
                     input_side=28),
    ReportedAccuracy("mobilenet_v1", "imagenet", 0.706, "paper 002, Table 5 (1.0 MobileNet-224)"),
    ReportedAccuracy("clcnet_a", "imagenet", 0.704, "paper 002, Table 3", top5=0.895),
    ReportedAccuracy("clcnet_b", "imagenet", 0.716, "paper 002, Table 3", top5=0.903),
    ReportedAccuracy("clcnet_ap", "imagenet", 0.677, "paper 002, Table 4", top5=0.878),
    ReportedAccuracy("condensenet", "cifar10", 0.9424, "paper 000, Table I (CondenseNet-86 baseline)",
                     note="condensed network, 200 epochs"),
    ReportedAccuracy("condensenext", "cifar10", 0.9228, "paper 000, Table I",
                     note="the paper's network; perfsim's reconstruction differs in size (docs/condensenet.md)"),
    ReportedAccuracy("fastnet", "cifar10", 0.9398, "paper 003, results table"),
    ReportedAccuracy("fastnet", "cifar100", 0.7081, "paper 003, results table"),
)
