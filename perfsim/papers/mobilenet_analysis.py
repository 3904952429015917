"""Seed paper 001 against perfsim: the facts ``perfsim paper mobilenet`` prints, as data.

(a) Table 4's compute column beside perfsim's matrix time on edge_1mb for the 27 conv
layers; (b) Table 3's accounting replayed (``memory_policy: paper``): the first flush and
the total latency; (c) what explains each difference, with the numbers that show it.
"""
from __future__ import annotations

from typing import Any

from ..ir.graph import Graph, OpKind
from . import mobilenet_cifar as pm


def conv_rows(graph: Graph) -> list[int]:
    """Indices of the conv layers, by their explicit kind; the paper's tables hold exactly
    these, and they come first (ahead of the pool and the classifier)."""
    conv = [i for i, layer in enumerate(graph.layers) if layer.kind is OpKind.CONV]
    n_rows = len(pm.TABLE4)
    if conv != list(range(n_rows)):
        raise RuntimeError(f"the mobilenet registry model has {len(conv)} conv layers (at rows {conv[:3]}...); "
                           f"the paper's tables have {n_rows}, first")
    return conv


def _first_flush(result, conv: list[int]) -> int | None:
    return next((k + 1 for k, i in enumerate(conv) if result.rows[i].plan == "paper-flush"), None)


def _replay(base, live, replay, replay_1bit, conv: list[int]) -> dict[str, Any]:
    """(b) the Table 3 accounting replayed with true shapes and the profile's bits."""
    n_rows = len(pm.TABLE4)
    flush = _first_flush(replay, conv)
    paper_sum = sum(t[2] for t in pm.TABLE4)
    gap = pm.TABLE4_PRINTED_TOTAL_S - paper_sum
    gap_row = min(range(n_rows), key=lambda k: abs(pm.TABLE4[k][2] - gap)) + 1
    gap_is_row = abs(pm.TABLE4[gap_row - 1][2] - gap) <= 1e-3 * abs(gap)
    paper_mem = [t[2] / 8 for t in pm.TABLE3]  # bits -> bytes
    paper_flush = pm.TABLE3_FIRST_FLUSH_ROW
    return {
        "profile": replay.profile.name + "+memory_policy=paper",
        "sram_bytes": base.memory.sram_bytes,
        "weight_bits": base.formats.weight_bits,
        "bias_bits": base.formats.bias_bits,
        "first_flush_row": flush,
        "first_flush_layer": live.rows[conv[flush - 1]].layer if flush else None,
        "first_flush_total_bytes": replay.rows[conv[flush - 1]].sram_used_bytes if flush else None,
        "paper_first_flush_row": paper_flush,
        "paper_first_flush_total_bytes": paper_mem[paper_flush - 1],
        "paper_total_before_flush_bytes": paper_mem[paper_flush - 2],
        "first_flush_row_1bit_weights": _first_flush(replay_1bit, conv),
        "peak_total_1bit_weights_bytes": max(replay_1bit.rows[i].sram_used_bytes for i in conv),
        "conv_latency_s": sum(replay.rows[i].t_total_s for i in conv),
        "latency_s": replay.latency_s,
        "paper_printed_total_s": pm.TABLE4_PRINTED_TOTAL_S,
        "paper_rows_sum_s": paper_sum,
        "paper_total_gap_s": gap,
        "paper_total_gap_row": gap_row if gap_is_row else None,
    }


def _channels(layer) -> str:
    return f"{layer.in_shape[1]}->{layer.out_shape[1]}"


def _at_input_size(graph: Graph, conv: list[int], c: dict) -> bool:
    """A Table 4 row off from perfsim by exactly the layer's input-to-output area ratio: costed at its input size."""
    layer = graph.layers[conv[c["row"] - 1]]
    area = (layer.in_shape[2] * layer.in_shape[3]) / (layer.out_shape[2] * layer.out_shape[3])
    return pm._sig(c["paper_s"] / c["perfsim_s"]) == pm._sig(area)


