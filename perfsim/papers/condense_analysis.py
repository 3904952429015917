"""Paper 000 against perfsim: ``perfsim paper condensenet`` (its baseline's row) and ``perfsim paper
condensenext`` (perfsim's reconstruction of the proposed network, docs/condensenet.md), as data.

The networks are perfsim's lowered zoo models, condensed as the papers count them. The model-size
hypotheses need the training form's state (its parameters and masks), which
:func:`perfsim.accuracy.config.training_state_counts` counts (it builds the network: torch).
Tables transcribed in :mod:`perfsim.papers.condense_tables`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ir.graph import Graph, OpKind
from . import condense_tables as T
from .counting import mac_hypotheses, param_hypotheses, shown_mb
from .measured import accuracy_row, measured
from .published import Bound, Figure, Hypothesis, Row, assemble, fmt_count, judge_claim, judge_value, row
from .training import hms, optimizer_state_per_param, recipe_rows, recipe_word_rows

__all__ = ["analyse_condensenet", "analyse_condensenext"]

LABEL = {"condensenet": "CondenseNet-86", "condensenext": "CondenseNeXt"}
TRAIN_IMAGES = 50_000  # CIFAR-10's training split (Sec. VI: "50,000 for training")


def _figure(name: str, column: int) -> Figure:
    cell = T.TABLE1[name][column]
    return Figure.parse(cell + "M" if column < 2 else cell)  # FLOPs and parameters are "(in millions)"


def _checkpoint(name: str) -> tuple[float, str, float, str]:
    """Bytes of a float32 training checkpoint of ``name``'s training form (its state and the optimizer's
    under perfsim's recipe), how they add up, and the same for the state alone (no optimizer)."""
    from ..accuracy.config import NetOptions, training_state_counts
    counts = training_state_counts(NetOptions(name, 10))
    slots, what = optimizer_state_per_param(name)
    params, buffers = counts["params"], counts["float_buffers"]
    floats = params * (1 + slots) + buffers
    state = (f"the training form's {params:,} parameters + {buffers:,} float buffers (pruning masks, BN statistics)")
    return (4.0 * floats, f"{state} + {slots} x {params:,} ({what}) = {floats:,} float32 values",
            4.0 * (params + buffers), f"{state} = {params + buffers:,} float32 values (no optimizer state)")


def _size_hypotheses(graph: Graph, name: str, paper_params: Figure) -> list[Hypothesis]:
    p = graph.params
    int8 = sum(layer.weight_bytes(8, 32, True) for layer in graph.layers)
    ckpt, how, state, state_how = _checkpoint(name)
    return [Hypothesis("float32 parameters read as MiB", 4.0 * p * 1e6 / 2**20,
                       f"{p:,} x 4 B = {4 * p / 2**20:.2f} MiB"),
            Hypothesis("the int8 deployable model", float(int8),
                       f"perfsim's model_size_bytes at 8-bit weights and 32-bit biases, BN folded: {int8:,} B"),
            Hypothesis("a float32 training checkpoint", ckpt, how),
            Hypothesis("the training form's state in float32", state, state_how),
            Hypothesis("the paper's own parameter count in float32", 4.0 * paper_params.value,
                       f"{paper_params.printed} x 4 B")]


def _count_rows(name: str, graph: Graph, bounds: dict[str, list[Bound]]) -> list[Row]:
    sec, table, where = "Table I: cost and size", "Table I", "Sec. IV-B"
    flops, params, size = _figure(name, 0), _figure(name, 1), _figure(name, 3)
    size_ours = 4.0 * graph.params
    return [
        row(sec, table, where, name, "FLOPs (perfsim: MACs)", flops.printed, fmt_count(graph.macs),
            judge_value(flops, graph.macs, hypotheses=mac_hypotheses(graph), bounds=bounds.get("macs", ())),
            flops.value, graph.macs),
        row(sec, table, where, name, "parameters", params.printed, fmt_count(graph.params),
            judge_value(params, graph.params, hypotheses=param_hypotheses(graph), bounds=bounds.get("params", ())),
            params.value, graph.params),
        row(sec, table, where, name, "trained model size (perfsim: float32 parameters)", size.printed,
            shown_mb(size_ours), judge_value(size, size_ours, fmt=shown_mb,
                                             hypotheses=_size_hypotheses(graph, name, params)),
            size.value, size_ours),
    ]


