"""The validation table of docs/hardware.md from the runs' CSVs (benchmarks/validate_zoo.py's output).

    python benchmarks/host_validation_summary.py              # prints the Markdown table and the counts

Each set of runs is a state of the model; per network, the median over the set's runs (and the range),
"before" the last set's peaks-only variant. The targets: Spearman >= 0.9, |whole-network error| <= 20 %.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent / "host_validation"
SETS = [  # (heading, run files): the model's states in order, the current one last
    ("1–4", ["run1", "run2", "run3", "run4"]),
    ("5–7", ["run5", "run6", "run7"]),
    ("8–10", ["run8", "run9", "run10"]),
    ("11–13", ["run11", "run12", "run13"]),
    ("14–16, 11v–13v", ["run14", "run15", "run16", "run11v", "run12v", "run13v"]),
    ("17–19", ["run17", "run18", "run19"]),
    ("20–24", ["run20", "run21", "run22", "run23", "run24"]),
    ("36–40", ["run36", "run37", "run38", "run39", "run40"]),
    ("41–45", ["run41", "run42", "run43", "run44", "run45"]),
]


def _runs(names: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(HERE / f"{n}.csv").assign(run=n) for n in names])


def table(sets=SETS) -> str:
    frames = [(head, _runs(names)) for head, names in sets]
    last = frames[-1][1]
    before = last[last.variant == "before"].groupby("model", sort=False)[["spearman", "error"]].median()
    after = [(head, f[f.variant == "after"].groupby("model", sort=False)) for head, f in frames]
    heads = " → ".join(h for h, _ in after[:-1]) + f" → **{after[-1][0]}** (range)"
    lines = [f"| model | layers | Spearman: before → {heads} | whole-network error: before → {heads} | "
             "measured (last set) | worst op (last set, most often) |", "|---|---|---|---|---|---|"]
    cur = last[last.variant == "after"]
    for model in before.index:
        g = cur[cur.model == model]
        sp = [a.get_group(model).spearman.median() for _, a in after]
        er = [a.get_group(model).error.median() for _, a in after]
        lines.append(
            f"| {model} | {int(g.layers.iloc[0])} | {before.spearman[model]:.2f} → "
            + " → ".join(f"{x:.2f}" for x in sp[:-1]) + f" → **{sp[-1]:.2f}** ({g.spearman.min():.2f}…{g.spearman.max():.2f}) | "
            f"{before.error[model]:+.0%} → " + " → ".join(f"{x:+.0%}" for x in er[:-1])
            + f" → **{er[-1]:+.0%}** ({g.error.min():+.0%}…{g.error.max():+.0%}) | {g.measured_ms.median():.2f} ms | "
            f"{g.worst_op.mode().iloc[0]} |")
    counts = []
    for head, a in after:
        sp, er = a.spearman.median(), a.error.median()
        counts.append(f"runs {head}: Spearman ≥ 0.9 on {(sp >= 0.9).sum()}/{len(sp)}, error within ±20 % on "
                      f"{(er.abs() <= 0.2).sum()}/{len(er)}, median |error| {er.abs().median():.0%}, worst "
                      f"{er.abs().max():.0%}")
    return "\n".join(lines) + "\n\nMedians per network over each set of runs. " + "; ".join(counts) + "."


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
