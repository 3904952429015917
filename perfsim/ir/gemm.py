"""A row's matrix work as matrix products: the one rule every consumer reads (the systolic array's folds,
energy's operand traffic, efficiency tables, grouped-conv models, SCALE-Sim topologies). Torch-free.

A row's matrix work is ``groups`` independent products of an (M x K) by a (K x N) matrix: a conv per
group, M the output positions of the batch, N the output channels of a group, K the inputs of one output
(Cin/groups x kh x kw); a linear M rows (tokens x batch), N out and K in features; a batched matmul one
product per leading index (heads, windows) x batch, M x N its output's last two dims.
"""
from __future__ import annotations

from math import prod
from typing import NamedTuple

from .graph import Layer, Op, OpKind


class Gemm(NamedTuple):
    """``groups`` independent products (M x K) @ (K x N)."""

    groups: int
    m: int
    n: int
    k: int


def gemm_dims(layer: Layer, batch: int) -> Gemm:
    """The row's matrix work as products (module docstring); all zero for a row with no MACs."""
    out = layer.out_shape
    elems = prod(out[1:]) if len(out) > 1 else 1
    if not layer.macs or not elems:
        return Gemm(1, 0, 0, 0)
    k = max(1, layer.macs // elems)
    if layer.kind is OpKind.CONV and len(out) >= 3:
        g = max(1, layer.groups)
        return Gemm(g, prod(out[2:]) * batch, max(1, out[1] // g), k)
    if layer.kind is OpKind.MATMUL and len(out) >= 3:
        return Gemm(prod(out[1:-2]) * batch, out[-2], out[-1], k)
    n = out[-1]
    return Gemm(1, max(1, elems // n) * batch, n, k)


def matrix_dims(layer: Layer, batch: int) -> tuple[int, int, int]:
    """(M, N, K) of one product of the row (``gemm_dims``), each at least 1: what efficiency tables read."""
    g = gemm_dims(layer, batch)
    return max(1, g.m), max(1, g.n), max(1, g.k)


def table_key(layer: Layer | Op, batch: int) -> int:
    """The dimension a matrix label's efficiency table is read at: min(M, N, K) of one product, but K for
    a conv whose groups write one channel each (``conv_dw``: N = 1 always, K = its kernel area):
    a 7x7 depthwise conv ran 3.4x faster per MAC than a 3x3 one here (issue 20: ConvNeXt's were predicted
    2.7x too slow), and min(M, N, K) could not tell them apart."""
    m, n, k = matrix_dims(layer, batch)
    return k if layer.kind is OpKind.CONV and layer.groups > 1 and n == 1 else min(m, n, k)


def grouped_dims(layer: Layer, batch: int) -> tuple[int, int, int, int, int]:
    """A grouped conv row's (kernel area, groups, positions, channels read, channels written per group),
    what a grouped conv's model of its time reads (from ``matrix_dims``: positions M, written N,
    K = read x area)."""
    m, n, k = matrix_dims(layer, batch)
    area = layer.kernel[0] * layer.kernel[1] if layer.kernel else 1
    return area, max(1, layer.macs * batch // (m * n * k)), m, max(1, k // area), n
