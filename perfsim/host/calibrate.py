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

The catalogue of benchmarks is ``perfsim.host.benchmarks``, the fits ``perfsim.host.fits``, the synthetic
networks in context ``perfsim.host.context``; this module measures the peaks and the memory, times the
benchmarks, runs the whole (``calibrate``) and writes the profile.
"""
from __future__ import annotations

import datetime
import math
import os
import time
from statistics import median
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError
from ..files import write_atomic
from ..hardware.calibration import Calibration, Measured
from ..hardware.description import HardwareProfile
from ..hardware.efficiency import MATRIX_LABELS
from .benchmarks import GROUPED_CHANNELS, GROUPED_CHANNELS_QUICK, Bench, benches, block_benches, lowered, tiled_benches
from .fits import fit_grouped, fit_label, fit_overlap, fit_row_blocks, label_rates
from .measure import PROBE_SIDE, Spread, describe_host, host_settings, speed_probe, time_calls

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


# Per benchmark: its warm-up and the time its samples may take (``time_calls``). --quick halves both: its
# 300-odd benchmarks (145 of them the grouped-conv grid) then take ~9 s less, keeping it under 30 s here.
BUDGET_S = {False: (0.02, 0.05), True: (0.01, 0.025)}


def measure_benches(items: Sequence[Bench], samples: int, progress: Callable[[str], None],
                    quick: bool = False, probes: list[float] | None = None) -> list[tuple[Bench, Any, Spread]]:
    """Each benchmark timed (``time_calls``), with the speed probe before it into ``probes``."""
    out = []
    warmup_s, budget_s = BUDGET_S[quick]
    for bench in items:
        if probes is not None:
            probes.append(speed_probe(5))
        progress(bench.what)
        module, layer = lowered(bench)
        x = torch.randn(bench.shape)
        out.append((bench, layer, time_calls(module, x, samples, warmup_s=warmup_s, budget_s=budget_s)))
    return out


# A benchmark is read at the calibration's speed by the probes of this many benchmarks around it: a slow
# stretch of the machine lasts seconds (two threads here: 3x3 convs of 16-128 channels ran 2-3x slower for
# a run of benchmarks in one calibration, whose quartiles stayed within 2-9 %), one probe is noisier.
SPEED_WINDOW = 5


def at_speed(results: list[tuple[Bench, Any, Spread]], probes: list[float], reference_s: float
             ) -> list[tuple[Bench, Any, Spread]]:
    """Each benchmark's timings x ``reference_s`` over the median probe of the ``SPEED_WINDOW`` benchmarks
    around it (``probes[i]`` taken before ``results[i]``): the fits then see one machine, at one speed."""
    out = []
    half = SPEED_WINDOW // 2
    for i, (bench, layer, s) in enumerate(results):
        k = reference_s / median(probes[max(0, i - half):i + half + 1])
        out.append((bench, layer, Spread(median_s=s.median_s * k, q1_s=s.q1_s * k, q3_s=s.q3_s * k, n=s.n)))
    return out


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def calibrate(*, quick: bool = False, threads: int | None = 1, name: str = "host", allocator: str = "keep",
              progress: Callable[[str], None] = lambda _: None) -> HardwareProfile:
    """Measure this machine; return the calibrated profile (its ``calibration`` holds every measurement)."""
    from .._version import __version__
    threads = threads or os.cpu_count() or 1  # None: every CPU
    if not 1 <= threads <= 4096:
        raise InputError(f"--threads must be between 1 and 4096, got {threads}")
    samples = 9 if quick else 21
    load_before = os.getloadavg()[0]
    measurements: dict[str, Measured] = {}
    from .context import whole_forward_fresh
    progress("stability: a network's forward, at the start")
    first = whole_forward_fresh(threads, allocator, 9 if quick else 15)
    probes: dict[str, list[float]] = {"plain": [], "tiled": [], "block": []}  # before each benchmark
    with host_settings(threads, allocator) as held:
        progress("GEMM peak")
        measurements.update(measure_gemm(quick, samples))
        progress("elementwise peak")
        measurements.update(measure_elementwise(samples))
        progress("memory bandwidth and cache")
        caches = caches_os()
        rates = measure_memory(quick, samples, caches[max(caches)] if caches else None)
        measurements.update({f"copy_{size}": m for size, m in rates.items()})
        results = measure_benches(benches(quick), samples, progress, quick, probes["plain"])
        tiled_results = measure_benches(tiled_benches(quick), max(5, samples // 2), progress, quick, probes["tiled"])
        block_results = measure_benches(block_benches(quick), samples, progress, quick, probes["block"])
    speed = Spread.of([p for group in probes.values() for p in group])
    measurements["speed_probe"] = _measured(
        speed, 1.0, "s", f"torch.mm {PROBE_SIDE}x{PROBE_SIDE} by {PROBE_SIDE}x{PROBE_SIDE}, median of 5, before each "
        "benchmark: the speed every benchmark is read at (calibrate.at_speed), and validate compares its own")
    results, tiled_results, block_results = (at_speed(r, probes[g], speed.median_s) for r, g in (
        (results, "plain"), (tiled_results, "tiled"), (block_results, "block")))
    by_label: dict[str, list[tuple[Any, Spread]]] = {}
    for bench, layer, spread in results + tiled_results + block_results:
        measurements[f"{bench.label}: {bench.what}"] = _measured(
            spread, 1.0, "s", f"eager forward, 1 row, {layer.macs} MACs, {layer.vector_ops(False, False)} vector ops")
    for bench, layer, spread in results:
        by_label.setdefault(bench.label, []).append((layer, spread))
    # the peaks: the GEMM's and the add's, unless a benchmark beyond its overhead ran faster still
    matrix_peak = max([m.value for k, m in measurements.items() if k.startswith("gemm_")]
                      + [r for label, pts in by_label.items() if label in MATRIX_LABELS
                         for r in label_rates(label, pts)])
    vector_peak = max([m.value for k, m in measurements.items() if k.startswith("elementwise_")]
                      + [r for label, pts in by_label.items() if label not in MATRIX_LABELS
                         for r in label_rates(label, pts)])
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
    profile, overlap_measured = fit_overlap(profile, tiled_results)  # and tiled_efficiency under it
    measurements.update(overlap_measured)
    from .context import apply_fits, context_fits, measure_context_fresh
    progress("in context: the synthetic networks, in a fresh process")
    in_context = measure_context_fresh(profile, threads=threads, allocator=held, repeats=5 if quick else 12,
                                       reference_s=measurements["speed_probe"].value)
    context, (first_touch, touched) = context_fits(in_context)
    profile = apply_fits(profile, context, first_touch)
    measurements.update(_context_measurements(context, first_touch, touched))
    progress("stability: the same forward, at the end")
    measurements.update(stability(first, whole_forward_fresh(threads, held, 9 if quick else 15), threads))
    calibration = Calibration(
        perfsim_version=__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        host={**describe_host(), **{f"cache_l{k}_bytes_os": v for k, v in sorted(caches.items())},
              "sram_from": how, "stream_bytes_per_s": int(rates[max(rates)].value)},
        threads=threads, allocator=held, quick=quick,
        load_average=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        measurements=measurements, fits=fits)
    return profile.with_fields(calibration=calibration)


def stability(first: list[float], last: list[float], threads: int) -> dict[str, Measured]:
    """How far this machine's timings move between two runs of one network (fresh processes at the start and
    the end of a calibration): the relative difference of their medians, its quartiles those of the runs'
    own rounds (``Calibration.unstable`` reads it)."""
    a, b = Spread.of(first), Spread.of(last)
    low = min(a.median_s, b.median_s)
    iqr = max((a.q3_s - a.q1_s) / a.median_s, (b.q3_s - b.q1_s) / b.median_s)
    what = (f"the mobile synthetic network's plain forward in two fresh processes, at the start and the end, "
            f"{threads} thread(s): {a.median_s * 1e3:.2f} and {b.median_s * 1e3:.2f} ms; the value their relative "
            "difference, q3 the larger of it and the wider run's relative interquartile range")
    moved = round(abs(a.median_s - b.median_s) / low, 4)
    return {"stability": Measured(value=moved, q1=moved, q3=max(moved, round(iqr, 4)), n=a.n + b.n, unit="relative",
                                  what=what)}


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
