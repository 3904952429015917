"""Paper 003 (FastNet) against perfsim: every number ``perfsim paper fastnet`` prints, as data.

The network is perfsim's lowered zoo model ``fastnet`` (10 classes, and 100 for the CIFAR-100
head); its structure is read from the op graph by explicit fields (kind, kernel, channels).
Tables transcribed in :mod:`perfsim.papers.fastnet_tables`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ir.graph import Graph, OpKind
from . import fastnet_tables as T
from .counting import param_hypotheses
from .measured import accuracy_row, measured
from .published import Figure, Row, assemble, fmt_count, judge_value, row
from .training import recipe_rows, recipe_word_rows

__all__ = ["structure", "analyse"]

EPOCHS_TEXT = dict(T.RECIPE)["epochs"]


def structure(graph: Graph) -> dict[str, Any]:
    """What the text states about the network, read from the lowered graph."""
    convs = [la for la in graph.layers if la.kind is OpKind.CONV]
    pools = [la for la in graph.layers if la.kind is OpKind.MAXPOOL]
    kernels = [la.kernel for la in convs]
    leading = next((i for i, k in enumerate(kernels) if k != (3, 3)), len(kernels))
    trailing = next((i for i, k in enumerate(reversed(kernels)) if k != (1, 1)), len(kernels))
    stages, count = [], 0
    for la in graph.layers:
        if la.kind is OpKind.CONV:
            count += 1
        elif la.kind is OpKind.MAXPOOL:
            stages.append(count)
            count = 0
    pool_sizes = sorted({la.kernel[0] for la in pools} | {la.stride[0] for la in pools})
    widths = sorted({la.out_shape[1] for la in convs[1:]})
    return {"conv_layers": len(convs), "leading_3x3": leading, "trailing_1x1": trailing, "summary_1x1": trailing,
            "before_first_pool": stages[0] if stages else len(convs),
            "pool_size": pool_sizes[0] if len(pool_sizes) == 1 else tuple(pool_sizes),
            "first_width": convs[0].out_shape[1], "width": widths[0] if len(widths) == 1 else tuple(widths),
            "stage_convs": tuple(stages)}


def _elsewhere(key: str) -> list[tuple[str, Any]]:
    """The text's other statements of the 1x1 count: its own 'stack of 3', and its layer count minus
    its 3x3 count."""
    if key != "summary_1x1":
        return []
    total, three = (Figure.parse(T.STRUCTURE[k][0]).value for k in ("conv_layers", "leading_3x3"))
    return [(f"{T.STRUCTURE['trailing_1x1'][1]}, {T.STRUCTURE['trailing_1x1'][3]}",
             Figure.parse(T.STRUCTURE["trailing_1x1"][0])),
            (f"'{T.STRUCTURE['conv_layers'][0]} layer' - '{T.STRUCTURE['leading_3x3'][0]}' 3x3 layers", int(total - three))]


def _structure_rows(graph: Graph) -> list[Row]:
    ours = structure(graph)
    out = []
    for key, (printed, where, quantity, says) in T.STRUCTURE.items():
        paper = tuple(printed) if isinstance(printed, tuple) else Figure.parse(printed)
        status, sentence = judge_value(paper, ours[key], elsewhere=_elsewhere(key))
        verdict = (status, f"the text: {says}; {sentence}")
        out.append(row("Structure, as the text states it", where, where, "fastnet", quantity,
                       fmt_count(printed) if isinstance(printed, tuple) else printed, fmt_count(ours[key]), verdict,
                       paper if isinstance(paper, tuple) else paper.value, ours[key],
                       numbers=len(printed) if isinstance(printed, tuple) else 1))
    return out


def _params_row(graph: Graph, g100: Graph) -> Row:
    fig = Figure.parse(T.COMPARISON["fastnet"][2])
    status, sentence = judge_value(fig, graph.params, hypotheses=param_hypotheses(graph, {100: g100}))
    other = ("also" if fig.holds(g100.params) else "not")
    sentence += f"; the table's one figure serves both data sets: the 100-class network's {g100.params:,} is {other} "\
                f"{fig.printed}"
    return row("Comparison table: parameters", "Comparisons", "COMPARISONS", "fastnet", "parameters (10-class head)",
               fig.printed, fmt_count(graph.params), (status, sentence), fig.value, graph.params)


def _time_row() -> Row:
    value, unit, device, dataset = T.TRAINING_TIME
    hours = Figure.parse(value)
    epochs = int(EPOCHS_TEXT)
    per = hours.value * 3600 / epochs
    why = (f"training time on {device}, {dataset} for {epochs} epochs (EXPERIMENT SETUP): about {per:.0f} s per "
           "epoch over 50,000 training images, forward, backward and update, with data augmentation; perfsim "
           "predicts inference, not training, so it makes no prediction")
    return row("Training time (not predicted)", "FASTNET (text)", "FASTNET", "fastnet", f"training time, {dataset}",
               f"approximately {value} {unit}", "-", ("not modelled", why), hours.value * 3600, None)


def analyse(*, results: Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Paper 003's published numbers beside perfsim's, each with its verdict and sentence."""
    from ..frontends.sources import ModelOptions, load_graph
    g = load_graph("fastnet", use_cache=use_cache).graph
    g100 = load_graph("fastnet", ModelOptions(num_classes=100), use_cache=use_cache).graph
    found = measured(results, ["fastnet"])
    c10, c100, _ = T.COMPARISON["fastnet"]
    acc = "Comparison table: accuracy"
    rows = ([_params_row(g, g100)] + _structure_rows(g)
            + [accuracy_row(acc, "Comparisons", "COMPARISONS", "fastnet", "cifar10", "top-1", c10 + "%", found),
               accuracy_row(acc, "Comparisons", "COMPARISONS", "fastnet", "cifar100", "top-1", c100 + "%", found)]
            + [_time_row()]
            + recipe_rows("Training recipe (EXPERIMENT SETUP)", "EXPERIMENT SETUP", "EXPERIMENT SETUP", "fastnet",
                          T.RECIPE, input_side=32)
            + recipe_word_rows("Training recipe (EXPERIMENT SETUP)", "EXPERIMENT SETUP", "EXPERIMENT SETUP", "fastnet",
                               T.RECIPE_WORDS))
    latency = {"predicted": False, "sentences": [
        f"The paper's one time is training on {T.TRAINING_TIME[2]} ('approximately {T.TRAINING_TIME[0]} "
        f"{T.TRAINING_TIME[1]}' for CIFAR-100); it prints no inference time on any device, though it calls FastNet "
        "'highly optimized for all CPU dependent devices': perfsim makes no latency comparison for this paper.",
        "perfsim validate fastnet measures the real module on this machine's CPU layer by layer against perfsim's "
        "prediction (docs/hardware.md)."]}
    others = ", ".join(f"{n} ({a}/{b}, {p})" for n, a, b, p in T.COMPARISON_NOT_MODELLED)
    left_out = [f"the comparison table's other networks, which perfsim does not model: {others}",
                "the text's repeat of the FastNet row ('93.98% on CIFAR10 and 70.81% on CIFAR100, with only 1.6M "
                "parameters')", "he_normal initialisation and the softmax loss (words; perfsim's model and recipe "
                "follow them, tests/test_fastnet.py)"]
    return assemble("fastnet", T.PAPER, T.TITLE, ["fastnet"], rows, latency, left_out,
                    results=str(results) if results is not None else None)
