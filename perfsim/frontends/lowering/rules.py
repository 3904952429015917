"""Cost rules: one per ATen op, each a pure function of the call's shapes and arguments. Torch-free.

A rule is registered for one or more ATen op names (``convolution``, ``add_``) through
``@rule``, which refuses duplicates. It returns the op's ``Cost`` (kind, MACs, vector ops,
geometry, what it stores), ``None`` for an op that is explicitly ignored (an inspection whose
result is a Python value), or raises ``Unsupported`` for a form perfsim does not model. An op
with no rule is reported, never counted as zero. Per-element vector costs come from the one
table, ``graph.VECTOR_OPS_PER_ELEMENT``.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, prod
from typing import Callable

from ...ir.graph import AFFINE_OPS_PER_ELEMENT, PER_INPUT_ELEMENT_KINDS, VECTOR_OPS_PER_ELEMENT, OpKind
from ...registry import Registry
from .calls import Call, Operand, Role


class Unsupported(Exception):
    """A form of an op perfsim does not model; the message says which (``transposed``)."""


@dataclass(frozen=True)
class Cost:
    kind: OpKind
    macs: int = 0
    vector_ops: int = 0
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None  # PAD: the symmetric zero padding a conv may absorb, else None
    dilation: tuple[int, int] | None = None
    groups: int = 1
    weight_elems: int = 0
    bias_elems: int = 0
    bn_channels: int = 0  # per-channel scale/shift pairs stored at bias_bits (an unfolded BN, a norm's affine)
    out_shape: tuple[int, ...] | None = None  # overrides the call's first output (a split: its whole source)
    in_shapes: tuple[tuple[int, ...], ...] | None = None  # overrides the read operands' shapes (conv1d as 2-D)
    reads: tuple[Operand, ...] | None = None  # the activation operands it reads, when not all of them
    reduce_dims: tuple[int, ...] | None = None  # input dims (negative: from the last) an output reads whole
    variant: str = ""  # the code path the host runs it on, when the call's operands choose it (``Op.variant``)


Rule = Callable[[Call], "Cost | None"]
RULES: Registry = Registry("lowering rule (aten op)")


def rule(*ops: str) -> Callable[[Rule], Rule]:
    return RULES.register(*ops)


def _with_inplace(*ops: str) -> tuple[str, ...]:
    return tuple(o for op in ops for o in (op, op + "_"))


def numel(shape: tuple[int, ...]) -> int:
    return prod(shape)


def per_element(kind: OpKind, call: Call, **kw) -> Cost:
    """``kind``'s table cost over the output (or, for reductions, the input) elements."""
    shape = call.acts()[0].shape if kind in PER_INPUT_ELEMENT_KINDS else call.out_shape
    return Cost(kind, vector_ops=VECTOR_OPS_PER_ELEMENT[kind] * numel(shape), **kw)


def stored_weights(call: Call) -> int:
    """Distinct elements of the weight operands (one parameter read twice is stored once)."""
    seen: dict[tuple[str, ...], int] = {}
    for o in call.weights():
        seen[o.params] = max(seen.get(o.params, 0), o.stored_elems)
    return sum(seen.values())


def _pair(v) -> tuple[int, int]:
    if isinstance(v, tuple):
        return (int(v[0]), int(v[-1])) if v else (1, 1)
    return (int(v), int(v))


# --------------------------------------------------------------------------- matrix unit


