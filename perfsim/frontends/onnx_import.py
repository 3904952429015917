"""ONNX import: an ``.onnx`` file to perfsim's op graph (the same ``Op`` records as the torch front end).

Torch-free: ``onnx`` (imported on first use) and numpy. The file is loaded, its shapes are
inferred (``onnx.shape_inference``, static, at batch 1), and every node is handled by exactly
one rule in a registry keyed by ONNX op type. A node that reads no activation (``Constant``,
``Shape`` arithmetic, anything computed from initializers) is a constant and makes no op. Every
node kind without a rule is reported in one ``UnsupportedOpError``: kinds, counts, first node.

Parameters are initializers read in a parameter position (Conv / Gemm / MatMul weight and bias,
BatchNormalization scale and bias, an elementwise operand), counted once per value; ONNX keeps BN's
running statistics as initializers too, and they never count (SPEC: buffers never count). Layers
are named by the module path the torch exporter records (``/features/features.0/features.0.0/Conv``
gives ``features.0.0``; the dynamo exporter's ``name_scopes`` metadata likewise); docs/onnx.md holds
every rule.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from math import prod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, UnsupportedOpError
from ..ir.fuse import fuse
from ..ir.graph import ALIAS_KINDS, VECTOR_OPS_PER_ELEMENT, Graph, Op, OpKind
from ..registry import Registry

MAX_FILE_BYTES = 2 * 1024 ** 3  # protobuf's limit for one message: no single-file ONNX model is larger
_ONNX_DOMAINS = ("", "ai.onnx")
_EVAL_MAX_NODES = 64  # a constant subgraph evaluated for a small value (bounds, axes): at most this many nodes
_EVAL_MAX_ELEMS = 65536  # ... reading at most this many initializer elements; larger weights skip shape inference
_SHAPE_ONLY = frozenset({"Shape", "Size"})  # read an activation's shape, not its data: constants


class _Unsupported(Exception):
    """A node perfsim has no rule for; ``label`` groups it in the one error reported at the end."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _import_onnx():
    try:
        import onnx
    except ModuleNotFoundError:
        raise InputError("onnx is not installed: pip install 'perfsim[onnx]'") from None
    return onnx


def _load(onnx, path: Path):
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {size / 2 ** 30:.2f} GiB; an ONNX model file is at most 2 GiB "
                         "(larger weights live in external data files)")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path} is not a readable ONNX model: {first}") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph in it)")
    if model.functions:  # model-local functions (the dynamo exporter emits some): expand them in place
        from onnx import inliner
        model = inliner.inline_local_functions(model)
    return model


def _network_input(graph, path: Path):
    """The one activation input (initializers listed as inputs by old exporters are not inputs)."""
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise InputError(f"{path} has {len(inputs)} inputs ({names}); perfsim simulates one image input")
    return inputs[0]


def _dims(value_info) -> list[int | str | None]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _fmt(shape: Sequence[Any]) -> str:
    return "x".join("?" if not isinstance(s, int) else str(s) for s in shape)


def _resolve_input_shape(vi, input_shape, path: Path) -> tuple[int, ...]:
    """The input's shape at batch 1: the file's own when static, else ``input_shape`` (C,H,W)."""
    dims = _dims(vi)
    if not dims:
        raise InputError(f"{path}: input {vi.name!r} has no shape; give --input-shape CxHxW")
    given = None
    if input_shape is not None:
        given = tuple(int(s) for s in input_shape)
        given = given if len(given) == len(dims) else (1,) + given
        if len(given) != len(dims) or any(s <= 0 for s in given) or given[0] != 1:
            raise InputError(f"--input-shape {_fmt(input_shape)} does not fit {path}'s input {_fmt(dims)} "
                             "(give C,H,W at batch 1)")
    static = [d if isinstance(d, int) and d > 0 else None for d in dims]
    if static[0] not in (None, 1):
        raise InputError(f"{path} was exported at batch {static[0]}; perfsim lowers at batch 1 "
                         "(export at batch 1 or with a dynamic batch, and give the batch to simulate)")
    if given is None:
        if any(s is None for s in static[1:]):
            raise InputError(f"{path}: input {vi.name!r} has dynamic dims ({_fmt(dims)}); "
                             "give --input-shape CxHxW")
        return (1,) + tuple(static[1:])
    clash = [(a, b) for a, b in zip(static[1:], given[1:]) if a is not None and a != b]
    if clash:
        raise InputError(f"{path} was exported for input {_fmt(dims)}, not {_fmt(given)}: "
                         "shapes inside it were fixed at export (re-export with dynamic axes)")
    return given