def _compute_sentence(graph: Graph, conv: list[int], compute: dict, base) -> str:
    """Why each differing Table 4 compute row differs: the ratio to perfsim, against the layer's
    input-to-output area ratio (a row costed at its input size is off by exactly that)."""
    n_rows = len(conv)
    parts = []
    for c in compute["rows"]:
        if c["match"]:
            continue
        layer = graph.layers[conv[c["row"] - 1]]
        ratio = c["paper_s"] / c["perfsim_s"]
        why = (f"the layer's input-to-output area ratio ({layer.in_shape[2]}x{layer.in_shape[3]} -> "
               f"{layer.out_shape[2]}x{layer.out_shape[3]}): costed at its input size"
               if _at_input_size(graph, conv, c) else "no ratio of the layer's sizes: unexplained")
        parts.append(f"row {c['row']} ({layer.op}, stride {layer.stride[0]}) is {ratio:.4g}x perfsim's, {why}")
    return (f"Table 4's compute time is 2*MACs / {base.matrix.flops / 1e12:g} TFLOPS: {compute['matching_rows']} of "
            f"{n_rows} rows agree to 4 significant figures" + ("; " + "; ".join(parts) if parts else ""))


def _paper_weight_bits(graph: Graph, conv: list[int], paper_flush: int) -> tuple[float, int]:
    """Table 3's bits per weight (data moved / 2 / the layer's weights), the most common value, and on
    how many rows (the flush row and the first row, which moves the input too, left out)."""
    from collections import Counter
    ratios = Counter(pm.TABLE3[k][3] / (2 * graph.layers[i].weight_elems)
                     for k, i in enumerate(conv) if k > 0 and k + 1 != paper_flush)
    bits, count = ratios.most_common(1)[0]
    return bits, count


def _moved_sentence(graph: Graph, conv: list[int], paper_flush: int, bits: float) -> str:
    """The rows where Table 3 moves another weight count than the layer's; which layer has that count."""
    weights = [graph.layers[i].weight_elems for i in conv]
    parts = []
    for k in range(1, len(conv)):
        if k + 1 == paper_flush or pm.TABLE3[k][3] == 2 * bits * weights[k]:
            continue
        moved = int(pm.TABLE3[k][3] / (2 * bits))
        layer = graph.layers[conv[k]]
        same = [j + 1 for j, w in enumerate(weights) if w == moved]
        twin = (f": the count of row {same[0]} ({graph.layers[conv[same[0] - 1]].op} "
                f"{_channels(graph.layers[conv[same[0] - 1]])})" if same else "")
        parts.append(f"row {k + 1} moves 2 x {moved:,} weights for a {layer.op} {_channels(layer)} layer of "
                     f"{weights[k]:,}{twin}")
    return ("Table 3 moves 2 x each layer's weights except at " + "; ".join(parts)) if parts else \
        "Table 3 moves 2 x each layer's weights at every row but the flush"


def _limit_sentence(r: dict, base) -> str:
    """Which SRAM limit Table 3's first flush is consistent with: 10^6 B, 2^20 B, or neither."""
    flush = r["paper_first_flush_row"]
    before, at = r["paper_total_before_flush_bytes"], r["paper_first_flush_total_bytes"]
    fits = {name: before <= limit < at for name, limit in (("10^6 B (1 MB)", 10**6), ("2^20 B (1 MiB)", 2**20))}
    agree = [name for name, ok in fits.items() if ok]
    return (f"Table 3's running total is {before:,.0f} B at row {flush - 1} and {at:,.0f} B at row {flush}: "
            f"its flush at row {flush} fits a limit of " + (" or ".join(agree) if agree else "neither 10^6 B nor 2^20 B")
            + f"; edge_1mb's sram_bytes is {base.memory.sram_bytes:,} B")