@rule("convolution", "_convolution")
def conv(call: Call) -> Cost:
    x, w, b = call.args["input"], call.args["weight"], call.args["bias"]
    if call.arg("transposed"):
        raise Unsupported("transposed")
    if w.role is Role.ACT:
        raise Unsupported("weight computed from the input")
    if len(w.shape) not in (3, 4):
        raise Unsupported(f"{len(w.shape) - 2}-D")
    stride, padding, dilation = (call.arg(k) for k in ("stride", "padding", "dilation"))
    in_shape, out_shape = x.shape, call.out_shape
    kernel = tuple(w.shape[2:])
    if len(w.shape) == 3:  # a 1-D conv is a 2-D conv on a 1-row image
        in_shape, out_shape = in_shape[:2] + (1,) + in_shape[2:], out_shape[:2] + (1,) + out_shape[2:]
        kernel, stride, padding, dilation = (1,) + kernel, (1,) + stride, (0,) + padding, (1,) + dilation
    weight = w.stored_elems if w.role is Role.WEIGHT else 0
    bias = b.stored_elems if isinstance(b, Operand) and b.role is Role.WEIGHT else 0
    # MACs = N·Ho·Wo·Co · (Ci/groups)·Kh·Kw, read from the weight's shape (grouped and depthwise alike)
    return Cost(OpKind.CONV, macs=numel(call.out_shape) * numel(w.shape[1:]), kernel=_pair(kernel),
                stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation),
                groups=int(call.arg("groups", 1)), weight_elems=weight, bias_elems=bias,
                in_shapes=(in_shape,), out_shape=out_shape, reads=(x,), variant=x.layout)


_FACTORS = {"mm": ("self", "mat2"), "addmm": ("mat1", "mat2"), "bmm": ("self", "mat2"),
            "baddbmm": ("batch1", "batch2")}


@rule(*_FACTORS)
def matmul(call: Call) -> Cost:
    """MACs = batch·M·N·K. A weight factor makes it a linear layer; two activations a matmul."""
    a, b = (call.args[k] for k in _FACTORS[call.op])
    macs = numel(call.out_shape) * a.shape[-1]
    bias = call.args.get("self") if call.op in ("addmm", "baddbmm") else None
    bias_elems = bias.stored_elems if isinstance(bias, Operand) and bias.role is Role.WEIGHT else 0
    weight = [f for f in (a, b) if f.role is Role.WEIGHT]
    if a.role is Role.ACT and b.role is Role.ACT:
        return Cost(OpKind.MATMUL, macs=macs, bias_elems=bias_elems)
    return Cost(OpKind.LINEAR, macs=macs, weight_elems=sum(f.stored_elems for f in weight), bias_elems=bias_elems)


# --------------------------------------------------------------------------- normalisation


@rule("native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit")
def batch_norm(call: Call) -> Cost:
    if call.arg("training"):
        raise Unsupported("batch statistics at inference")
    x = call.args["input"]
    return Cost(OpKind.BATCHNORM, vector_ops=VECTOR_OPS_PER_ELEMENT[OpKind.BATCHNORM] * numel(x.shape),
                bn_channels=x.shape[1] if len(x.shape) > 1 else 1, reads=(x,))


def _norm(call: Call, kind: OpKind, channels: int, **kw) -> Cost:
    x = call.args["input"]
    affine = isinstance(call.args.get("weight"), Operand) or isinstance(call.args.get("bias"), Operand)
    per = VECTOR_OPS_PER_ELEMENT[kind] + (AFFINE_OPS_PER_ELEMENT if affine else 0)
    return Cost(kind, vector_ops=per * numel(x.shape), bn_channels=channels if affine else 0, reads=(x,), **kw)


@rule("native_layer_norm")
def layer_norm(call: Call) -> Cost:
    normalized = tuple(call.arg("normalized_shape"))
    return _norm(call, OpKind.LAYERNORM, numel(normalized), reduce_dims=tuple(range(-len(normalized), 0)))


@rule("native_group_norm")
def group_norm(call: Call) -> Cost:
    return _norm(call, OpKind.GROUPNORM, int(call.arg("C")))


# --------------------------------------------------------------------------- activations

_UNARY = {
    "relu": OpKind.RELU, "sigmoid": OpKind.SIGMOID, "silu": OpKind.SILU, "hardsigmoid": OpKind.HARDSIGMOID,
    "hardswish": OpKind.HARDSWISH, "gelu": OpKind.GELU, "leaky_relu": OpKind.LEAKY_RELU, "elu": OpKind.ELU,
    "celu": OpKind.ELU, "selu": OpKind.ELU, "tanh": OpKind.TANH, "mish": OpKind.MISH, "softplus": OpKind.SOFTPLUS,
}


