"""Fusion: traced ops -> report rows (SPEC "Layers"). Torch-free.

Input is the op list any front end produces (torch capture, ONNX import): ops in
execution order, each naming the values it reads (a graph input or an earlier op).
Alias ops (``ALIAS``, ``GATHER``, ``CONCAT``) make no row: the data they stand for is
that of their inputs' parts, and a consumer of an alias reads every part. The rules
are SPEC's, plus those docs/lowering.md ("Fusion") records.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from .graph import (
    ACTIVATION_KINDS,
    ALIAS_KINDS,
    MATRIX_KINDS,
    UNARY_ACTIVATION_KINDS,
    Graph,
    Layer,
    Op,
    OpKind,
    Tensor,
    op_variant,
    unit_of,
)

_BN = frozenset({OpKind.BATCHNORM})


@dataclass(frozen=True)
class _Value:
    parts: tuple[str, ...]  # the producing ops (or graph inputs) whose data this value is
    whole: bool  # exactly its single part (reshaped/permuted at most)


def _values(ops: Sequence[Op], inputs: Sequence[str]) -> dict[str, _Value]:
    values = {i: _Value((i,), True) for i in inputs}
    for op in ops:
        missing = [i for i in op.inputs if i not in values]
        if missing:
            raise RuntimeError(f"internal: op {op.name!r} reads {missing[0]!r}, which nothing produces")
        if op.kind in ALIAS_KINDS:
            parts = tuple(dict.fromkeys(p for i in op.inputs for p in values[i].parts))
            whole = op.kind is OpKind.ALIAS and len(op.inputs) == 1 and values[op.inputs[0]].whole
            values[op.name] = _Value(parts, whole)
        else:
            values[op.name] = _Value((op.name,), True)
    return values


def conv_label(op: Op) -> str:
    """The ``op`` column of a conv row: its kind by groups and kernel, read from fields."""
    cin = op.in_shapes[0][1]
    if op.groups > 1 and op.groups == cin:
        return "conv_dw"
    if op.groups > 1:
        return "conv_group"
    if op.kernel == (1, 1):
        return "conv_pw"
    return "conv"


def _absorbable(pad: Op, readers: list[Op]) -> bool:
    return (pad.kind is OpKind.PAD and pad.padding is not None and len(pad.inputs) == 1 and len(readers) == 1
            and readers[0].kind is OpKind.CONV and readers[0].inputs == (pad.name,))


def absorb_pads(ops: Sequence[Op], outputs: Sequence[str] = ()) -> list[Op]:
    """A zero pad (``padding`` set: equal on both sides of the spatial dims) whose only reader is a conv
    becomes that conv's padding: no row (SPEC). Any other pad stays a vector row."""
    readers: dict[str, list[Op]] = {}
    for op in ops:
        for i in set(op.inputs):
            readers.setdefault(i, []).append(op)
    pads = {op.name: op for op in ops if op.name not in outputs and _absorbable(op, readers.get(op.name, []))}
    if not pads:
        return list(ops)
    out = []
    for op in ops:
        pad = pads.get(op.inputs[0]) if op.kind is OpKind.CONV and op.inputs else None
        if pad is not None:
            (ph, pw), (h, w) = op.padding or (0, 0), pad.padding
            x = pad.in_shapes[0]
            x = x if len(x) == 4 else x[:2] + (1,) + x[2:]  # a 1-D conv's input, as its 2-D form
            op = replace(op, inputs=pad.inputs, in_shapes=(x,), padding=(ph + h, pw + w))
        if op.name not in pads:
            out.append(op)
    return out


