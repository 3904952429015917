"""Capture one forward at the ATen level. The only module of ``perfsim.frontends.lowering`` that imports torch.

One forward runs at batch 1, in eval mode, without autograd, on a zero input (or on a given one:
``perfsim validate`` captures the input it times), under a
``TorchDispatchMode`` that sees every ATen call after PyTorch's own decompositions
(``linear`` arrives as ``addmm``, ``einsum`` as ``bmm``, attention as its matmuls and
softmax). Python control flow runs for real, specialised to that input: nothing is traced
symbolically. Module paths come from global forward hooks; every tensor is tracked by
identity as an activation (computed from the input), a weight (a parameter, or computed
from parameters alone) or a constant. Calls that read no activation run outside the record
and outside the flop counter: they fold at compile time (a transposed weight, a gathered
relative-position bias, an attention mask), except convolutions and matrix products, which
the flop counter counts: they are recorded whatever they read, and their outputs are
activations. On zeros, convolutions and matrix products are not computed: a zero tensor of their output
shape (and memory layout) stands in, so the arithmetic that dominates a forward is skipped
(docs/lowering.md, "Capture"). On a given input every call is computed, so a branch on the values the
module computes takes the branch it takes outside the capture.

``torch.utils.flop_counter.FlopCounterMode`` runs around the same forward: the independent
count the self-check compares against.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

from ...errors import InputError, PerfsimError
from .calls import Call, Capture, Operand, Role

# Ops whose output does not depend on the values of their activation operand (only on its shape,
# dtype or device): their outputs are constants. Listed in docs/lowering.md.
DATA_INDEPENDENT = frozenset({
    "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided", "zeros_like", "ones_like",
    "empty_like", "full_like", "rand_like", "randn_like", "randint_like", "scalar_tensor",
})
# Matrix ops that are not computed: their output is zeros of the right shape. The flop counter counts
# them all the same.
_SHAPE_ONLY = frozenset({"convolution", "mm", "addmm", "bmm", "baddbmm"})
WRITE_INTO_VIEW = "perfsim.write_into_view.default"


@dataclass(frozen=True, slots=True)
class _Val:
    role: Role
    value: int = -1
    params: tuple[str, ...] = ()


_CONST = _Val(Role.CONST)


class _ModuleStack:
    """The module whose forward is running, from global forward hooks."""

    def __init__(self, root: nn.Module):
        self.paths = {id(m): name for name, m in root.named_modules()}
        self.stack: list[tuple[str, int]] = [("", 0)]
        self.calls: Counter[str] = Counter()
        self._handles: list[Any] = []

    def _pre(self, module: nn.Module, args: Any) -> None:
        path = self.paths.get(id(module))
        if path is None:  # a module outside the tree (built inside forward): its caller's name
            self.stack.append(self.stack[-1])
            return
        self.stack.append((path, self.calls[path]))
        self.calls[path] += 1

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if len(self.stack) > 1:
            self.stack.pop()

    def __enter__(self) -> "_ModuleStack":
        self._handles = [register_module_forward_pre_hook(self._pre),
                         register_module_forward_hook(self._post)]  # not on an exception: keep where it failed
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def _distinct_elems(t: torch.Tensor) -> int:
    """Elements a tensor really holds: a broadcast (stride-0) dimension repeats its source."""
    return prod(s for s, st in zip(t.shape, t.stride()) if st != 0)


def _tensors(*values: Any) -> list[torch.Tensor]:
    """The tensors among ATen arguments or outputs (a tensor, or a list of them, one level deep)."""
    out: list[torch.Tensor] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(x for x in v if isinstance(x, torch.Tensor))
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, (int, float, bool, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return str(v)


class _Recorder(TorchDispatchMode):
    """Records every ATen call that reads an activation; folds the others."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # see _CountingMode

    def __init__(self, modules: _ModuleStack, params: dict[int, str]):
        super().__init__()
        self.modules = modules
        self.vals = WeakTensorKeyDictionary()
        self.param_names = params
        self.calls: list[Call] = []
        self.touched: dict[str, str] = {}
        self._schemas: dict[Any, list] = {}

    def val(self, t: torch.Tensor) -> _Val:
        v = self.vals.get(t)
        if v is not None:
            return v
        name = self.param_names.get(id(t))
        return _Val(Role.WEIGHT, params=(name,)) if name is not None and isinstance(t, nn.Parameter) else _CONST

    def operand(self, t: torch.Tensor) -> Operand:
        v = self.val(t)
        return Operand(v.role, tuple(t.shape), v.value, v.params, _distinct_elems(t), _layout(t, v.role))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = _tensors(*args, *kwargs.values())
        vals = [self.val(t) for t in flat]
        op = func.overloadpacket.__name__
        if op in DATA_INDEPENDENT:  # reads shapes only: no value, no parameter is used
            return self._fold(func, args, kwargs, [])
        path, module_call = self.modules.stack[-1]
        for v in vals:
            for p in v.params:
                self.touched.setdefault(p, path)
        if not (op in _SHAPE_ONLY or any(v.role is Role.ACT for v in vals)):
            return self._fold(func, args, kwargs, vals)
        if op == "convolution":
            _check_conv(args, path)
        out = self._execute(func, args, kwargs)
        index = len(self.calls)
        outs = _tensors(out)
        self.calls.append(Call(index=index, target=str(func), path=path, module_call=module_call,
                               args=self._by_name(func, args, kwargs),
                               out_shapes=tuple(tuple(o.shape) for o in outs)))
        for o in outs:
            self.vals[o] = _Val(Role.ACT, index)
            if any(o is t for t in flat) and o._base is not None:
                self._write_into_view(o, path, module_call)
        return out

    def _execute(self, func, args, kwargs):
        """Run one recorded call (``perfsim.host.measure`` times it here)."""
        return func(*args, **kwargs)

    def _fold(self, func, args, kwargs, vals: list[_Val]):
        """A call on weights and constants alone: computed once, outside the record and the counter."""
        with _disable_current_modes():
            out = func(*args, **kwargs)
        params = tuple(dict.fromkeys(p for v in vals for p in v.params))
        folded = _Val(Role.WEIGHT, params=params) if params else _CONST
        for o in _tensors(out):
            if not isinstance(o, nn.Parameter):
                self.vals[o] = folded
        return out

    def _write_into_view(self, view: torch.Tensor, path: str, module_call: int) -> None:
        """An in-place write into a view changes its base: the base now holds the old data and the part."""
        base = view._base
        if base.numel() == view.numel():
            self.vals[base] = self.vals[view]
            return
        index = len(self.calls)
        args = {"base": self.operand(base), "part": self.operand(view)}
        self.calls.append(Call(index=index, target=WRITE_INTO_VIEW, path=path, module_call=module_call,
                               args=args, out_shapes=(tuple(base.shape),)))
        self.vals[base] = _Val(Role.ACT, index)

    def _by_name(self, func, args, kwargs) -> dict[str, Any]:
        schema = self._schemas.get(func)
        if schema is None:
            schema = self._schemas[func] = [(a.name, a.kwarg_only, a.has_default_value(),
                                             a.default_value if a.has_default_value() else None)
                                            for a in func._schema.arguments]
        out: dict[str, Any] = {}
        for i, (name, kwarg_only, _, default) in enumerate(schema):
            v = args[i] if i < len(args) and not kwarg_only else kwargs.get(name, default)
            out[name] = self._convert(v)
        return out

    def _convert(self, v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return self.operand(v)
        if isinstance(v, (list, tuple)):
            return tuple(self._convert(x) for x in v)
        return _plain(v)


class _CountingMode(TorchDispatchMode):
    """Below the recorder: torch's flop counter counts every call that reaches it, and matrix ops
    (``_SHAPE_ONLY``) return zeros of their output shape instead of being computed.

    Two departures from ``FlopCounterMode``'s own handler, both for time: torch wraps every dispatch
    mode's handler in a guard that imports ``torch._dynamo`` on first use (2.5 s here; nothing in this
    forward is compiled), and its handler first runs the Python decomposition of the few ops that have
    one (in torch 2.13: batch norm, upsampling, dropout, RNNs and a few more; none reaches it holding a
    matrix product), which costs milliseconds per batch norm. The formulas, module tracking and
    per-module counts are the counter's own.
    """

    def __init__(self, counter: FlopCounterMode, compute: bool = False):
        super().__init__()
        self.counter = counter
        self.compute = compute  # compute matrix ops too (a capture on a given input)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet.__name__ in _SHAPE_ONLY and not self.compute:
            out = _zeros_like_output(packet.__name__, args)
        else:
            out = func(*args, **kwargs)
        return self.counter._count_flops(packet, out, args, kwargs)


class _FlopCounter(FlopCounterMode):
    """``FlopCounterMode`` entered with ``_CountingMode`` as its dispatch handler."""

    def __init__(self, *args, compute: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.compute = compute

    def __enter__(self):
        self.flop_counts.clear()
        self.mod_tracker.__enter__()
        self.mode = _CountingMode(self, self.compute)
        self.mode.__enter__()
        return self


def _zeros_like_output(op: str, args) -> torch.Tensor:
    """The output of a convolution or matrix product, by shape: zeros (the arithmetic is skipped)."""
    if op == "convolution":
        return _conv_output(*args[:9])
    a, b = args[-2:] if op in ("addmm", "baddbmm") else args[:2]
    if a.dim() != b.dim() or a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise RuntimeError(f"{op}: shapes {'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))} "
                           "cannot be multiplied")
    return torch.zeros((*a.shape[:-1], b.shape[-1]), dtype=torch.result_type(a, b))


def _conv_output(x, w, bias, stride, padding, dilation, transposed, output_padding, groups) -> torch.Tensor:
    """Zeros shaped as ``aten.convolution``'s output: the standard formula per spatial dim, channels-last
    when the input or weight is (as PyTorch's CPU kernels choose). PyTorch's meta kernel would give the
    same, but its first call imports sympy (0.5 s)."""
    sizes = []
    for i, (n, k) in enumerate(zip(x.shape[2:], w.shape[2:])):
        s, p, d = stride[i], padding[i], dilation[i]
        size = ((n - 1) * s - 2 * p + d * (k - 1) + output_padding[i] + 1 if transposed
                else (n + 2 * p - d * (k - 1) - 1) // s + 1)
        if size <= 0:
            raise RuntimeError(f"input size {'x'.join(map(str, x.shape[2:]))} is too small for a "
                               f"{'x'.join(map(str, w.shape[2:]))} kernel")
        sizes.append(size)
    out_channels = w.shape[1] * groups if transposed else w.shape[0]
    channels_last = x.dim() == 4 and any(_channels_last_like(t) for t in (x, w))
    out = torch.zeros((x.shape[0], out_channels, *sizes), dtype=torch.result_type(x, w))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def _layout(t: torch.Tensor, role: Role) -> str:
    """``Operand.layout``: "view" for a 4-D activation that is neither contiguous nor channels-last to a
    convolution, which then copies it to contiguous first (measured here: a 3x3 depthwise conv of 128
    channels at 56x56 took 0.25 ms on a contiguous map and 0.7 ms on the map as a transposed token view)."""
    if role is not Role.ACT or t.dim() != 4 or t.is_contiguous() or _channels_last_like(t):
        return ""
    return "view"


def _channels_last_like(t: torch.Tensor) -> bool:
    """Whether PyTorch's CPU convolution takes this 4-D tensor as channels-last (its output is then
    channels-last): ATen's ``is_channels_last_strides_2d`` over dims C, W, H, N, stricter than
    ``is_contiguous(memory_format=channels_last)``, which ignores the strides of size-1 dims. A strided
    view such as ``x.transpose(1, 2).view(B, C, H, W)`` of tokens is channels-last-contiguous at batch 1
    but not channels-last to the convolution, whose output is then NCHW (PVT-v2's depthwise conv)."""
    sizes, strides = t.shape, t.stride()
    if t.dim() != 4 or strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _check_conv(args, path: str) -> None:
    if len(args) < 9:
        return
    x, w, transposed, groups = args[0], args[1], args[6], args[8]
    if x.dim() >= 2 and not transposed and x.shape[1] != w.shape[1] * groups:
        shape = "x".join(map(str, x.shape))
        raise InputError(f"the convolution at {path!r} expects {w.shape[1] * groups} input channels, "
                         f"got shape {shape}")


def _counter_macs(counter: FlopCounterMode, root_type: str) -> dict[str, int]:
    """The flop counter's FLOPs / 2 per module path ("" is the whole forward)."""
    out: dict[str, int] = {}
    for name, per_op in counter.get_flop_counts().items():
        if name == "Global":
            continue
        path = "" if name == root_type else name[len(root_type) + 1:] if name.startswith(root_type + ".") else name
        out[path] = sum(per_op.values()) // 2
    out[""] = counter.get_total_flops() // 2
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def capture(module: nn.Module, input_shape: tuple[int, ...], input: torch.Tensor | None = None) -> Capture:
    """Run ``module`` once on zeros of ``input_shape`` (batch included) and record it; with ``input`` (of
    that shape), on it, every call computed."""
    if input is not None and tuple(input.shape) != tuple(input_shape):
        raise InputError(f"the input's shape {'x'.join(map(str, input.shape))} is not "
                         f"{'x'.join(map(str, input_shape))}")
    params = {id(p): name for name, p in module.named_parameters()}
    root_type = type(module).__name__
    modules = _ModuleStack(module)
    recorder = _Recorder(modules, params)
    training = [(m, m.training) for m in module.modules()]
    grads = [(p, p.requires_grad) for p in module.parameters()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    x = torch.zeros(input_shape) if input is None else input
    recorder.vals[x] = _Val(Role.ACT, -1)
    module.eval()
    for p, _ in grads:  # nothing requires grad: the counter's module tracker then hooks no autograd graph
        p.requires_grad_(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), modules, \
                _FlopCounter(display=False, compute=input is not None) as counter, recorder:
            out = module(x)
    except PerfsimError:
        raise
    except Exception as e:  # the user's forward failed on this input: say where, in one line
        where = modules.stack[-1][0] if len(modules.stack) > 1 else ""
        at = f" at {where!r}" if where else ""
        raise InputError(f"{root_type} fails on input shape {'x'.join(map(str, input_shape[1:]))}{at}: "
                         f"{_first_line(e)}") from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)
    outputs = [recorder.vals[t].value for t in tree_flatten(out)[0]
               if isinstance(t, torch.Tensor) and t in recorder.vals and recorder.vals[t].role is Role.ACT]
    return Capture(root_type=root_type, input_shape=tuple(input_shape), calls=recorder.calls, outputs=outputs,
                   param_elems={name: p.numel() for name, p in module.named_parameters()},
                   module_types={name: type(m).__name__ for name, m in module.named_modules()},
                   touched=recorder.touched, counter_macs=_counter_macs(counter, root_type))