@rule(*_with_inplace(*_UNARY))
def unary_activation(call: Call) -> Cost:
    return per_element(_UNARY[call.op.rstrip("_")], call)


@rule("_prelu_kernel")
def prelu(call: Call) -> Cost:
    return per_element(OpKind.LEAKY_RELU, call, weight_elems=stored_weights(call))


def _clamp_kind(lo, hi) -> OpKind:
    if lo == 0 and hi == 6:
        return OpKind.RELU6
    if lo is not None and hi is not None:
        return OpKind.CLAMP
    if lo == 0 and hi is None:
        return OpKind.RELU
    return OpKind.ELEMENTWISE


@rule(*_with_inplace("hardtanh"))
def hardtanh(call: Call) -> Cost:
    return per_element(_clamp_kind(call.arg("min_val"), call.arg("max_val")), call)


@rule(*_with_inplace("clamp"))
def clamp(call: Call) -> Cost:
    if isinstance(call.args.get("min"), Operand) or isinstance(call.args.get("max"), Operand):
        return per_element(OpKind.CLAMP, call, weight_elems=stored_weights(call))
    return per_element(_clamp_kind(call.args.get("min"), call.args.get("max")), call)


@rule(*_with_inplace("threshold"))
def threshold(call: Call) -> Cost:
    relu = call.arg("threshold") == 0 and call.arg("value") == 0
    return per_element(OpKind.RELU if relu else OpKind.ELEMENTWISE, call)


@rule("_softmax", "_safe_softmax", "_log_softmax")
def softmax(call: Call) -> Cost:
    return per_element(OpKind.SOFTMAX, call, reduce_dims=_reduced(call))


# --------------------------------------------------------------------------- elementwise

_ELEMENTWISE = _with_inplace(
    "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod", "pow", "exp", "exp2", "log", "log2",
    "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "neg", "abs", "erf", "sin", "cos", "sign", "floor", "ceil",
    "round", "trunc", "clamp_min", "clamp_max", "masked_fill", "eq", "ne", "gt", "lt", "ge", "le", "logical_not",
    "logical_and", "logical_or", "addcmul", "addcdiv", "lerp", "fill", "square", "nan_to_num", "atan2",
    "copysign", "where", "bitwise_not", "bitwise_and", "bitwise_or", "hypot", "sgn", "frac") + (
    "rsub", "maximum", "minimum", "isnan", "isinf", "logical_xor")


@rule(*_ELEMENTWISE)
def elementwise(call: Call) -> Cost:
    """1 vector op per output element; a parameter operand (a layer scale) is a stored weight."""
    return per_element(OpKind.ELEMENTWISE, call, weight_elems=stored_weights(call))


@rule(*_with_inplace("add"))
def add(call: Call) -> Cost:
    kind = OpKind.ADD if len(call.acts()) >= 2 else OpKind.ELEMENTWISE
    return per_element(kind, call, weight_elems=stored_weights(call))


# --------------------------------------------------------------------------- pooling and reductions


@rule("max_pool2d_with_indices", "max_pool2d")
def max_pool(call: Call) -> Cost:
    if _pair(call.arg("dilation", 1)) != (1, 1):
        raise Unsupported("dilated")
    k = _pair(call.arg("kernel_size"))
    s = _pair(call.arg("stride") or call.arg("kernel_size"))
    return Cost(OpKind.MAXPOOL, kernel=k, stride=s, padding=_pair(call.arg("padding", 0)),
                vector_ops=(k[0] * k[1] - 1) * numel(call.out_shape))


@rule("avg_pool2d")
def avg_pool(call: Call) -> Cost:
    k = _pair(call.arg("kernel_size"))
    s = _pair(call.arg("stride") or call.arg("kernel_size"))
    return Cost(OpKind.AVGPOOL, kernel=k, stride=s, padding=_pair(call.arg("padding", 0)),
                vector_ops=k[0] * k[1] * numel(call.out_shape))


