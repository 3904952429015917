"""``perfsim calibrate``'s micro-benchmarks: the catalogue of small PyTorch modules it times. Imports torch.

Each ``Bench`` is a module, its input shape and the op label it must lower to (perfsim lowers it itself,
so the label, MACs and vector ops are perfsim's own counting): matrix labels over a spread of shapes, convs
whose inputs and outputs differ, strided convs, the grouped-conv grid, every vector kind, shapes beyond a
core's level-2 cache (``tiled_benches``) and pairs of maps for the row block (``block_benches``). How they
are timed is ``perfsim.host.calibrate``'s, how they are fitted ``perfsim.host.fits``'. (The repository's
``benchmarks/`` folder is another thing: it times perfsim itself.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..hardware.efficiency import STRIDED


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
    yield from _conv_benches(quick)
    for n_in, n_out, rows in [(8, 8, 1)] + ([(1024, 1000, 1), (256, 256, 64), (512, 512, 196)] if quick else
                                            [(256, 256, 1), (1024, 1000, 1), (2048, 2048, 1), (256, 256, 16),
                                             (256, 256, 64), (512, 512, 196), (768, 768, 197)]):
        yield Bench("linear", lambda i=n_in, o=n_out: nn.Linear(i, o), (1, rows, n_in) if rows > 1 else (1, n_in),
                    f"linear {n_in}->{n_out} on {rows} row(s)")
    for heads, length, dim in [(1, 4, 4)] + ([(4, 64, 32), (12, 197, 64)] if quick else
                                             [(1, 16, 16), (4, 64, 32), (8, 128, 64), (12, 197, 64), (1, 256, 256)]):
        yield Bench("matmul", lambda: _Fn(lambda x: x @ x.transpose(-1, -2)), (1, heads, length, dim),
                    f"matmul of {heads} head(s) {length}x{dim} by its transpose")
    yield from _attention_matmuls(quick)


def _depthwise_benches(quick: bool, hw: tuple[int, ...]) -> Iterator[Bench]:
    for c, h in [(8, 1)] + [(c, h) for c in ((64, 256) if quick else (32, 64, 128, 256, 512)) for h in hw]:
        yield Bench("conv_dw", _conv(c, c, 3, c), (1, c, h, h), f"3x3 depthwise {c} at {h}x{h}")
    for k in (5, 7):  # larger kernels: conv_dw's table is by kernel area (ir.gemm.table_key; ConvNeXt's 7x7)
        for c, h in ((96, 28), (384, 7)) if quick else ((32, 56), (96, 28), (192, 14), (384, 7)):
            yield Bench("conv_dw", _conv(c, c, k, c), (1, c, h, h), f"{k}x{k} depthwise {c} at {h}x{h}")
    # 1x1 depthwise (RepViT's and FastViT's re-parameterisable branches): PyTorch's CPU path loops over the
    # channels, ~6 us each here, 13x a 3x3 depthwise conv at 384 channels on 14x14, 1.1x at 48 on 112x112 --
    # its table by kernel area gets area 1, by positions within it (ir.gemm.table_key, then M)
    for c, h in ((96, 56), (384, 14), (768, 7)) if quick else ((48, 112), (96, 56), (192, 28), (384, 14), (768, 7)):
        yield Bench("conv_dw", _conv(c, c, 1, c), (1, c, h, h), f"1x1 depthwise {c} at {h}x{h}")


def _conv_benches(quick: bool) -> Iterator[Bench]:
    hw = (16, 8) if quick else (32, 16, 8, 4)
    for c, h in [(8, 8)] + [(c, h) for c in ((32, 128) if quick else (16, 64, 128, 256)) for h in hw]:
        yield Bench("conv", _conv(c, c, 3), (1, c, h, h), f"3x3 conv {c}->{c} at {h}x{h}")
    for h in ((56,) if quick else (32, 56, 112)):  # a stem: three input channels
        yield Bench("conv", lambda: nn.Conv2d(3, 32, 3, padding=1, bias=False), (1, 3, h, h), f"3x3 conv 3->32 at {h}x{h}")
    for c, h in [(8, 1)] + [(c, h) for c in ((64, 256) if quick else (32, 64, 128, 256, 512)) for h in hw]:
        yield Bench("conv_pw", _conv(c, c, 1), (1, c, h, h), f"1x1 conv {c}->{c} at {h}x{h}")
    yield from _depthwise_benches(quick, hw)
    cpgs = (2, 8, 32) if quick else (2, 4, 8, 16, 32)
    for k in (1, 3):
        for cpg in cpgs:
            for c, h in (((128, 28), (128, 7)) if quick else ((64, 28), (64, 7), (256, 28), (256, 14), (256, 7))):
                yield Bench("conv_group", _conv(c, c, k, c // cpg), (1, c, h, h),
                            f"{k}x{k} conv {c}->{c} in groups of {cpg} at {h}x{h}")
    yield Bench("conv_group", _conv(8, 8, 1, 4), (1, 8, 1, 1), "1x1 conv 8->8 in groups of 2 at 1x1")


# Attention's products as networks run them (issue 20): (windows, heads, tokens, head dim). Windowed
# attention (Swin: 64 windows x 3 heads of 49 tokens, 32 dims), few heads on 197 tokens (DeiT, ViT), and a
# mobile hybrid's many short products (MobileViT: 4 patch positions x 4 heads on 256, 64 or 16 tokens of
# 16-24 dims). Their smallest dimension (the head dim, or the tokens of a small window) reaches below the
# plain benchmarks' 32, and the operands are strided views of the tokens, as a network's q, k and v are.
_ATTENTION = [(64, 3, 49, 32), (16, 6, 49, 32), (1, 3, 197, 64), (1, 6, 197, 64), (4, 4, 256, 16),
              (4, 4, 64, 20), (4, 4, 16, 24), (1, 12, 49, 64)]
_ATTENTION_QUICK = [(64, 3, 49, 32), (1, 3, 197, 64), (4, 4, 256, 16), (4, 4, 16, 24)]


class _Scores(nn.Module):
    """q @ k^T of ``heads`` heads in ``windows`` windows, q and k strided views of (1, windows, tokens,
    heads x dim) tokens."""

    def __init__(self, windows: int, heads: int, tokens: int, dim: int):
        super().__init__()
        self.shape = (windows, tokens, heads, dim)

    def forward(self, x):
        q = x.view(self.shape).transpose(1, 2)
        return q @ q.transpose(-1, -2)


class _Mix(nn.Module):
    """attention @ v: (windows x heads, tokens, tokens) probabilities times a strided slice of them as v."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, a):
        return a @ a[..., : self.dim]


