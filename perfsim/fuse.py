"""Fusion: traced ops -> report rows (SPEC "Layers"). Torch-free.

Input is the op list any front end produces (torch capture, ONNX import): ops in
execution order, each naming the values it reads (a graph input or an earlier op).
Alias ops (``ALIAS``, ``GATHER``, ``CONCAT``) make no row: the data they stand for is
that of their inputs' parts, and a consumer of an alias reads every part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .graph import (ACTIVATION_KINDS, ALIAS_KINDS, MATRIX_KINDS, Graph, Layer, Op, OpKind, Tensor,
                    unit_of)


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


def fuse(name: str, input_shape: Sequence[int], ops: Sequence[Op], inputs: Sequence[tuple[str, tuple[int, ...]]],
         outputs: Sequence[str], total_params: int) -> Graph:
    """Fuse ``ops`` into layers. ``inputs``: (value name, shape at batch 1) of each network input;
    ``outputs``: the value names the network returns; ``total_params``: the module's parameter count."""
    input_shapes = dict(inputs)
    values = _values(ops, list(input_shapes))
    outputs = [p for o in outputs for p in values[o].parts]
    inputs = list(input_shapes)
    by_name = {op.name: op for op in ops}
    compute = [op for op in ops if op.kind not in ALIAS_KINDS]

    def parts_of(op: Op) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for i in op.inputs for p in values[i].parts))

    # readers of each produced value (network outputs count as readers)
    readers: dict[str, list[str]] = {}
    for op in compute:
        for p in parts_of(op):
            readers.setdefault(p, []).append(op.name)
    for p in outputs:
        readers.setdefault(p, []).append("<output>")

    def sole_whole_reader(op: Op) -> str | None:
        """The producer whose value ``op`` reads whole, if op is that value's only reader."""
        if len(op.inputs) != 1:
            return None
        v = values[op.inputs[0]]
        if not v.whole or len(v.parts) != 1:
            return None
        src = v.parts[0]
        return src if readers.get(src) == [op.name] else None

    claimed: dict[str, str] = {}  # op name -> the matrix op whose row holds it
    epilogue: dict[str, list[Op]] = {}
    prologue: dict[str, list[Op]] = {}
    # 1. epilogues: BN folds into the producing matrix op, then the activation is its output stage
    consumers: dict[str, list[Op]] = {}
    for op in compute:
        src = sole_whole_reader(op)
        if src is not None:
            consumers.setdefault(src, []).append(op)
    for m in compute:
        if m.kind not in MATRIX_KINDS:
            continue
        chain: list[Op] = []
        last = m.name
        nxt = consumers.get(last, [None])[0]
        if nxt is not None and nxt.kind is OpKind.BATCHNORM:
            chain.append(nxt)
            last = nxt.name
            nxt = consumers.get(last, [None])[0]
        if nxt is not None and nxt.kind in ACTIVATION_KINDS:
            chain.append(nxt)
        for op in chain:
            claimed[op.name] = m.name
        epilogue[m.name] = chain
    # 2. prologues: an unfoldable BN and/or activation feeding exactly one matrix op
    for m in compute:
        if m.kind not in MATRIX_KINDS:
            continue
        chain = []
        cur = m
        for wanted in (ACTIVATION_KINDS, frozenset({OpKind.BATCHNORM})):
            src = sole_whole_reader(cur)
            prev = by_name.get(src) if src else None
            if prev is None or prev.name in claimed or prev.kind not in wanted:
                continue
            chain.insert(0, prev)
            cur = prev
        for op in chain:
            claimed[op.name] = m.name
        prologue[m.name] = chain
    # 3. standalone vector rows; an unclaimed BN with its sole following activation is one row
    rows: list[tuple[Op, list[Op]]] = []  # (main op, all ops of the row in order)
    for op in compute:
        if op.name in claimed and op.kind not in MATRIX_KINDS:
            continue
        if op.kind in MATRIX_KINDS:
            rows.append((op, prologue[op.name] + [op] + epilogue[op.name]))
            continue
        row = [op]
        if op.kind is OpKind.BATCHNORM:
            nxt = consumers.get(op.name, [None])[0]
            if nxt is not None and nxt.kind in ACTIVATION_KINDS and nxt.name not in claimed:
                row.append(nxt)
                claimed[nxt.name] = op.name
        rows.append((op, row))

    # physical tensors: network inputs, then one per row output
    tensors: list[Tensor] = []
    tensor_of: dict[str, int] = {}
    for i in inputs:
        tensor_of[i] = len(tensors)
        tensors.append(Tensor(len(tensors), tuple(input_shapes[i]), -1))
    layers: list[Layer] = []
    for index, (main, row) in enumerate(rows):
        first, last = row[0], row[-1]
        in_ids = []
        for p in parts_of(first):
            if p not in tensor_of:
                raise RuntimeError(f"internal: {first.name} reads {p}, which no row writes")
            in_ids.append(tensor_of[p])
        tensor_of[last.name] = len(tensors)
        tensors.append(Tensor(len(tensors), last.out_shape, index))
        is_matrix = main.kind in MATRIX_KINDS
        pro = prologue.get(main.name, []) if is_matrix else []
        epi = epilogue.get(main.name, []) if is_matrix else []
        epi_bn = [o for o in epi if o.kind is OpKind.BATCHNORM]
        epi_act = [o for o in epi if o.kind in ACTIVATION_KINDS]
        label = (conv_label(main) if main.kind is OpKind.CONV else
                 "+".join(o.kind.value for o in row) if not is_matrix else main.kind.value)
        layers.append(Layer(
            index=index, name=main.path, op=label, kind=main.kind, unit=unit_of(main.kind),
            ops=tuple(o.path for o in row), inputs=tuple(dict.fromkeys(in_ids)), output=tensor_of[last.name],
            in_shape=main.in_shapes[0] if main.in_shapes else (), out_shape=last.out_shape,
            kernel=main.kernel, stride=main.stride, padding=main.padding, groups=main.groups,
            dilation=main.dilation,
            shares_weights=is_matrix and main.weight_elems > 0 and main.params == 0,
            macs=main.macs, params=sum(o.params for o in row),
            weight_elems=main.weight_elems, bias_elems=main.bias_elems,
            vector_ops_fixed=(sum(o.vector_ops for o in pro) if is_matrix else sum(o.vector_ops for o in row)),
            epilogue_bn_channels=sum(o.bn_channels for o in epi_bn),
            epilogue_bn_ops=sum(o.vector_ops for o in epi_bn),
            epilogue_act_ops=sum(o.vector_ops for o in epi_act),
            prologue_bn_channels=(sum(o.bn_channels for o in pro if o.kind is OpKind.BATCHNORM) if is_matrix
                                  else sum(o.bn_channels for o in row if o.kind is OpKind.BATCHNORM)),
        ))
    out_ids = tuple(dict.fromkeys(tensor_of[p] for p in outputs if p in tensor_of))
    return Graph(name=name, input_shape=tuple(input_shape), ops=tuple(ops), tensors=tuple(tensors),
                 layers=tuple(layers), inputs=tuple(tensor_of[i] for i in inputs), outputs=out_ids,
                 params=total_params)
