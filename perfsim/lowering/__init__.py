"""Lowering: any ``nn.Module`` to perfsim's op graph, fused into layers (docs/lowering.md).

Small rooms, data flowing one way:

- ``capture``   one forward at the ATen level (the only module here that imports torch);
- ``rules``     a cost rule per ATen op, pure functions of shapes;
- ``build``     calls to ops: names, parameters, every unsupported op in one error;
- ``selfcheck`` the ops against torch's flop counter and the parameters the forward read;
- ``perfsim.fuse`` ops to layers (shared with the ONNX front end).

Importing this package does not import torch; ``lower`` does.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import InputError
from ..fuse import fuse
from ..graph import ALIAS_KINDS, Graph
from .build import INPUT, build_ops
from .selfcheck import check_macs, check_params

__all__ = ["lower"]


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
    from .capture import capture  # imports torch

    shape = _batch1(input_shape)
    cap = capture(module, shape)
    lowered = build_ops(cap)
    if not any(op.kind not in ALIAS_KINDS for op in lowered.ops):
        raise InputError(f"{cap.root_type} has no operation perfsim can simulate")
    check_macs(cap, lowered.ops, lowered.module_of)
    check_params(cap, lowered.params_in_rows)
    outputs = [lowered.value_names[v] for v in cap.outputs]
    return fuse(name or cap.root_type, shape, lowered.ops, [(INPUT, shape)], outputs, sum(cap.param_elems.values()))
