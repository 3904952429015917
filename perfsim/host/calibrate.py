"""``perfsim calibrate``: measure this machine with micro-benchmarks and write a profile. Imports torch.

What is measured (docs/model.md, "Calibrated profiles"), every figure the median of repeats with its
quartiles, at a fixed thread count, in float32, in eval mode without autograd:

- the matrix peak: dense square GEMMs (``torch.mm``) of several sizes, the best median rate;
- the vector peak: an in-cache elementwise add, the best median rate (1 vector op per element);
- streaming bandwidth: a copy of an array far larger than the last-level cache (bytes read + written);
- the last-level cache: the OS's figure, and the working set where a copy's bandwidth falls to the stream's;
- per op label (``conv``, ``conv_dw``, ``linear``, ``batchnorm``, ``relu``...): small PyTorch modules, each
  lowered by perfsim itself (so the label, MACs and vector ops are perfsim's own counting), timed as eager
  forwards over a spread of shapes. The smallest shape's time is the label's per-kernel overhead; each
  other shape's time beyond it gives a fraction of the unit's peak; for a matrix label the fractions
  become a table by the smallest dimension of the matrix product when they differ by size.

The zoo networks are never run here: they are what ``perfsim validate`` checks the result against.
"""
from __future__ import annotations

import datetime
import math
import os
import time
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..files import write_atomic
from .measure import Spread, describe_host, host_settings, time_calls
from ..hardware.calibration import Calibration, KindFit, Measured
from ..hardware.description import HardwareProfile
from ..hardware.efficiency import GroupedConvModel, MATRIX_LABELS, STRIDED

FLAT = 0.15  # a label's fractions within this of their median are one number, not a table


@dataclass(frozen=True)
class Bench:
    """One micro-benchmark: a module, its input shape (batch 1 included) and the label it must lower to."""

    label: str
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]
    what: str