class _Plan:
    """Which ops share a row: epilogues and prologues of matrix ops, then standalone rows."""

    def __init__(self, ops: Sequence[Op], values: dict[str, _Value], outputs: Sequence[str]):
        self.values = values
        self.by_name = {op.name: op for op in ops}
        self.compute = [op for op in ops if op.kind not in ALIAS_KINDS]
        self.readers: dict[str, list[str]] = {}  # readers of each produced value (outputs count)
        for op in self.compute:
            for p in self.parts_of(op):
                self.readers.setdefault(p, []).append(op.name)
        for p in outputs:
            self.readers.setdefault(p, []).append("<output>")
        self.consumers: dict[str, list[Op]] = {}
        for op in self.compute:
            src = self.sole_whole_reader(op)
            if src is not None:
                self.consumers.setdefault(src, []).append(op)
        self.claimed: dict[str, str] = {}  # op name -> the op whose row holds it
        self.epilogue: dict[str, list[Op]] = {}
        self.prologue: dict[str, list[Op]] = {}

    def parts_of(self, op: Op) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for i in op.inputs for p in self.values[i].parts))

    def sole_whole_reader(self, op: Op) -> str | None:
        """The producer whose value ``op`` reads whole, if op is that value's only reader."""
        if len(op.inputs) != 1:
            return None
        v = self.values[op.inputs[0]]
        if not v.whole or len(v.parts) != 1:
            return None
        src = v.parts[0]
        return src if self.readers.get(src) == [op.name] else None

    def next_op(self, name: str) -> Op | None:
        return self.consumers.get(name, [None])[0]

    def plan_epilogues(self) -> None:
        """BN folds into the producing matrix op, then an activation is its output stage."""
        for m in self.compute:
            if m.kind not in MATRIX_KINDS:
                continue
            chain: list[Op] = []
            nxt = self.next_op(m.name)
            if nxt is not None and nxt.kind is OpKind.BATCHNORM:
                chain.append(nxt)
                nxt = self.next_op(nxt.name)
            if nxt is not None and nxt.kind in UNARY_ACTIVATION_KINDS:
                chain.append(nxt)
            for op in chain:
                self.claimed[op.name] = m.name
            self.epilogue[m.name] = chain

    def plan_prologues(self) -> None:
        """An unfoldable BN and/or activation feeding exactly one matrix op runs in its input stage."""
        for m in self.compute:
            if m.kind not in MATRIX_KINDS:
                continue
            chain: list[Op] = []
            cur = m
            for wanted in (UNARY_ACTIVATION_KINDS, _BN):
                src = self.sole_whole_reader(cur)
                prev = self.by_name.get(src) if src else None
                if prev is None or prev.name in self.claimed or prev.kind not in wanted:
                    continue
                chain.insert(0, prev)
                cur = prev
            for op in chain:
                self.claimed[op.name] = m.name
            self.prologue[m.name] = chain

    def rows(self) -> list[tuple[Op, list[Op]]]:
        """(main op, the row's ops in order); an unclaimed BN with its sole following activation is one row."""
        self.plan_epilogues()
        self.plan_prologues()
        rows: list[tuple[Op, list[Op]]] = []
        for op in self.compute:
            if op.name in self.claimed and op.kind not in MATRIX_KINDS:
                continue
            if op.kind in MATRIX_KINDS:
                rows.append((op, self.prologue[op.name] + [op] + self.epilogue[op.name]))
                continue
            row = [op]
            nxt = self.next_op(op.name) if op.kind is OpKind.BATCHNORM else None
            if nxt is not None and nxt.kind in UNARY_ACTIVATION_KINDS and nxt.name not in self.claimed:
                row.append(nxt)
                self.claimed[nxt.name] = op.name
            rows.append((op, row))
        return rows


