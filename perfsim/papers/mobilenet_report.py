"""``perfsim paper mobilenet``: the analysis (``mobilenet_analysis.analyse``) as text, and as a report
folder (paper.md, paper_rows.csv, paper.json, paper.png) written by the papers' shared folder writer
(``perfsim.papers.report.write_paper_folder``)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..units import format_bytes, format_seconds
from .report import write_paper_folder


def format_text(d: dict[str, Any]) -> str:
    """The terminal view: (a) compute rows, (b) the replay, (c) the differences, the verdict."""
    c, r = d["compute"], d["replay"]
    out = [f"perfsim vs {d['paper']}", "",
           f"(a) compute time, Table 4 vs perfsim t_matrix_s = 2*MACs / matrix_flops on {d['profile']['name']}",
           f"{'row':>3}  {'layer':24}  {'paper (s)':>11}  {'perfsim (s)':>11}  agree  note"]
    for row in c["rows"]:
        out.append(f"{row['row']:>3}  {row['layer']:24}  {row['paper_s']:>11.5e}  {row['perfsim_s']:>11.5e}  "
                   f"{'yes' if row['match'] else 'NO':5}  {row['note']}")
    out.append(f"     {c['matching_rows']} of {len(c['rows'])} rows agree to 4 significant figures"
               + (f"; rows {', '.join(map(str, c['differing_rows']))} differ" if c["differing_rows"] else ""))
    out += ["", f"(b) Table 3 accounting replayed ({r['profile']}: true shapes, {r['weight_bits']}-bit weights, "
                f"{r['bias_bits']}-bit biases, SRAM {format_bytes(r['sram_bytes'])})"]
    flush = (f"row {r['first_flush_row']} ({r['first_flush_layer']}, running total {r['first_flush_total_bytes']:,} B)"
             if r["first_flush_row"] is not None else "none")
    out += [f"    first flush      perfsim {flush}; paper row {r['paper_first_flush_row']} "
            f"(running total {r['paper_first_flush_total_bytes']:,.0f} B)",
            f"    total latency    perfsim {r['conv_latency_s']:.9f} s over the 27 conv rows "
            f"({format_seconds(r['latency_s'])} with pool and FC)",
            f"                     paper printed {r['paper_printed_total_s']:.9f} s, "
            f"its rows sum to {r['paper_rows_sum_s']:.9f} s",
            f"    liveness policy  {format_seconds(d['liveness']['latency_s'])} on {d['profile']['name']} "
            f"(peak SRAM {format_bytes(d['liveness']['peak_sram_bytes'])})", "", "(c) known differences"]
    out += [f"  - {line}" for line in d["differences"]]
    out += ["", "verdict"] + [f"  {line}" for line in d["verdict"]]
    return "\n".join(out)


def rows_csv(d: dict[str, Any]) -> str:
    buf = io.StringIO()
    rows = d["rows"]
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def markdown(d: dict[str, Any]) -> str:
    """paper.md: the verdict, the differences, and the row-by-row table."""
    r = d["replay"]
    lines = [f"# perfsim vs {d['paper']}", "", "## Verdict", ""] + d["verdict"] + ["", "## Known differences", ""]
    lines += [f"- {line}" for line in d["differences"]]
    lines += ["", "## Row by row", "",
              f"Table 3 (bits) and Table 4 (seconds) of the paper; perfsim on {d['profile']['name']} under "
              f"`memory_policy: paper` (the replay, {r['weight_bits']}-bit weights) and `liveness`. "
              "paper_rows.csv holds every column.", "",
              "| row | layer | op | paper out bits | true out bits | paper memory (B) | replay total (B) | flush | "
              "paper compute (s) | perfsim matrix (s) | paper total (s) | replay total (s) | liveness total (s) |",
              "|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for x in d["rows"]:
        lines.append(f"| {x['row']} | {x['layer']} | {x['op']} | {x['paper_out_bits']:,} | {x['true_out_bits']:,} | "
                     f"{x['paper_memory_bits'] / 8:,.0f} | {x['replay_running_total_bytes']:,} | "
                     f"{'yes' if x['replay_flush'] else ''} | {x['paper_compute_s']:.4e} | "
                     f"{x['perfsim_t_matrix_s']:.4e} | {x['paper_total_s']:.4e} | {x['replay_t_total_s']:.4e} | "
                     f"{x['liveness_t_total_s']:.4e} |")
    lines += ["", "![paper.png](paper.png)", ""]
    return "\n".join(lines)


def plot(d: dict[str, Any], path: Path) -> None:
    """Per row: time (paper, replay, liveness) and memory (Table 3's total, the replay's, the limit)."""
    from ..report.style import new_figure
    rows = d["rows"]
    x = [row["row"] for row in rows]
    fig, (ax1, ax2) = new_figure(13.0, 5.0, ncols=2)
    for key, label, style in (("paper_total_s", "paper Table 4", "o-"), ("replay_t_total_s", "perfsim replay", "s--"),
                              ("liveness_t_total_s", "perfsim liveness", "^:")):
        ax1.plot(x, [row[key] for row in rows], style, markersize=4, label=label)
    ax1.set_yscale("log")
    ax1.set_xlabel("Table row (conv layer)")
    ax1.set_ylabel("time per layer (s)")
    ax1.set_title("time per layer", fontsize=10)
    ax1.legend(fontsize=8, frameon=False)
    ax1.grid(alpha=0.25)
    ax2.plot(x, [row["paper_memory_bits"] / 8 for row in rows], "o-", markersize=4, label="paper Table 3 total")
    ax2.plot(x, [row["replay_running_total_bytes"] for row in rows], "s--", markersize=4, label="perfsim replay total")
    ax2.axhline(d["replay"]["sram_bytes"], color="k", linewidth=1, label=f"SRAM {d['replay']['sram_bytes']:,} B")
    ax2.set_xlabel("Table row (conv layer)")
    ax2.set_ylabel("running total (bytes)")
    ax2.set_title("Table 3's running total and its flush", fontsize=10)
    ax2.legend(fontsize=8, frameon=False)
    ax2.grid(alpha=0.25)
    fig.subplots_adjust(left=0.07, right=0.98, wspace=0.25)
    fig.savefig(path, format="png")


def write_paper_report(d: dict[str, Any], out: Path) -> Path:
    return write_paper_folder(out, {"paper.md": markdown(d), "paper_rows.csv": rows_csv(d),
                                    "paper.json": json.dumps(d, indent=2) + "\n"}, lambda p: plot(d, p))
