"""Paper 002 (clcNet) against perfsim: every number ``perfsim paper clcnet`` prints, as data.

The networks are perfsim's lowered zoo models (``clcnet_a``, ``clcnet_b``, ``clcnet_ap`` and the
baseline ``mobilenet_v1``); their structure is read from the op graph by explicit fields (kernel,
groups, stride, channels) and the channel interlace from the graph's shapes, never from names.
Tables transcribed in :mod:`perfsim.papers.clcnet_tables`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ir.graph import Graph, Layer, OpKind
from . import clcnet_tables as T
from .clcnet_design import GroupedConv, Interlace, clc_groups, has_fcrf
from .counting import mac_hypotheses, param_hypotheses, reduction_hypotheses
from .measured import Measured, accuracy_row, measured
from .published import Figure, Hypothesis, Row, assemble, fmt_count, judge_claim, judge_value, rounded_percent, row
from .training import recipe_rows

__all__ = ["NETWORKS", "Block", "structure", "analyse"]

NETWORKS = ("clcnet_a", "clcnet_b", "clcnet_ap", "mobilenet_v1")
LABEL = {"clcnet_a": "clcNet-A", "clcnet_b": "clcNet-B", "clcnet_ap": "clcNet-Ap", "mobilenet_v1": "MobileNet-224"}


@dataclass(frozen=True)
class Block:
    """A CLC block as lowered: the IGC (3x3) layer and the GC (1x1) layer after it."""

    m: int  # input channels
    mid: int  # IGC output channels (the paper's L)
    n: int  # output channels
    stride: int
    g1: int
    g2: int
    interlace: int | None  # groups of the channel interlace between them, None if there is none

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        """As Table 2 prints a block: input, output, stride, g1, g2."""
        return (self.m, self.n, self.stride, self.g1, self.g2)

    def fcrf(self) -> bool:
        stages = [GroupedConv(self.m, self.mid, self.g1)]
        if self.interlace:
            stages.append(Interlace(self.interlace))
        return has_fcrf(stages + [GroupedConv(self.mid, self.n, self.g2)])


def _main_op(graph: Graph, layer: Layer):
    ops = {op.name: op for op in graph.ops}
    return next(ops[name] for name in layer.ops if ops[name].kind is OpKind.CONV)


def _interlace(graph: Graph, igc: Layer, gc: Layer) -> int | None:
    """The groups of a channel interlace on the path from the IGC to the GC: an alias that swaps
    a (1, g, s, h, w) view's two channel axes (g != s) is a shuffle with g groups."""
    ops = {op.name: op for op in graph.ops}
    start, op = _main_op(graph, igc).name, _main_op(graph, gc)
    while op.inputs and op.inputs[0] in ops and op.inputs[0] != start:
        op = ops[op.inputs[0]]
        shape_in = op.in_shapes[0] if op.in_shapes else ()
        if op.kind is OpKind.ALIAS and len(shape_in) == 5 and shape_in[1] != shape_in[2] \
                and tuple(op.out_shape) == (shape_in[0], shape_in[2], shape_in[1], *shape_in[3:]):
            return shape_in[1]
    return None


def structure(graph: Graph) -> tuple[Layer, list[Block], Layer]:
    """The stem conv, the CLC blocks and the classifier of a lowered clcNet."""
    convs = [la for la in graph.layers if la.kind is OpKind.CONV]
    blocks = []
    for igc, gc in zip(convs[1::2], convs[2::2]):
        if igc.kernel != (3, 3) or gc.kernel != (1, 1):
            raise RuntimeError(f"{graph.name}: expected IGC 3x3 then GC 1x1, found {igc.op} {igc.kernel} "
                               f"then {gc.op} {gc.kernel}")
        blocks.append(Block(igc.in_shape[1], igc.out_shape[1], gc.out_shape[1], igc.stride[0], igc.groups,
                            gc.groups, _interlace(graph, igc, gc)))
    fc = [la for la in graph.layers if la.kind is OpKind.LINEAR][-1]
    return convs[0], blocks, fc


def _runs(blocks: list[Block]) -> list[tuple[tuple[int, ...], int]]:
    """Consecutive blocks of one Table 2 row: (its key, how many)."""
    out: list[tuple[tuple[int, ...], int]] = []
    for b in blocks:
        if out and out[-1][0] == b.key:
            out[-1] = (b.key, out[-1][1] + 1)
        else:
            out.append((b.key, 1))
    return out