class _Fn(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _conv(cin: int, cout: int, k: int, groups: int = 1, stride: int = 1) -> Callable[[], nn.Module]:
    return lambda: nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


# Convs whose inputs and outputs differ (a stage's first conv doubles the channels; a bottleneck expands
# and projects; grouped convs that read several channels per output): (cin, cout, kernel, groups,
# side). Their matrix products have N and K apart, which the C->C shapes above never do, and PyTorch
# runs some of them on other code paths.
_UNEVEN = {
    "conv": [(32, 64, 3, 1, 16), (64, 128, 3, 1, 8)],
    "conv_pw": [(32, 128, 1, 1, 16), (128, 32, 1, 1, 16), (64, 256, 1, 1, 8), (256, 64, 1, 1, 8)],
    "conv_group": [(32, 8, 3, 4, 32), (32, 8, 3, 4, 16), (64, 16, 3, 4, 8), (64, 16, 3, 8, 16),
                   (64, 32, 1, 4, 32), (128, 32, 1, 4, 16), (16, 64, 1, 4, 16)],
}

# Strided convs (stride 2) have entries of their own, ``conv.strided`` and the like: PyTorch runs them on
# other code paths (a 1x1 conv 64->128 with stride 2 takes 3x the unstrided conv with the same output;
# a 3-channel stem 2.4x; docs/hardware.md); a strided grouped conv gets a table by the smallest dimension,
# not the grouped model. (cin, cout, kernel, groups, side); the first is overhead-bound.
_STRIDED = {
    "conv": [(8, 8, 3, 1, 2), (3, 32, 3, 1, 32), (32, 64, 3, 1, 32), (3, 32, 3, 1, 96), (64, 128, 3, 1, 16),
             (3, 24, 3, 1, 224), (128, 256, 3, 1, 8), (16, 32, 3, 1, 56)],
    "conv_pw": [(8, 8, 1, 1, 2), (16, 32, 1, 1, 32), (32, 64, 1, 1, 56), (64, 128, 1, 1, 28), (128, 256, 1, 1, 14),
                (256, 512, 1, 1, 7), (64, 256, 1, 1, 28), (256, 64, 1, 1, 14)],
    "conv_dw": [(8, 8, 3, 8, 2), (32, 32, 3, 32, 112), (64, 64, 3, 64, 56), (128, 128, 3, 128, 28),
                (256, 256, 3, 256, 14), (512, 512, 3, 512, 7), (96, 96, 5, 96, 28), (240, 240, 5, 240, 14)],
    "conv_group": [(8, 8, 3, 4, 2), (64, 64, 3, 32, 56), (128, 128, 3, 64, 28), (64, 64, 3, 32, 112),
                   (256, 256, 3, 128, 14), (128, 128, 3, 16, 28), (256, 256, 3, 8, 14), (128, 128, 1, 4, 28)],
}


def _matrix_benches(quick: bool) -> Iterator[Bench]:
    hw = (16, 8) if quick else (32, 16, 8, 4)
    for c, h in [(8, 8)] + [(c, h) for c in ((32, 128) if quick else (16, 64, 128, 256)) for h in hw]:
        yield Bench("conv", _conv(c, c, 3), (1, c, h, h), f"3x3 conv {c}->{c} at {h}x{h}")
    for h in ((56,) if quick else (32, 56, 112)):  # a stem: three input channels
        yield Bench("conv", lambda: nn.Conv2d(3, 32, 3, padding=1, bias=False), (1, 3, h, h), f"3x3 conv 3->32 at {h}x{h}")
    for c, h in [(8, 1)] + [(c, h) for c in ((64, 256) if quick else (32, 64, 128, 256, 512)) for h in hw]:
        yield Bench("conv_pw", _conv(c, c, 1), (1, c, h, h), f"1x1 conv {c}->{c} at {h}x{h}")
    for c, h in [(8, 1)] + [(c, h) for c in ((64, 256) if quick else (32, 64, 128, 256, 512)) for h in hw]:
        yield Bench("conv_dw", _conv(c, c, 3, c), (1, c, h, h), f"3x3 depthwise {c} at {h}x{h}")
    cpgs = (2, 8, 32) if quick else (2, 4, 8, 16, 32)
    for k in (1, 3):
        for cpg in cpgs:
            for c, h in (((128, 28), (128, 7)) if quick else ((64, 28), (64, 7), (256, 28), (256, 14), (256, 7))):
                yield Bench("conv_group", _conv(c, c, k, c // cpg), (1, c, h, h),
                            f"{k}x{k} conv {c}->{c} in groups of {cpg} at {h}x{h}")
    yield Bench("conv_group", _conv(8, 8, 1, 4), (1, 8, 1, 1), "1x1 conv 8->8 in groups of 2 at 1x1")
    for n_in, n_out, rows in [(8, 8, 1)] + ([(1024, 1000, 1), (256, 256, 64), (512, 512, 196)] if quick else
                                            [(256, 256, 1), (1024, 1000, 1), (2048, 2048, 1), (256, 256, 16),
                                             (256, 256, 64), (512, 512, 196), (768, 768, 197)]):
        yield Bench("linear", lambda i=n_in, o=n_out: nn.Linear(i, o), (1, rows, n_in) if rows > 1 else (1, n_in),
                    f"linear {n_in}->{n_out} on {rows} row(s)")
    for heads, length, dim in [(1, 4, 4)] + ([(4, 64, 32), (12, 197, 64)] if quick else
                                             [(1, 16, 16), (4, 64, 32), (8, 128, 64), (12, 197, 64), (1, 256, 256)]):
        yield Bench("matmul", lambda: _Fn(lambda x: x @ x.transpose(-1, -2)), (1, heads, length, dim),
                    f"matmul of {heads} head(s) {length}x{dim} by its transpose")


GROUPED_CHANNELS = (2, 4, 8, 16, 32, 128)  # channels read and written per group: the grouped model's axes
GROUPED_CHANNELS_QUICK = (2, 8, 32, 128)
WIDE = 128  # a cell with this many channels per group is timed with 2 and 4 groups, not 4 and 32 (its cost)


def _grouped_benches(quick: bool) -> Iterator[Bench]:
    """Grouped convs over a grid (``fit_grouped``): kernel 1 or 3, channels read and written per group,
    4 or 32 groups (2 or 4 for a cell of 128 channels: clcNet's 1x1 convs run 2 groups of 16-512, and
    the model read beyond a grid of 32 per group had missed them by a third, docs/hardware.md), three map
    sides (two with ``quick``)."""
    channels = GROUPED_CHANNELS_QUICK if quick else GROUPED_CHANNELS
    for k in (1, 3):
        for cin in channels:
            for cout in channels:
                for groups in ((2, 4) if WIDE in (cin, cout) else (4, 32)):
                    for h in ((7, 28) if quick else (7, 14, 28)):
                        yield Bench("conv_group", _conv(cin * groups, cout * groups, k, groups), (1, cin * groups, h, h),
                                    f"{k}x{k} conv, {groups} groups of {cin}->{cout} at {h}x{h}")


def _shape_benches(shapes: dict[str, list[tuple[int, int, int, int, int]]], stride: int, quick: bool
                   ) -> Iterator[Bench]:
    """A conv per (cin, cout, kernel, groups, side) of each label's ``shapes`` at ``stride``, under the label
    (``label.strided`` with a stride above 1); every other one with ``quick``."""
    for label, rows in shapes.items():
        for cin, cout, k, groups, h in (rows[::2] if quick else rows):
            grouped = f" in {groups} groups" if groups > 1 else ""
            strided = f", stride {stride}," if stride > 1 else ""
            yield Bench(label + (STRIDED if stride > 1 else ""), _conv(cin, cout, k, groups, stride), (1, cin, h, h),
                        f"{k}x{k} conv {cin}->{cout}{grouped}{strided} at {h}x{h}")


# label -> (module factory, spatial input?) for the vector kinds; shapes from _vector_shapes
_VECTOR: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "batchnorm": (lambda: nn.BatchNorm2d(_C), "nchw"),
    "relu": (lambda: nn.ReLU(inplace=True), "nchw"),
    "relu6": (lambda: nn.ReLU6(inplace=True), "nchw"),
    "sigmoid": (lambda: nn.Sigmoid(), "nchw"),
    "silu": (lambda: nn.SiLU(), "nchw"),
    "hardsigmoid": (lambda: nn.Hardsigmoid(), "nchw"),
    "hardswish": (lambda: nn.Hardswish(), "nchw"),
    "gelu": (lambda: nn.GELU(), "tokens"),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), "nchw"),
    "elu": (lambda: nn.ELU(), "nchw"),
    "tanh": (lambda: nn.Tanh(), "nchw"),
    "mish": (lambda: nn.Mish(), "nchw"),
    "softplus": (lambda: nn.Softplus(), "nchw"),
    "add": (lambda: _Fn(lambda x: x + x), "nchw"),
    "elementwise": (lambda: _Fn(lambda x: x * x), "nchw"),
    "maxpool": (lambda: nn.MaxPool2d(3, 2, 1), "nchw"),
    "avgpool": (lambda: nn.AvgPool2d(2), "nchw"),
    "global_avgpool": (lambda: nn.AdaptiveAvgPool2d(1), "nchw"),
    "softmax": (lambda: nn.Softmax(dim=-1), "tokens"),
    "layernorm": (lambda: nn.LayerNorm(_D), "tokens"),
    "groupnorm": (lambda: nn.GroupNorm(4, _C), "nchw"),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2, mode="nearest"), "nchw"),
    "upsample_bilinear": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), "nchw"),
}
_C, _D = 64, 256  # channels of the spatial vector benchmarks; features of the token ones


