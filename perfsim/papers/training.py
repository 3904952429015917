"""Training cells of a paper report: the paper's recipe beside ``perfsim train``'s
(:mod:`perfsim.accuracy.recipes`), and the training times a paper prints, which perfsim does not
predict (it simulates inference). Torch-free.
"""
from __future__ import annotations

from typing import Any, Sequence

from .published import Figure, Row, fmt_count, judge_claim, judge_value, row

__all__ = ["recipe_rows", "recipe_word_rows", "hms", "optimizer_state_per_param"]


def _recipe(model: str):
    from ..accuracy.recipes import RECIPES
    return RECIPES[model]


def _ours(recipe, field: str, input_side: int) -> Any:
    value = getattr(recipe, field)
    if field == "crop" and value is None:
        return input_side  # no crop: the image's own side
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _source(recipe, field: str) -> str:
    """The recipe's recorded source for ``field``; for a field it names nowhere, that of the recipe's
    own choices (an own recipe) or nothing."""
    for topic, where in recipe.sources:
        if field in [t.strip() for t in topic.replace(",", " ").split()]:
            return where
    own = [where for _, where in recipe.sources if "own" in where]
    return own[0] if recipe.own and own else "no source recorded"


def recipe_rows(section: str, table: str, where: str, model: str, entries: Sequence[tuple[str, Any]],
                input_side: int) -> list[Row]:
    """One row per (recipe field, printed value or tuple) the paper gives. A value perfsim's recipe
    does not share is explained when the recipe is perfsim's own adaptation (``Recipe.own``: the paper
    trained on another data set), with the recipe's recorded source for that field."""
    recipe = _recipe(model)
    out = []
    for field, printed in entries:
        ours = _ours(recipe, field, input_side)
        paper = Figure.parse(printed) if isinstance(printed, str) else tuple(printed)
        status, sentence = judge_value(paper, ours)
        if status != "exact":
            if recipe.own:
                its = (f"{ours} (no crop: the data set's own image side)" if field == "crop"
                       and getattr(recipe, field) is None else fmt_count(ours))
                status, sentence = "explained", (f"perfsim's {model} recipe is its own adaptation, not the paper's "
                                                 f"({_source(recipe, field)}); its {field} is {its}")
            else:
                sentence = f"{sentence}; perfsim's recipe records for {field}: {_source(recipe, field)}"
        else:
            sentence = f"{sentence}: perfsim train {model} uses it"
        shown = printed if isinstance(printed, str) else fmt_count(tuple(printed))
        out.append(row(section, table, where, model, f"training recipe: {field}", shown, fmt_count(ours),
                       (status, sentence), paper.value if isinstance(paper, Figure) else paper, ours,
                       numbers=1 if isinstance(printed, str) else len(printed)))
    return out


def recipe_word_rows(section: str, table: str, where: str, model: str,
                     entries: Sequence[tuple[str, Any, str]]) -> list[Row]:
    """The recipe's choices the paper states in words: (recipe field, the value that says it, the words)."""
    recipe = _recipe(model)
    out = []
    for field, expected, words in entries:
        ours = getattr(recipe, field)
        out.append(row(section, table, where, model, f"training recipe: {field}", words, str(ours),
                       judge_claim(words, ours == expected, f"perfsim train {model} uses {field} = {ours}"),
                       None, None, numbers=0))
    return out


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def optimizer_state_per_param(model: str) -> tuple[int, str]:
    """Values an optimizer keeps per parameter in a training checkpoint under ``model``'s recipe, and
    what they are."""
    r = _recipe(model)
    if r.optimizer == "adam":
        return 2, "Adam's two moment estimates"
    if r.optimizer == "sgd":
        return (1, "SGD's momentum buffer") if r.momentum > 0 else (0, "plain SGD keeps none")
    return 1 + (r.momentum > 0), "RMSprop's square average" + (" and momentum buffer" if r.momentum > 0 else "")
