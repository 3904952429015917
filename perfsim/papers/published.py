"""A number as a paper prints it, perfsim's value beside it, and the verdict with its sentence.

Every row of a paper report (``perfsim paper NAME``) is made here, by one of the ``judge_*``
functions, from a transcribed cell (a :class:`Figure` parsed from the printed text) and the values
perfsim computes. The verdict is one of :data:`STATUSES`:

- ``exact``: perfsim's value is the paper's at the paper's printed precision ("343M" holds
  342.5M..343.5M);
- ``explained``: it is not, but a computed hypothesis gives the paper's figure (a counting
  convention, another class count, the paper's own rounded inputs), or shows that no network the
  paper's text describes can reach it (a bound), or the paper prints perfsim's value elsewhere (a
  printed error). The sentence carries the computed numbers;
- ``unexplained``: no hypothesis gives it; the sentence gives the ratio and every hypothesis tried;
- ``not modelled``: a number perfsim does not predict (training time); the sentence says why;
- ``measured`` / ``not measured``: an accuracy, beside a ``perfsim eval`` result where one exists.

Sentences are built from the numbers every time, never chosen by row: edit a transcribed cell and
the verdict and its sentence follow. Torch-free.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

__all__ = ["STATUSES", "COMPARED", "Figure", "Hypothesis", "Bound", "Row", "judge_value", "judge_claim",
           "row", "count_statuses", "fmt_count", "rounded_percent", "assemble"]

STATUSES = ("exact", "explained", "unexplained", "not modelled", "measured", "not measured")
COMPARED = ("exact", "explained", "unexplained")  # the verdicts on a number perfsim computes

_FIGURE = re.compile(r"^\s*([0-9][0-9,]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?\s*(%|[kMG])?")
_MULTIPLIER = {None: 1.0, "%": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class Figure:
    """A printed number: its text, its value, and its precision (the step of its last digit)."""

    printed: str
    value: float
    step: float

    @classmethod
    def parse(cls, printed: str, scale: float = 1.0) -> Figure:
        """``"343M"`` -> 343e6 (step 1e6); ``"3.25M"`` -> 3.25e6 (step 1e4); ``"94.24%"`` -> 94.24;
        ``"0.52"`` with ``scale=1e6`` (a column "in millions") -> 0.52e6; ``"16.7 MB"`` -> 16.7e6
        (bytes; MB = 10^6 B); ``"1.0e-4"`` -> 1e-4 (step 1e-5); ``"02:59:19"`` -> 10,759 (seconds)."""
        text = printed.strip()
        if re.fullmatch(r"\d+:\d\d:\d\d", text):
            h, m, s = (int(x) for x in text.split(":"))
            return cls(printed, float(3600 * h + 60 * m + s) * scale, 1.0 * scale)
        match = _FIGURE.match(text)
        if match is None:
            raise ValueError(f"not a printed number: {printed!r}")
        whole, frac, exp, suffix = match.groups()
        mult = _MULTIPLIER[suffix] * scale * 10.0 ** int(exp or 0)
        value = float(whole.replace(",", "") + ("." + frac if frac else ""))
        return cls(printed, value * mult, 10.0 ** -len(frac or "") * mult)

    def holds(self, x: float) -> bool:
        """``x`` prints as this figure: within half a step (a hair of relative slack for floats)."""
        return abs(x - self.value) <= self.step / 2 * (1 + 1e-9) + 1e-12 * abs(self.value)


@dataclass(frozen=True)
class Hypothesis:
    """A way the paper may have counted: ``value`` is what it would print; ``because`` says how
    it was computed (with its numbers)."""

    label: str
    value: Any
    because: str


@dataclass(frozen=True)
class Bound:
    """A part of the network the paper's text leaves unchanged, and what it alone costs: when the
    paper's whole-network figure is below it, no network the text describes reaches the figure."""

    label: str
    value: float
    because: str


@dataclass(frozen=True)
class Row:
    """One published number beside perfsim's (a row of paper_rows.csv)."""

    section: str  # the report's section: the paper's table or the part of its text
    table: str  # "Table 5", "Sec. 4.1 (text)"
    where: str  # the section of the paper it is printed in (the papers' copies have no page numbers)
    network: str  # zoo name, or "" for a design rule
    quantity: str
    paper: str  # as printed
    perfsim: str  # as perfsim shows it
    status: str
    explanation: str
    paper_value: Any = None  # a number, a tuple, or None (a claim in words)
    perfsim_value: Any = None
    numbers: int = 1  # printed numbers this row covers (a Table 1 row holds g1 and g2: 2)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("paper_value", "perfsim_value"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d


def row(section: str, table: str, where: str, network: str, quantity: str, paper: str, perfsim: str,
        verdict: tuple[str, str], paper_value: Any = None, perfsim_value: Any = None, numbers: int = 1) -> Row:
    status, explanation = verdict
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return Row(section, table, where, network, quantity, paper, perfsim, status, explanation,
               paper_value, perfsim_value, numbers)


def fmt_count(x: float) -> str:
    """A count as a person reads it: 342,973,440; a fraction keeps 4 significant figures."""
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(fmt_count(v) for v in x) + ")"
    if isinstance(x, str):
        return x
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.4g}"



def _ratio(ours: float, paper: float) -> str:
    if paper == 0:
        return "the paper prints 0"
    return f"{ours / paper:.3g}x the paper's"


def _matches(fig: Figure | Any, value: Any) -> bool:
    if isinstance(fig, Figure):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and fig.holds(float(value))
    return tuple(fig) == tuple(value) if isinstance(fig, (tuple, list)) else fig == value


def _printed(fig: Figure | Any) -> str:
    if isinstance(fig, Figure):
        return fig.printed
    return fmt_count(tuple(fig)) if isinstance(fig, (tuple, list)) else str(fig)