def _vector_benches(quick: bool) -> Iterator[Bench]:
    sides = (2, 16, 56) if quick else (2, 8, 16, 32, 56)
    tokens = (1, 64, 512) if quick else (1, 16, 64, 197, 512)
    for label, (make, layout) in _VECTOR.items():
        shapes = ([(1, _C, h, h) for h in sides] if layout == "nchw" else [(1, t, _D) for t in tokens])
        for shape in shapes:
            yield Bench(label, make, shape, f"{label} on {'x'.join(map(str, shape[1:]))}")


def tiled_benches(quick: bool) -> list[Bench]:
    """Shapes whose working set (input + output) is several MB: beyond a core's level-2 cache."""
    out = [Bench("conv_dw", _conv(c, c, 3, c), (1, c, h, h), f"3x3 depthwise {c} at {h}x{h} (large)")
           for c, h in ((64, 112), (128, 56)) + (() if quick else ((256, 56), (32, 160)))]
    out += [Bench("conv", _conv(32, 32, 3), (1, 32, 112, 112), "3x3 conv 32->32 at 112x112 (large)"),
            Bench("conv_pw", _conv(64, 64, 1), (1, 64, 112, 112), "1x1 conv 64->64 at 112x112 (large)"),
            Bench("conv_group", _conv(128, 128, 3, 64), (1, 128, 56, 56), "3x3 conv 128->128 in groups of 2 at 56x56 (large)")]
    for label in ("batchnorm", "relu", "add", "maxpool"):
        out.append(Bench(label, _VECTOR[label][0], (1, _C, 112, 112), f"{label} on {_C}x112x112 (large)"))
    return out


def fit_tiled(profile: HardwareProfile, results: list[tuple[Bench, Any, Spread]]) -> dict[str, float]:
    """Per label, the factor by which a row that does not fit in SRAM runs below its in-SRAM efficiency:
    the measured time beyond the row's predicted data and overhead, against its predicted compute.
    Only labels that fall by more than 15 % get an entry."""
    from ..sim.simulator import simulate
    factors: dict[str, list[float]] = {}
    for bench, _layer, spread in results:
        row = simulate(_built(bench)[1], profile).rows[0]
        compute = row.t_matrix_s + row.t_vector_s
        beyond = spread.median_s - row.t_data_s - row.t_overhead_s
        if row.tiles > 1 and compute > 0 and beyond > 0:
            factors.setdefault(bench.label, []).append(min(1.0, compute / beyond))
    out = {}
    for label, values in factors.items():
        f = median(values)
        if f < 0.85:
            out[label] = round(max(f, 1e-6), 6)
    return out


