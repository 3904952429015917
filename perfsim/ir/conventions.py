"""Other papers' counting conventions, computed from perfsim's op graph. Torch-free.

perfsim's own count is SPEC's: conv and linear MACs (``Graph.macs``). Papers count
differently; reporting both, named, keeps comparisons honest.
"""
from __future__ import annotations

from math import prod

from .graph import Graph, OpKind


def condensenet_flops(graph: Graph) -> int:
    """The CondenseNet papers' "FLOPs" (ShichenLiu/CondenseNet's own counter).

    conv MACs + one per ReLU input element + k^2 per average-pool output element (a global
    pool: one per input element) + for the classifier in*out + out. BN, shuffles, gathers
    and concats count nothing. Batch 1.
    """
    total = 0
    for op in graph.ops:
        if op.kind is OpKind.CONV:
            total += op.macs
        elif op.kind in (OpKind.RELU, OpKind.RELU6):
            total += prod(op.in_shapes[0])
        elif op.kind in (OpKind.AVGPOOL, OpKind.GLOBAL_AVGPOOL):
            total += op.vector_ops  # k^2 per output = 1 per input element for a global pool
        elif op.kind is OpKind.LINEAR:
            total += op.macs + prod(op.out_shape)
    return total
