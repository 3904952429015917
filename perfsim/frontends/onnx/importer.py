"""The importer: run every node of the graph through its rule (or as a constant), count parameters once,
report every unsupported kind in one error, and fuse the ops into layers (``lower_onnx``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from pathlib import Path
from typing import Any

from ...errors import InputError, UnsupportedOpError
from ...ir.fuse import fuse
from ...ir.graph import ALIAS_KINDS, Graph, Op, OpKind
from .constants import Constants
from .names import Namer
from .read import ONNX_DOMAINS, dims_of, import_onnx, infer_shapes, load_model, network_input, resolve_input_shape
from .rules import RULES, Ctx, Unsupported


@dataclass
class Importer:
    model: Any
    path: Path
    value_infos: list  # inferred types of the graph's values
    shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)  # inferred, static only
    act_shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)  # None: unknown
    readers: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)  # value -> the op that stands for it
    counted: dict[str, int] = field(default_factory=dict)  # parameter values counted, and their size
    ops: list[Op] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # op name -> position in ops
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    unknown_shape: list[tuple[str, str]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        g = self.model.graph
        for vi in self.value_infos:
            dims = dims_of(vi)
            static = vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) and d > 0 for d in dims)
            self.shapes[vi.name] = tuple(dims) if static else None
        self.consts = Constants(self.model, self.shapes)
        self.names.update(i.name for i in g.initializer)
        for n in g.node:
            self.names.update(n.output)
            for i in n.input:
                if i:
                    self.readers[i] = self.readers.get(i, 0) + 1
        for o in g.output:
            self.readers[o.name] = self.readers.get(o.name, 0) + 1

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def source(self, value: str) -> str:
        return self.renamed.get(value, value)

    def unique(self, name: str) -> str:
        while name in self.names:
            name += "'"
        self.names.add(name)
        return name

    def used_beyond_first(self, node) -> bool:
        return any(self.readers.get(o, 0) for o in node.output[1:] if o)

    def learned(self, name: str | None) -> bool:
        """Is this constant a parameter's data (an initializer or computed from one), not a literal?"""
        return bool(name) and self.consts[name].from_initializer

    def param(self, name: str | None) -> int:
        """Elements of a parameter value, the first time it is used (shared weights count once)."""
        if not name or name in self.counted:
            return 0
        self.counted[name] = prod(self.consts[name].shape or ())
        return self.counted[name]

    def _refuse(self, label: str, node) -> None:
        self.unsupported.setdefault(label, []).append(node.name or node.output[0])
        for o in node.output:
            if o:
                self.act_shapes[o] = None

    def fold_bias(self, ctx: Ctx, bias: str) -> bool:
        """Merge Add(bias) into the bias-less linear (MatMul) it solely reads: torch's nn.Linear on 3-D input."""
        act = self.source(ctx.acts[0])
        prev = self.ops[self.index[act]] if act in self.index else None
        bshape = self.consts[bias].shape or ()
        if (prev is None or prev.name != act or prev.kind is not OpKind.LINEAR or prev.target != "MatMul"
                or prev.bias_elems or self.readers.get(act, 0) != 1 or ctx.op_type != "Add"
                or prod(bshape) != prev.out_shape[-1] or ctx.out_shape != prev.out_shape):
            return False
        self.ops[self.index[act]] = replace(prev, bias_elems=prod(bshape), params=prev.params + self.param(bias))
        self.renamed[ctx.node.output[0]] = prev.name
        return True

    def _context(self, node, namer: Namer) -> Ctx | None:
        """The rule's view of ``node``; None when a shape is unknown (after an unsupported node, or dynamic)."""
        acts = [i for i in node.input if i and i not in self.consts]
        in_shapes = [self.act_shapes.get(a) for a in acts]
        outs = [self.shape(o) for o in node.output if o and self.readers.get(o, 0) or o == node.output[0]]
        if any(s is None for s in in_shapes) or any(s is None for s in outs):
            if all(s is not None for s in in_shapes):
                self.unknown_shape.append((node.output[0], node.name or node.op_type))
            for o in node.output:
                self.act_shapes[o] = None
            return None
        weight = node.input[1] if len(node.input) > 1 and node.input[1] in self.consts else None
        return Ctx(node=node, path=namer.path(node, weight), attrs=_attrs(node), acts=acts,
                    in_shapes=tuple(in_shapes), out_shape=outs[0], imp=self)

    def run_node(self, node, namer: Namer) -> None:
        if self.consts.is_constant(node):
            self.consts.add(node)
            return
        if node.domain not in ONNX_DOMAINS or node.op_type not in RULES:
            label = node.op_type if node.domain in ONNX_DOMAINS else f"{node.domain}.{node.op_type}"
            self._refuse(label, node)
            return
        ctx = self._context(node, namer)
        if ctx is None:
            return
        try:
            made = RULES[node.op_type](ctx)
        except Unsupported as e:
            self._refuse(e.label, node)
            return
        for op in [made] if isinstance(made, Op) else (made or []):
            self.index[op.name] = len(self.ops)
            self.ops.append(op)
        for o in node.output:
            if o:
                self.act_shapes[o] = self.shape(o)

    def report(self) -> None:
        if self.unsupported:
            kinds = sorted(self.unsupported.items(), key=lambda kv: -len(kv[1]))
            listed = "; ".join(f"{label} x{len(nodes)} (first at {nodes[0]!r})" for label, nodes in kinds)
            raise UnsupportedOpError(f"cannot lower {self.path.name}: no rule for {listed}")
        if self.unknown_shape:
            value, node = self.unknown_shape[0]
            raise InputError(f"{self.path.name}: ONNX shape inference left the shape of {value!r} (node {node!r}) "
                             "unknown or dynamic; export with static shapes or give --input-shape CxHxW")


def _attrs(node) -> dict[str, Any]:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = list(v) if isinstance(v, (list, tuple)) or type(v).__name__.startswith("Repeated") else v
    return out


def lower_onnx(path, input_shape=None, *, name: str | None = None) -> Graph:
    """Import an ONNX model (one image input, batch 1) and fuse it into layers, like ``lower()``.

    ``input_shape`` (C,H,W) fills dynamic input dims; a static input must agree with it.
    """
    onnx = import_onnx()
    path = Path(path)
    model = load_model(onnx, path)
    vi = network_input(model.graph, path)
    shape = resolve_input_shape(vi, input_shape, path)
    imp = Importer(model, path, infer_shapes(onnx, model, vi.name, shape, path))
    imp.act_shapes[vi.name] = shape
    namer = Namer(model.graph.node)
    for node in model.graph.node:
        imp.run_node(node, namer)
    imp.report()
    if not any(op.kind not in ALIAS_KINDS for op in imp.ops):
        raise InputError(f"{path.name} has no operation perfsim can simulate")
    outputs = [imp.source(o.name) for o in model.graph.output if o.name in imp.act_shapes]
    total = sum(imp.counted.values())
    graph = fuse(name or path.stem, shape, imp.ops, [(vi.name, shape)], outputs, total)
    graph.meta.update({"source": "onnx", "producer": f"{model.producer_name} {model.producer_version}".strip(),
                       "opset": max((o.version for o in model.opset_import if o.domain in ONNX_DOMAINS), default=0)})
    return graph
