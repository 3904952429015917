"""The report of a paper against perfsim, shared by every ``perfsim paper NAME``: the terminal text,
and the folder (paper.md, paper_rows.csv, paper.json, paper.png) written atomically through
:func:`perfsim.report.folder.write_folder`.

The data is what an analysis returns (:func:`perfsim.papers.published.assemble`): rows of a
published number, perfsim's value, the verdict and its computed sentence. The MobileNet report
(:mod:`perfsim.papers.mobilenet_report`) writes its own page through :func:`write_paper_folder`.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

from ..report.folder import write_folder
from .published import COMPARED, STATUSES

__all__ = ["COLUMNS", "format_text", "markdown", "rows_csv", "plot", "write_paper_folder", "write_paper_report"]

COLUMNS = ("section", "table", "where", "network", "quantity", "paper", "perfsim", "status", "explanation",
           "paper_value", "perfsim_value", "numbers")
STATUS_COLORS = {"exact": "#55A868", "explained": "#DD8452", "unexplained": "#C44E52", "not modelled": "#8C8C8C",
                 "measured": "#4C72B0", "not measured": "#C8C8C8"}


def _counts_line(d: dict[str, Any]) -> str:
    c = d["counts"]
    return ", ".join(f"{s} {c[s]['rows']}" for s in STATUSES if c[s]["rows"])


def format_text(d: dict[str, Any]) -> str:
    """The terminal view: the verdict, each section's rows (the sentence under every row that is not
    exact), the latency section and what was left out."""
    out = [f"perfsim vs paper {d['paper']}: {d['title']}", f"covers: {d.get('covers', '')}", "", "verdict"]
    out += [f"  {line}" for line in d["verdict"]]
    out.append(f"  rows by status: {_counts_line(d)}")
    for section in d["sections"]:
        out += ["", section]
        for r in (r for r in d["rows"] if r["section"] == section):
            who = f"{r['network']}: " if r["network"] else ""
            out.append(f"  {r['status']:<13} {r['table']:<16} {who}{r['quantity']}  paper {r['paper']}  "
                       f"perfsim {r['perfsim']}")
            if r["status"] != "exact":
                out.append(f"  {'':13} {r['explanation']}")
    out += ["", "latency on a named device"] + [f"  {s}" for s in d["latency"]["sentences"]]
    out += ["", "left out"] + [f"  - {s}" for s in d["left_out"]]
    return "\n".join(out)


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown(d: dict[str, Any]) -> str:
    """paper.md: the verdict and the counts, then every section's rows with their sentences."""
    lines = [f"# perfsim vs paper {d['paper']}: {d['title']}", "", f"Covers: {d.get('covers', '')}", "",
             "## Verdict", ""] + [f"- {v}" for v in d["verdict"]]
    lines += ["", "| status | rows | published numbers |", "|---|---:|---:|"]
    lines += [f"| {s} | {d['counts'][s]['rows']} | {d['counts'][s]['numbers']} |" for s in STATUSES
              if d["counts"][s]["rows"]]
    lines += ["", "*exact*: perfsim's value is the paper's at the paper's printed precision; *explained*: a computed "
              "hypothesis gives the paper's figure (or shows no network the paper describes reaches it, or the paper "
              "prints perfsim's value elsewhere); *unexplained*: none does. The copies of the papers perfsim was "
              "given have no page numbers: each row names its table and section. paper_rows.csv holds every column."]
    for section in d["sections"]:
        lines += ["", f"## {section}", "", "| table | where | network | quantity | paper | perfsim | status | why |",
                  "|---|---|---|---|---:|---:|---|---|"]
        for r in (r for r in d["rows"] if r["section"] == section):
            lines.append("| " + " | ".join(_cell(r[k]) for k in ("table", "where", "network", "quantity", "paper",
                                                                  "perfsim", "status", "explanation")) + " |")
    lines += ["", "## Latency on a named device", ""] + d["latency"]["sentences"]
    lines += ["", "## Left out", ""] + [f"- {s}" for s in d["left_out"]]
    lines += ["", "![paper.png](paper.png)", ""]
    return "\n".join(lines)


def rows_csv(d: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in d["rows"]:
        w.writerow({k: ("" if r[k] is None else repr(r[k]) if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    return buf.getvalue()


def _numeric(r: dict[str, Any]) -> bool:
    return (r["status"] in COMPARED and all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool)
                                             for k in ("paper_value", "perfsim_value")) and r["paper_value"] > 0
            and r["perfsim_value"] > 0)


def _label(r: dict[str, Any], width: int = 46) -> str:
    text = f"{r['network'] or r['table']}: {r['quantity']}"
    return text if len(text) <= width else text[:width - 3] + "..."


def plot(d: dict[str, Any], path: Path) -> None:
    """Left: perfsim / paper for every published number perfsim computes (1 = the paper's value),
    coloured by verdict. Right: each section's rows by status."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from ..report.style import new_figure
    numeric = [r for r in d["rows"] if _numeric(r)]
    sections = d["sections"]
    height = max(4.5, 0.22 * max(len(numeric), 2 * len(sections)) + 1.8)
    fig, (ax1, ax2) = new_figure(15.0, height, ncols=2)
    ratios = [r["perfsim_value"] / r["paper_value"] for r in numeric]
    y = list(range(len(numeric)))
    colors = [STATUS_COLORS[r["status"]] for r in numeric]
    ax1.hlines(y, [min(1.0, x) for x in ratios], [max(1.0, x) for x in ratios], colors=colors, linewidth=2)
    ax1.scatter(ratios, y, c=colors, s=22, zorder=3)
    ax1.set_yticks(y, [_label(r) for r in numeric], fontsize=7)
    ax1.set_ylim(len(numeric) - 0.5, -0.5)
    ax1.set_xscale("log")
    lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
    ax1.set_xlim(min(lo / 1.5, 0.5), max(hi * 1.5, 2.0))
    ax1.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax1.xaxis.set_minor_formatter(NullFormatter())
    ax1.axvline(1.0, color="k", linewidth=0.8)
    ax1.set_xlabel("perfsim / paper (1 = the paper's value)")
    ax1.set_title("published numbers perfsim computes", fontsize=10)
    ax1.grid(axis="x", alpha=0.25)
    left = [0] * len(sections)
    for status in STATUSES:
        widths = [sum(r["status"] == status for r in d["rows"] if r["section"] == s) for s in sections]
        if any(widths):
            ax2.barh(range(len(sections)), widths, left=left, color=STATUS_COLORS[status], label=status)
            left = [a + b for a, b in zip(left, widths)]
    ax2.set_yticks(range(len(sections)), [s if len(s) <= 44 else s[:41] + "..." for s in sections], fontsize=7)
    ax2.set_ylim(len(sections) - 0.5, -0.5)
    ax2.set_xlim(0, max(left + [1]) * 1.3)
    ax2.set_xlabel("rows")
    ax2.set_title("rows by verdict, per section", fontsize=10)
    ax2.legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle(f"paper {d['paper']} ({d['name']}) against perfsim", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_paper_folder(out: Path, files: dict[str, str], draw: Callable[[Path], None], plot_name: str = "paper.png"
                       ) -> Path:
    """The report folder of any paper: text files by name and one plot, written atomically."""
    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        draw(folder / plot_name)
    return write_folder(out, fill)


def write_paper_report(d: dict[str, Any], out: Path) -> Path:
    return write_paper_folder(out, {"paper.md": markdown(d), "paper_rows.csv": rows_csv(d),
                                    "paper.json": json.dumps(d, indent=2) + "\n"}, lambda p: plot(d, p))
