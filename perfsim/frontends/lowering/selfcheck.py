"""The lowering checks itself against an independent count of the same forward. Torch-free.

Two checks (SPEC "Beyond the zoo", self-check): the conv + linear + matmul MACs of the ops
equal ``torch.utils.flop_counter``'s FLOPs / 2, module by module; and every parameter the
forward reads lands in some row. Either failure is one line naming the module.
"""
from __future__ import annotations

from ...errors import UnsupportedOpError
from ...ir.graph import Op
from .calls import Capture


class SelfCheckError(UnsupportedOpError):
    """The lowered graph disagrees with the independent count: perfsim would be silently wrong."""


def _ancestors(path: str) -> list[str]:
    parts = path.split(".") if path else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def macs_by_module(ops: list[Op], module_of: dict[str, str]) -> dict[str, int]:
    """MACs of the ops each module's forward ran, its submodules included ("" is the whole network)."""
    out: dict[str, int] = {}
    for op in ops:
        if op.macs:
            for p in _ancestors(module_of[op.name]):
                out[p] = out.get(p, 0) + op.macs
    return out


def check_macs(cap: Capture, ops: list[Op], module_of: dict[str, str]) -> None:
    ours = macs_by_module(ops, module_of)
    theirs = cap.counter_macs
    if ours.get("", 0) == theirs.get("", 0):
        return
    differ = [p for p in set(ours) | set(theirs) if ours.get(p, 0) != theirs.get(p, 0)]
    where = max(differ, key=lambda p: (p.count(".") + bool(p), p))
    lowered, counted = ours.get(where, 0), theirs.get(where, 0)
    gap = f"{counted - lowered:,} MACs missing" if counted > lowered else f"{lowered - counted:,} MACs too many"
    at = f"at {where!r} ({cap.module_types.get(where, '?')})" if where else f"in {cap.root_type}"
    raise SelfCheckError(f"lowering disagrees with torch's flop counter {at}: {lowered:,} MACs lowered, "
                         f"{counted:,} counted ({gap})")


def check_params(cap: Capture, in_rows: dict[str, str]) -> None:
    lost = [p for p in cap.touched if p not in in_rows]
    if not lost:
        return
    elems = sum(cap.param_elems.get(p, 0) for p in lost)
    first, path = lost[0], cap.touched[lost[0]]
    at = f"{path!r} ({cap.module_types.get(path, '?')})" if path else f"'' ({cap.root_type})"
    what = f"parameter {first!r}" if len(lost) == 1 else f"{len(lost)} parameters (first {first!r})"
    raise SelfCheckError(f"{what} read by the forward at {at} land{'s' if len(lost) == 1 else ''} in no row: "
                         f"{elems:,} parameter values would be dropped")