# Pairs of square maps, one side off a multiple of 8 and the power of two above it: (label, channels,
# side, side). Alone, as `validate` times them, oneDNN's 1x1 convs took as long at 7x7 as at 8x8 (256
# channels: 65.4 and 64.0 us) and 7 % longer at 14x14 than their MACs say: they compute output positions
# in blocks, and ImageNet networks' maps (56, 28, 14, 7) are not all multiples of them (docs/hardware.md).
_BLOCK_PAIRS = [("conv_pw", 256, 7, 8), ("conv_pw", 128, 14, 16), ("conv_pw", 64, 28, 32),
                ("conv", 64, 7, 8), ("conv", 64, 14, 16)]
ROW_BLOCKS = (1, 2, 4, 8, 16, 32)  # the candidates, output positions


def block_benches(quick: bool) -> list[Bench]:
    """Both maps of each pair of ``_BLOCK_PAIRS`` (the first two of each label with ``quick``)."""
    out: list[Bench] = []
    for label, c, odd, even in _BLOCK_PAIRS:
        if quick and sum(b.label == label for b in out) >= 4:
            continue
        k = 1 if label == "conv_pw" else 3
        out += [Bench(label, _conv(c, c, k), (1, c, h, h), f"{k}x{k} conv {c}->{c} at {h}x{h} (row block)")
                for h in (odd, even)]
    return out


def fit_row_blocks(profile: HardwareProfile, results: list[tuple[Bench, Any, Spread]]
                   ) -> tuple[dict[str, int], dict[str, Measured]]:
    """Per label, the block of output positions (``ROW_BLOCKS``) whose rounding best predicts the ratio of
    each pair's times beyond the label's overhead, the isolated fit's efficiency otherwise as it is (least
    squares in log); a label whose best block is 1 gets none."""
    from ..ir.gemm import matrix_dims
    from ..sim.timing import entry_value, kernel_overhead_of, row_block_factor
    pairs: dict[str, list[tuple[float, tuple[Any, Any]]]] = {}  # log of the time ratio, the two rows
    for (b1, l1, s1), (b2, l2, s2) in zip(results[::2], results[1::2]):
        label = b1.label
        o = kernel_overhead_of(profile.kernels.overhead, label)
        if s1.median_s <= o or s2.median_s <= o:
            continue
        pairs.setdefault(label, []).append((math.log((s1.median_s - o) / (s2.median_s - o)), (l1, l2)))
    blocks, measured = {}, {}
    for label, obs in pairs.items():
        eff = profile.kernels.efficiency.get(label, 1.0)

        def work(layer: Any, block: int) -> float:
            return layer.macs / (entry_value(eff, layer, 1) * row_block_factor(block, matrix_dims(layer, 1)[0]))

        errors = {b: sum((r - math.log(work(l1, b) / work(l2, b))) ** 2 for r, (l1, l2) in obs) for b in ROW_BLOCKS}
        best = min(ROW_BLOCKS, key=lambda b: (round(errors[b], 6), b))
        if best > 1:
            blocks[label] = best
        measured[f"row_block: {label}"] = Measured(
            value=float(best), q1=float(best), q3=float(best), n=len(obs), unit="positions",
            what=f"the block that best predicts the times of {len(obs)} pairs of maps (a side off a multiple "
                 "of 8, the power of two above it); squared log errors: "
                 + ", ".join(f"{b}: {errors[b]:.3g}" for b in ROW_BLOCKS))
    return blocks, measured


_BUILT: dict[str, tuple[nn.Module, Any]] = {}


def _built(bench: Bench) -> tuple[nn.Module, Any]:
    """The benchmark's module and its lowered graph, built once per process."""
    from ..frontends.lowering import lower
    key = f"{bench.label}: {bench.what}"
    if key not in _BUILT:
        module = bench.make().eval()
        _BUILT[key] = module, lower(module, bench.shape, name=bench.label)
    return _BUILT[key]