def _layer(index: int, main: Op, row: list[Op], plan: _Plan, in_ids: tuple[int, ...], out_id: int) -> Layer:
    is_matrix = main.kind in MATRIX_KINDS
    pro = plan.prologue.get(main.name, []) if is_matrix else []
    epi = plan.epilogue.get(main.name, []) if is_matrix else []
    epi_bn = [o for o in epi if o.kind is OpKind.BATCHNORM]
    epi_free = [o for o in epi if o.kind in ACTIVATION_KINDS]  # clamps: free when fused (fuse_activation)
    epi_costed = [o for o in epi if o.kind in UNARY_ACTIVATION_KINDS and o.kind not in ACTIVATION_KINDS]
    main_label = conv_label(main) if main.kind is OpKind.CONV else main.kind.value
    label = main_label if is_matrix else "+".join(o.kind.value for o in row)
    return Layer(
        index=index, name=main.path, op=label, kind=main.kind, unit=unit_of(main.kind),
        ops=tuple(o.path for o in row), inputs=in_ids, output=out_id,
        in_shape=main.in_shapes[0] if main.in_shapes else (), out_shape=row[-1].out_shape,
        kernel=main.kernel, stride=main.stride, padding=main.padding, groups=main.groups,
        dilation=main.dilation,
        shares_weights=is_matrix and main.weight_elems > 0 and main.params == 0,
        macs=main.macs, params=sum(o.params for o in row),
        weight_elems=main.weight_elems, bias_elems=main.bias_elems,
        vector_ops_fixed=(sum(o.vector_ops for o in pro + epi_costed) if is_matrix
                          else sum(o.vector_ops for o in row)),
        epilogue_bn_channels=sum(o.bn_channels for o in epi_bn),
        epilogue_bn_ops=sum(o.vector_ops for o in epi_bn),
        epilogue_act_ops=sum(o.vector_ops for o in epi_free),
        prologue_bn_channels=sum(o.bn_channels for o in (pro if is_matrix else row)),
        reduce_dims=main.reduce_dims,
        kernels=tuple(main_label if o is main else o.kind.value for o in (pro + [main] if is_matrix else row)),
        bn_kernels=tuple(o.kind.value for o in epi_bn),
        act_kernels=tuple(o.kind.value for o in epi_free + epi_costed),
        vector_kernels=(tuple((o.kind.value, o.vector_ops, "always") for o in pro + epi_costed)
                        + tuple((o.kind.value, o.vector_ops, "bn") for o in epi_bn)
                        + tuple((o.kind.value, o.vector_ops, "act") for o in epi_free)),
        variant=op_variant(main),
    )


def fuse(name: str, input_shape: Sequence[int], ops: Sequence[Op], inputs: Sequence[tuple[str, tuple[int, ...]]],
         outputs: Sequence[str], total_params: int) -> Graph:
    """Fuse ``ops`` into layers. ``inputs``: (value name, shape at batch 1) of each network input;
    ``outputs``: the value names the network returns; ``total_params``: the module's parameter count."""
    input_shapes = dict(inputs)
    ops = absorb_pads(ops, outputs)
    values = _values(ops, list(input_shapes))
    outputs = [p for o in outputs for p in values[o].parts]
    plan = _Plan(ops, values, outputs)
    tensors = [Tensor(i, tuple(input_shapes[n]), -1) for i, n in enumerate(input_shapes)]
    tensor_of = {n: i for i, n in enumerate(input_shapes)}
    layers: list[Layer] = []
    for index, (main, row) in enumerate(plan.rows()):
        inside = {o.name for o in row}
        reads = [p for o in row for p in plan.parts_of(o) if p not in inside]
        missing = [p for p in reads if p not in tensor_of]
        if missing:
            raise RuntimeError(f"internal: {row[0].name} reads {missing[0]}, which no row writes")
        tensor_of[row[-1].name] = len(tensors)
        tensors.append(Tensor(len(tensors), row[-1].out_shape, index))
        in_ids = tuple(dict.fromkeys(tensor_of[p] for p in reads))
        layers.append(_layer(index, main, row, plan, in_ids, tensor_of[row[-1].name]))
    out_ids = tuple(dict.fromkeys(tensor_of[p] for p in outputs if p in tensor_of))
    return Graph(name=name, input_shape=tuple(input_shape), ops=tuple(ops), tensors=tuple(tensors),
                 layers=tuple(layers), inputs=tuple(tensor_of[i] for i in input_shapes), outputs=out_ids,
                 params=total_params)
