"""Deprecated: the model sources live in ``perfsim.sources`` (``load_graph``, ``ModelSource``).

Kept only so existing callers (``tests/test_properties.py``) keep working unchanged;
``graph_for(ModelRequest(name))`` is ``load_graph(name, ModelOptions(...))``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph
from .sources import LoweredModel, ModelOptions, load_graph, parse_shape

__all__ = ["ModelRequest", "graph_for", "parse_shape"]


@dataclass(frozen=True)
class ModelRequest:
    model: str
    num_classes: int | None = None
    width: float | None = None
    resolution: float = 1.0
    input_shape: tuple[int, int, int] | None = None


def graph_for(req: ModelRequest, *, use_cache: bool = True) -> tuple[Graph, LoweredModel]:
    options = ModelOptions(num_classes=req.num_classes, width=req.width, resolution=req.resolution,
                           input_shape=req.input_shape)
    lowered = load_graph(req.model, options, use_cache=use_cache)
    return lowered.graph, lowered
