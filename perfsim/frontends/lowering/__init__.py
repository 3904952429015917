"""Lowering: any ``nn.Module`` to perfsim's op graph, fused into layers (docs/lowering.md).

Small rooms, data flowing one way:

- ``capture``   one forward at the ATen level (the only module here that imports torch);
- ``rules``     a cost rule per ATen op, pure functions of shapes;
- ``build``     calls to ops: names, parameters, every unsupported op in one error;
- ``selfcheck`` the ops against torch's flop counter and the parameters the forward read;
- ``perfsim.ir.fuse`` ops to layers (shared with the ONNX front end).

Importing this package does not import torch; ``lower`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import InputError
from ...ir.fuse import fuse
from ...ir.graph import ALIAS_KINDS, Graph
from .build import INPUT, build_ops
from .calls import Call
from .selfcheck import check_macs, check_params

__all__ = ["lower", "lower_traced", "Traced"]


def _batch1(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"input shape must be positive, got {'x'.join(map(str, shape))}")
    if shape[0] != 1:
        raise InputError("lower() works at batch 1; give the batch to simulate()")
    return shape


def lower(module: Any, input_shape: Sequence[int], *, name: str | None = None) -> Graph:
    """Run ``module`` once on an input of ``input_shape`` (C,H,W or 1,C,H,W), check the count, fuse it."""
    return lower_traced(module, input_shape, name=name).graph


@dataclass(frozen=True)
class Traced:
    """A lowered graph with what it was built from: the captured calls, and which op each call became
    (``call_ops[i]`` is the name of call i's op, None for a call the rules ignore)."""

    graph: Graph
    calls: list[Call]
    call_ops: list[str | None]


def lower_traced(module: Any, input_shape: Sequence[int], *, name: str | None = None, input: Any = None) -> Traced:
    """``lower``, keeping the calls and their ops (``perfsim.host.validate`` lines measured calls up with rows).
    ``input``: a tensor of the input shape to capture on instead of zeros, every call computed (validate
    captures the input it times)."""
    from .capture import capture  # imports torch

    shape = _batch1(input_shape)
    cap = capture(module, shape, input)
    lowered = build_ops(cap)
    if not any(op.kind not in ALIAS_KINDS for op in lowered.ops):
        raise InputError(f"{cap.root_type} has no operation perfsim can simulate")
    check_macs(cap, lowered.ops, lowered.module_of)
    check_params(cap, lowered.params_in_rows)
    outputs = [lowered.value_names[v] for v in cap.outputs]
    graph = fuse(name or cap.root_type, shape, lowered.ops, [(INPUT, shape)], outputs, sum(cap.param_elems.values()))
    return Traced(graph=graph, calls=cap.calls, call_ops=[lowered.value_names.get(c.index) for c in cap.calls])