def _time_rows(name: str) -> list[Row]:
    """Table II: training times perfsim does not predict; the sentence checks them against each other."""
    total, per = Figure.parse(T.TABLE2[name][0]), Figure.parse(T.TABLE2[name][1])
    epochs = int(T.EPOCHS)
    lo, hi = epochs * (per.value - per.step / 2), epochs * (per.value + per.step / 2)
    fits = lo - total.step <= total.value <= hi + total.step
    check = (f"{epochs} x {per.printed} s = {epochs * per.value:,.0f} s = {hms(epochs * per.value)}, "
             + (f"consistent with the printed total {total.printed}" if fits else
                f"but the printed total {total.printed} = {total.value:,.0f} s is {total.value / epochs:.2f} s per "
                "epoch: the two columns disagree"))
    why = (f"training time on {T.DEVICE}, for {epochs} epochs over CIFAR-10's {TRAIN_IMAGES:,} training images "
           "(forward, backward, update; batch size and data pipeline not printed): perfsim predicts inference, "
           "not training, so it makes no prediction")
    sec, table, where = "Table II: training time (not predicted)", "Table II", "Sec. VI"
    return [row(sec, table, where, name, "total training time / time per epoch (s)",
                f"{total.printed} / {per.printed}", "-", ("not modelled", f"{why}; {check}"),
                (total.value, per.value), None, numbers=2)]


def _one_by_one_groups(graph: Graph) -> tuple[int, int, int]:
    """The learned group convolutions of a condensed CondenseNet: 1x1 convs with groups > 1 (layers,
    MACs, weights)."""
    layers = [la for la in graph.layers if la.kind is OpKind.CONV and la.kernel == (1, 1) and la.groups > 1]
    return len(layers), sum(la.macs for la in layers), sum(la.weight_elems for la in layers)


def _bounds(nxt: Graph, base: Graph) -> dict[str, list[Bound]]:
    """What the part the text leaves unchanged costs alone (Sec. IV-A replaces only the grouped 3x3
    convolution of the learned group convolution): a lower bound on any network the text describes."""
    n, macs, weights = _one_by_one_groups(nxt)
    bn, bmacs, bweights = _one_by_one_groups(base)
    same = (n, macs, weights) == (bn, bmacs, bweights)
    text = ("the text replaces only the 3x3 grouped convolution (Sec. IV-A) and keeps these layers"
            + (", which perfsim's CondenseNet-86 has too, with the same MACs and weights" if same else
               f" (perfsim's CondenseNet-86: {bn} layers, {bmacs:,} MACs, {bweights:,} weights)"))
    label = f"the {n} learned 1x1 group convolutions"
    return {"macs": [Bound(f"the MACs of {label}", macs, text)],
            "params": [Bound(f"the weights of {label}", weights, text)]}


def _preactivated(graph: Graph) -> tuple[int, int]:
    """Convs (the stem, which reads the image, left out) whose input comes from a ReLU6 of a BN
    output, through aliases and gathers only: (how many, of how many)."""
    ops = {op.name: op for op in graph.ops}
    convs = [op for op in graph.ops if op.kind is OpKind.CONV][1:]

    def producer(op):
        while op is not None and op.inputs:
            op = ops.get(op.inputs[0])
            if op is None or op.kind not in (OpKind.ALIAS, OpKind.GATHER):
                return op
        return None
    ok = 0
    for conv in convs:
        act = producer(conv)
        ok += act is not None and act.kind is OpKind.RELU6 and getattr(producer(act), "kind", None) is OpKind.BATCHNORM
    return ok, len(convs)


def _claim_rows(graph: Graph) -> list[Row]:
    sec, where = "Sec. IV: the architecture's rules", "Sec. IV"
    spatial = [la for la in graph.layers if la.kind is OpKind.CONV and la.kernel == (3, 3)][1:]
    dw = sum(la.groups == la.in_shape[1] == la.out_shape[1] for la in spatial)
    acts = [op.kind for op in graph.ops if op.kind in (OpKind.RELU, OpKind.RELU6, OpKind.CLAMP)]
    six = sum(k is OpKind.RELU6 for k in acts)
    pre, convs = _preactivated(graph)
    checks = (("cardinality", f"{dw} of {len(spatial)}", dw == len(spatial),
               f"{dw} of the {len(spatial)} 3x3 convs after the stem have groups = output channels (depthwise)"),
              ("relu6", f"{six} of {len(acts)}", six == len(acts), f"{six} of the {len(acts)} activations are ReLU6"),
              ("bn_before", f"{pre} of {convs}", pre == convs,
               f"{pre} of the {convs} convs after the stem read BN -> ReLU6 (pre-activation)"))
    return [row(sec, "Sec. IV (text)", where, "condensenext", T.SEC4_CLAIMS[key], "as stated", shown,
                judge_claim(T.SEC4_CLAIMS[key], holds, evidence), None, None, numbers=0)
            for key, shown, holds, evidence in checks]


