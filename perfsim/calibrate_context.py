"""Calibration in context: small synthetic networks, generated here (never the zoo), timed call by call
as ``perfsim validate`` times a model, give each op label a factor between its isolated micro-benchmark
fit and what the same kind of op costs inside a network (docs/hardware.md, "In context").

The isolated fit says how a label's time depends on its shape; a network adds what a loop over one
module hides: operands fetched from a colder cache, outputs freshly allocated, the framework between
calls. The factor is the median, over a label's calls in these networks, of measured / predicted, taken
apart for calls whose rows fit in SRAM and those whose rows do not (``tiled_efficiency``).
"""
from __future__ import annotations

from statistics import median
from typing import Any, Callable

from torch import nn

from .profile import MATRIX_LABELS, HardwareProfile


def _cbr(cin: int, cout: int, k: int, s: int = 1, g: int = 1, act: type = nn.ReLU6) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout),
                         act(inplace=True))


class _Mobile(nn.Module):
    """Depthwise-separable stages, channels doubling as the side halves (a generic mobile CNN)."""

    def __init__(self):
        super().__init__()
        layers, c = [_cbr(3, 32, 3, 2)], 32
        for cout, n in ((64, 2), (128, 2), (256, 3), (512, 2)):
            for i in range(n):
                layers += [_cbr(c, c, 3, 2 if i == 0 else 1, c), _cbr(c, cout, 1)]
                c = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 100)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class _Grouped(nn.Module):
    """Residual blocks of grouped 3x3 and 1x1 convs, 2 to 32 channels per group, after a max-pool."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 64, 3, 1, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], 64
        for cpg, cout, s in ((2, 128, 2), (4, 128, 1), (8, 256, 2), (16, 256, 1), (32, 256, 1)):
            blocks.append(nn.ModuleList([_cbr(c, cout, 1, 1, 2, nn.ReLU), _cbr(cout, cout, 3, s, cout // cpg, nn.ReLU),
                                         _cbr(cout, cout, 1, 1, 4, nn.ReLU), _cbr(c, cout, 1, s, 1, nn.ReLU)]))
            c = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        x = self.stem(x)
        for a, b, d, skip in self.blocks:
            x = d(b(a(x))) + skip(x)
        return x.mean((2, 3))


class _Dense(nn.Module):
    """Plain 3x3 conv stages with residual adds and pools (a generic ResNet-like CNN)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 32, 3, 2, act=nn.ReLU), nn.MaxPool2d(2))
        stages, c = [], 32
        for cout in (32, 64, 128, 256):
            stages.append(nn.ModuleList([_cbr(c, cout, 3, 1 if cout == c else 2, act=nn.ReLU),
                                         _cbr(cout, cout, 3, act=nn.ReLU), _cbr(c, cout, 1, 1 if cout == c else 2,
                                                                                act=nn.ReLU)]))
            c = cout
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        for a, b, skip in self.stages:
            x = b(a(x)) + skip(x)
        return self.fc(self.pool(x).mean((2, 3)))


