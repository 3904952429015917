"""What the capture records of one forward, torch-free.

Every ATen call that reads an activation becomes a ``Call``: the op, the module whose
forward ran it, and its arguments by schema name, each tensor replaced by an ``Operand``
that says what it is (an activation, something computed from parameters, or a constant)
and its shape. Cost rules (``rules.py``) read nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class Role(str, Enum):
    ACT = "act"  # computed from the network input
    WEIGHT = "weight"  # a parameter, or computed from parameters alone (a view, a transpose, a gather)
    CONST = "const"  # computed from no parameter and no input: buffers, masks, index tables, scalars


@dataclass(frozen=True, slots=True)
class Operand:
    role: Role
    shape: tuple[int, ...]
    value: int = -1  # ACT: the value it holds (-1 is the network input, else the producing call's index)
    params: tuple[str, ...] = ()  # WEIGHT: the parameters it is computed from (qualified names)
    stored_elems: int = 0  # distinct elements (a broadcast view stores only its source)
    # ACT: "view" for a 4-D tensor a convolution copies before it runs (neither contiguous nor channels-last
    # to it: a token sequence transposed into a map, PVT-v2's and SegFormer's Mix-FFN), else ""
    layout: str = ""


@dataclass(frozen=True)
class Call:
    """One ATen call that reads an activation, at batch 1."""

    index: int  # position in execution order; also the value id of its outputs
    target: str  # e.g. "aten.convolution.default"
    path: str  # qualified name of the module whose forward ran it ("" for the root)
    module_call: int  # which call of that module (ops of one call share a name stem)
    args: Mapping[str, Any]  # by schema name; tensors are Operands, tensor lists tuples of them
    out_shapes: tuple[tuple[int, ...], ...]  # every tensor output

    @property
    def op(self) -> str:
        """The ATen op's name without namespace or overload: ``convolution``, ``add_``."""
        return self.target.split(".")[1]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out_shapes[0] if self.out_shapes else ()

    def operands(self) -> list[Operand]:
        out: list[Operand] = []
        for v in self.args.values():
            if isinstance(v, Operand):
                out.append(v)
            elif isinstance(v, tuple):
                out.extend(o for o in v if isinstance(o, Operand))
        return out

    def acts(self) -> list[Operand]:
        return [o for o in self.operands() if o.role is Role.ACT]

    def weights(self) -> list[Operand]:
        return [o for o in self.operands() if o.role is Role.WEIGHT]

    def arg(self, name: str, default: Any = None) -> Any:
        v = self.args.get(name, default)
        return default if v is None else v


@dataclass
class Capture:
    """One captured forward: the calls, what came in and out, and the independent counts."""

    root_type: str
    input_shape: tuple[int, ...]
    calls: list[Call]
    outputs: list[int]  # value ids the forward returns (-1: the input itself)
    param_elems: dict[str, int]  # every parameter of the module: qualified name -> numel
    module_types: dict[str, str] = field(default_factory=dict)  # module path -> class name
    touched: dict[str, str] = field(default_factory=dict)  # parameters the forward read -> first module path
    counter_macs: dict[str, int] = field(default_factory=dict)  # module path -> flop counter's FLOPs / 2