def _attention_matmuls(quick: bool) -> Iterator[Bench]:
    for w, h, n, d in _ATTENTION_QUICK if quick else _ATTENTION:
        yield Bench("matmul", lambda w=w, h=h, n=n, d=d: _Scores(w, h, n, d), (1, w, n, h * d),
                    f"attention scores of {w} window(s) x {h} head(s), {n} tokens of {d}")
        yield Bench("matmul", lambda d=d: _Mix(d), (1, w * h, n, n),
                    f"attention times v of {w} window(s) x {h} head(s), {n} tokens of {d}")


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
    yield from _row_benches(quick)
    yield from _token_map_benches(quick)
    yield from _view_conv_benches(quick)


class _SafeSoftmax(nn.Module):
    """The NaN-safe softmax PyTorch's math attention (``scaled_dot_product_attention``) runs."""

    def forward(self, x):
        return torch._safe_softmax(x, -1)


# Row-wise kernels by the length of the row one output reads (issue 20): attention's softmax over the keys of
# a window (16-64), of a ViT's 197 tokens, of a hybrid's 256, and a norm over the features of a stage
# (64-768). Each at ~128 k elements (rows x length), plus the label's smallest shape (above) for its overhead.
_ROW_LENGTHS = (16, 49, 64, 197, 256, 1024)
_ROW_LENGTHS_QUICK = (16, 49, 197, 1024)
_NORM_DIMS = (64, 96, 192, 384, 768)
_NORM_DIMS_QUICK = (64, 192, 768)