def benches(quick: bool) -> list[Bench]:
    return (list(_matrix_benches(quick)) + list(_shape_benches(_UNEVEN, 1, quick))
            + list(_shape_benches(_STRIDED, 2, quick)) + list(_grouped_benches(quick)) + list(_vector_benches(quick)))


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def _time(fn: Callable[[], Any], samples: int, min_sample_s: float) -> Spread:
    """``samples`` timings of ``fn``, each the mean of enough calls to last ``min_sample_s``, after a
    warm-up of at least 5 calls and 20 ms (first calls build kernels and fault pages in)."""
    start, calls, fastest = time.perf_counter(), 0, math.inf
    while calls < 5 or time.perf_counter() - start < 0.02:
        t0 = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t0)
        calls += 1
    inner = max(1, min(10_000, int(min_sample_s / max(fastest, 1e-7))))
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t0) / inner)
    return Spread.of(out)


def _measured(spread: Spread, scale: float, unit: str, what: str, invert: bool = False) -> Measured:
    """A timing as a rate (``scale / seconds``, quartiles swapped) or as seconds."""
    if invert:
        return Measured(value=scale / spread.median_s, q1=scale / spread.q3_s, q3=scale / spread.q1_s,
                        n=spread.n, unit=unit, what=what)
    return Measured(value=spread.median_s, q1=spread.q1_s, q3=spread.q3_s, n=spread.n, unit=unit, what=what)


def measure_gemm(quick: bool, samples: int) -> dict[str, Measured]:
    out = {}
    for n in ((256, 512, 1024) if quick else (256, 512, 1024, 2048)):
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        s = _time(lambda: torch.mm(a, b, out=c), samples, 0.02)
        out[f"gemm_{n}"] = _measured(s, 2.0 * n ** 3, "FLOP/s", f"torch.mm {n}x{n} by {n}x{n}", invert=True)
    return out


def measure_elementwise(samples: int) -> dict[str, Measured]:
    out = {}
    for n in (16_384, 131_072, 1_048_576):
        a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)
        s = _time(lambda: torch.add(a, b, out=c), samples, 0.01)
        out[f"elementwise_{n}"] = _measured(s, float(n), "op/s", f"add of {n} float32 elements (in cache)",
                                            invert=True)
    return out