def _global_pool(call: Call) -> Cost:
    x = call.acts()[0]
    return per_element(OpKind.GLOBAL_AVGPOOL, call, kernel=(x.shape[-2], x.shape[-1]))


def _adaptive_kernel(call: Call) -> tuple[int, int]:
    h, w = call.acts()[0].shape[-2:]
    oh, ow = call.out_shape[-2:]
    return (ceil(h / oh), ceil(w / ow))


@rule("_adaptive_avg_pool2d", "adaptive_avg_pool2d")
def adaptive_avg_pool(call: Call) -> Cost:
    if tuple(call.out_shape[-2:]) == (1, 1):
        return _global_pool(call)
    k = _adaptive_kernel(call)
    return Cost(OpKind.AVGPOOL, kernel=k, stride=k, padding=(0, 0), vector_ops=k[0] * k[1] * numel(call.out_shape))


@rule("adaptive_max_pool2d")
def adaptive_max_pool(call: Call) -> Cost:
    k = _adaptive_kernel(call)
    return Cost(OpKind.MAXPOOL, kernel=k, stride=k, padding=(0, 0),
                vector_ops=(k[0] * k[1] - 1) * numel(call.out_shape))


def _dims(call: Call, rank: int) -> frozenset[int]:
    dim = call.args.get("dim")
    if dim is None or dim == ():
        return frozenset(range(rank))
    dims = dim if isinstance(dim, tuple) else (dim,)
    return frozenset(d % rank for d in dims)


def _reduced(call: Call) -> tuple[int, ...]:
    """The dims the call reduces over, counted from the last (-1): unchanged by a leading 1."""
    rank = len(call.acts()[0].shape)
    return tuple(sorted(d - rank for d in _dims(call, max(1, rank)))) if rank else ()


@rule("mean")
def mean(call: Call) -> Cost:
    """A mean over both spatial dims of an NCHW tensor is a global average pool (1 op per input element)."""
    x = call.acts()[0]
    if len(x.shape) == 4 and _dims(call, 4) == {2, 3}:
        return _global_pool(call)
    return per_element(OpKind.REDUCE, call, reduce_dims=_reduced(call))


@rule("sum", "amax", "amin", "argmax", "argmin", "prod", "logsumexp", "var", "std", "var_mean", "std_mean",
      "linalg_vector_norm", "norm", "cumsum", "any", "all")
def reduce(call: Call) -> Cost:
    return per_element(OpKind.REDUCE, call, reduce_dims=_reduced(call))


@rule("col2im")
def overlap_add(call: Call) -> Cost:
    """``F.fold``: patches summed into an image, one add per patch element read."""
    return per_element(OpKind.REDUCE, call)


@rule("max", "min")
def max_min(call: Call) -> Cost:
    if isinstance(call.args.get("other"), Operand):  # the elementwise overload
        return per_element(OpKind.ELEMENTWISE, call, weight_elems=stored_weights(call))
    return per_element(OpKind.REDUCE, call, reduce_dims=_reduced(call))


# --------------------------------------------------------------------------- data movement


@rule("constant_pad_nd")
def constant_pad(call: Call) -> Cost:
    """A zero pad of the spatial dims, equal on both sides, records the padding a conv can absorb."""
    pad, rank = tuple(call.arg("pad")), len(call.acts()[0].shape)
    if not any(pad):  # Swin pads its windows by zero rows when the size already divides: a copy at most
        return Cost(OpKind.ALIAS, reads=(call.acts()[0],))
    pairs = [pad[i:i + 2] for i in range(0, len(pad), 2)]  # (before, after) for the last dim, then the one before
    absorbable = (call.arg("value", 0) == 0 and rank in (3, 4) and len(pairs) <= rank - 2
                  and all(p[0] == p[1] >= 0 for p in pairs))
    w = pairs[0][0] if absorbable else 0
    h = pairs[1][0] if absorbable and len(pairs) > 1 else 0
    return per_element(OpKind.PAD, call, padding=(h, w) if absorbable else None)


