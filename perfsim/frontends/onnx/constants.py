"""Constants: values that read no activation data (initializers, literals, shape arithmetic), and their values."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from .read import EVAL_MAX_ELEMS, ONNX_DOMAINS

# a constant subgraph evaluated for a small value (bounds, axes): at most this many nodes (and EVAL_MAX_ELEMS
# initializer elements)
_EVAL_MAX_NODES = 64
_SHAPE_ONLY = frozenset({"Shape", "Size"})  # read an activation's shape, not its data: constants


@dataclass
class _Const:
    shape: tuple[int, ...] | None
    from_initializer: bool  # an initializer, or computed from one's data (a literal Constant is not)
    value: Any = None  # numpy array, when known
    evaluated: bool = False


class Constants:
    """Values that read no activation data: initializers, literals and what is computed from them.

    ``Shape``/``Size`` read only an activation's shape and ``CastLike`` only its type, so their
    results are constants too. Small values (bounds, axes) are evaluated on demand with
    ``onnx.reference`` from the constant subgraph behind them.
    """

    def __init__(self, model, shapes: dict[str, tuple[int, ...] | None]):
        from onnx import numpy_helper
        self.model = model
        self.shapes = shapes
        self.info: dict[str, _Const] = {}
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.producers: dict[str, Any] = {}
        self.order: dict[int, int] = {}
        for i in model.graph.initializer:
            shape = tuple(int(d) for d in i.dims)
            self.info[i.name] = _Const(shape, True, numpy_helper.to_array(i) if prod(shape) <= 16 else None, True)

    def __contains__(self, name: str) -> bool:
        return name in self.info

    def __getitem__(self, name: str) -> _Const:
        return self.info[name]

    def reads_data(self, node, name: str) -> bool:
        """Does ``node`` read the data of its input ``name`` (not only its shape or type)?"""
        if node.domain in ONNX_DOMAINS and node.op_type in _SHAPE_ONLY:
            return False
        return not (node.domain in ONNX_DOMAINS and node.op_type == "CastLike" and name != node.input[0])

    def is_constant(self, node) -> bool:
        return all(i in self.info for i in node.input if i and self.reads_data(node, i))

    def add(self, node) -> None:
        from onnx import helper, numpy_helper
        value = None
        if node.op_type == "Constant" and node.domain in ONNX_DOMAINS and node.attribute:
            v = helper.get_attribute_value(node.attribute[0])
            value = numpy_helper.to_array(v) if hasattr(v, "dims") else np.asarray(v)
        derived = any(self.info[i].from_initializer for i in node.input if i and self.reads_data(node, i))
        same = node.op_type == "Identity" and node.input[0] in self.info
        for o in node.output:
            if not o:
                continue
            shape = self.shapes.get(o)
            if shape is None and value is not None:
                shape = tuple(value.shape)
            if shape is None and same:
                shape = self.info[node.input[0]].shape
            self.info[o] = _Const(shape, derived, value, value is not None)
            self.producers[o] = node
        self.order[id(node)] = len(self.order)  # nodes arrive in graph (topological) order

    def value(self, name: str, act_shapes: dict[str, Any]):
        """The numeric value of a small constant (None when it cannot be had cheaply)."""
        c = self.info[name]
        if not c.evaluated:
            c.evaluated = True
            try:
                c.value = self._evaluate(name, act_shapes)
            except Exception:  # an op the reference runtime lacks, a malformed literal: not a value
                c.value = None
        return c.value

    def _slice(self, name: str) -> tuple[list, list[str]] | None:
        nodes, inits, stack, seen = {}, [], [name], set()
        while stack:
            v = stack.pop()
            if v in seen or not v:
                continue
            seen.add(v)
            node = self.producers.get(v)
            if node is None:
                if v not in self.initializers:
                    return None
                inits.append(v)
                continue
            nodes[id(node)] = node
            stack.extend(i for i in node.input if self.reads_data(node, i) or i in self.info)
            if len(nodes) > _EVAL_MAX_NODES:
                return None
        return sorted(nodes.values(), key=lambda n: self.order[id(n)]), inits

    def _evaluate(self, name: str, act_shapes: dict[str, Any]):
        from onnx import TensorProto, helper, numpy_helper
        from onnx.reference import ReferenceEvaluator
        got = self._slice(name)
        if got is None:
            return None
        nodes, inits = got
        if sum(prod(self.info[i].shape or ()) for i in inits) > EVAL_MAX_ELEMS:
            return None
        feeds = []  # an activation a Shape/Size/CastLike reads: a zero tensor of its shape stands in
        for n in nodes:
            for i in n.input:
                if i and i not in self.info and i not in {f.name for f in feeds}:
                    shape = act_shapes.get(i)
                    if shape is None:
                        return None
                    feeds.append(numpy_helper.from_array(np.zeros(shape, np.float32), i))
        graph = helper.make_graph(nodes, "constants", [], [helper.make_tensor_value_info(name, TensorProto.UNDEFINED,
                                                                                         None)],
                                  initializer=[self.initializers[i] for i in inits] + feeds)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import), ir_version=self.model.ir_version)
        return np.asarray(ReferenceEvaluator(model).run(None, {})[0])
