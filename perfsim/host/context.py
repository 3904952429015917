"""Calibration in context: small synthetic networks, generated here (never the zoo), timed call by call
as ``perfsim validate`` times a model, give each op label a factor between its isolated micro-benchmark
fit and what the same kind of op costs inside a network (docs/hardware.md, "In context").

The isolated fit says how a label's time depends on its shape; a network adds what a loop over one
module hides: operands fetched from a colder cache, outputs freshly allocated, the framework between
calls. Per label, over its calls whose rows fit in SRAM, ``measured = factor x work + overhead`` (work:
the isolated fit's time beyond its overhead), fitted in relative error: the factor divides the
label's efficiency and the overhead replaces its kernel overhead. A network adds a fixed cost per call
and a proportional one, and one factor for both (what calibrate did first) made a large call pay the
small calls' fixed cost many times over (ResNet-18's 3x3 convs +42 %, docs/hardware.md). A label with
too few calls, or calls too alike in size to tell the two apart, keeps its factor at 1 and takes the
median excess as its overhead. A grouped conv, whose model has a kernel per area, is also fitted per
kernel area. Calls whose rows do not fit in SRAM take longer again by about their output's
bytes (freshly allocated pages, touched first): the median of that excess per output byte, over such
calls of kernels that allocate their output, is ``first_touch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from ..hardware.description import HardwareProfile
from ..hardware.efficiency import MATRIX_LABELS, STRIDED, VIEW, GroupedConvModel


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


class _Windows(nn.Module):
    """Windowed attention on a token map, as hierarchical transformers run it (issue 20): pre-norm blocks, the
    second shifted by a roll; windows cut out and put back by copies; a learned bias on the scores; softmax
    over a window's keys; a GELU MLP. Not any one network's configuration."""

    def __init__(self, dim: int = 64, heads: int = 2, window: int = 7):
        super().__init__()
        self.heads, self.window = heads, window
        self.blocks = nn.ModuleList([nn.ModuleDict({
            "n1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim),
            "n2": nn.LayerNorm(dim), "fc1": nn.Linear(dim, 4 * dim), "act": nn.GELU(), "fc2": nn.Linear(4 * dim, dim)})
            for _ in range(2)])
        self.bias = nn.Parameter(torch.zeros(heads, window * window, window * window))

    def _attend(self, blk, h):
        b, side, _, c = h.shape
        w, n = self.window, side // self.window
        h = h.view(b, n, w, n, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
        q, k, v = blk["qkv"](h).reshape(h.shape[0], w * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + self.bias).softmax(-1)
        h = blk["proj"]((a @ v).transpose(1, 2).reshape(-1, w * w, c))
        return h.view(b, n, n, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, side, side, c)

    def forward(self, x):
        for shift, blk in zip((0, self.window // 2), self.blocks):
            h = blk["n1"](x)
            if shift:
                h = torch.roll(h, (-shift, -shift), (1, 2))
            h = self._attend(blk, h)
            if shift:
                h = torch.roll(h, (shift, shift), (1, 2))
            x = x + h
            x = x + blk["fc2"](blk["act"](blk["fc1"](blk["n2"](x))))
        return x


class _Hybrid(nn.Module):
    """A mobile hybrid (issue 20): a small conv stem, then at three sizes convs and attention over patch
    tokens (the map cut into 2x2 patch positions) through PyTorch's scaled_dot_product_attention, whose math
    path runs the NaN-safe softmax, with a SiLU MLP. Not any one network's configuration."""

    def __init__(self, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.stem = nn.Sequential(_cbr(3, 16, 3, 2, act=nn.SiLU), _cbr(16, 16, 3, 1, 16, act=nn.SiLU))
        self.stages = nn.ModuleList()
        for cin, c in ((16, 32), (32, 48), (48, 64)):
            self.stages.append(nn.ModuleDict({
                "down": _cbr(cin, c, 3, 2, act=nn.SiLU), "n1": nn.LayerNorm(c), "qkv": nn.Linear(c, 3 * c),
                "proj": nn.Linear(c, c), "n2": nn.LayerNorm(c), "fc1": nn.Linear(c, 2 * c), "act": nn.SiLU(),
                "fc2": nn.Linear(2 * c, c)}))

    def forward(self, x):
        x = self.stem(x)
        for st in self.stages:
            x = st["down"](x)
            b, c, h, w = x.shape
            t = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 2, 4, 1).reshape(b * 4, h * w // 4, c)
            q, k, v = st["qkv"](st["n1"](t)).reshape(b * 4, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            t = t + st["proj"](a.transpose(1, 2).reshape(b * 4, -1, c))
            t = t + st["fc2"](st["act"](st["fc1"](st["n2"](t))))
            x = t.reshape(b, 2, 2, h // 2, w // 2, c).permute(0, 5, 3, 1, 4, 2).reshape(b, c, h, w)
        return x


NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mobile": (_Mobile, (3, 224, 224)),
    "grouped": (_Grouped, (3, 96, 96)),
    "dense": (_Dense, (3, 224, 224)),
    "tokens": (_Tokens, (1, 196, 48)),
    "windows": (_Windows, (28, 28, 64)),
    "hybrid": (_Hybrid, (3, 128, 128)),
}


def _label(op: Any, profile: HardwareProfile) -> str:
    """The op's label, ``label.strided`` for a strided conv and ``label.VARIANT`` for another code path
    (``op_variant``) whose label the profile has apart, in that order (as ``sim.timing.label_key`` reads a row)."""
    from ..ir.fuse import conv_label
    from ..ir.graph import OpKind, op_variant
    from ..sim.timing import strided
    label = conv_label(op) if op.kind is OpKind.CONV else op.kind.value
    if strided(op) and label + STRIDED in profile.kernels.efficiency:
        return label + STRIDED
    variant = f"{label}.{op_variant(op)}" if op_variant(op) else ""
    return variant if variant in profile.kernels.efficiency else label


def _predicted(op: Any, label: str, profile: HardwareProfile, tiled: bool) -> tuple[float, float]:
    """The isolated fit's time of one op: (its kernel overhead, its work at the label's efficiency)."""
    from ..sim.timing import entry_value, kernel_overhead_of, row_block_share
    eff = entry_value(profile.kernels.efficiency.get(label, 1.0), op, 1)
    if label in MATRIX_LABELS:  # as timing.unit_efficiencies reads it
        eff *= row_block_share(profile.kernels.row_block, op, label.removesuffix(STRIDED), 1)
    if tiled:
        eff *= profile.kernels.tiled_efficiency.get(label, 1.0)
    if label in MATRIX_LABELS:
        work = 2 * op.macs / (profile.matrix.flops * eff)
    else:
        work = op.vector_ops / (profile.vector.flops * eff)
    return kernel_overhead_of(profile.kernels.overhead, label), work


class ContextCall(NamedTuple):
    """One call of a synthetic network: its time in the network, the isolated fit's overhead and work for
    it, its output's bytes, and its kernel's area (kh x kw; 0 for an op without a kernel)."""

    measured: float
    overhead: float
    work: float
    out_bytes: int
    area: int = 0


def measure_context(profile: HardwareProfile, *, threads: int, repeats: int, allocator: str = "keep",
                    progress: Callable[[str], None], reference_s: float | None = None
                    ) -> dict[tuple[str, bool], list[ContextCall]]:
    """Every call of the synthetic networks, by (op label, whether its row does not fit in SRAM): its time
    in the network (as ``perfsim validate`` times a layer) and the isolated fit's overhead and work. Given
    ``reference_s`` (the speed probe while the micro-benchmarks ran), each network's times are read at that
    speed (times ``reference_s`` over the probe while it ran), so that a machine slower or faster here than
    during the benchmarks does not become the in-context factor."""
    from math import prod

    from ..frontends.lowering import lower_traced
    from ..sim.simulator import simulate
    from .measure import time_module
    out: dict[tuple[str, bool], list[ContextCall]] = {}
    for name, (make, shape) in NETWORKS.items():
        progress(f"in context: {name} network")
        module = make().eval()
        traced = lower_traced(module, (1,) + shape, name=name)
        rows = simulate(traced.graph, profile).rows
        row_of = {op: i for i, layer in enumerate(traced.graph.layers) for op in layer.ops}
        ops = {op.name: op for op in traced.graph.ops}
        times = time_module(module, (1,) + shape, threads=threads, warmup=2, repeats=repeats, per_round=1,
                            allocator=allocator)
        speed = reference_s / times.probe_s if reference_s and times.probe_s else 1.0
        for op_name, spread in zip(traced.call_ops, times.call_s):
            op = ops.get(op_name) if op_name else None
            if op is None or op_name not in row_of or spread.median_s <= 0:
                continue
            label, tiled = _label(op, profile), rows[row_of[op_name]].tiles > 1
            out_bytes = -(-prod(op.out_shape) * profile.formats.activation_bits // 8)
            area = op.kernel[0] * op.kernel[1] if op.kernel else 0
            out.setdefault((label, tiled), []).append(
                ContextCall(spread.median_s * speed, *_predicted(op, label, profile, tiled), out_bytes, area))
    return out


def measure_context_fresh(profile: HardwareProfile, *, threads: int, repeats: int, allocator: str = "keep",
                          reference_s: float | None = None) -> dict[tuple[str, bool], list[ContextCall]]:
    """``measure_context`` in a fresh interpreter (spawned), as ``perfsim validate`` times a model: in the
    process that ran calibrate's benchmarks the same calls took 5–13 % longer (docs/hardware.md)."""
    import multiprocessing
    import os

    from ..children import as_child
    with multiprocessing.get_context("spawn").Pool(1, initializer=as_child, initargs=(os.getpid(),)) as pool:
        return pool.apply(_measure_quietly, (profile, threads, repeats, allocator, reference_s))


def whole_forward_fresh(threads: int, allocator: str = "keep", rounds: int = 15) -> list[float]:
    """The mobile synthetic network's plain forward, ``rounds`` times, in a fresh interpreter (spawned): two
    such runs, at the start and the end of a calibration, are the run-to-run spread of this machine."""
    import multiprocessing
    import os

    from ..children import as_child
    with multiprocessing.get_context("spawn").Pool(1, initializer=as_child, initargs=(os.getpid(),)) as pool:
        return pool.apply(_whole_forward, (threads, allocator, rounds))


def _whole_forward(threads: int, allocator: str, rounds: int) -> list[float]:
    import time

    from .measure import host_settings
    make, shape = NETWORKS["mobile"]
    module, x = make().eval(), torch.randn((1,) + shape, generator=torch.Generator().manual_seed(0))
    out = []
    with host_settings(threads, allocator):
        for _ in range(3):
            module(x)
        for _ in range(rounds):
            t0 = time.perf_counter()
            module(x)
            out.append(time.perf_counter() - t0)
    return out


def _measure_quietly(profile: HardwareProfile, threads: int, repeats: int, allocator: str,
                     reference_s: float | None = None):
    return measure_context(profile, threads=threads, repeats=repeats, allocator=allocator, progress=lambda _: None,
                           reference_s=reference_s)


@dataclass(frozen=True)
class ContextFit:
    """A label in context: ``measured = factor x work + overhead``, the two fitted apart (``affine``) or the
    factor held at 1 and the overhead the median excess; ``areas``: a grouped conv's fit per kernel area."""

    factor: float
    overhead_s: float
    calls: int
    ratios: tuple[float, ...]  # measured / the fit, per call, sorted (its spread)
    affine: bool = True
    areas: tuple[tuple[int, "ContextFit"], ...] = ()

    def time(self, overhead: float, work: float) -> float:
        """A call's time in context from the isolated fit's work (its overhead is replaced)."""
        return self.factor * work + self.overhead_s


AFFINE_FROM = 4  # calls of a label, at least, to fit a factor and an overhead apart
AFFINE_SPAN = 3.0  # ... and the largest call's work at least this many times the smallest's


def fit_context(calls: list[ContextCall]) -> ContextFit:
    """``measured = factor x work + overhead`` by least squares in relative error (both at least 0), when
    the calls are enough and differ enough in size; else the factor held at 1 and the overhead the median
    of measured - work (at least 0): where the two could be told apart a network added mostly a fixed cost
    per call (factors 1.0-1.1 on conv_dw, conv_pw, linear and 1x1 grouped convs), and one factor on both
    made a large call pay the small calls' fixed cost many times over, or a small one too little of it
    (docs/hardware.md, "In context")."""
    import numpy as np
    works = [c.work for c in calls]
    if len(calls) >= AFFINE_FROM and min(works) > 0 and max(works) >= AFFINE_SPAN * min(works):
        t = np.array([c.measured for c in calls])
        w = np.array(works)
        x = np.stack([w, np.ones(len(calls))], axis=1) / t[:, None]
        (factor, overhead), *_ = np.linalg.lstsq(x, np.ones(len(calls)), rcond=None)
        if factor < 1:  # a network never runs the work faster than a warm loop: hold the factor at 1
            factor, overhead = 1.0, float(np.sum((t - w) / t**2) / np.sum(1 / t**2))
        if overhead >= 0:
            return _fitted(calls, float(factor), float(overhead), True)
    return _fitted(calls, 1.0, max(0.0, median(c.measured - c.work for c in calls)), False)


def _fitted(calls: list[ContextCall], factor: float, overhead: float, affine: bool) -> ContextFit:
    fit = ContextFit(round(factor, 4), overhead, len(calls), (), affine)
    times = [(c.measured, fit.time(c.overhead, c.work)) for c in calls]
    ratios = tuple(sorted(m / t for m, t in times if t > 0))  # a call the fit gives no time says nothing
    return ContextFit(fit.factor, fit.overhead_s, fit.calls, ratios, affine)


def _in_place(label: str) -> bool:
    """An activation: PyTorch's networks run it in place (no fresh output), as ``first_touch`` counts."""
    from ..ir.graph import UNARY_ACTIVATION_KINDS
    return label in {k.value for k in UNARY_ACTIVATION_KINDS}


BY_AREA = frozenset({"conv_group"})  # labels whose efficiency is a model by kernel area (hardware.efficiency.GroupedConvModel)


def _label_fit(label: str, calls: list[ContextCall], minimum: int) -> ContextFit:
    """A label's fit; a label modelled by kernel area (``BY_AREA``) also one per area with at least
    ``minimum`` calls: a network adds to a 3x3 grouped conv about twice what it adds to a 1x1 one, and one
    fit over both made CondenseNet's 1x1 convs too slow and its 3x3 ones too fast (docs/hardware.md)."""
    fit = fit_context(calls)
    if label not in BY_AREA:
        return fit
    by_area: dict[int, list[ContextCall]] = {}
    for c in calls:
        by_area.setdefault(c.area, []).append(c)
    areas = tuple((a, fit_context(cs)) for a, cs in sorted(by_area.items()) if len(cs) >= minimum)
    return ContextFit(fit.factor, fit.overhead_s, fit.calls, fit.ratios, fit.affine, areas)


def context_fits(samples: dict[tuple[str, bool], list[ContextCall]], minimum: int = 3
                 ) -> tuple[dict[str, ContextFit], tuple[float, int]]:
    """Per label with at least ``minimum`` calls whose rows fit in SRAM: its ``ContextFit``. And
    ``first_touch`` with the calls behind it: over the calls whose rows do not fit, of kernels that
    allocate their output, the median of (measured - what the label's fit, or the isolated fit, predicts)
    per output byte; at least 0, and 0 with fewer than ``minimum`` such calls."""
    fits = {label: _label_fit(label, calls, minimum) for (label, tiled), calls in samples.items()
            if not tiled and len(calls) >= minimum and all(c.overhead + c.work > 0 for c in calls)}
    excess = []
    for (label, tiled), calls in samples.items():
        if tiled and not _in_place(label):
            fit = fits.get(label)
            excess += [(c.measured - (fit.time(c.overhead, c.work) if fit else c.overhead + c.work)) / c.out_bytes
                       for c in calls if c.out_bytes > 0]
    first_touch = max(0.0, median(excess)) if len(excess) >= minimum else 0.0
    return fits, (float(f"{first_touch:.4g}"), len(excess))


def _scaled(entry: Any, f: float) -> Any:
    """An efficiency entry (number, table nested or not, or a grouped conv's model) divided by ``f``, at
    most 1."""
    if isinstance(entry, dict):
        return {k: _scaled(v, f) for k, v in entry.items()}
    if isinstance(entry, GroupedConvModel):
        return entry.model_copy(update={"scale": entry.scale * f})
    return min(1.0, entry / f)


def with_strided(fits: dict[str, ContextFit], labels) -> dict[str, ContextFit]:
    """``fits`` and, for a strided label (``conv_group.strided``) or a conv on a token view (``conv_dw.view``)
    among ``labels`` with too few calls in context for a fit of its own, its label's fit: a network slows
    a strided conv at least as it slows the unstrided one."""
    out = dict(fits)
    for label in labels:
        base = label.removesuffix(STRIDED).removesuffix(VIEW)
        if label != base and label not in out and base in fits:
            out[label] = fits[base]
    return out


def _by_area(entry: GroupedConvModel, fit: ContextFit) -> tuple[GroupedConvModel, float]:
    """A grouped conv's model in context, each kernel area by its own fit (else the label's): its isolated
    time times the factor, plus the fitted overhead. The smallest of those overheads is returned as the
    label's ``kernel_overhead``; each area's kernel keeps the rest of its own."""
    own = dict(fit.areas)
    by = {a: own.get(a, fit) for a in entry.kernels}
    base = min(f.overhead_s for f in by.values())
    kernels = {a: k.model_copy(update={
        "overhead": by[a].factor * k.overhead + (by[a].overhead_s - base) / entry.scale,
        "per_group": tuple(tuple(by[a].factor * x for x in row) for row in k.per_group),
        "per_position": tuple(tuple(by[a].factor * x for x in row) for row in k.per_position)})
        for a, k in entry.kernels.items()}
    return entry.model_copy(update={"kernels": kernels}), base


def apply_fits(profile: HardwareProfile, fits: dict[str, ContextFit], first_touch: float) -> HardwareProfile:
    """Each label's efficiency divided by its factor (at most 1) and its overhead the fitted one, a strided
    label without a fit taking its label's (``with_strided``), a grouped conv's model by kernel area
    (``_by_area``); ``first_touch`` as fitted."""
    eff = dict(profile.kernels.efficiency)
    ovh = dict(profile.kernels.overhead)
    for label, fit in with_strided(fits, list(eff)).items():
        if isinstance(eff.get(label), GroupedConvModel) and fit.areas:
            eff[label], ovh[label] = _by_area(eff[label], fit)
            continue
        if label in eff:
            eff[label] = _scaled(eff[label], fit.factor)
        ovh[label] = fit.overhead_s
    return profile.with_fields(efficiency=eff, kernel_overhead=ovh, first_touch=first_touch)