def _table1_rows() -> list[Row]:
    rows = []
    for m, mid, n, g1, g2 in T.TABLE1:
        got = clc_groups(m, mid, n)
        a1 = clc_groups(m, mid, n, 1)
        hyps = [Hypothesis("g2 fixed to 2 (Sec. 4.1)", (clc_groups(m, mid, n, g2=2).g1, 2),
                           f"Eq. 2 with g2 = 2 for M={m}, L={mid}, N={n}"),
                Hypothesis("a 1x1 IGC (A = 1)", (a1.g1, a1.g2), f"Eq. 2 with A = 1 for M={m}, L={mid}, N={n}")]
        verdict = judge_value((g1, g2), (got.g1, got.g2), hypotheses=hyps)
        rows.append(row("Table 1: Eq. 2's minimiser", "Table 1", "Sec. 3.3", "", f"(g1, g2) for M={m}, L={mid}, N={n}",
                        f"({g1}, {g2})", f"({got.g1}, {got.g2})",
                        (verdict[0], verdict[1] + f"; its cost C = {got.cost:,} per output location"),
                        (g1, g2), (got.g1, got.g2), numbers=2))
    return rows


def _table2_rows(graph: Graph) -> list[Row]:
    stem, blocks, fc = structure(graph)
    runs = _runs(blocks)
    sec, where = "Table 2: structure (clcNet-A lowered)", "Sec. 4.1"
    paper_stem = T.TABLE2[0][1:4]
    ours_stem = (stem.in_shape[1], stem.out_shape[1], stem.stride[0])
    out = [row(sec, "Table 2", where, graph.name, "stem conv (input, output, stride)", fmt_count(paper_stem),
               fmt_count(ours_stem), judge_value(paper_stem, ours_stem), paper_stem, ours_stem, numbers=3)]
    clc = [r for r in T.TABLE2 if r[0] == "CLC block"]
    for i, r in enumerate(clc):
        paper = tuple(r[1:6])
        ours = runs[i][0] if i < len(runs) else ()
        label = f"CLC block{' x ' + r[6] if r[6] else ''} (input, output, stride, g1, g2)"
        out.append(row(sec, "Table 2", where, graph.name, label, fmt_count(paper), fmt_count(ours),
                       judge_value(paper, ours), paper, ours, numbers=5))
    paper_fc = T.TABLE2[-1][1:3]
    ours_fc = (fc.in_shape[-1], fc.out_shape[-1])
    out.append(row(sec, "Table 2", where, graph.name, "FC layer (input, output)", fmt_count(paper_fc),
                   fmt_count(ours_fc), judge_value(paper_fc, ours_fc), paper_fc, ours_fc, numbers=2))
    return out