def _input_row(graph: Graph) -> Row:
    side = graph.input_shape[-1]
    fig = Figure.parse(T.SEC6_INPUT)
    return row("Sec. VI: input and training recipe", "Sec. VI (text)", "Sec. VI", graph.name,
               "input image side (CIFAR-10, single crop)", f"{T.SEC6_INPUT}x{T.SEC6_INPUT}",
               "x".join(map(str, graph.input_shape[1:])), judge_value(fig, side), fig.value, side)


def _lowered(names: tuple[str, ...], use_cache: bool) -> dict[str, Graph]:
    from ..frontends.sources import load_graph
    return {n: load_graph(n, use_cache=use_cache).graph for n in names}


def _latency(names: tuple[str, ...], graphs: dict[str, Graph]) -> dict[str, Any]:
    out = [f"Table II prints training times on {T.DEVICE}; the paper prints no inference time, so there is no "
           "device latency to predict: perfsim makes no latency comparison for this paper (a V100 profile would "
           "only give an inference time nobody measured)."]
    if len(names) == 2:
        a, b = names
        times = Figure.parse(T.TABLE2[a][1]).value / Figure.parse(T.TABLE2[b][1]).value
        flops = _figure(a, 0).value / _figure(b, 0).value
        ours = graphs[a].macs / graphs[b].macs
        out.append(f"For the record: Table II's per-epoch times are in the ratio {times:.3f} ({LABEL[a]} to "
                   f"{LABEL[b]}), Table I's FLOPs in the ratio {flops:.3f}; perfsim's MACs for its networks are in "
                   f"the ratio {ours:.3f}.")
    return {"predicted": False, "sentences": out}


def _report(name: str, names: tuple[str, ...], rows: list[Row], graphs: dict[str, Graph], results, left_out):
    return assemble(name, T.PAPER, T.TITLE, list(names), rows, _latency(names, graphs), left_out,
                    results=str(results) if results is not None else None)


def analyse_condensenet(*, results: Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Table I and II's CondenseNet-86 row beside perfsim's condensed CondenseNet-86."""
    graphs = _lowered(("condensenet",), use_cache)
    g = graphs["condensenet"]
    found = measured(results, ["condensenet"])
    rows = (_count_rows("condensenet", g, {})
            + [accuracy_row("Table I: accuracy", "Table I", "Sec. IV-B", "condensenet", "cifar10", "top-1",
                            T.TABLE1["condensenet"][2], found)]
            + _time_rows("condensenet")
            + recipe_rows("Training recipe (Tables I-II: 200 epochs each)", "Table I caption", "Sec. IV-B",
                          "condensenet", (("epochs", T.EPOCHS),), input_side=32))
    left_out = ["the paper prints nothing else about CondenseNet-86 (its structure is ShichenLiu/CondenseNet's; "
                "docs/condensenet.md)", "Sec. II-III name DenseNet, ResNet, MobileNet and Xception without numbers"]
    return _report("condensenet", ("condensenet",), rows, graphs, results, left_out)


def analyse_condensenext(*, results: Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Table I and II's CondenseNeXt row, and the text's rules, beside perfsim's reconstruction."""
    graphs = _lowered(("condensenext", "condensenet"), use_cache)
    g = graphs["condensenext"]
    found = measured(results, ["condensenext"])
    rows = (_count_rows("condensenext", g, _bounds(g, graphs["condensenet"]))
            + [accuracy_row("Table I: accuracy", "Table I", "Sec. IV-B", "condensenext", "cifar10", "top-1",
                            T.TABLE1["condensenext"][2], found)]
            + _time_rows("condensenext") + _claim_rows(g) + [_input_row(g)]
            + recipe_rows("Sec. VI: input and training recipe", "Sec. VI (text)", "Sec. VI", "condensenext",
                          T.SEC6_RECIPE, input_side=32)
            + recipe_word_rows("Sec. VI: input and training recipe", "Sec. VI (text)", "Sec. VI", "condensenext",
                               T.SEC6_RECIPE_WORDS))
    left_out = ["values lost from perfsim's copy of the text: the group count (Sec. IV-A), the pruning "
                "hyper-parameter (Sec. IV-B; perfsim uses 4, docs/condensenet.md), the accuracy gain of ReLU6 "
                "(Sec. IV-C) and the top-1 in Sec. VI's sentence", "the abstract's 'less than 3.0 MB' restates "
                "Table I's 2.9 MB", "dropout 0.1 (Sec. VI) is built into perfsim's training form "
                "(models/condensenext.py) and is the identity in the condensed network compared here",
                "Sec. V's software versions and Sec. VI's data set description (60,000 images, 10 classes)"]
    return _report("condensenext", ("condensenext", "condensenet"), rows, graphs, results, left_out)
