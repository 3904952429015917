"""A systolic matrix unit: cycles and utilisation of one matrix row (docs/systolic.md). Pure, torch-free.

A row's matrix work is ``groups`` independent products of an (M x K) by a (K x N) matrix
(``perfsim.ir.gemm``). The dataflow decides which two of M, N, K lie across the array's rows and
columns (the spatial dims Sr, Sc) and which one streams through it in time (T), as in
SCALE-Sim (Samajdar et al., ISPASS 2020):

    os: Sr = M, Sc = N, T = K   (outputs stay in the PEs)
    ws: Sr = K, Sc = N, T = M   (weights stay)
    is: Sr = K, Sc = M, T = N   (inputs stay)

The product is cut into folds of at most ``rows`` x ``cols``; a fold that uses r rows and c
columns takes ``fill * r + c + T - 2`` cycles (``fill`` = 1 for os, whose outputs drain while the
next operands enter; 2 for ws and is, which first load the stationary operand), and folds run one
after another. Fill and drain cover the rows and columns a fold uses (SCALE-Sim pads a partial
fold to the whole array): so a larger array is never slower.

Groups (depthwise, grouped conv, batched matmul) are separate products. When one group's
Sr x Sc block fits the array, ``min(rows // Sr, cols // Sc)`` groups share a fold on the
diagonal (each group's PEs see only its own operands; the PEs off the diagonal idle); that
is chosen only when it saves cycles (T >= 2). Otherwise groups fold one after another, which is
exactly SCALE-Sim's split of a depthwise layer into per-channel layers.
"""
from __future__ import annotations

from math import ceil
from typing import Literal, NamedTuple

from ..ir.gemm import Gemm, gemm_dims
from ..ir.graph import Layer

Dataflow = Literal["os", "ws", "is"]
DATAFLOWS: tuple[str, ...] = ("os", "ws", "is")


class ArrayRun(NamedTuple):
    cycles: int
    folds: int
    utilization: float  # MACs / (cycles * rows * cols)


def spatial(gemm: Gemm, dataflow: str) -> tuple[int, int, int]:
    """(Sr, Sc, T) of one product under ``dataflow``."""
    _, m, n, k = gemm
    if dataflow == "os":
        return m, n, k
    if dataflow == "ws":
        return k, n, m
    if dataflow == "is":
        return k, m, n
    raise ValueError(f"unknown dataflow {dataflow!r} (expected one of {', '.join(DATAFLOWS)})")


def fold_counts(gemm: Gemm, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(row folds, column folds) of one product: how often each operand is re-streamed."""
    sr, sc, _ = spatial(gemm, dataflow)
    return ceil(sr / rows), ceil(sc / cols)


def array_cycles(gemm: Gemm, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(cycles, folds) of ``gemm`` on a ``rows`` x ``cols`` array (module docstring)."""
    g = gemm.groups
    sr, sc, t = spatial(gemm, dataflow)
    if not (sr and sc and t):
        return 0, 0
    fill = 1 if dataflow == "os" else 2
    packed = min(rows // sr, cols // sc)
    if packed > 1 and t >= 2:  # whole groups on the diagonal, fewer folds
        folds = ceil(g / packed)
        return fill * g * sr + g * sc + folds * (t - 2), folds
    fr, fc = ceil(sr / rows), ceil(sc / cols)
    folds = g * fr * fc
    return fill * g * sr * fc + g * sc * fr + folds * (t - 2), folds


def run_on_array(layer: Layer, batch: int, rows: int, cols: int, dataflow: str) -> ArrayRun:
    """Cycles, folds and utilisation of one matrix row on the array."""
    gemm = gemm_dims(layer, batch)
    cycles, folds = array_cycles(gemm, rows, cols, dataflow)
    macs = layer.macs * batch
    util = macs / (cycles * rows * cols) if cycles else 0.0
    return ArrayRun(cycles=cycles, folds=folds, utilization=util)


def operand_elements(gemm: Gemm, rows: int, cols: int, dataflow: str) -> tuple[int, int, int]:
    """Elements moved between SRAM and the array: (input reads, weight reads, output writes).

    The stationary operand is read once; a streamed operand once per fold across the other
    spatial dim; outputs (partial sums) are written once per fold along the reduction (K) dim.
    """
    g, m, n, k = gemm
    fr, fc = fold_counts(gemm, rows, cols, dataflow)
    if dataflow == "os":  # Sr = M, Sc = N: inputs re-read per column fold, weights per row fold
        return g * m * k * fc, g * k * n * fr, g * m * n
    if dataflow == "ws":  # Sr = K, Sc = N: weights once, inputs per column fold, psums per row fold
        return g * m * k * fc, g * k * n, g * m * n * fr
    return g * m * k, g * k * n * fc, g * m * n * fr  # is: Sr = K, Sc = M