class _Tokens(nn.Module):
    """Two pre-norm transformer blocks on a token sequence (linears, attention matmuls, softmax, GELU)."""

    def __init__(self, dim: int = 192, heads: int = 3):
        super().__init__()
        self.embed = nn.Linear(48, dim)
        self.blocks = nn.ModuleList([nn.ModuleDict({
            "n1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim),
            "n2": nn.LayerNorm(dim), "fc1": nn.Linear(dim, 4 * dim), "act": nn.GELU(), "fc2": nn.Linear(4 * dim, dim)})
            for _ in range(2)])
        self.heads = heads

    def forward(self, x):
        x = self.embed(x.flatten(0, -3))  # (1, 1, tokens, features): perfsim's input is 4-D
        b, n, d = x.shape
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["n1"](x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            a = ((q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5).softmax(-1)
            x = x + blk["proj"]((a @ v).transpose(1, 2).reshape(b, n, d))
            x = x + blk["fc2"](blk["act"](blk["fc1"](blk["n2"](x))))
        return x


NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mobile": (_Mobile, (3, 224, 224)),
    "grouped": (_Grouped, (3, 96, 96)),
    "dense": (_Dense, (3, 128, 128)),
    "tokens": (_Tokens, (1, 196, 48)),
}


def _label(op: Any) -> str:
    from .fuse import conv_label
    from .graph import OpKind
    return conv_label(op) if op.kind is OpKind.CONV else op.kind.value


def _predicted(op: Any, label: str, profile: HardwareProfile, tiled: bool) -> float:
    """The isolated fit's time of one op: its kernel overhead plus its work at the label's efficiency."""
    from .timing import entry_value, kernel_overhead_of
    eff = entry_value(profile.efficiency.get(label, 1.0), op, 1)
    if tiled:
        eff *= profile.tiled_efficiency.get(label, 1.0)
    if label in MATRIX_LABELS:
        work = 2 * op.macs / (profile.matrix_flops * eff)
    else:
        work = op.vector_ops / (profile.vector_flops * eff)
    return kernel_overhead_of(profile.kernel_overhead, label) + work


def measure_context(profile: HardwareProfile, *, threads: int, repeats: int,
                    progress: Callable[[str], None]) -> dict[tuple[str, bool], list[tuple[float, float]]]:
    """(measured, predicted) seconds of every call of the synthetic networks, by (op label, whether its row
    does not fit in SRAM)."""
    from .hosttime import time_module
    from .lowering import lower_traced
    from .simulator import simulate
    out: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for name, (make, shape) in NETWORKS.items():
        progress(f"in context: {name} network")
        module = make().eval()
        traced = lower_traced(module, (1,) + shape, name=name)
        rows = simulate(traced.graph, profile).rows
        row_of = {op: i for i, layer in enumerate(traced.graph.layers) for op in layer.ops}
        ops = {op.name: op for op in traced.graph.ops}
        times = time_module(module, (1,) + shape, threads=threads, warmup=2, repeats=repeats, per_round=1)
        for op_name, spread in zip(traced.call_ops, times.call_s):
            op = ops.get(op_name) if op_name else None
            if op is None or op_name not in row_of or spread.median_s <= 0:
                continue
            label, tiled = _label(op), rows[row_of[op_name]].tiles > 1
            out.setdefault((label, tiled), []).append((spread.median_s, _predicted(op, label, profile, tiled)))
    return out


def context_factors(samples: dict[tuple[str, bool], list[tuple[float, float]]], minimum: int = 3
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """Per label with at least ``minimum`` calls: the median of measured / predicted over the calls whose
    rows fit in SRAM, and over those whose rows do not."""
    fit, tiled = {}, {}
    for (label, is_tiled), pts in samples.items():
        if len(pts) >= minimum and all(p > 0 for _, p in pts):
            (tiled if is_tiled else fit)[label] = round(median(m / p for m, p in pts), 4)
    return fit, tiled


def _scaled(entry: Any, f: float) -> Any:
    """An efficiency entry (number or table, nested or not) divided by ``f``, at most 1."""
    if isinstance(entry, dict):
        return {k: _scaled(v, f) for k, v in entry.items()}
    return min(1.0, entry / f)


def apply_factors(profile: HardwareProfile, fit: dict[str, float], tiled: dict[str, float]) -> HardwareProfile:
    """Each label's overhead times its in-SRAM factor and its efficiency divided by it (at most 1); a label
    whose rows that do not fit run slower still gets that as ``tiled_efficiency``."""
    eff = dict(profile.efficiency)
    ovh = dict(profile.kernel_overhead)
    tiled_eff = dict(profile.tiled_efficiency)
    for label, f in fit.items():
        if label in eff:
            e = eff[label]
            eff[label] = _scaled(e, f)
        if label in ovh:
            ovh[label] = ovh[label] * f
    for label, t in tiled.items():
        f = fit.get(label, 1.0)
        if t > f * 1.15:  # beyond noise: the rows that do not fit are slower than the rest
            tiled_eff[label] = round(max(1e-6, min(1.0, tiled_eff.get(label, 1.0) * f / t)), 6)
    return profile.model_copy(update={"efficiency": eff, "kernel_overhead": ovh, "tiled_efficiency": tiled_eff})
