"""Seed paper 001 against perfsim: the facts ``perfsim paper mobilenet`` prints, as data.

(a) Table 4's compute column beside perfsim's matrix time on edge_1mb for the 27 conv
layers; (b) Table 3's accounting replayed (``memory_policy: paper``): the first flush and
the total latency; (c) what explains each difference, with the numbers that show it.
"""
from __future__ import annotations

from typing import Any

from ..graph import Graph, OpKind
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
        "sram_bytes": base.sram_bytes,
        "weight_bits": base.weight_bits,
        "bias_bits": base.bias_bits,
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


def _differences(graph: Graph, base, live, conv: list[int], compute: dict, r: dict) -> list[str]:
    """(c) the known differences, each with the numbers that show it."""
    n_rows = len(pm.TABLE4)
    paper_flush, flush, flush_1bit = r["paper_first_flush_row"], r["first_flush_row"], r["first_flush_row_1bit_weights"]
    paper_mem = [t[2] / 8 for t in pm.TABLE3]
    true_out_bits = [live.rows[i].out_bytes * 8 for i in conv]  # 8-bit activations, as the paper's
    shape_rows = [k + 1 for k in range(n_rows) if pm.TABLE3[k][1] != true_out_bits[k]]
    weights = [graph.layers[i].weight_elems for i in conv]  # Co * Ci/groups * Kh * Kw
    moved_rows = [k + 1 for k in range(1, n_rows) if k + 1 != paper_flush and pm.TABLE3[k][3] != 2 * weights[k]]
    differ, unexplained = compute["differing_rows"], compute["unexplained_rows"]
    gap, gap_row = r["paper_total_gap_s"], r["paper_total_gap_row"]
    return [
        f"Table 4's compute time is 2*MACs / {base.matrix_flops / 1e12:g} TFLOPS: {n_rows - len(differ)} of "
        f"{n_rows} rows agree to 4 significant figures; rows {', '.join(map(str, differ)) or 'none'} "
        "(the stride-2 depthwise layers) were costed at the layer's input size, 4x the true MACs"
        + (f"; unexplained: rows {', '.join(map(str, unexplained))}" if unexplained else ""),
        "Table 3 counts each weight as 1 bit (data moved = 2 x weights, in and out); the replay stores "
        f"weights at {base.weight_bits} bits and folded-BN biases at {base.bias_bits} bits, so its running "
        f"total passes {base.sram_bytes:,} B at row {flush}, not row {paper_flush}",
        "with 1-bit weights and true shapes the running total peaks at "
        f"{r['peak_total_1bit_weights_bytes']:,} B and "
        + ("never flushes" if flush_1bit is None else f"first flushes at row {flush_1bit}")
        + f": the paper's row-{paper_flush} flush comes from its size errors: rows "
        + ", ".join(f"{k} ({pm.TABLE3[k - 1][1]:,} output bits, true {true_out_bits[k - 1]:,})"
                    for k in shape_rows),
        "Table 3 moves 2 x weights (1 bit each) except at rows "
        + ", ".join(f"{k} ({pm.TABLE3[k - 1][3]:,} bits = 2 x {pm.TABLE3[k - 1][3] // 2:,} weights; "
                    f"the layer has {weights[k - 1]:,})" for k in moved_rows)
        + ": row 5 is costed as a 64->128 layer, row 9 moves 64x128 weights for a 128->128 layer",
        f"the flush at row {paper_flush} means a 10^6-byte limit: its running total is "
        f"{paper_mem[paper_flush - 2]:,.0f} B at row {paper_flush - 1} and {paper_mem[paper_flush - 1]:,.0f} B at "
        f"row {paper_flush}, below 1 MiB ({2**20:,} B); edge_1mb's sram_bytes is {base.sram_bytes:,} B",
        "after a flush nothing is read back, the network output is never written, and the pool and FC "
        "layers are not in the tables; the replay keeps these rules, the liveness policy does not "
        f"(edge_1mb, liveness: {live.latency_s:.6g} s, peak SRAM {live.summary['peak_sram_bytes']:,} B, "
        f"{live.summary['spill_bytes']:,} B spilled)",
        f"Table 4's printed total {pm.TABLE4_PRINTED_TOTAL_S:.9f} s is not the sum of its rows "
        f"({r['paper_rows_sum_s']:.9f} s): the difference, {gap:.6g} s, "
        + (f"equals row {gap_row}'s time" if gap_row is not None else "matches no single row"),
    ]


def analyse(*, use_cache: bool = True) -> dict[str, Any]:
    """The comparison of seed paper 001's Tables 3 and 4 with perfsim, as data."""
    from ..profile import load_profile
    from ..runner import simulator
    from ..sources import load_graph

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
               "unexplained_rows": [c["row"] for c in rows if c["note"] == "unexplained"]}
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
    }