def _rules_sentence(graph: Graph, conv: list[int], live, r: dict) -> str:
    """What the tables leave out, read from them: read-back after the flush, the output write, other layers."""
    flush = r["paper_first_flush_row"]
    after = pm.TABLE3[flush][3] if flush < len(conv) else None
    read_back = after is not None and after > 2 * graph.layers[conv[flush]].weight_elems
    others = [layer.op for k, layer in enumerate(graph.layers) if k not in set(conv)]
    return (f"after Table 3's flush the next row moves {after:,} bits "
            + ("(more than its weights: a read-back)" if read_back else "(its weights only: nothing is read back)")
            + f"; the {len(others)} layers after the convs ({', '.join(others)}) are in no table; the liveness "
            f"policy reads back, writes the output and runs them: edge_1mb, liveness: {live.latency_s:.6g} s, peak "
            f"SRAM {live.summary['peak_sram_bytes']:,} B, {live.summary['spill_bytes']:,} B spilled")


def _differences(graph: Graph, base, live, conv: list[int], compute: dict, r: dict) -> list[str]:
    """(c) the known differences, each sentence computed from the tables and the simulations."""
    n_rows = len(pm.TABLE4)
    paper_flush, flush, flush_1bit = r["paper_first_flush_row"], r["first_flush_row"], r["first_flush_row_1bit_weights"]
    true_out_bits = [live.rows[i].out_bytes * 8 for i in conv]  # 8-bit activations, as the paper's
    shape_rows = [k + 1 for k in range(n_rows) if pm.TABLE3[k][1] != true_out_bits[k]]
    bits, count = _paper_weight_bits(graph, conv, paper_flush)
    gap, gap_row = r["paper_total_gap_s"], r["paper_total_gap_row"]
    return [
        _compute_sentence(graph, conv, compute, base),
        f"Table 3 counts each weight as {bits:g} bit ({count} of {n_rows - 2} rows move exactly 2 x {bits:g} bit per "
        f"weight, in and out); the replay stores weights at {base.formats.weight_bits} bits and folded-BN biases at "
        f"{base.formats.bias_bits} bits, so its running total passes {base.memory.sram_bytes:,} B at row {flush}, "
        + (f"not row {paper_flush}" if flush != paper_flush else "as the paper's does"),
        f"with {bits:g}-bit weights and true shapes the running total peaks at "
        f"{r['peak_total_1bit_weights_bytes']:,} B and "
        + ("never flushes" if flush_1bit is None else f"first flushes at row {flush_1bit}")
        + "; Table 3's output sizes differ from the true ones at rows "
        + ", ".join(f"{k} ({pm.TABLE3[k - 1][1]:,} output bits, true {true_out_bits[k - 1]:,})" for k in shape_rows),
        _moved_sentence(graph, conv, paper_flush, bits),
        _limit_sentence(r, base),
        _rules_sentence(graph, conv, live, r),
        f"Table 4's printed total {pm.TABLE4_PRINTED_TOTAL_S:.9f} s is "
        + ("" if abs(gap) > 0 else "exactly ") + f"{'not ' if abs(gap) > 0 else ''}the sum of its rows "
        f"({r['paper_rows_sum_s']:.9f} s)" + (f": the difference, {gap:.6g} s, "
                                             + (f"equals row {gap_row}'s time" if gap_row is not None
                                                else "matches no single row") if abs(gap) > 0 else ""),
    ]


def _verdict(compute: dict, r: dict, live, n_rows: int) -> list[str]:
    """The reproduction in three sentences, from the numbers."""
    explained = compute["input_size_rows"]
    unexplained = [x for x in compute["differing_rows"] if x not in explained]
    s1 = (f"perfsim reproduces Table 4's compute column on {compute['matching_rows']} of {n_rows} rows to 4 "
          f"significant figures" + (f"; rows {', '.join(map(str, explained))} are the paper's own costing at the "
                                    "input size" if explained else "")
          + (f", rows {', '.join(map(str, unexplained))} stay unexplained" if unexplained else "") + ".")
    flush, paper_flush, f1 = r["first_flush_row"], r["paper_first_flush_row"], r["first_flush_row_1bit_weights"]
    s2 = (f"Replaying Table 3's accounting with true shapes first flushes at row {flush} (paper: row {paper_flush}); "
          f"with the paper's 1-bit weights it " + ("never flushes" if f1 is None else f"flushes at row {f1}")
          + (", so the paper's flush comes from its size errors." if f1 != paper_flush else
             ", as the paper's does."))
    ratio = live.latency_s / r["paper_printed_total_s"]
    spilled = live.summary["spill_bytes"]
    s3 = (f"The replay's {n_rows} conv rows take {r['conv_latency_s']:.6g} s against the paper's printed "
          f"{r['paper_printed_total_s']:.6g} s, while the liveness policy, which keeps tensors on chip and "
          + (f"spills {spilled:,} B" if spilled else "spills nothing here")
          + f", runs the whole network in {live.latency_s:.6g} s ({ratio:.2f}x the paper's total).")
    return [s1, s2, s3]


