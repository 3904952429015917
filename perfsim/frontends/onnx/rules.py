"""The rules: what each ONNX op type becomes (matrix, vector and rowless ops), one rule per type in a registry."""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Any, Callable, Sequence

import numpy as np

from ...ir.graph import VECTOR_OPS_PER_ELEMENT, Op, OpKind
from ...registry import Registry


class Unsupported(Exception):
    """A node perfsim has no rule for; ``label`` groups it in the one error reported at the end."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


@dataclass
class Ctx:
    """What a rule sees of one node."""

    node: Any
    path: str
    attrs: dict[str, Any]
    acts: list[str]  # activation inputs, in order
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    imp: Any  # the importer.Importer running the node (its constants, shapes, parameters); importer.py imports this

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
                raise Unsupported(f"{self.op_type} without {what}")
            return None
        if name not in self.imp.consts:
            raise Unsupported(f"{self.op_type} with a computed {what}")
        return name

    def bias(self, i: int) -> str | None:
        """Input ``i`` as a bias: a parameter's data, or None (absent, or a literal the exporter made up,
        as the dynamo exporter's zero bias of a bias-less conv)."""
        name = self.const(i, "bias", required=False)
        return name if self.imp.learned(name) else None

    def shape_of(self, name: str) -> tuple[int, ...]:
        s = self.imp.consts[name].shape
        if s is None:
            raise Unsupported(f"{self.op_type} with a {name!r} of unknown shape")
        return s

    def value_of(self, name: str | None):
        return None if name is None else self.imp.consts.value(name, self.imp.act_shapes)


Rule = Callable[[Ctx], "Op | list[Op] | None"]
RULES: Registry = Registry("ONNX rule")


def handles(*op_types: str):
    """Register a rule for ONNX op types (default domain); a second rule for one type is a bug."""
    return RULES.register(*op_types)


def _op(ctx: Ctx, kind: OpKind, **kw: Any) -> Op:
    return Op(name=ctx.node.output[0], path=ctx.path, kind=kind, target=ctx.op_type,
              inputs=tuple(ctx.imp.source(a) for a in ctx.acts), in_shapes=ctx.in_shapes,
              out_shape=ctx.out_shape, **kw)