@rule("reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d", "circular_pad2d")
def other_pad(call: Call) -> Cost:
    return per_element(OpKind.PAD, call)


@rule("upsample_nearest1d", "upsample_nearest2d", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d")
def upsample_nearest(call: Call) -> Cost:
    return per_element(OpKind.UPSAMPLE_NEAREST, call)


@rule("upsample_bilinear2d", "upsample_linear1d")
def upsample_bilinear(call: Call) -> Cost:
    return per_element(OpKind.UPSAMPLE_BILINEAR, call)


@rule("upsample_bicubic2d")
def upsample_bicubic(call: Call) -> Cost:
    return per_element(OpKind.UPSAMPLE_BICUBIC, call)


@rule("roll")
def roll(call: Call) -> Cost:
    return per_element(OpKind.ROLL, call)


@rule("flip", "repeat", "repeat_interleave", "im2col")
def materialised_copy(call: Call) -> Cost:
    return per_element(OpKind.COPY, call)


_VIEWS = ("view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand", "unsqueeze",
          "squeeze", "alias", "detach", "lift_fresh", "_to_copy", "to", "contiguous", "movedim", "view_as",
          "channel_shuffle", "native_channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "transpose_",
          "unsqueeze_", "squeeze_", "t_", "as_strided_", "dropout", "native_dropout", "feature_dropout",
          "alpha_dropout")


@rule(*_VIEWS)
def view(call: Call) -> Cost:
    """A view, a layout change (the accelerator addresses data in its consumer's order) or an inference
    dropout: no row, no data movement of its own."""
    return Cost(OpKind.ALIAS, reads=(call.acts()[0],))


@rule("clone")
def clone(call: Call) -> Cost:
    """A copy of a layout change is an alias (SPEC: a channel shuffle makes no row); a copy that makes a
    broadcast real (more elements than its source holds) is a materialised copy."""
    x = call.acts()[0]
    if x.stored_elems < numel(x.shape):
        return per_element(OpKind.COPY, call)
    return Cost(OpKind.ALIAS, reads=(x,))


@rule("copy_")
def copy_into(call: Call) -> Cost:
    src = call.args["src"]
    return Cost(OpKind.ALIAS, reads=(src,) if src.role is Role.ACT else ())


@rule("slice", "select", "index_select", "index", "gather", "narrow", "as_strided", "unfold", "diagonal",
      "take_along_dim")
def gather(call: Call) -> Cost:
    """Reads its whole source (SPEC: a gather reads its whole source)."""
    x = call.args.get("self") or call.args.get("input") or call.acts()[0]
    return Cost(OpKind.GATHER, reads=(x,) if x.role is Role.ACT else tuple(call.acts()))


@rule("split", "split_with_sizes", "unbind", "tensor_split", "chunk", "unsafe_split", "unsafe_split_with_sizes",
      "unsafe_chunk")
def split(call: Call) -> Cost:
    """A tuple of views: one op whose value is the whole source; each piece reads all of it."""
    x = call.args["self"]
    return Cost(OpKind.GATHER, out_shape=x.shape, reads=(x,))


@rule("cat", "stack", "concat", "hstack", "vstack")
def concat(call: Call) -> Cost:
    """A concat is its parts; one that takes a parameter (a class token) writes it: a materialised copy."""
    weights = stored_weights(call)
    if weights:
        return per_element(OpKind.COPY, call, weight_elems=weights)
    return Cost(OpKind.CONCAT)


@rule("write_into_view")
def write_into_view(call: Call) -> Cost:
    """A write into part of a tensor (``out[:, :c] = x``): the tensor is now its old data and the part."""
    return Cost(OpKind.CONCAT)


@rule("_local_scalar_dense", "is_nonzero", "equal", "is_same_size", "_assert_async", "_assert_tensor_metadata")
def inspection(call: Call) -> None:
    """Returns a Python value (``x.item()``, ``bool(x)``): it steers control flow, computes nothing."""
    return None