def _rows(graph: Graph, conv: list[int], live, replay) -> list[dict[str, Any]]:
    """Row by row: Tables 3 and 4 beside perfsim under both memory policies."""
    out = []
    for k, i in enumerate(conv):
        t3, t4, lr, rr = pm.TABLE3[k], pm.TABLE4[k], live.rows[i], replay.rows[i]
        out.append({
            "row": k + 1, "layer": lr.layer, "op": lr.op, "out_shape": lr.out_shape,
            "paper_out_bits": t3[1], "true_out_bits": lr.out_bytes * 8, "paper_memory_bits": t3[2],
            "paper_moved_bits": t3[3], "paper_data_s": t4[0], "paper_compute_s": t4[1], "paper_total_s": t4[2],
            "replay_running_total_bytes": rr.sram_used_bytes,
            "replay_moved_bytes": rr.dram_read_bytes + rr.dram_write_bytes, "replay_flush": rr.plan == "paper-flush",
            "replay_t_data_s": rr.t_data_s, "replay_t_total_s": rr.t_total_s,
            "perfsim_t_matrix_s": lr.t_matrix_s, "liveness_dram_read_bytes": lr.dram_read_bytes,
            "liveness_dram_write_bytes": lr.dram_write_bytes, "liveness_spill_bytes": lr.spill_bytes,
            "liveness_t_data_s": lr.t_data_s, "liveness_t_total_s": lr.t_total_s, "liveness_bound": lr.bound.value,
        })
    return out


def analyse(*, use_cache: bool = True) -> dict[str, Any]:
    """The comparison of seed paper 001's Tables 3 and 4 with perfsim, as data."""
    from ..frontends.sources import load_graph
    from ..hardware.loader import load_profile
    from ..report.run import simulator

    simulate = simulator()
    graph = load_graph("mobilenet", use_cache=use_cache).graph
    conv = conv_rows(graph)
    base = load_profile("edge_1mb")
    live = simulate(graph, base, model="mobilenet")
    replay = simulate(graph, load_profile(base, memory_policy="paper"), model="mobilenet")
    replay_1bit = simulate(graph, load_profile(base, memory_policy="paper", weight_bits=1, bias_bits=1),
                           model="mobilenet")

    rows = pm.compare_compute([live.rows[i].t_matrix_s for i in conv])  # (a)
    for c, i in zip(rows, conv):
        c["layer"] = live.rows[i].layer
    differ = [c["row"] for c in rows if not c["match"]]
    compute = {"rows": rows, "matching_rows": len(rows) - len(differ), "differing_rows": differ,
               "unexplained_rows": [c["row"] for c in rows if c["note"] == "unexplained"],
               "input_size_rows": [c["row"] for c in rows if not c["match"] and _at_input_size(graph, conv, c)]}
    replay_out = _replay(base, live, replay, replay_1bit, conv)
    return {
        "model": "mobilenet",
        "paper": "seed paper 001: MobileNet on CIFAR-10, Section 5, Tables 3 and 4",
        "profile": base.resolved(),
        "compute": compute,
        "replay": replay_out,
        "liveness": {"latency_s": live.latency_s, "conv_latency_s": sum(live.rows[i].t_total_s for i in conv),
                     "peak_sram_bytes": live.summary["peak_sram_bytes"]},
        "differences": _differences(graph, base, live, conv, compute, replay_out),
        "verdict": _verdict(compute, replay_out, live, len(conv)),
        "rows": _rows(graph, conv, live, replay),
    }