def _infer_shapes(onnx, model, input_name: str, shape: tuple[int, ...], path: Path) -> list:
    """Static shapes (value infos) for every value. Inference runs on a copy whose large weights
    hold their dims but not their bytes: it reads no weight data (ResNet-18: 0.2 s -> 3 ms)."""
    for vi in model.graph.input:
        if vi.name == input_name:
            for d, s in zip(vi.type.tensor_type.shape.dim, shape):
                d.Clear()
                d.dim_value = s
    g = model.graph
    light = onnx.helper.make_graph(
        list(g.node), g.name, list(g.input), list(g.output), value_info=list(g.value_info),
        initializer=[i if prod(i.dims) <= _EVAL_MAX_ELEMS else
                     onnx.TensorProto(name=i.name, data_type=i.data_type, dims=i.dims) for i in g.initializer])
    light_model = onnx.helper.make_model(light, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(light_model, strict_mode=False, data_prop=True).graph
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: ONNX shape inference failed: {first}") from None
    return [*inferred.input, *inferred.value_info, *inferred.output]


# --------------------------------------------------------------------------
# Layer names: the module path the exporter recorded
# --------------------------------------------------------------------------


def _name_scopes(node) -> list[str] | None:
    """The dynamo exporter's module scopes, e.g. ['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_1']."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return None
            return [str(s) for s in scopes] if isinstance(scopes, list) else None
    return None


def _bn_folded_into(node) -> bool:
    return any(p.key == "pkg.onnxscript.rewriter.rule_name" and "FuseBatchNormIntoConv" in p.value
               for p in node.metadata_props)


def _child(path: str, prev: str, segment: str) -> str:
    """The module path of a scope segment under ``path`` (whose own segment was ``prev``).

    TorchScript scopes name a Sequential's child by the Sequential's segment plus the index
    (``features`` then ``features.0``), any other child by its attribute name (``conv1``).
    """
    if prev and segment.startswith(prev + "."):
        return path + segment[len(prev):]
    return f"{path}.{segment}" if path else segment


_CALL_SUFFIX = re.compile(r"^(.*)_(\d+)$")


class _Namer:
    """Module paths from the legacy exporter's node names, ``/layer1/layer1.0/relu_1/Relu``.

    A module called twice gets ``relu``, then ``relu_1`` in its scope; the suffix is dropped when
    the unsuffixed path also occurs in the graph (so a module really named ``relu_1`` keeps it).
    """

    def __init__(self, nodes):
        self.raw: set[str] = set()
        for n in nodes:
            path, prev = "", ""
            for seg in self._segments(n.name):
                path, prev = _child(path, prev, seg), seg
                self.raw.add(path)

    @staticmethod
    def _segments(name: str) -> list[str]:
        return [s for s in name.split("/")[1:-1] if s] if name.startswith("/") else []

    def _legacy(self, name: str) -> str:
        path, prev = "", ""
        for seg in self._segments(name):
            m = _CALL_SUFFIX.match(seg)
            if m and _child(path, prev, m.group(1)) in self.raw:
                seg = m.group(1)
            path, prev = _child(path, prev, seg), seg
        return path

    def path(self, node, weight: str | None) -> str:
        scopes = _name_scopes(node)
        if scopes is not None:
            if _bn_folded_into(node) and weight and weight.endswith(".weight"):
                return weight[: -len(".weight")]  # the conv a BN was folded into carries the BN's scope
            module = next((s for s in reversed(scopes[:-1]) if s), "")
            return module or (scopes[-1] if scopes else "") or node.name or node.output[0]
        return self._legacy(node.name) or node.name.strip("/") or node.output[0]


# --------------------------------------------------------------------------
# The importer: values, parameters, rules
# --------------------------------------------------------------------------


@dataclass
class _Const:
    shape: tuple[int, ...] | None
    from_initializer: bool  # an initializer, or computed from one's data (a literal Constant is not)
    value: Any = None  # numpy array, when known
    evaluated: bool = False


class _Constants:
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
        if node.domain in _ONNX_DOMAINS and node.op_type in _SHAPE_ONLY:
            return False
        return not (node.domain in _ONNX_DOMAINS and node.op_type == "CastLike" and name != node.input[0])

    def is_constant(self, node) -> bool:
        return all(i in self.info for i in node.input if i and self.reads_data(node, i))

    def add(self, node) -> None:
        from onnx import helper, numpy_helper
        value = None
        if node.op_type == "Constant" and node.domain in _ONNX_DOMAINS and node.attribute:
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
        if sum(prod(self.info[i].shape or ()) for i in inits) > _EVAL_MAX_ELEMS:
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


@dataclass
class _Ctx:
    """What a rule sees of one node."""

    node: Any
    path: str
    attrs: dict[str, Any]
    acts: list[str]  # activation inputs, in order
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    imp: "_Importer"

    @property
    def op_type(self) -> str:
        return self.node.op_type

    def input(self, i: int) -> str:
        return self.node.input[i] if len(self.node.input) > i else ""

    def const(self, i: int, what: str, required: bool = True) -> str | None:
        """The name of input ``i``, which must be a constant (a weight, a bias, bounds, axes)."""
        name = self.input(i)
        if not name:
            if required:
                raise _Unsupported(f"{self.op_type} without {what}")
            return None
        if name not in self.imp.consts:
            raise _Unsupported(f"{self.op_type} with a computed {what}")
        return name

    def bias(self, i: int) -> str | None:
        """Input ``i`` as a bias: a parameter's data, or None (absent, or a literal the exporter made up,
        as the dynamo exporter's zero bias of a bias-less conv)."""
        name = self.const(i, "bias", required=False)
        return name if self.imp.learned(name) else None

    def shape_of(self, name: str) -> tuple[int, ...]:
        s = self.imp.consts[name].shape
        if s is None:
            raise _Unsupported(f"{self.op_type} with a {name!r} of unknown shape")
        return s

    def value_of(self, name: str | None):
        return None if name is None else self.imp.consts.value(name, self.imp.act_shapes)


Rule = Callable[[_Ctx], "Op | list[Op] | None"]
_RULES: Registry = Registry("ONNX rule")


def handles(*op_types: str):
    """Register a rule for ONNX op types (default domain); a second rule for one type is a bug."""
    return _RULES.register(*op_types)


def _op(ctx: _Ctx, kind: OpKind, **kw: Any) -> Op:
    return Op(name=ctx.node.output[0], path=ctx.path, kind=kind, target=ctx.op_type,
              inputs=tuple(ctx.imp.source(a) for a in ctx.acts), in_shapes=ctx.in_shapes,
              out_shape=ctx.out_shape, **kw)


def _pair(v: Sequence[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if len(v) > 1 else (int(v[0]), int(v[0]))


def _begin_pads(ctx: _Ctx, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, int]:
    """Top and left padding (what a tiled row band reads from); bottom/right only shape the output."""
    auto = ctx.attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = ctx.attrs.get("pads", [0] * 2 * len(kernel))
        return _pair(pads[: len(kernel)])
    if auto == "VALID":
        return (0, 0)
    begin = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilations)):
        n_in, n_out = ctx.in_shapes[0][2 + i], ctx.out_shape[2 + i]
        total = max((n_out - 1) * s + (k - 1) * d + 1 - n_in, 0)
        begin.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return _pair(begin)


# ---- matrix ops ------------------------------------------------------------


@handles("Conv")
def _conv(ctx: _Ctx) -> Op:
    w = ctx.const(1, "weight")
    b = ctx.bias(2)
    wshape = ctx.shape_of(w)
    if len(wshape) != 4 or len(ctx.in_shapes[0]) != 4:
        raise _Unsupported(f"Conv ({len(wshape) - 2}-D)")
    kernel = tuple(ctx.attrs.get("kernel_shape", wshape[2:]))
    strides = ctx.attrs.get("strides", [1, 1])
    dilations = ctx.attrs.get("dilations", [1, 1])
    # MACs = N*Ho*Wo*Co * (Ci/groups)*Kh*Kw, read from the weight's shape (grouped/depthwise alike)
    return _op(ctx, OpKind.CONV, kernel=_pair(kernel), stride=_pair(strides),
               padding=_begin_pads(ctx, kernel, strides, dilations), dilation=_pair(dilations),
               groups=int(ctx.attrs.get("group", 1)),
               params=ctx.imp.param(w) + ctx.imp.param(b), weight_elems=prod(wshape),
               bias_elems=prod(ctx.shape_of(b)) if b else 0, macs=prod(ctx.out_shape) * prod(wshape[1:]))


def _linear(ctx: _Ctx, weight: str, bias: str | None, k: int) -> Op:
    return _op(ctx, OpKind.LINEAR, params=ctx.imp.param(weight) + ctx.imp.param(bias),
               weight_elems=prod(ctx.shape_of(weight)), bias_elems=prod(ctx.shape_of(bias)) if bias else 0,
               macs=prod(ctx.out_shape) * k)


def _activation_matmul(ctx: _Ctx, k: int) -> Op:
    """Both operands activations: the matrix unit with no weights (SPEC), when the IR has the kind."""
    kind = getattr(OpKind, "MATMUL", None)
    if kind is None:
        raise _Unsupported(f"{ctx.op_type} of two activations")
    return _op(ctx, kind, macs=prod(ctx.out_shape) * k)


@handles("Gemm")
def _gemm(ctx: _Ctx) -> Op:
    a_shape = ctx.in_shapes[0]
    k = a_shape[0] if ctx.attrs.get("transA", 0) else a_shape[-1]
    if ctx.input(0) in ctx.imp.consts:
        raise _Unsupported("Gemm with a constant left operand")
    if len(ctx.acts) == 2:
        return _activation_matmul(ctx, k)
    return _linear(ctx, ctx.const(1, "weight"), ctx.bias(2), k)


@handles("MatMul")
def _matmul(ctx: _Ctx) -> Op:
    if len(ctx.acts) == 2:
        return _activation_matmul(ctx, ctx.in_shapes[0][-1])
    if ctx.input(1) in ctx.imp.consts:  # x @ W: a linear layer without bias (an Add may bring it)
        return _linear(ctx, ctx.input(1), None, ctx.in_shapes[0][-1])
    w = ctx.input(0)  # W @ x: the reduced dim is x's rows
    return _linear(ctx, w, None, ctx.in_shapes[0][-2] if len(ctx.in_shapes[0]) > 1 else ctx.in_shapes[0][0])


# ---- vector ops ------------------------------------------------------------


def _elementwise(kind: OpKind) -> Rule:
    def rule(ctx: _Ctx) -> Op:
        return _op(ctx, kind, vector_ops=VECTOR_OPS_PER_ELEMENT[kind] * prod(ctx.out_shape))
    return rule


handles("Relu")(_elementwise(OpKind.RELU))
handles("Softmax")(_elementwise(OpKind.SOFTMAX))


@handles("BatchNormalization")
def _batchnorm(ctx: _Ctx) -> Op:
    if ctx.attrs.get("training_mode", 0) or ctx.imp.used_beyond_first(ctx.node):
        raise _Unsupported("BatchNormalization in training mode")
    ctx.const(1, "scale"), ctx.const(2, "bias"), ctx.const(3, "running mean"), ctx.const(4, "running variance")
    affine = [c for c in ctx.node.input[1:3] if ctx.imp.learned(c)]  # the statistics are buffers: never parameters
    return _op(ctx, OpKind.BATCHNORM, params=sum(ctx.imp.param(c) for c in affine),
               bn_channels=ctx.in_shapes[0][1], vector_ops=2 * prod(ctx.out_shape))


def _scalar(v) -> float | None:
    if v is None:
        return None
    flat = [float(x) for x in np.asarray(v).reshape(-1)]
    return flat[0] if len(flat) == 1 else None


@handles("Clip")
def _clip(ctx: _Ctx) -> Op:
    if "min" in ctx.attrs or "max" in ctx.attrs:  # opset < 11: bounds are attributes
        lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
    else:
        lo = _scalar(ctx.value_of(ctx.const(1, "min", required=False)))
        hi = _scalar(ctx.value_of(ctx.const(2, "max", required=False)))
    if (lo, hi) != (0.0, 6.0):
        raise _Unsupported(f"Clip({lo}, {hi}) (only the ReLU6 form Clip(0, 6))")
    return _elementwise(OpKind.RELU6)(ctx)


def _pool(ctx: _Ctx, kind: OpKind) -> Op:
    kernel = ctx.attrs.get("kernel_shape", [])
    if len(kernel) != 2:
        raise _Unsupported(f"{ctx.op_type} ({len(kernel)}-D)")
    if any(d != 1 for d in ctx.attrs.get("dilations", [1, 1])):
        raise _Unsupported(f"dilated {ctx.op_type}")
    if ctx.imp.used_beyond_first(ctx.node):
        raise _Unsupported(f"{ctx.op_type} returning indices")
    strides = ctx.attrs.get("strides", [1, 1])
    k = _pair(kernel)
    per_out = k[0] * k[1] - 1 if kind is OpKind.MAXPOOL else k[0] * k[1]
    return _op(ctx, kind, kernel=k, stride=_pair(strides), padding=_begin_pads(ctx, kernel, strides, [1, 1]),
               vector_ops=per_out * prod(ctx.out_shape))


@handles("MaxPool")
def _maxpool(ctx: _Ctx) -> Op:
    return _pool(ctx, OpKind.MAXPOOL)


@handles("AveragePool")
def _avgpool(ctx: _Ctx) -> Op:
    return _pool(ctx, OpKind.AVGPOOL)


@handles("GlobalAveragePool")
def _global_avgpool(ctx: _Ctx) -> Op:
    # SPEC: global average pool costs 1 vector op per input element (fvcore agrees)
    s = ctx.in_shapes[0]
    return _op(ctx, OpKind.GLOBAL_AVGPOOL, kernel=(s[-2], s[-1]) if len(s) == 4 else None, vector_ops=prod(s))


@handles("ReduceMean")
def _reduce_mean(ctx: _Ctx) -> Op:
    axes = ctx.attrs.get("axes")
    if axes is None and ctx.input(1):  # opset >= 18: axes are an input
        axes = ctx.value_of(ctx.const(1, "axes"))
    rank = len(ctx.in_shapes[0])
    axes = sorted(int(a) % rank for a in (axes if axes is not None else [])) if rank else []
    if rank != 4 or axes != [2, 3]:
        raise _Unsupported("ReduceMean over other axes than H, W")
    return _global_avgpool(ctx)


@handles("Add", "Sub", "Mul", "Div")
def _binary(ctx: _Ctx) -> Op | None:
    consts = [i for i in ctx.node.input if i in ctx.imp.consts]
    learned = [c for c in dict.fromkeys(consts) if ctx.imp.learned(c)]
    if ctx.op_type == "Add" and len(ctx.acts) == 1 and len(learned) == 1 and ctx.imp.fold_bias(ctx, learned[0]):
        return None  # MatMul + Add(bias): one linear layer, as torch's nn.Linear
    kind = OpKind.ADD if ctx.op_type == "Add" and len(ctx.acts) >= 2 else OpKind.ELEMENTWISE
    # a learned scale or shift is a parameter, stored and read as a weight (as the torch front end)
    return _op(ctx, kind, vector_ops=prod(ctx.out_shape), params=sum(ctx.imp.param(c) for c in learned),
               weight_elems=sum(prod(ctx.shape_of(c)) for c in learned))


# ---- rowless ops -------------------------------------------------------------


@handles("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout")
def _alias(ctx: _Ctx) -> Op:
    if ctx.op_type == "Dropout" and ctx.imp.used_beyond_first(ctx.node):
        raise _Unsupported("Dropout returning its mask")
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise _Unsupported(f"{ctx.op_type} with a computed shape operand")
    return _op(ctx, OpKind.ALIAS)


@handles("Slice", "Gather")
def _gather(ctx: _Ctx) -> Op:
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise _Unsupported(f"{ctx.op_type} with computed indices")  # an embedding lookup, data-dependent
    return _op(ctx, OpKind.GATHER)


@handles("Split")
def _split(ctx: _Ctx) -> list[Op]:
    """One gather of the whole source, and each piece a gather reading it (as torch's split/getitem)."""
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise _Unsupported("Split with computed sizes")
    whole = replace(_op(ctx, OpKind.GATHER), name=ctx.imp.unique(f"{ctx.node.output[0]}#split"),
                    out_shape=ctx.in_shapes[0])
    pieces = [Op(name=out, path=ctx.path, kind=OpKind.GATHER, target="Split", inputs=(whole.name,),
                 in_shapes=(ctx.in_shapes[0],), out_shape=ctx.imp.shape(out))
              for out in ctx.node.output if out]
    return [whole, *pieces]


@handles("Concat")
def _concat(ctx: _Ctx) -> Op:
    if len(ctx.acts) != len([i for i in ctx.node.input if i]):
        raise _Unsupported("Concat with a constant operand (a learned token)")
    return _op(ctx, OpKind.CONCAT)


@dataclass
class _Importer:
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
            dims = _dims(vi)
            static = vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) and d > 0 for d in dims)
            self.shapes[vi.name] = tuple(dims) if static else None
        self.consts = _Constants(self.model, self.shapes)
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

    def fold_bias(self, ctx: _Ctx, bias: str) -> bool:
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

    def _context(self, node, namer: _Namer) -> _Ctx | None:
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
        return _Ctx(node=node, path=namer.path(node, weight), attrs=_attrs(node), acts=acts,
                    in_shapes=tuple(in_shapes), out_shape=outs[0], imp=self)

    def run_node(self, node, namer: _Namer) -> None:
        if self.consts.is_constant(node):
            self.consts.add(node)
            return
        if node.domain not in _ONNX_DOMAINS or node.op_type not in _RULES:
            label = node.op_type if node.domain in _ONNX_DOMAINS else f"{node.domain}.{node.op_type}"
            self._refuse(label, node)
            return
        ctx = self._context(node, namer)
        if ctx is None:
            return
        try:
            made = _RULES[node.op_type](ctx)
        except _Unsupported as e:
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
    onnx = _import_onnx()
    path = Path(path)
    model = _load(onnx, path)
    vi = _network_input(model.graph, path)
    shape = _resolve_input_shape(vi, input_shape, path)
    imp = _Importer(model, path, _infer_shapes(onnx, model, vi.name, shape, path))
    imp.act_shapes[vi.name] = shape
    namer = _Namer(model.graph.node)
    for node in model.graph.node:
        imp.run_node(node, namer)
    imp.report()
    if not any(op.kind not in ALIAS_KINDS for op in imp.ops):
        raise InputError(f"{path.name} has no operation perfsim can simulate")
    outputs = [imp.source(o.name) for o in model.graph.output if o.name in imp.act_shapes]
    total = sum(imp.counted.values())
    graph = fuse(name or path.stem, shape, imp.ops, [(vi.name, shape)], outputs, total)
    graph.meta.update({"source": "onnx", "producer": f"{model.producer_name} {model.producer_version}".strip(),
                       "opset": max((o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS), default=0)})
    return graph