def caches_os() -> dict[int, int]:
    """Data or unified cache size in bytes by level, as the OS reports it for cpu0 (empty if unknown)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out: dict[int, int] = {}
    try:
        entries = os.listdir(base)
    except OSError:
        return out
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(base, entry, "level")) as f:
                level = int(f.read().strip())
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
            out[level] = max(out.get(level, 0), int(text.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            continue
    return out


def measure_memory(quick: bool, samples: int, llc: int | None) -> dict[int, Measured]:
    """Copy bandwidth by working set, from 64 KiB to far beyond the last-level cache."""
    stream_bytes = 4 * (llc or 64 * 2 ** 20)
    stream_bytes = min(max(stream_bytes, 256 * 2 ** 20), (512 if quick else 1024) * 2 ** 20)
    out: dict[int, Measured] = {}
    for size in [2 ** k for k in range(16, int(math.log2(stream_bytes)) + 1)]:
        n = size // 4 // 2  # two arrays of float32 make the working set
        a, b = torch.randn(n), torch.empty(n)
        s = _time(lambda a=a, b=b: b.copy_(a), max(3, samples // 2), 0.01)
        out[size] = _measured(s, 2.0 * n * 4, "B/s", f"copy of {n * 4} B (working set {size} B)", invert=True)
        del a, b
    return out


def sram_and_bandwidth(rates: dict[int, Measured], caches: dict[int, int], threads: int) -> tuple[int, float, str]:
    """The SRAM is the cache a thread keeps its layer in: level 2 (per core, times the threads), as the OS
    reports it, else the working set before the copy bandwidth first falls below 3/4 of its best so far.
    Its DRAM is what serves a working set 8x larger (the next level's bandwidth, not main memory's when
    the networks' working sets fit there; the far stream is recorded beside it)."""
    sizes = sorted(rates)
    if 2 in caches:
        sram, how = caches[2] * threads, f"level-2 cache {caches[2]} B x {threads} thread(s) (OS)"
    else:
        best, sram = 0.0, sizes[0]
        for size in sizes:
            if rates[size].value < 0.75 * best:
                break
            best, sram = max(best, rates[size].value), size
        how = "first fall of the copy bandwidth (measured)"
    near = min(sizes, key=lambda size: abs(math.log2(size) - math.log2(8 * sram)))
    return int(sram), rates[near].value, how + f"; bandwidth at a {near} B working set"


def _lowered(bench: Bench):
    """The benchmark's module and its one row, as perfsim lowers it (checked to be the label's)."""
    module, graph = _built(bench)
    rows = [layer for layer in graph.layers if layer.kind.value != "alias"]
    label = bench.label.removesuffix(STRIDED)
    if len(rows) != 1 or (rows[0].op != label and rows[0].kind.value != label):
        got = ", ".join(r.op for r in rows)
        raise RuntimeError(f"internal: the {bench.label} benchmark ({bench.what}) lowers to {got}")
    return module, rows[0]


def measure_benches(items: Sequence[Bench], samples: int, progress: Callable[[str], None]) -> list[tuple[Bench, Any, Spread]]:
    out = []
    for bench in items:
        progress(bench.what)
        module, layer = _lowered(bench)
        x = torch.randn(bench.shape)
        out.append((bench, layer, time_calls(module, x, samples)))
    return out


# --------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------


def _work(label: str, layer: Any) -> int:
    return 2 * layer.macs if label in MATRIX_LABELS else layer.vector_ops(False, False)


def _beyond_overhead(label: str, points: list[tuple[Any, Spread]]
                     ) -> tuple[float, list[tuple[int, Any, Spread]], list[tuple[int, Any, float]]]:
    """A label's shapes by work; its overhead (the smallest shape's time); and (work, layer, time beyond
    the overhead) of each shape whose time exceeds it by more than 25 % (the others are overhead-bound:
    they say nothing about the rate)."""
    work = sorted(((_work(label, layer), layer, s) for layer, s in points), key=lambda w: w[0])
    overhead = work[0][2].median_s
    beyond = [(ops, layer, s.median_s - overhead) for ops, layer, s in work[1:]
              if ops > 0 and s.median_s - overhead > 0.25 * overhead]
    return overhead, work, beyond


def _rates(label: str, points: list[tuple[Any, Spread]]) -> list[float]:
    """Ops per second of each shape beyond the label's overhead."""
    return [ops / extra for ops, _, extra in _beyond_overhead(label, points)[2]]


def _table(fractions: list[tuple[int, int, float]]) -> float | dict[int, float]:
    """Fractions (smallest dimension, M, fraction) as one number when they agree within FLAT, else a table
    by the smallest dimension (the median at each). A table of tables by M as well (which profiles accept)
    was tried: it followed clcNet's grouped convs better but the noise of single benchmark points cost
    CondenseNet's ranking (docs/hardware.md), so calibrate writes one level."""
    mid = median(f for _, _, f in fractions)
    if all(abs(f - mid) <= FLAT * mid for _, _, f in fractions):
        return round(max(mid, 1e-6), 6)
    by_dim: dict[int, list[float]] = {}
    for d, _m, f in fractions:
        by_dim.setdefault(d, []).append(f)
    return {d: round(max(median(v), 1e-6), 6) for d, v in sorted(by_dim.items())}


def fit_grouped(points: list[tuple[Any, Spread]], peak: float, channels: Sequence[int]) -> KindFit:
    """``conv_group``'s model of its time (``hardware.efficiency.GroupedConvModel``): per kernel area (1, 9), a call overhead
    shared by all its shapes and per cell of (channels read, written) a cost per group and per group and
    output position, by least squares in relative error over the shapes on the grid; a negative cost is
    dropped and the rest refitted, a cell without shapes takes its nearest cell's."""
    import numpy as np

    from ..ir.gemm import grouped_dims
    kernels = {}
    errors = []
    shapes = [(grouped_dims(layer, 1), s.median_s) for layer, s in points]
    for area in (1, 9):
        pts = [((g, m, r, w), t) for (a, g, m, r, w), t in shapes if a == area and r in channels and w in channels]
        cells = sorted({(r, w) for (_, _, r, w), _ in pts})
        if len(pts) < 3 or not cells:
            continue
        x = np.zeros((len(pts), 1 + 2 * len(cells)))
        for i, ((g, m, r, w), t) in enumerate(pts):
            j = cells.index((r, w))
            x[i, 0], x[i, 1 + 2 * j], x[i, 2 + 2 * j] = 1 / t, g / t, g * m / t
        keep = np.ones(x.shape[1], dtype=bool)
        coef = np.zeros(x.shape[1])
        while True:
            sol, *_ = np.linalg.lstsq(x[:, keep], np.ones(len(pts)), rcond=None)
            coef[:] = 0
            coef[keep] = sol
            if (coef >= 0).all():
                break
            keep &= coef > 0  # drop the negative ones (and keep what stays positive), refit
        errors += list(np.abs(x @ coef - 1))
        fitted = {cell: (coef[1 + 2 * j], coef[2 + 2 * j]) for j, cell in enumerate(cells)}

        def nearest(r: int, w: int) -> tuple[float, float]:
            if (r, w) in fitted:
                return fitted[(r, w)]
            near = min(fitted, key=lambda c: (abs(math.log2(c[0] / r)) + abs(math.log2(c[1] / w)), c))
            return fitted[near]
        table = [[nearest(r, w) for w in channels] for r in channels]
        kernels[area] = {"overhead": float(coef[0]), "channels": list(channels),
                         "per_group": [[float(f"{c:.4g}") for c, _ in row] for row in table],
                         "per_position": [[float(f"{u:.4g}") for _, u in row] for row in table]}
    model = GroupedConvModel(flops=peak, kernels=kernels)
    return KindFit(shapes=len(points), overhead_s=0.0, efficiency=model,
                   median_abs_error=round(float(median(errors)), 4) if errors else 0.0, unit="matrix")


def fit_label(label: str, points: list[tuple[Any, Spread]], peak: float) -> KindFit:
    """Overhead = the smallest shape's time; each larger shape's time beyond it is work at a fraction of
    ``peak``; a matrix label's fractions become a table by ``matrix_dims`` unless they agree within FLAT."""
    from ..ir.gemm import matrix_dims
    from ..sim.timing import entry_value
    is_matrix = label in MATRIX_LABELS
    overhead, work, beyond = _beyond_overhead(label, points)
    if not beyond:  # every shape is overhead-bound: the largest says the most
        ops, layer, s = work[-1]
        beyond = [(ops, layer, max(s.median_s - overhead, 1e-9))]
    fractions: list[tuple[int, int, float]] = []
    for ops, layer, extra in beyond:
        m, n, k = matrix_dims(layer, 1)
        fractions.append((min(m, n, k), m, min(1.0, ops / (peak * extra))))
    efficiency = _table(fractions) if is_matrix else round(max(median(f for _, _, f in fractions), 1e-6), 6)
    errors = [abs(overhead + ops / (peak * entry_value(efficiency, layer, 1)) - s.median_s) / s.median_s
              for ops, layer, s in work]
    return KindFit(shapes=len(work), overhead_s=overhead, efficiency=efficiency,
                   median_abs_error=round(median(errors), 4), unit="matrix" if is_matrix else "vector")


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def calibrate(*, quick: bool = False, threads: int | None = None, name: str = "host", allocator: str = "keep",
              progress: Callable[[str], None] = lambda _: None) -> HardwareProfile:
    """Measure this machine; return the calibrated profile (its ``calibration`` holds every measurement)."""
    from .._version import __version__
    threads = threads or os.cpu_count() or 1
    if not 1 <= threads <= 4096:
        raise InputError(f"--threads must be between 1 and 4096, got {threads}")
    samples = 9 if quick else 21
    load_before = os.getloadavg()[0]
    measurements: dict[str, Measured] = {}
    with host_settings(threads, allocator) as held:
        progress("GEMM peak")
        measurements.update(measure_gemm(quick, samples))
        progress("elementwise peak")
        measurements.update(measure_elementwise(samples))
        progress("memory bandwidth and cache")
        caches = caches_os()
        rates = measure_memory(quick, samples, caches[max(caches)] if caches else None)
        measurements.update({f"copy_{size}": m for size, m in rates.items()})
        results = measure_benches(benches(quick), samples, progress)
        tiled_results = measure_benches(tiled_benches(quick), max(5, samples // 2), progress)
        block_results = measure_benches(block_benches(quick), samples, progress)
    by_label: dict[str, list[tuple[Any, Spread]]] = {}
    for bench, layer, spread in results + tiled_results + block_results:
        measurements[f"{bench.label}: {bench.what}"] = _measured(
            spread, 1.0, "s", f"eager forward, 1 row, {layer.macs} MACs, {layer.vector_ops(False, False)} vector ops")
    for bench, layer, spread in results:
        by_label.setdefault(bench.label, []).append((layer, spread))
    # the peaks: the GEMM's and the add's, unless a benchmark beyond its overhead ran faster still
    matrix_peak = max([m.value for k, m in measurements.items() if k.startswith("gemm_")]
                      + [r for label, pts in by_label.items() if label in MATRIX_LABELS for r in _rates(label, pts)])
    vector_peak = max([m.value for k, m in measurements.items() if k.startswith("elementwise_")]
                      + [r for label, pts in by_label.items() if label not in MATRIX_LABELS for r in _rates(label, pts)])
    fits = {label: (fit_grouped(pts, matrix_peak, GROUPED_CHANNELS_QUICK if quick else GROUPED_CHANNELS)
                    if label == "conv_group"  # a model of its time over the grid, not a table (docs/hardware.md)
                    else fit_label(label, pts, matrix_peak if label in MATRIX_LABELS else vector_peak))
            for label, pts in by_label.items()}
    sram, bandwidth, how = sram_and_bandwidth(rates, caches, threads)
    profile = HardwareProfile.from_fields(dict(
        name=name,
        description=(f"This machine as PyTorch eager float32 runs on it with {threads} thread(s), measured by "
                     f"perfsim calibrate{' --quick' if quick else ''} (see calibration)"),
        sram_bytes=sram, dram_bandwidth=bandwidth, dram_latency=0.0, matrix_flops=matrix_peak,
        vector_flops=vector_peak, activation_bits=32, weight_bits=32, bias_bits=32,
        fold_batchnorm=False, fuse_activation=False, weights="resident", overlap=False,
        efficiency={label: f.efficiency for label, f in fits.items()},
        kernel_overhead={label: f.overhead_s for label, f in fits.items()}))
    blocks, block_measured = fit_row_blocks(profile, block_results)
    measurements.update(block_measured)
    profile = profile.with_fields(row_block=blocks)
    profile = profile.with_fields(tiled_efficiency=fit_tiled(profile, tiled_results))
    from .context import apply_fits, context_fits, measure_context_fresh
    progress("in context: the synthetic networks, in a fresh process")
    in_context = measure_context_fresh(profile, threads=threads, allocator=held, repeats=5 if quick else 12)
    context, (first_touch, touched) = context_fits(in_context)
    profile = apply_fits(profile, context, first_touch)
    measurements.update(_context_measurements(context, first_touch, touched))
    calibration = Calibration(
        perfsim_version=__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        host={**describe_host(), **{f"cache_l{k}_bytes_os": v for k, v in sorted(caches.items())},
              "sram_from": how, "stream_bytes_per_s": int(rates[max(rates)].value)},
        threads=threads, allocator=held, quick=quick,
        load_average=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        measurements=measurements, fits=fits)
    return profile.with_fields(calibration=calibration)


def _context_measurements(context: dict, first_touch: float, touched: int) -> dict[str, Measured]:
    """What the synthetic networks said, per label (and per kernel area of a grouped conv): the factor on
    work (quartiles: of measured / the fit per call) and the overhead in context; and the first touch per
    output byte."""
    out = {}
    for label, fit in context.items():
        for key, f in [(label, fit)] + [(f"{label} {_area(a)}", af) for a, af in fit.areas]:
            r = f.ratios  # measured / the fit, per call: its spread
            how = "measured = factor x work + overhead" if f.affine else "factor 1, overhead the median excess"
            out[f"in_context_factor: {key}"] = Measured(
                value=f.factor, q1=min(f.factor, f.factor * r[len(r) // 4]),
                q3=max(f.factor, f.factor * r[3 * len(r) // 4]), n=f.calls, unit="x work",
                what=f"{how}, over {f.calls} calls of the synthetic networks (quartiles: factor x measured / fit)")
            out[f"in_context_overhead: {key}"] = Measured(
                value=f.overhead_s, q1=f.overhead_s, q3=f.overhead_s, n=f.calls, unit="s",
                what=f"fitted with the factor over {f.calls} calls of the synthetic networks")
    out["in_context_first_touch"] = Measured(
        value=first_touch, q1=first_touch, q3=first_touch, n=max(1, touched), unit="s/B",
        what=f"median excess per output byte over {touched} calls whose rows do not fit in SRAM")
    return out


def _area(a: int) -> str:
    """A kernel area as its square side: 9 -> '3x3'."""
    side = round(a ** 0.5)
    return f"{side}x{side}" if side * side == a else f"area {a}"


# --------------------------------------------------------------------------
# Writing the profile
# --------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    """YAML a profile may hold: mapping keys as text (the profile reader accepts text keys only)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def profile_yaml(profile: HardwareProfile) -> str:
    import yaml
    data = _plain(profile.resolved())
    head = ("# Written by `perfsim calibrate`: this machine as measured (docs/model.md, \"Calibrated profiles\").\n"
            "# Values are in base units: bytes, B/s, s, FLOP/s. calibration: holds every measurement.\n")
    return head + yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True)


def write_profile(profile: HardwareProfile, out: str | os.PathLike, *, force: bool = False) -> None:
    """Write atomically; an existing file is replaced only if calibrate wrote it (or ``force``)."""
    from pathlib import Path

    from ..hardware.loader import load_profile
    path = Path(out)
    if path.exists() and not force:
        if not path.is_file():
            raise InputError(f"{path} exists and is not a file")
        try:
            old = load_profile(str(path))
        except InputError:
            old = None
        if old is None or old.calibration is None:
            raise InputError(f"{path} exists and was not written by perfsim calibrate; "
                             "choose another --out or pass --force")
    # it reads back as a valid profile, or nothing is replaced
    write_atomic(path, profile_yaml(profile), check=lambda tmp: load_profile(str(tmp)))
