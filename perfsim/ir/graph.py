"""perfsim's intermediate representation: ops, tensors, layers. Torch-free.

``lower()`` turns a PyTorch module into a ``Graph``: the ops in execution order
(one per traced call) and the ``Layer`` rows they fuse into (SPEC: one matrix op
with its folded BN, output activation and prologue, or one standalone vector op).
Shapes here are at batch 1; the simulator scales activations by the batch.
Meaning lives in explicit fields: a depthwise conv is ``kind=CONV`` with
``groups == in_channels``, never a name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from math import prod
from typing import Any


class OpKind(str, Enum):
    CONV = "conv"
    LINEAR = "linear"  # a matrix product with a weight operand (a parameter)
    MATMUL = "matmul"  # a matrix product of two activations (Q·Kᵀ, ·V, einsum, bmm)
    BATCHNORM = "batchnorm"
    LAYERNORM = "layernorm"
    GROUPNORM = "groupnorm"
    RELU = "relu"
    RELU6 = "relu6"
    CLAMP = "clamp"  # hardtanh / clamp with both bounds other than (0, 6)
    SIGMOID = "sigmoid"
    SILU = "silu"
    HARDSIGMOID = "hardsigmoid"
    HARDSWISH = "hardswish"
    GELU = "gelu"
    LEAKY_RELU = "leaky_relu"
    ELU = "elu"
    TANH = "tanh"
    MISH = "mish"
    SOFTPLUS = "softplus"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    REDUCE = "reduce"  # mean / sum / max over some dims that is not a global pool
    ADD = "add"
    ELEMENTWISE = "elementwise"  # mul/sub/div/scalar ops, exp, sqrt, comparisons: 1 vector op per element
    SOFTMAX = "softmax"
    PAD = "pad"  # a pad no conv absorbs
    UPSAMPLE_NEAREST = "upsample_nearest"
    UPSAMPLE_BILINEAR = "upsample_bilinear"
    UPSAMPLE_BICUBIC = "upsample_bicubic"
    ROLL = "roll"
    COPY = "copy"  # a materialised copy: a broadcast made real, a concat that writes a learned token
    CONCAT = "concat"
    ALIAS = "alias"  # flatten, reshape, dropout, identity, shuffle/interlace, permute
    GATHER = "gather"  # channel gather (index_select), slice, select, split: aliases its whole source


class Unit(str, Enum):
    MATRIX = "matrix"
    VECTOR = "vector"
    NONE = "none"


MATRIX_KINDS = frozenset({OpKind.CONV, OpKind.LINEAR, OpKind.MATMUL})
# Clamps: an output stage at no cost when ``fuse_activation`` (SPEC names ReLU/ReLU6).
ACTIVATION_KINDS = frozenset({OpKind.RELU, OpKind.RELU6, OpKind.CLAMP})
# Activations that need the vector unit's arithmetic (exp, erf, tanh, reciprocal): they may run in a
# matrix op's output or input stage, like a clamp, but their vector ops are always counted.
COSTED_ACTIVATION_KINDS = frozenset({OpKind.SIGMOID, OpKind.SILU, OpKind.HARDSIGMOID, OpKind.HARDSWISH,
                                     OpKind.GELU, OpKind.LEAKY_RELU, OpKind.ELU, OpKind.TANH, OpKind.MISH,
                                     OpKind.SOFTPLUS})
UNARY_ACTIVATION_KINDS = ACTIVATION_KINDS | COSTED_ACTIVATION_KINDS
ALIAS_KINDS = frozenset({OpKind.ALIAS, OpKind.GATHER, OpKind.CONCAT})

# Vector ops per element, the one table of per-element costs (SPEC "Counting rules" and "Beyond the
# zoo": an exp, erf, tanh or reciprocal counts 1). The element is the output element, except for the
# kinds in PER_INPUT_ELEMENT_KINDS (reductions: one op per element read). Pools depend on the kernel
# (max k²−1, average k² per output element) and are computed from it. LayerNorm and GroupNorm count 5
# to normalise; their affine scale and shift add AFFINE_OPS_PER_ELEMENT (an inference BN is exactly
# such an affine).
VECTOR_OPS_PER_ELEMENT = {
    OpKind.BATCHNORM: 2,
    OpKind.LAYERNORM: 5,  # mean, subtract, square-accumulate, rsqrt, multiply
    OpKind.GROUPNORM: 5,
    OpKind.RELU: 1,
    OpKind.RELU6: 2,
    OpKind.CLAMP: 2,
    OpKind.SIGMOID: 4,  # negate, exp, add 1, reciprocal
    OpKind.SILU: 5,  # sigmoid, multiply
    OpKind.HARDSIGMOID: 4,  # scale, shift, two clamps
    OpKind.HARDSWISH: 5,  # hardsigmoid, multiply
    OpKind.GELU: 5,  # scale, erf (or tanh of a cubic), add 1, two multiplies
    OpKind.LEAKY_RELU: 2,  # compare, select
    OpKind.ELU: 3,  # exp, subtract, select
    OpKind.TANH: 1,
    OpKind.MISH: 5,  # softplus (exp, add, log), tanh, multiply
    OpKind.SOFTPLUS: 3,  # exp, add 1, log
    OpKind.ADD: 1,
    OpKind.ELEMENTWISE: 1,
    OpKind.SOFTMAX: 5,  # max, subtract, exp, sum, divide
    OpKind.GLOBAL_AVGPOOL: 1,
    OpKind.REDUCE: 1,
    OpKind.PAD: 1,
    OpKind.UPSAMPLE_NEAREST: 1,
    OpKind.UPSAMPLE_BILINEAR: 7,  # 4 weighted taps: 4 multiplies, 3 adds
    OpKind.UPSAMPLE_BICUBIC: 31,  # 16 weighted taps: 16 multiplies, 15 adds
    OpKind.ROLL: 1,
    OpKind.COPY: 1,
}
PER_INPUT_ELEMENT_KINDS = frozenset({OpKind.GLOBAL_AVGPOOL, OpKind.REDUCE})
AFFINE_OPS_PER_ELEMENT = VECTOR_OPS_PER_ELEMENT[OpKind.BATCHNORM]


# Code paths of one op a host runs apart (``Layer.variant``), by the ATen call that names them.
VARIANTS = {"aten._safe_softmax.default": "safe"}


def op_variant(op: "Op") -> str:
    """The code path an op runs on: its operands' (``Op.variant``), else its ATen call's (``VARIANTS``)."""
    return op.variant or VARIANTS.get(op.target, "")


def row_length(in_shape: tuple[int, ...], reduce_dims: tuple[int, ...] | None) -> int:
    """The elements one output reads whole: the product of the reduced dims of the input; 1 for an op that
    reduces nothing."""
    if not reduce_dims or not in_shape:
        return 1
    return prod(in_shape[d] for d in reduce_dims if -len(in_shape) <= d < len(in_shape))


def unit_of(kind: OpKind) -> Unit:
    if kind in MATRIX_KINDS:
        return Unit.MATRIX
    if kind in ALIAS_KINDS:
        return Unit.NONE
    return Unit.VECTOR


@dataclass(frozen=True, slots=True)
class Op:
    """One traced operation, at batch 1."""

    name: str  # unique within the graph (see docs/lowering.md, "Names")
    path: str  # what a person recognises: the module path, suffixed when one module call runs several ops
    kind: OpKind
    target: str  # what was called: the ATen op (or the front end's op type)
    inputs: tuple[str, ...]  # names of the activation values read
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int = 1
    params: int = 0  # PyTorch parameters owned by this op (first use only)
    weight_elems: int = 0  # matrix weights (not biases)
    bias_elems: int = 0
    bn_channels: int = 0  # BN: channels (2 stored values each when unfolded)
    macs: int = 0
    vector_ops: int = 0  # when executed on the vector unit
    # REDUCE / SOFTMAX / LAYERNORM: the input dims (negative, counted from the last) that each output
    # element reads in full (reduced or normalised over). None: not recorded (the simulator's old rule).
    reduce_dims: tuple[int, ...] | None = None
    # the code path a host runs it on when its operands choose it (``VARIANTS`` names those its ATen call
    # chooses): "view" for a conv whose input it copies first (``frontends.lowering.calls.Operand.layout``)
    variant: str = ""

    @property
    def unit(self) -> Unit:
        return unit_of(self.kind)

    @property
    def row_length(self) -> int:
        return row_length(self.in_shapes[0] if self.in_shapes else (), self.reduce_dims)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A physical activation tensor (a concat is its parts, never one tensor)."""

    id: int
    shape: tuple[int, ...]  # batch 1
    producer: int  # layer index, -1 for a network input

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True, slots=True)
class Layer:
    """One report row: a matrix op with what fuses around it, or a standalone vector op.

    Costs that depend on profile switches are kept apart so the simulator can
    apply ``fold_batchnorm`` / ``fuse_activation`` without re-lowering.
    """

    index: int
    name: str
    op: str  # the report's label: conv, conv_dw, conv_group, conv_pw, linear, maxpool, batchnorm+relu, ...
    kind: OpKind  # the main op's kind: what code decides by (never the label)
    unit: Unit
    ops: tuple[str, ...]  # names of the traced ops in this row, in order
    inputs: tuple[int, ...]  # physical tensors read (every part of a concat)
    output: int  # physical tensor written
    in_shape: tuple[int, ...]  # logical input of the row's main op (batch 1)
    out_shape: tuple[int, ...]
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None
    padding: tuple[int, int] | None
    groups: int
    dilation: tuple[int, int] | None
    shares_weights: bool  # its weights are an earlier layer's (a module called twice): stored once
    macs: int
    params: int
    weight_elems: int
    bias_elems: int  # the layer's own biases
    vector_ops_fixed: int  # always executed: pools, adds, prologue BN/ReLU, unfused elementwise
    epilogue_bn_channels: int  # BN after the matrix op (foldable)
    epilogue_bn_ops: int  # its vector ops when not folded
    epilogue_act_ops: int  # output-stage activation ops when not fused
    prologue_bn_channels: int  # unfoldable BN in the input stage (stores 2 values/channel)
    reduce_dims: tuple[int, ...] | None = None  # the main op's (Op.reduce_dims): tiling must not split them
    # The row's ops as separate kernels (labels), for a profile's per-kernel overhead: those that always
    # run, the epilogue BNs (none when fold_batchnorm), the epilogue activations (none when fuse_activation)
    kernels: tuple[str, ...] = ()
    bn_kernels: tuple[str, ...] = ()
    act_kernels: tuple[str, ...] = ()
    # A matrix row's vector work by kernel, for each its kind's efficiency: (label, vector ops at batch 1,
    # when it runs: "always" (prologue, a costed activation), "bn" (unless folded), "act" (unless fused))
    vector_kernels: tuple[tuple[str, int, str], ...] = ()
    # the main kernel's code path where the host runs one op two ways (``VARIANTS``): "safe" for the NaN-safe
    # softmax of PyTorch's math attention (``_safe_softmax``); "" otherwise. Costs nothing on an accelerator.
    variant: str = ""

    @property
    def row_length(self) -> int:
        """The elements one output of the main op reads whole (a softmax's or a norm's row: ``row_length``)."""
        return row_length(self.in_shape, self.reduce_dims)

    def kernel_labels(self, fold_batchnorm: bool, fuse_activation: bool) -> tuple[str, ...]:
        return (self.kernels + (() if fold_batchnorm else self.bn_kernels)
                + (() if fuse_activation else self.act_kernels))

    def vector_ops(self, fold_batchnorm: bool, fuse_activation: bool) -> int:
        return (self.vector_ops_fixed
                + (0 if fold_batchnorm else self.epilogue_bn_ops)
                + (0 if fuse_activation else self.epilogue_act_ops))

    def weight_bytes(self, weight_bits: int, bias_bits: int, fold_batchnorm: bool) -> int:
        """SPEC: ceil(weights*wbits/8) + ceil(biases*bbits/8); unfolded BN stores 2 values/ch."""
        biases = self.bias_elems + 2 * self.prologue_bn_channels
        if self.epilogue_bn_channels:
            if fold_batchnorm:
                biases += 0 if self.bias_elems else self.epilogue_bn_channels
            else:
                biases += 2 * self.epilogue_bn_channels
        return -(-self.weight_elems * weight_bits // 8) + -(-biases * bias_bits // 8)

    def params_inference(self, fold_batchnorm: bool) -> int:
        """Stored values after BN folding (weights + biases + unfolded BN scale/shift)."""
        n = self.weight_elems + self.bias_elems + 2 * self.prologue_bn_channels
        if self.epilogue_bn_channels:
            if fold_batchnorm:
                n += 0 if self.bias_elems else self.epilogue_bn_channels
            else:
                n += 2 * self.epilogue_bn_channels
        return n


@dataclass(frozen=True)
class Graph:
    """A lowered network: ops, physical tensors and fused layers, at batch 1."""

    name: str
    input_shape: tuple[int, ...]  # batch 1, e.g. (1, 3, 28, 28)
    ops: tuple[Op, ...]
    tensors: tuple[Tensor, ...]
    layers: tuple[Layer, ...]
    inputs: tuple[int, ...]  # physical tensor ids of the network inputs
    outputs: tuple[int, ...]  # physical tensor ids of the network outputs
    params: int  # PyTorch's count for the whole module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Graph":
        def tup(x):
            return tuple(tup(i) for i in x) if isinstance(x, list) else x

        ops = tuple(Op(**{k: (OpKind(v) if k == "kind" else tup(v)) for k, v in o.items()}) for o in d["ops"])
        tensors = tuple(Tensor(**{k: tup(v) for k, v in t.items()}) for t in d["tensors"])
        conv = {"unit": Unit, "kind": OpKind}
        layers = tuple(Layer(**{k: (conv[k](v) if k in conv else tup(v)) for k, v in row.items()})
                       for row in d["layers"])
        return cls(name=d["name"], input_shape=tup(d["input_shape"]), ops=ops, tensors=tensors,
                   layers=layers, inputs=tup(d["inputs"]), outputs=tup(d["outputs"]),
                   params=d["params"], meta=d.get("meta", {}))
