"""From captured calls to perfsim ops: cost rules, names, parameters. Torch-free.

Every call is costed by its rule, explicitly ignored, or reported: all unsupported calls
together in one ``UnsupportedOpError`` (kinds, counts, first module path). Parameters count
once per model, at the first op that makes a row and reads them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ...errors import UnsupportedOpError
from ...ir.graph import ALIAS_KINDS, Op, OpKind
from .calls import Call, Capture, Role
from .rules import RULES, Cost, Unsupported

INPUT = "input"  # the value name of the network input


@dataclass(frozen=True)
class Lowered:
    ops: list[Op]
    module_of: dict[str, str]  # op name -> path of the module whose forward ran it
    params_in_rows: dict[str, str]  # parameter name -> the op whose row holds it
    value_names: dict[int, str]  # value id (a call's index, -1 the input) -> the op name that holds it


def _describe(call: Call, reason: str = "") -> str:
    name = "aten." + call.op if call.target.startswith("aten.") else call.target.rsplit(".", 1)[0]
    return f"{name} ({reason})" if reason else name


def _where(cap: Capture, path: str) -> str:
    if not path:
        return f"the forward of {cap.root_type} itself"
    kind = cap.module_types.get(path)
    return f"{path!r} ({kind})" if kind else repr(path)


def cost_calls(cap: Capture) -> list[Cost | None]:
    """Each call's cost (None: explicitly ignored); every unsupported call reported in one error."""
    costs: list[Cost | None] = []
    missing: dict[str, list] = {}
    for call in cap.calls:
        fn = RULES.get(call.op)
        try:
            if fn is None:
                raise Unsupported("")
            cost = fn(call)
            if cost is None and call.out_shapes:
                raise RuntimeError(f"internal: rule for {call.target} ignores a call that returns tensors")
        except Unsupported as u:
            missing.setdefault(_describe(call, str(u)), [0, call.path])[0] += 1
            cost = None
        costs.append(cost)
    if missing:
        kinds = ", ".join(f"{k} ×{n} (first at {_where(cap, p)})" for k, (n, p) in missing.items())
        plural = "kinds" if len(missing) > 1 else "kind"
        raise UnsupportedOpError(f"cannot lower {len(missing)} {plural} of op (no lowering rule): {kinds}")
    return costs


def _label(call: Call, cost: Cost) -> str:
    if cost.kind in (OpKind.ELEMENTWISE, OpKind.COPY) or cost.kind in ALIAS_KINDS:
        return call.op.strip("_")
    return cost.kind.value


def name_ops(calls: list[Call], costs: list[Cost]) -> list[str]:
    """An op named by its module: the module's path when that module call runs one op that makes a
    row, else ``path.label`` (``blocks.0.attn.matmul``); ``_1``, ``_2``... keep names unique."""
    rows = Counter((c.path, c.module_call) for c, k in zip(calls, costs) if k.kind not in ALIAS_KINDS)
    used: set[str] = set()

    def unique(stem: str) -> str:
        name, n = stem, 0
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        return name

    names: list[str | None] = [None] * len(calls)
    for i, (c, k) in enumerate(zip(calls, costs)):
        if c.path and k.kind not in ALIAS_KINDS and rows[(c.path, c.module_call)] == 1:
            names[i] = unique(c.path)
    for i, (c, k) in enumerate(zip(calls, costs)):
        if names[i] is None:
            label = _label(c, k)
            names[i] = unique(f"{c.path}.{label}" if c.path else label)
    return names  # type: ignore[return-value]


# Ops whose geometry reads NCHW positions (the simulator's halo and channel blocks): their shapes stay as
# PyTorch has them even when the batch is folded into N.
_SPATIAL = frozenset({OpKind.CONV, OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.GLOBAL_AVGPOOL, OpKind.PAD,
                      OpKind.UPSAMPLE_NEAREST, OpKind.UPSAMPLE_BILINEAR, OpKind.UPSAMPLE_BICUBIC})


def _shapes(cost: Cost, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """Shapes lead with the batch (1 here; the report writes the simulated batch there). A tensor whose
    first dimension is not 1 holds the batch folded into rows, heads or windows (``(197, 768)`` into a
    linear, ``(12, 197, 64)`` into a bmm) or is sequence-first: it is written with a leading 1."""
    if cost.kind in _SPATIAL:
        return shapes
    return tuple(s if not s or s[0] == 1 else (1,) + tuple(s) for s in shapes)


def build_ops(cap: Capture) -> Lowered:
    costs = cost_calls(cap)
    kept = [(c, k) for c, k in zip(cap.calls, costs) if k is not None]
    names = name_ops([c for c, _ in kept], [k for _, k in kept])
    value_name = {-1: INPUT}
    value_name.update({c.index: n for (c, _), n in zip(kept, names)})
    seen: dict[str, str] = {}
    ops: list[Op] = []
    for (call, cost), name in zip(kept, names):
        reads = cost.reads if cost.reads is not None else tuple(call.acts())
        params = 0
        if cost.kind not in ALIAS_KINDS:
            for o in call.weights():
                for p in o.params:
                    if p not in seen:
                        seen[p] = name
                        params += cap.param_elems.get(p, 0)
        ops.append(Op(
            name=name, path=name, kind=cost.kind, target=call.target,
            inputs=tuple(value_name[o.value] for o in reads if o.role is Role.ACT),
            in_shapes=_shapes(cost, cost.in_shapes or tuple(o.shape for o in reads if o.role is Role.ACT)),
            out_shape=_shapes(cost, (cost.out_shape or call.out_shape,))[0], kernel=cost.kernel, stride=cost.stride,
            padding=cost.padding, dilation=cost.dilation, groups=cost.groups, params=params,
            weight_elems=cost.weight_elems, bias_elems=cost.bias_elems, bn_channels=cost.bn_channels,
            macs=cost.macs, vector_ops=cost.vector_ops, reduce_dims=cost.reduce_dims, variant=cost.variant))
    return Lowered(ops=ops, module_of={n: c.path for (c, _), n in zip(kept, names)}, params_in_rows=seen,
                   value_names=value_name)
