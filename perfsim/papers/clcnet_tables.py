"""The clcNet paper's published numbers, transcribed as data (perfsim's paper 002).

Source: Dong-Qing Zhang, "clcNet: Improving the Efficiency of Convolutional Neural Network using
Channel Local Convolutions", arXiv:1712.06145 (2017). perfsim's copy of the paper is its text
without page breaks, so every cell names its table and section, not a page. Cells are kept as
printed ("343M", "3.25M", "70.4%"): ``perfsim.papers.published.Figure`` reads their value and
precision. Table 1 (the Eq. 2 minimiser) is ``perfsim.papers.clcnet_design.TABLE1``.

The paper's on-device timing experiment (its Table 6) is not in perfsim's copy: it is withheld on
purpose, as a blind check of perfsim's predictions. No other table or sentence prints a time.
Torch-free.
"""
from __future__ import annotations

from .clcnet_design import TABLE1

__all__ = ["PAPER", "TITLE", "TABLE1", "TABLE2", "TABLE3", "TABLE4", "TABLE5", "TABLE5_NOT_MODELLED",
           "SEC53_REDUCTIONS", "SEC53_TOP1_GAIN", "SEC41", "SEC52_CLAIMS", "SEC5_RECIPE", "WITHHELD"]

PAPER = "002"
TITLE = ("clcNet: Improving the Efficiency of Convolutional Neural Network using Channel Local "
         "Convolutions (Zhang, arXiv:1712.06145)")

# Table 2 "The structure and block parameters of the clcNet" (Sec. 4.1): (block type, input
# channels, output channels, stride, g1, g2, repetition symbol); None where the cell is empty.
TABLE2: tuple[tuple[str, int, int, int | None, int | None, int | None, str | None], ...] = (
    ("Regular 3x3 conv", 3, 32, 2, None, None, None),
    ("CLC block", 32, 64, 1, 16, 2, None),
    ("CLC block", 64, 128, 2, 32, 2, None),
    ("CLC block", 128, 128, 1, 64, 2, "a"),
    ("CLC block", 128, 256, 2, 64, 2, None),
    ("CLC block", 256, 256, 1, 128, 2, "b"),
    ("CLC block", 256, 512, 2, 128, 2, None),
    ("CLC block", 512, 512, 1, 256, 2, "c"),
    ("CLC block", 512, 1024, 2, 256, 2, None),
    ("CLC block", 1024, 1024, 1, 512, 2, "d"),
    ("FC layer", 1024, 1000, None, None, None, None),
)

# Table 3 "Classification accuracy of clcNet on ImageNet-1K" (Sec. 5.1): (a, b, c, d), top-1, top-5.
TABLE3: dict[str, tuple[tuple[int, int, int, int], str, str]] = {
    "clcnet_a": ((1, 1, 5, 2), "70.4%", "89.5%"),
    "clcnet_b": ((1, 1, 7, 3), "71.6%", "90.3%"),
}

# Table 4 "Comparison of the results of clcNet-A and clcNet-Ap" (Sec. 5.2): top-1, top-5. Its
# clcNet-A row repeats Table 3's.
TABLE4: dict[str, tuple[str, str]] = {
    "clcnet_a": ("70.4%", "89.5%"),
    "clcnet_ap": ("67.7%", "87.8%"),
}

# Table 5 "Comparison with previous models" (Sec. 5.3): top-1, mult-adds, parameters. Its clcNet
# accuracies repeat Table 3's.
TABLE5: dict[str, tuple[str, str, str]] = {
    "mobilenet_v1": ("70.6%", "569M", "4.2M"),  # printed "1.0 MobileNet-224"
    "clcnet_a": ("70.4%", "343M", "3.25M"),
    "clcnet_b": ("71.6%", "425M", "4.1M"),
}
# Table 5's rows for networks perfsim does not model (not compared): name, top-1, mult-adds, params.
TABLE5_NOT_MODELLED = (("GoogleNet", "69.8%", "1550M", "6.8M"), ("ShuffleNet 2x (v1)", "70.9%", "524M", "5.3M"))

# Sec. 5.3's text: "compared to MobileNet, the clcNet-A model achieves 40% reduction in computation
# and 22.6% reduction in parameter count ... the clcNet-B model achieves 25% reduction in
# computation" (the introduction repeats the last). (network, baseline, Table 5 column, printed).
SEC53_REDUCTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("clcnet_a", "mobilenet_v1", "mult-adds", "40%"),
    ("clcnet_a", "mobilenet_v1", "parameters", "22.6%"),
    ("clcnet_b", "mobilenet_v1", "mult-adds", "25%"),
)
# "... with 1.0% increase of top-1 accuracy" (clcNet-B over MobileNet). The ShuffleNet comparisons
# (19% less computation, 18% fewer parameters, +0.7%) involve a network perfsim does not model.
SEC53_TOP1_GAIN = ("clcnet_b", "mobilenet_v1", "1.0%")

# Sec. 4.1: "we fix the g2 parameter to 2 for all CLC blocks, and find the value of g1 using Eq.(2)
# ... and make the channel receptive field size of the IGC kernel equal to 2"; "we set L = M".
SEC41 = {"g2": 2, "igc_crf_size": 2}

# Sec. 5.2: clcNet-Ap replaces every IGC of clcNet-A by a GC: "almost the same computational cost
# but loss of FCRF for CLC blocks".
SEC52_CLAIMS = {"cost": "almost the same computational cost as clcNet-A", "fcrf": "loss of FCRF for CLC blocks"}

# Sec. 5 (experiments, on ImageNet): SGD, "momentum is set to 0.9, and nesterov momentum is
# enabled", "initial learning rate is set to 0.1", polynomial schedule with "power parameter ...
# 1.0, which means a linear decay", "runs for 100 epochs", weight decay "1.0e-4" (of the two tried),
# images "cropped to the size of 224x224". (recipe field, printed, how perfsim's recipe holds it)
SEC5_RECIPE: tuple[tuple[str, str], ...] = (
    ("momentum", "0.9"),
    ("lr", "0.1"),
    ("epochs", "100"),
    ("weight_decay", "1.0e-4"),
    ("crop", "224"),
)

WITHHELD = ("Table 6 (on-device inference timing) is not in perfsim's copy of the paper: it is withheld on "
            "purpose, as a blind check of perfsim's predictions, and no other table or sentence prints a time")
