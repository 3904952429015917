"""Lower any ``nn.Module`` to perfsim's op graph and fuse it into layers.

Tracing is ``torch.fx.symbolic_trace``; shapes come from one forward pass at
batch 1 in eval mode. Every traced call is handled by exactly one handler in a
registry keyed by module type, function or method name; a call with no handler
is an ``UnsupportedOpError`` naming it, never a silent zero. MACs, params and
vector ops are pure functions of shapes and parameter counts.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .errors import InputError, UnsupportedOpError
from .fuse import fuse
from .graph import ALIAS_KINDS, VECTOR_OPS_PER_ELEMENT, Graph, Op, OpKind

# --------------------------------------------------------------------------
# Values flowing through the traced graph
# --------------------------------------------------------------------------


@dataclass
class _Value:
    kind: str  # "act" (activation), "const" (parameters and what is computed from them), "other"
    params: tuple[Any, ...] = ()  # const: parameter tensors it is computed from
    shape: tuple[int, ...] = ()


@dataclass
class _Ctx:
    """What a handler sees of one traced call."""

    node: fx.Node
    name: str
    target: str
    module: nn.Module | None
    act_inputs: list[fx.Node]
    out_shape: tuple[int, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    seen_params: set[int]
    const_params: list[Any] = field(default_factory=list)

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        if len(self.node.args) > index:
            return self.node.args[index]
        return self.node.kwargs.get(key, default)

    def own_params(self, tensors) -> int:
        """Count parameters once per model (a shared module counts at first use)."""
        n = 0
        for p in tensors:
            if p is None or id(p) in self.seen_params:
                continue
            self.seen_params.add(id(p))
            n += p.numel()
        return n


Handler = Callable[[_Ctx], Op]
_MODULE_HANDLERS: dict[type, Handler] = {}
_FUNCTION_HANDLERS: dict[Any, Handler] = {}
_METHOD_HANDLERS: dict[str, Handler] = {}


def _register(table: dict, keys) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for k in dict.fromkeys(keys):  # torch aliases (F.conv2d is torch.conv2d) collapse
            if k in table:
                raise RuntimeError(f"lowering handler for {k!r} registered twice")
            table[k] = fn
        return fn
    return deco


def handles_modules(*types: type):
    return _register(_MODULE_HANDLERS, types)


def handles_functions(*fns: Any):
    return _register(_FUNCTION_HANDLERS, fns)


def handles_methods(*names: str):
    return _register(_METHOD_HANDLERS, names)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) > 1 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


def _op(ctx: _Ctx, kind: OpKind, **kw: Any) -> Op:
    return Op(name=ctx.node.name, path=ctx.name, kind=kind, target=ctx.target,
              inputs=tuple(n.name for n in ctx.act_inputs), in_shapes=ctx.in_shapes,
              out_shape=ctx.out_shape, **kw)


def _numel(shape: tuple[int, ...]) -> int:
    return prod(shape)


# --------------------------------------------------------------------------
# Matrix ops
# --------------------------------------------------------------------------


def _conv_op(ctx: _Ctx, weight: torch.Tensor, bias, stride, padding, dilation, groups, params: int) -> Op:
    if weight.dim() != 4:
        raise UnsupportedOpError(f"cannot lower {ctx.target} at {ctx.name!r}: only 2-D convolutions are supported")
    if isinstance(padding, str):
        dh, dw = _pair(dilation)
        padding = (0, 0) if padding == "valid" else (dh * (weight.shape[2] - 1) // 2, dw * (weight.shape[3] - 1) // 2)
    # MACs = N*Ho*Wo*Co * (Ci/groups)*Kh*Kw, read from the weight's shape (grouped/depthwise alike)
    macs = _numel(ctx.out_shape) * prod(weight.shape[1:])
    return _op(ctx, OpKind.CONV, kernel=(int(weight.shape[2]), int(weight.shape[3])), stride=_pair(stride),
               padding=_pair(padding), dilation=_pair(dilation), groups=int(groups), params=params,
               weight_elems=weight.numel(), bias_elems=0 if bias is None else bias.numel(), macs=macs)


@handles_modules(nn.Conv2d)
def _conv_module(ctx: _Ctx) -> Op:
    m = ctx.module
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"cannot lower Conv2d {ctx.name!r}: padding_mode={m.padding_mode!r}")
    return _conv_op(ctx, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups,
                    ctx.own_params([m.weight, m.bias]))


@handles_functions(F.conv2d, torch.conv2d)
def _conv_function(ctx: _Ctx) -> Op:
    weight = _const_tensor(ctx, ctx.arg(1, "weight"))
    bias = _const_tensor(ctx, ctx.arg(2, "bias"))
    return _conv_op(ctx, weight, bias, ctx.arg(3, "stride", 1), ctx.arg(4, "padding", 0),
                    ctx.arg(5, "dilation", 1), ctx.arg(6, "groups", 1), ctx.own_params(ctx.const_params))


def _linear_op(ctx: _Ctx, weight: torch.Tensor, bias, params: int) -> Op:
    out_features, in_features = weight.shape
    return _op(ctx, OpKind.LINEAR, params=params, weight_elems=weight.numel(),
               bias_elems=0 if bias is None else bias.numel(),
               macs=_numel(ctx.out_shape) * int(in_features))


@handles_modules(nn.Linear)
def _linear_module(ctx: _Ctx) -> Op:
    m = ctx.module
    return _linear_op(ctx, m.weight, m.bias, ctx.own_params([m.weight, m.bias]))


@handles_functions(F.linear)
def _linear_function(ctx: _Ctx) -> Op:
    weight = _const_tensor(ctx, ctx.arg(1, "weight"))
    bias = _const_tensor(ctx, ctx.arg(2, "bias"))
    return _linear_op(ctx, weight, bias, ctx.own_params(ctx.const_params))


def _const_tensor(ctx: _Ctx, arg: Any):
    """The value of a constant argument (a parameter, or something computed from parameters)."""
    if arg is None:
        return None
    if isinstance(arg, fx.Node):
        return arg.meta.get("perfsim_const")
    return arg


# --------------------------------------------------------------------------
# Vector ops
# --------------------------------------------------------------------------


def _elementwise(kind: OpKind) -> Handler:
    def handler(ctx: _Ctx) -> Op:
        return _op(ctx, kind, vector_ops=VECTOR_OPS_PER_ELEMENT[kind] * _numel(ctx.out_shape))
    return handler


@handles_modules(nn.BatchNorm1d, nn.BatchNorm2d)
def _bn_module(ctx: _Ctx) -> Op:
    m = ctx.module
    return _op(ctx, OpKind.BATCHNORM, params=ctx.own_params([m.weight, m.bias]), bn_channels=m.num_features,
               vector_ops=2 * _numel(ctx.out_shape))


@handles_functions(F.batch_norm)
def _bn_function(ctx: _Ctx) -> Op:
    channels = ctx.in_shapes[0][1]
    return _op(ctx, OpKind.BATCHNORM, params=ctx.own_params(ctx.const_params), bn_channels=channels,
               vector_ops=2 * _numel(ctx.out_shape))


handles_modules(nn.ReLU)(_elementwise(OpKind.RELU))
handles_functions(F.relu, torch.relu, torch.relu_)(_elementwise(OpKind.RELU))
handles_methods("relu", "relu_")(_elementwise(OpKind.RELU))
handles_functions(F.relu6)(_elementwise(OpKind.RELU6))


@handles_modules(nn.Hardtanh)  # nn.ReLU6 is a Hardtanh(0, 6)
def _hardtanh_module(ctx: _Ctx) -> Op:
    m = ctx.module
    if (m.min_val, m.max_val) != (0.0, 6.0):
        raise UnsupportedOpError(f"cannot lower Hardtanh({m.min_val}, {m.max_val}) at {ctx.name!r}")
    return _elementwise(OpKind.RELU6)(ctx)


@handles_functions(F.hardtanh)
def _hardtanh_function(ctx: _Ctx) -> Op:
    if (ctx.arg(1, "min_val", -1.0), ctx.arg(2, "max_val", 1.0)) != (0.0, 6.0):
        raise UnsupportedOpError(f"cannot lower hardtanh at {ctx.name!r}: only the ReLU6 form (0, 6)")
    return _elementwise(OpKind.RELU6)(ctx)


@handles_functions(operator.add, operator.iadd, torch.add)
@handles_methods("add", "add_")
def _add(ctx: _Ctx) -> Op:
    kind = OpKind.ADD if len(ctx.act_inputs) >= 2 else OpKind.ELEMENTWISE
    return _op(ctx, kind, vector_ops=_numel(ctx.out_shape), **_operand_params(ctx))


def _operand_params(ctx: _Ctx) -> dict:
    """Parameters an elementwise op reads (a learned scale or shift): counted and stored as weights."""
    weights = sum(p.numel() for p in dict.fromkeys(ctx.const_params))
    return {"params": ctx.own_params(ctx.const_params), "weight_elems": weights}


@handles_functions(operator.mul, operator.imul, torch.mul, operator.sub, torch.sub, operator.truediv, torch.div)
@handles_methods("mul", "mul_", "sub", "sub_", "div", "div_")
def _binary(ctx: _Ctx) -> Op:
    return _op(ctx, OpKind.ELEMENTWISE, vector_ops=_numel(ctx.out_shape), **_operand_params(ctx))


def _pool_op(ctx: _Ctx, kind: OpKind, kernel, stride, padding) -> Op:
    k = _pair(kernel)
    s = _pair(stride if stride not in (None, ()) else kernel)
    per_out = k[0] * k[1] - 1 if kind is OpKind.MAXPOOL else k[0] * k[1]
    return _op(ctx, kind, kernel=k, stride=s, padding=_pair(padding),
               vector_ops=per_out * _numel(ctx.out_shape))


@handles_modules(nn.MaxPool2d)
def _maxpool_module(ctx: _Ctx) -> Op:
    m = ctx.module
    if _pair(m.dilation) != (1, 1):
        raise UnsupportedOpError(f"cannot lower dilated MaxPool2d at {ctx.name!r}")
    return _pool_op(ctx, OpKind.MAXPOOL, m.kernel_size, m.stride, m.padding)


@handles_functions(F.max_pool2d, torch.max_pool2d)
def _maxpool_function(ctx: _Ctx) -> Op:
    return _pool_op(ctx, OpKind.MAXPOOL, ctx.arg(1, "kernel_size"), ctx.arg(2, "stride"), ctx.arg(3, "padding", 0))


@handles_modules(nn.AvgPool2d)
def _avgpool_module(ctx: _Ctx) -> Op:
    m = ctx.module
    return _pool_op(ctx, OpKind.AVGPOOL, m.kernel_size, m.stride, m.padding)


@handles_functions(F.avg_pool2d)
def _avgpool_function(ctx: _Ctx) -> Op:
    return _pool_op(ctx, OpKind.AVGPOOL, ctx.arg(1, "kernel_size"), ctx.arg(2, "stride"), ctx.arg(3, "padding", 0))


def _global_pool(ctx: _Ctx) -> Op:
    # SPEC: global average pool costs 1 vector op per input element (fvcore agrees)
    in_shape = ctx.in_shapes[0]
    return _op(ctx, OpKind.GLOBAL_AVGPOOL, kernel=(in_shape[-2], in_shape[-1]) if len(in_shape) == 4 else None,
               vector_ops=_numel(in_shape))


@handles_modules(nn.AdaptiveAvgPool2d)
def _adaptive_avgpool_module(ctx: _Ctx) -> Op:
    return _global_pool(ctx)


@handles_functions(F.adaptive_avg_pool2d)
def _adaptive_avgpool_function(ctx: _Ctx) -> Op:
    return _global_pool(ctx)


@handles_functions(torch.mean)
@handles_methods("mean")
def _mean(ctx: _Ctx) -> Op:
    return _global_pool(ctx)


@handles_modules(nn.Softmax)
@handles_functions(F.softmax, torch.softmax)
@handles_methods("softmax")
def _softmax(ctx: _Ctx) -> Op:
    return _op(ctx, OpKind.SOFTMAX, vector_ops=5 * _numel(ctx.out_shape))


# --------------------------------------------------------------------------
# Aliases: no row, no data movement of their own
# --------------------------------------------------------------------------


def _no_parameters(ctx: _Ctx) -> None:
    """Rowless ops move no data; a parameter flowing into one would be silently dropped."""
    if ctx.const_params:
        raise UnsupportedOpError(f"cannot lower {ctx.target} at {ctx.name!r}: it combines an activation with a "
                                 "parameter, which a rowless op cannot carry")


def _alias(ctx: _Ctx) -> Op:
    _no_parameters(ctx)
    return _op(ctx, OpKind.ALIAS)


handles_modules(nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.ChannelShuffle, nn.Unflatten)(_alias)
handles_functions(torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze,
                  F.dropout, F.dropout2d, torch.channel_shuffle, torch.Tensor.contiguous)(_alias)
handles_methods("view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
                "view_as", "reshape_as")(_alias)


@handles_functions(torch.index_select, operator.getitem, torch.narrow,
                   torch.split, torch.chunk, torch.tensor_split, torch.unbind)
@handles_methods("index_select", "narrow", "split", "chunk", "tensor_split", "unbind")
def _gather(ctx: _Ctx) -> Op:
    # split/chunk give a tuple of views; each piece (via getitem) reads its whole source
    _no_parameters(ctx)
    return _op(ctx, OpKind.GATHER)


@handles_functions(torch.cat, torch.concat)
def _concat(ctx: _Ctx) -> Op:
    _no_parameters(ctx)
    return _op(ctx, OpKind.CONCAT)


# --------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------


def _describe_target(node: fx.Node, module: nn.Module | None) -> str:
    if node.op == "call_module":
        return type(module).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    mod = getattr(t, "__module__", None) or ""
    return f"{mod}.{getattr(t, '__name__', str(t))}".lstrip(".")


def _handler_for(node: fx.Node, module: nn.Module | None) -> Handler | None:
    if node.op == "call_module":
        for cls in type(module).__mro__:
            if cls in _MODULE_HANDLERS:
                return _MODULE_HANDLERS[cls]
        return None
    if node.op == "call_method":
        return _METHOD_HANDLERS.get(node.target)
    try:
        return _FUNCTION_HANDLERS.get(node.target)
    except TypeError:  # unhashable target
        return None


def _tensor_shape(meta: Any) -> tuple[int, ...] | None:
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _trace(module: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(module)
    except Exception as e:  # fx raises many kinds: say what failed, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot trace {type(module).__name__} with torch.fx: {first}") from None


def _conv_out_shape(m: nn.Conv2d, x: torch.Tensor) -> tuple[int, ...]:
    if x.dim() != 4 or x.shape[1] != m.in_channels:
        raise InputError(f"Conv2d expects {m.in_channels} input channels, got shape {tuple(x.shape)}")
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    if isinstance(m.padding, str):
        ph, pw = (0, 0) if m.padding == "valid" else (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        if m.padding == "same":
            return (x.shape[0], m.out_channels, x.shape[2], x.shape[3])
    else:
        ph, pw = m.padding
    ho = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise InputError(f"input {x.shape[2]}x{x.shape[3]} is too small for a {kh}x{kw} conv")
    return (x.shape[0], m.out_channels, ho, wo)


class _Recorder(fx.Interpreter):
    """Runs the traced graph once on zeros and records every node's output shape.

    Convolutions and linear layers, where all the arithmetic is, are not computed:
    their output shape follows from the standard formula and a zero tensor stands
    in. Everything else runs for real (cheap, and exact). Meta tensors would avoid
    even that, but their kernels import torch._dynamo on first use (3 s cold).
    """

    def call_module(self, target, args, kwargs):
        mod = self.fetch_attr(target)
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and type(mod) is nn.Conv2d:
            return x.new_zeros(_conv_out_shape(mod, x))
        if isinstance(x, torch.Tensor) and type(mod) is nn.Linear:
            if x.shape[-1] != mod.in_features:
                raise InputError(f"Linear expects {mod.in_features} input features, got shape {tuple(x.shape)}")
            return x.new_zeros((*x.shape[:-1], mod.out_features))
        return super().call_module(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["perfsim_shape"] = tuple(out.shape)
            if n.meta.get("perfsim_is_const"):
                n.meta["perfsim_const"] = out
        elif isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
            n.meta["perfsim_shape"] = tuple(tuple(o.shape) for o in out)
        return out


def _mark_constants(gm: fx.GraphModule) -> None:
    """A node is constant when it reads no placeholder: parameters and what is computed from them."""
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            n.meta["perfsim_is_const"] = False
        elif n.op == "get_attr":
            n.meta["perfsim_is_const"] = True
        else:
            ins = n.all_input_nodes
            n.meta["perfsim_is_const"] = bool(ins) and all(i.meta.get("perfsim_is_const") for i in ins)


def _const_params(gm: fx.GraphModule, n: fx.Node) -> list[Any]:
    """The parameters a constant node is computed from."""
    out, stack, seen = [], [n], set()
    while stack:
        cur = stack.pop()
        if cur.name in seen:
            continue
        seen.add(cur.name)
        if cur.op == "get_attr":
            obj = gm
            for part in str(cur.target).split("."):
                obj = getattr(obj, part)
            if isinstance(obj, nn.Parameter):
                out.append(obj)
        else:
            stack.extend(cur.all_input_nodes)
    return out


def _trace_ops(module: nn.Module, input_shape: tuple[int, ...]):
    gm = _trace(module)
    _mark_constants(gm)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            _Recorder(gm).run(torch.zeros(input_shape))
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{type(module).__name__} fails on input shape "
                         f"{'x'.join(map(str, input_shape))}: {msg}") from None
    finally:
        module.train(was_training)

    modules = dict(gm.named_modules())
    values: dict[str, _Value] = {}
    ops: list[Op] = []
    seen_params: set[int] = set()
    inputs: list[tuple[str, tuple[int, ...]]] = []
    outputs: list[str] = []
    for node in gm.graph.nodes:
        shape = node.meta.get("perfsim_shape")
        if node.op == "placeholder":
            values[node.name] = _Value("act", shape=shape)
            inputs.append((node.name, shape))
            continue
        if node.op == "output":
            outputs.extend(a.name for a in _flatten_args(node.args)
                           if values.get(a.name) is not None and values[a.name].kind == "act")
            continue
        if node.meta.get("perfsim_is_const"):
            values[node.name] = _Value("const", params=tuple(_const_params(gm, node)), shape=shape or ())
            continue
        act_inputs = [a for a in _flatten_args((node.args, node.kwargs))
                      if values.get(a.name) is not None and values[a.name].kind == "act"]
        if not act_inputs or shape is None:
            values[node.name] = _Value("other")  # sizes, dims, ...: no data
            continue
        module_obj = modules.get(node.target) if node.op == "call_module" else None
        handler = _handler_for(node, module_obj)
        target = _describe_target(node, module_obj)
        name = str(node.target) if node.op == "call_module" else node.name
        if handler is None:
            raise UnsupportedOpError(f"cannot lower {target} at {name!r}: no lowering rule for it")
        if shape and isinstance(shape[0], tuple):  # split/chunk: a tuple of views of the source
            shape = values[act_inputs[0].name].shape  # each piece (via getitem) reads the whole source
        const_inputs = [a for a in _flatten_args((node.args, node.kwargs))
                        if values.get(a.name) is not None and values[a.name].kind == "const"]
        ctx = _Ctx(node=node, name=name, target=target, module=module_obj, act_inputs=act_inputs,
                   out_shape=shape, in_shapes=tuple(values[a.name].shape for a in act_inputs),
                   seen_params=seen_params,
                   const_params=[p for c in const_inputs for p in values[c.name].params])
        ops.append(handler(ctx))
        values[node.name] = _Value("act", shape=shape)
    total_params = sum(p.numel() for p in module.parameters())
    return ops, inputs, outputs, total_params


def _flatten_args(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: out.append(n) or n)
    return out


def lower(module: nn.Module, input_shape, *, name: str | None = None) -> Graph:
    """Trace ``module`` on an input of ``input_shape`` (C,H,W or 1,C,H,W) and fuse it into layers."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if any(s <= 0 for s in shape):
        raise InputError(f"input shape must be positive, got {'x'.join(map(str, shape))}")
    if shape[0] != 1:
        raise InputError("lower() works at batch 1; give the batch to simulate()")
    ops, inputs, outputs, total_params = _trace_ops(module, shape)
    if not any(op.kind not in ALIAS_KINDS for op in ops):
        raise InputError(f"{type(module).__name__} has no operation perfsim can simulate")
    return fuse(name or type(module).__name__, shape, ops, inputs, outputs, total_params)