def _row_benches(quick: bool) -> Iterator[Bench]:
    for length in _ROW_LENGTHS_QUICK if quick else _ROW_LENGTHS:
        rows = max(1, 2**17 // length)
        yield Bench("softmax", lambda: nn.Softmax(dim=-1), (1, rows, length), f"softmax over {rows} rows of {length}")
        yield Bench("softmax.safe", _SafeSoftmax, (1, rows, length), f"safe softmax over {rows} rows of {length}")
    yield Bench("softmax.safe", _SafeSoftmax, (1, 1, _D), f"safe softmax on 1x{_D}")  # its overhead
    for dim in _NORM_DIMS_QUICK if quick else _NORM_DIMS:
        rows = max(1, 2**17 // dim)
        yield Bench("layernorm", lambda d=dim: nn.LayerNorm(d), (1, rows, dim), f"layernorm over {rows} rows of {dim}")


def _token_map_benches(quick: bool) -> Iterator[Bench]:
    """Token maps (1, side, side, features), as windowed transformers hold them: a cyclic shift (Swin's
    roll), at each stage's size, and the smallest for its overhead."""
    for side, dim in ((2, 16), (56, 96), (28, 192), (14, 384)) + (() if quick else ((7, 768), (56, 32))):
        yield Bench("roll", lambda: _Fn(lambda x: torch.roll(x, (-3, -3), (1, 2))), (1, side, side, dim),
                    f"roll of a {side}x{side}x{dim} token map")


class _TokenConv(nn.Module):
    """A 3x3 depthwise conv on tokens (1, side x side, channels) seen as a map, ``x.transpose(1, 2).view``:
    the Mix-FFN of PVT-v2 and SegFormer. The view is neither contiguous nor channels-last to the
    convolution, which copies it first (``Operand.layout``)."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.channels, self.side = channels, side
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    def forward(self, x):  # x: (batch, tokens, channels), or with a leading 1 as perfsim lowers a 3-D shape
        t = x.reshape(-1, self.side * self.side, self.channels)
        return self.conv(t.transpose(1, 2).view(t.shape[0], self.channels, self.side, self.side))


def _view_conv_benches(quick: bool) -> Iterator[Bench]:
    """``conv_dw.view``: the depthwise conv on a token view, the smallest for its overhead."""
    for c, side in ((8, 2),) + (((64, 56), (256, 14)) if quick else ((64, 56), (128, 28), (256, 14), (512, 7))):
        yield Bench("conv_dw.view", lambda c=c, side=side: _TokenConv(c, side), (1, side * side, c),
                    f"3x3 depthwise {c} at {side}x{side} on a token view")


def tiled_benches(quick: bool) -> list[Bench]:
    """Shapes whose working set (input + output) is several MB: beyond a core's level-2 cache."""
    out = [Bench("conv_dw", _conv(c, c, 3, c), (1, c, h, h), f"3x3 depthwise {c} at {h}x{h} (large)")
           for c, h in ((64, 112), (128, 56)) + (() if quick else ((256, 56), (32, 160)))]
    out += [Bench("conv", _conv(32, 32, 3), (1, 32, 112, 112), "3x3 conv 32->32 at 112x112 (large)"),
            Bench("conv_pw", _conv(64, 64, 1), (1, 64, 112, 112), "1x1 conv 64->64 at 112x112 (large)"),
            # a bottleneck's expanding and projecting 1x1 convs and its 3x3 conv at a stage's map (issue 20)
            Bench("conv_pw", _conv(64, 256, 1), (1, 64, 56, 56), "1x1 conv 64->256 at 56x56 (large)"),
            Bench("conv_pw", _conv(512, 128, 1), (1, 512, 28, 28), "1x1 conv 512->128 at 28x28 (large)"),
            Bench("conv", _conv(64, 64, 3), (1, 64, 56, 56), "3x3 conv 64->64 at 56x56 (large)"),
            Bench("conv_group", _conv(128, 128, 3, 64), (1, 128, 56, 56), "3x3 conv 128->128 in groups of 2 at 56x56 (large)")]
    for label in ("batchnorm", "relu", "add", "maxpool"):
        out.append(Bench(label, _VECTOR[label][0], (1, _C, 112, 112), f"{label} on {_C}x112x112 (large)"))
    return out


# Pairs of square maps, one side off a multiple of 8 and the power of two above it: (label, channels,
# side, side). Alone, as `validate` times them, oneDNN's 1x1 convs took as long at 7x7 as at 8x8 (256
# channels: 65.4 and 64.0 us) and 7 % longer at 14x14 than their MACs say: they compute output positions
# in blocks, and ImageNet networks' maps (56, 28, 14, 7) are not all multiples of them (docs/hardware.md).
_BLOCK_PAIRS = [("conv_pw", 256, 7, 8), ("conv_pw", 128, 14, 16), ("conv_pw", 64, 28, 32),
                ("conv", 64, 7, 8), ("conv", 64, 14, 16)]


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


_BUILT: dict[str, tuple[nn.Module, Any]] = {}


def built(bench: Bench) -> tuple[nn.Module, Any]:
    """The benchmark's module and its lowered graph, built once per process."""
    from ..frontends.lowering import lower
    key = f"{bench.label}: {bench.what}"
    if key not in _BUILT:
        module = bench.make().eval()
        _BUILT[key] = module, lower(module, bench.shape, name=bench.label)
    return _BUILT[key]


def lowered(bench: Bench):
    """The benchmark's module and its one row, as perfsim lowers it (checked to be the label's)."""
    module, graph = built(bench)
    rows = [layer for layer in graph.layers if layer.kind.value != "alias"]
    label = bench.label.split(".")[0]  # conv_pw.strided, softmax.safe: the row's label without its path
    if len(rows) != 1 or (rows[0].op != label and rows[0].kind.value != label):
        got = ", ".join(r.op for r in rows)
        raise RuntimeError(f"internal: the {bench.label} benchmark ({bench.what}) lowers to {got}")
    return module, rows[0]


def benches(quick: bool) -> list[Bench]:
    return (list(_matrix_benches(quick)) + list(_shape_benches(_UNEVEN, 1, quick))
            + list(_shape_benches(_STRIDED, 2, quick)) + list(_grouped_benches(quick)) + list(_vector_benches(quick)))