def judge_value(fig: Figure | Sequence | Any, ours: Any, *, fmt: Callable[[Any], str] = fmt_count,
                hypotheses: Sequence[Hypothesis] = (), bounds: Sequence[Bound] = (),
                elsewhere: Sequence[tuple[str, Any]] = ()) -> tuple[str, str]:
    """The verdict on a published number (a :class:`Figure`) or structure (a tuple) against
    perfsim's ``ours``, and its sentence.

    Tried in order: perfsim's value itself; each hypothesis (the first whose value prints as the
    paper's explains it); ``elsewhere`` -- the paper's own other statements of the same quantity
    (``(where, value)``): when perfsim's value equals all of them, this cell is a printed error;
    each bound (the paper's figure is below what an unchanged part alone costs). Otherwise
    unexplained, with the ratio and every value tried.
    """
    printed = _printed(fig)
    if _matches(fig, ours):
        precision = " at its printed precision" if isinstance(fig, Figure) and fig.value != ours else ""
        return "exact", f"perfsim's {fmt(ours)} is the paper's {printed}{precision}"
    for h in hypotheses:
        if _matches(fig, h.value):
            return "explained", (f"{h.label}: {h.because}, which gives {fmt(h.value)} = the paper's {printed} "
                                 f"(perfsim: {fmt(ours)})")
    if elsewhere and all(_matches(v, ours) if isinstance(v, Figure) else v == ours for _, v in elsewhere):
        said = "; ".join(f"{where}: {_printed(v)}" for where, v in elsewhere)
        return "explained", (f"a printed error: the paper itself says {fmt(ours)} elsewhere ({said}), "
                             f"which perfsim follows; this cell says {printed}")
    numeric = isinstance(fig, Figure) and isinstance(ours, (int, float))
    for b in bounds:
        if numeric and fig.value < b.value:
            return "explained", (f"the paper's {printed} is below {b.label} alone ({fmt(b.value)}, "
                                 f"{b.value / fig.value:.3g}x the paper's figure: {b.because}), so no network "
                                 f"its text describes reaches it; perfsim's whole network has {fmt(ours)}, "
                                 f"{_ratio(ours, fig.value)}")
    tried = "; ".join(f"{h.label} gives {fmt(h.value)}" for h in hypotheses)
    head = (f"perfsim's {fmt(ours)} is {_ratio(float(ours), fig.value)} {printed}" if numeric
            else f"perfsim has {fmt(ours)}, the paper {printed}")
    return "unexplained", head + (f"; no hypothesis gives it ({tried})" if tried else "; no hypothesis applies")


def judge_claim(claim: str, holds: bool, evidence: str) -> tuple[str, str]:
    """A claim in words (``"loses FCRF"``) checked by a computation: exact when it holds."""
    if holds:
        return "exact", f"{evidence}: as the paper says ({claim})"
    return "unexplained", f"{evidence}: the paper says {claim}, which perfsim's network does not show"


def count_statuses(rows: Sequence[Row]) -> dict[str, dict[str, int]]:
    """Per status: rows and printed numbers."""
    out = {s: {"rows": 0, "numbers": 0} for s in STATUSES}
    for r in rows:
        out[r.status]["rows"] += 1
        out[r.status]["numbers"] += r.numbers
    return out


def rounded_percent(numerator: float, denominator: float) -> float:
    """``(1 - numerator/denominator)`` in percent: a reduction as papers print it."""
    return 100.0 * (1.0 - numerator / denominator) if denominator else math.nan


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _verdict(counts: dict[str, dict[str, int]], rows: Sequence[Row]) -> list[str]:
    """The page's summary, from the counts."""
    n = sum(counts[s]["numbers"] for s in COMPARED)
    checks = [r for r in rows if r.status in COMPARED and r.numbers == 0]
    e, x, u = (counts[s]["numbers"] for s in COMPARED)
    out = [f"Of the {n} published numbers perfsim computes, {e} {_are(e)} reproduced exactly, {x} "
           f"{'differs' if x == 1 else 'differ'} with a computed explanation and {u} {_are(u)} unexplained"
           + (f"; {sum(r.status == 'exact' for r in checks)} of {len(checks)} further checks (design rules, claims "
              "in words) hold" if checks else "") + "."]
    odd = [f"{r.table} {r.network + ' ' if r.network else ''}{r.quantity}" for r in rows if r.status == "unexplained"]
    if odd:
        out.append("Unexplained: " + "; ".join(odd) + ".")
    acc = counts["measured"]["rows"] + counts["not measured"]["rows"]
    if acc:
        out.append(f"{acc} accuracy figure{'' if acc == 1 else 's'}: {counts['measured']['rows']} measured by "
                   "perfsim eval, "
                   f"{counts['not measured']['rows']} not measured (give --results DIR with eval.json files).")
    if counts["not modelled"]["rows"]:
        t = counts["not modelled"]["numbers"]
        out.append(f"{t} printed number{'' if t == 1 else 's'} {_are(t)} {'a time' if t == 1 else 'times'} perfsim "
                   "does not predict "
                   "(training, not inference).")
    return out


def assemble(name: str, paper: str, title: str, networks: Sequence[str], rows: Sequence[Row], latency: dict,
             left_out: Sequence[str], *, results: str | None = None) -> dict[str, Any]:
    """A paper report as data: what ``perfsim paper NAME --json`` prints and paper.json holds."""
    counts = count_statuses(rows)
    return {"name": name, "paper": paper, "title": title, "networks": list(networks), "results": results,
            "counts": counts, "verdict": _verdict(counts, rows), "latency": latency, "left_out": list(left_out),
            "sections": list(dict.fromkeys(r.section for r in rows)), "rows": [r.as_dict() for r in rows]}