def _design_rows(graphs: dict[str, Graph]) -> list[Row]:
    """Table 2's g1 from Eq. 2 with g2 fixed, and Sec. 4.1's rules, on the lowered networks."""
    sec = "Sec. 4.1: design rules"
    out = []
    g2 = T.SEC41["g2"]
    for r in (r for r in T.TABLE2 if r[0] == "CLC block"):
        m, n, g1 = r[1], r[2], r[4]
        ours = clc_groups(m, m, n, g2=g2).g1
        free = clc_groups(m, m, n)
        verdict = judge_value(g1, ours, hypotheses=[Hypothesis("g2 left free", free.g1,
                                                               f"Eq. 2 over both groups gives ({free.g1}, {free.g2})")])
        out.append(row(sec, "Table 2", "Sec. 4.1", "", f"g1 of the {m}->{n} block = Eq. 2's minimiser at g2={g2}, L=M",
                       str(g1), str(ours), verdict, g1, ours, numbers=0))  # Table 2's g1, counted there
    blocks = [b for name in ("clcnet_a", "clcnet_b") for b in structure(graphs[name])[1]]
    g2s = tuple(sorted({b.g2 for b in blocks}))
    crf = tuple(sorted({b.m // b.g1 for b in blocks}))
    for quantity, paper, ours in (("g2 of every CLC block (clcNet-A and -B)", g2, g2s),
                                  ("IGC channel receptive field size M/g1 (clcNet-A and -B)", T.SEC41["igc_crf_size"],
                                   crf)):
        shown = ours[0] if len(ours) == 1 else ours
        verdict = judge_value(paper, shown)
        out.append(row(sec, "Sec. 4.1 (text)", "Sec. 4.1", "clcnet_a, clcnet_b", quantity, str(paper), fmt_count(shown),
                       (verdict[0], verdict[1] + f" over all {len(blocks)} blocks"), paper, shown))
    same = sum(b.mid == b.m for b in blocks)
    out.append(row(sec, "Sec. 4.1 (text)", "Sec. 4.1", "clcnet_a, clcnet_b", "L = M for every CLC block", "L = M",
                   f"{same} of {len(blocks)}", judge_claim("L = M", same == len(blocks),
                                                           f"the IGC keeps its input channels in {same} of "
                                                           f"{len(blocks)} lowered blocks"), None, same, numbers=0))
    return out


def _config_rows(graphs: dict[str, Graph]) -> list[Row]:
    rep = [i for i, r in enumerate(r for r in T.TABLE2 if r[0] == "CLC block") if r[6]]
    out = []
    for name, (config, _, _) in T.TABLE3.items():
        runs = _runs(structure(graphs[name])[1])
        ours = tuple(runs[i][1] if i < len(runs) else 0 for i in rep)
        out.append(row("Table 3: configurations", "Table 3", "Sec. 5.1", name, "(a, b, c, d) block repetitions",
                       fmt_count(config), fmt_count(ours), judge_value(tuple(config), ours), tuple(config), ours,
                       numbers=4))
    return out


def _cost_rows(graphs: dict[str, Graph]) -> list[Row]:
    out = []
    for name, (_, macs, params) in T.TABLE5.items():
        g = graphs[name]
        for quantity, printed, ours, hyps in (("mult-adds (MACs)", macs, g.macs, mac_hypotheses(g)),
                                              ("parameters", params, g.params, param_hypotheses(g))):
            fig = Figure.parse(printed)
            out.append(row("Table 5: cost", "Table 5", "Sec. 5.3", name, quantity, printed, fmt_count(ours),
                           judge_value(fig, ours, hypotheses=hyps), fig.value, ours))
    return out


def _reduction_rows(graphs: dict[str, Graph]) -> list[Row]:
    out = []
    column = {"mult-adds": 1, "parameters": 2}
    for new, old, what, printed in T.SEC53_REDUCTIONS:
        attr = "macs" if what == "mult-adds" else "params"
        ours = rounded_percent(getattr(graphs[new], attr), getattr(graphs[old], attr))
        pn, po = T.TABLE5[new][column[what]], T.TABLE5[old][column[what]]
        hyps = reduction_hypotheses(Figure.parse(pn).value, Figure.parse(po).value, pn, po)
        fig = Figure.parse(printed)
        verdict = judge_value(fig, ours, fmt=lambda x: f"{x:.2f} %", hypotheses=hyps)
        out.append(row("Sec. 5.3: reductions against MobileNet", "Sec. 5.3 (text)", "Sec. 5.3", new,
                       f"{what} reduction vs {LABEL[old]}", printed, f"{ours:.2f} %", verdict, fig.value, ours))
    return out


def _ablation_rows(graphs: dict[str, Graph]) -> list[Row]:
    a, ap = graphs["clcnet_a"], graphs["clcnet_ap"]
    ba, bp = structure(a)[1], structure(ap)[1]
    ratio = ap.macs / a.macs
    shuffles = sum(b.interlace is not None for b in ba) - sum(b.interlace is not None for b in bp)
    cost = judge_claim(T.SEC52_CLAIMS["cost"], abs(ratio - 1) < 0.05,
                       f"clcNet-Ap has {ap.macs:,} MACs and {ap.params:,} parameters, clcNet-A {a.macs:,} and "
                       f"{a.params:,} (ratio {ratio:.4f}); they differ by {shuffles} channel interlaces, which "
                       "perfsim lowers to aliases (no MACs, no row)")
    fa, fp = sum(b.fcrf() for b in ba), sum(b.fcrf() for b in bp)
    sec = "Sec. 5.2 and Table 4: clcNet-Ap"
    fcrf_a = judge_claim("every block has FCRF (g1*g2 <= L, Eq. 1)", fa == len(ba),
                         f"{fa} of {len(ba)} lowered clcNet-A blocks have FCRF (the channel dependency graph of "
                         "each block's groups and interlace)")
    fcrf_ap = judge_claim(T.SEC52_CLAIMS["fcrf"], fp == 0,
                          f"{fp} of {len(bp)} lowered clcNet-Ap blocks have FCRF, against {fa} of {len(ba)} in clcNet-A")
    return [row(sec, "Sec. 5.2 (text)", "Sec. 5.2", "clcnet_ap", "cost against clcNet-A", "almost the same",
                f"{ratio:.4f}x", cost, None, ratio, numbers=0),
            row(sec, "Sec. 3.3 and Table 2", "Sec. 3.3", "clcnet_a", "CLC blocks with FCRF", "all",
                f"{fa} of {len(ba)}", fcrf_a, None, fa, numbers=0),
            row(sec, "Sec. 5.2 (text)", "Sec. 5.2", "clcnet_ap", "CLC blocks with FCRF", "none",
                f"{fp} of {len(bp)}", fcrf_ap, None, fp, numbers=0)]


def _accuracy_rows(found: Measured) -> list[Row]:
    sec = "Accuracy on ImageNet-1K (Tables 3-5)"
    out = []
    for name, (_, top1, top5) in T.TABLE3.items():
        out += [accuracy_row(sec, "Table 3", "Sec. 5.1", name, "imagenet", "top-1", top1, found),
                accuracy_row(sec, "Table 3", "Sec. 5.1", name, "imagenet", "top-5", top5, found)]
    top1, top5 = T.TABLE4["clcnet_ap"]
    out += [accuracy_row(sec, "Table 4", "Sec. 5.2", "clcnet_ap", "imagenet", "top-1", top1, found),
            accuracy_row(sec, "Table 4", "Sec. 5.2", "clcnet_ap", "imagenet", "top-5", top5, found),
            accuracy_row(sec, "Table 5", "Sec. 5.3", "mobilenet_v1", "imagenet", "top-1", T.TABLE5["mobilenet_v1"][0],
                         found)]
    out.append(_gain_row(sec, found))
    return out


def _gain_row(sec: str, found: Measured) -> Row:
    new, old, printed = T.SEC53_TOP1_GAIN
    pn, po = T.TABLE5[new][0], T.TABLE5[old][0]
    own = Figure.parse(pn).value - Figure.parse(po).value
    fig = Figure.parse(printed)
    check = (f"the paper's own Table 5 gives {pn} - {po} = {own:.1f} points"
             + ("" if fig.holds(own) else f", not {printed}"))
    a, b = found.get((new, "imagenet")), found.get((old, "imagenet"))
    quantity = f"top-1 gain over {LABEL[old]}, imagenet"
    if a is None or b is None:
        return row(sec, "Sec. 5.3 (text)", "Sec. 5.3", new, quantity, printed, "not measured",
                   ("not measured", f"not measured (needs both networks evaluated on ImageNet); {check}"), fig.value)
    gain = 100 * (a[0] - b[0])
    return row(sec, "Sec. 5.3 (text)", "Sec. 5.3", new, quantity, printed, f"{gain:.2f} points",
               ("measured", f"measured {gain:.2f} points ({a[2]}, {b[2]}); {check}"), fig.value, gain)


def _lowered(use_cache: bool) -> dict[str, Graph]:
    from ..frontends.sources import load_graph
    return {name: load_graph(name, use_cache=use_cache).graph for name in NETWORKS}


def analyse(*, results: Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Paper 002's published numbers beside perfsim's, each with its verdict and sentence."""
    graphs = _lowered(use_cache)
    found = measured(results, list(NETWORKS))
    rows = (_table1_rows() + _table2_rows(graphs["clcnet_a"]) + _design_rows(graphs) + _config_rows(graphs)
            + _cost_rows(graphs) + _reduction_rows(graphs) + _ablation_rows(graphs) + _accuracy_rows(found)
            + recipe_rows("Training recipe (Sec. 5, ImageNet)", "Sec. 5 (text)", "Sec. 5", "clcnet_a",
                          T.SEC5_RECIPE, input_side=32))
    latency = {"predicted": False, "sentences": [
        T.WITHHELD + ": perfsim makes no latency comparison for this paper.",
        "perfsim run clcnet_a --profile PROFILE predicts the network on any profile; the report does not pick a "
        "device the paper names none of."]}
    not_modelled = "; ".join(f"{n} ({a}, {m}, {p})" for n, a, m, p in T.TABLE5_NOT_MODELLED)
    left_out = [f"Table 5's rows for networks perfsim does not model: {not_modelled}, and Sec. 5.3's comparisons "
                "with ShuffleNet (19 %, 18 %, 0.7 points)",
                "Tables 4 and 5 repeat Table 3's clcNet-A and clcNet-B accuracies; each is shown once",
                "the introduction repeats Sec. 5.3's 25 % and 1.0 %; Figure 7 (training curves) prints no table"]
    return assemble("clcnet", T.PAPER, T.TITLE, list(NETWORKS), rows, latency, left_out,
                    results=str(results) if results is not None else None)