def _pair(v: Sequence[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if len(v) > 1 else (int(v[0]), int(v[0]))


def _begin_pads(ctx: Ctx, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, int]:
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
def _conv(ctx: Ctx) -> Op:
    w = ctx.const(1, "weight")
    b = ctx.bias(2)
    wshape = ctx.shape_of(w)
    if len(wshape) != 4 or len(ctx.in_shapes[0]) != 4:
        raise Unsupported(f"Conv ({len(wshape) - 2}-D)")
    kernel = tuple(ctx.attrs.get("kernel_shape", wshape[2:]))
    strides = ctx.attrs.get("strides", [1, 1])
    dilations = ctx.attrs.get("dilations", [1, 1])
    # MACs = N*Ho*Wo*Co * (Ci/groups)*Kh*Kw, read from the weight's shape (grouped/depthwise alike)
    return _op(ctx, OpKind.CONV, kernel=_pair(kernel), stride=_pair(strides),
               padding=_begin_pads(ctx, kernel, strides, dilations), dilation=_pair(dilations),
               groups=int(ctx.attrs.get("group", 1)),
               params=ctx.imp.param(w) + ctx.imp.param(b), weight_elems=prod(wshape),
               bias_elems=prod(ctx.shape_of(b)) if b else 0, macs=prod(ctx.out_shape) * prod(wshape[1:]))


def _linear(ctx: Ctx, weight: str, bias: str | None, k: int) -> Op:
    return _op(ctx, OpKind.LINEAR, params=ctx.imp.param(weight) + ctx.imp.param(bias),
               weight_elems=prod(ctx.shape_of(weight)), bias_elems=prod(ctx.shape_of(bias)) if bias else 0,
               macs=prod(ctx.out_shape) * k)


def _activation_matmul(ctx: Ctx, k: int) -> Op:
    """Both operands activations: the matrix unit with no weights (SPEC), when the IR has the kind."""
    kind = getattr(OpKind, "MATMUL", None)
    if kind is None:
        raise Unsupported(f"{ctx.op_type} of two activations")
    return _op(ctx, kind, macs=prod(ctx.out_shape) * k)


@handles("Gemm")
def _gemm(ctx: Ctx) -> Op:
    a_shape = ctx.in_shapes[0]
    k = a_shape[0] if ctx.attrs.get("transA", 0) else a_shape[-1]
    if ctx.input(0) in ctx.imp.consts:
        raise Unsupported("Gemm with a constant left operand")
    if len(ctx.acts) == 2:
        return _activation_matmul(ctx, k)
    return _linear(ctx, ctx.const(1, "weight"), ctx.bias(2), k)


@handles("MatMul")
def _matmul(ctx: Ctx) -> Op:
    if len(ctx.acts) == 2:
        return _activation_matmul(ctx, ctx.in_shapes[0][-1])
    if ctx.input(1) in ctx.imp.consts:  # x @ W: a linear layer without bias (an Add may bring it)
        return _linear(ctx, ctx.input(1), None, ctx.in_shapes[0][-1])
    w = ctx.input(0)  # W @ x: the reduced dim is x's rows
    return _linear(ctx, w, None, ctx.in_shapes[0][-2] if len(ctx.in_shapes[0]) > 1 else ctx.in_shapes[0][0])


# ---- vector ops ------------------------------------------------------------


def _elementwise(kind: OpKind) -> Rule:
    def rule(ctx: Ctx) -> Op:
        return _op(ctx, kind, vector_ops=VECTOR_OPS_PER_ELEMENT[kind] * prod(ctx.out_shape))
    return rule


handles("Relu")(_elementwise(OpKind.RELU))
handles("Softmax")(_elementwise(OpKind.SOFTMAX))


@handles("BatchNormalization")
def _batchnorm(ctx: Ctx) -> Op:
    if ctx.attrs.get("training_mode", 0) or ctx.imp.used_beyond_first(ctx.node):
        raise Unsupported("BatchNormalization in training mode")
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
def _clip(ctx: Ctx) -> Op:
    if "min" in ctx.attrs or "max" in ctx.attrs:  # opset < 11: bounds are attributes
        lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
    else:
        lo = _scalar(ctx.value_of(ctx.const(1, "min", required=False)))
        hi = _scalar(ctx.value_of(ctx.const(2, "max", required=False)))
    if (lo, hi) != (0.0, 6.0):
        raise Unsupported(f"Clip({lo}, {hi}) (only the ReLU6 form Clip(0, 6))")
    return _elementwise(OpKind.RELU6)(ctx)


def _pool(ctx: Ctx, kind: OpKind) -> Op:
    kernel = ctx.attrs.get("kernel_shape", [])
    if len(kernel) != 2:
        raise Unsupported(f"{ctx.op_type} ({len(kernel)}-D)")
    if any(d != 1 for d in ctx.attrs.get("dilations", [1, 1])):
        raise Unsupported(f"dilated {ctx.op_type}")
    if ctx.imp.used_beyond_first(ctx.node):
        raise Unsupported(f"{ctx.op_type} returning indices")
    strides = ctx.attrs.get("strides", [1, 1])
    k = _pair(kernel)
    per_out = k[0] * k[1] - 1 if kind is OpKind.MAXPOOL else k[0] * k[1]
    return _op(ctx, kind, kernel=k, stride=_pair(strides), padding=_begin_pads(ctx, kernel, strides, [1, 1]),
               vector_ops=per_out * prod(ctx.out_shape))


@handles("MaxPool")
def _maxpool(ctx: Ctx) -> Op:
    return _pool(ctx, OpKind.MAXPOOL)


@handles("AveragePool")
def _avgpool(ctx: Ctx) -> Op:
    return _pool(ctx, OpKind.AVGPOOL)


@handles("GlobalAveragePool")
def _global_avgpool(ctx: Ctx) -> Op:
    # SPEC: global average pool costs 1 vector op per input element (fvcore agrees)
    s = ctx.in_shapes[0]
    return _op(ctx, OpKind.GLOBAL_AVGPOOL, kernel=(s[-2], s[-1]) if len(s) == 4 else None, vector_ops=prod(s))


@handles("ReduceMean")
def _reduce_mean(ctx: Ctx) -> Op:
    axes = ctx.attrs.get("axes")
    if axes is None and ctx.input(1):  # opset >= 18: axes are an input
        axes = ctx.value_of(ctx.const(1, "axes"))
    rank = len(ctx.in_shapes[0])
    axes = sorted(int(a) % rank for a in (axes if axes is not None else [])) if rank else []
    if rank != 4 or axes != [2, 3]:
        raise Unsupported("ReduceMean over other axes than H, W")
    return _global_avgpool(ctx)


@handles("Add", "Sub", "Mul", "Div")
def _binary(ctx: Ctx) -> Op | None:
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
def _alias(ctx: Ctx) -> Op:
    if ctx.op_type == "Dropout" and ctx.imp.used_beyond_first(ctx.node):
        raise Unsupported("Dropout returning its mask")
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise Unsupported(f"{ctx.op_type} with a computed shape operand")
    return _op(ctx, OpKind.ALIAS)


@handles("Slice", "Gather")
def _gather(ctx: Ctx) -> Op:
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise Unsupported(f"{ctx.op_type} with computed indices")  # an embedding lookup, data-dependent
    return _op(ctx, OpKind.GATHER)


@handles("Split")
def _split(ctx: Ctx) -> list[Op]:
    """One gather of the whole source, and each piece a gather reading it (as torch's split/getitem)."""
    if len(ctx.acts) != 1 or ctx.acts[0] != ctx.input(0):
        raise Unsupported("Split with computed sizes")
    whole = replace(_op(ctx, OpKind.GATHER), name=ctx.imp.unique(f"{ctx.node.output[0]}#split"),
                    out_shape=ctx.in_shapes[0])
    pieces = [Op(name=out, path=ctx.path, kind=OpKind.GATHER, target="Split", inputs=(whole.name,),
                 in_shapes=(ctx.in_shapes[0],), out_shape=ctx.imp.shape(out))
              for out in ctx.node.output if out]
    return [whole, *pieces]


@handles("Concat")
def _concat(ctx: Ctx) -> Op:
    if len(ctx.acts) != len([i for i in ctx.node.input if i]):
        raise Unsupported("Concat with a constant operand (a learned token)")
    return _op(ctx, OpKind.CONCAT)

