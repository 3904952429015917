"""Time a real PyTorch module on this CPU, ATen call by ATen call. Imports torch.

Two kinds of measurement, interleaved in rounds so that a drifting machine moves both alike:

- the whole forward, plain eager PyTorch (no hooks, no modes): what a user's inference costs;
- every ATen call of the forward, timed inside the capture's own ``TorchDispatchMode``
  (``perfsim.frontends.lowering.capture``): the clock runs around the call itself, so the recorder's
  Python bookkeeping is outside it. ``perfsim.host.validate`` lines the calls up with the capture of
  the same input, so each one maps onto the op and the report row it became.

Both run in eval mode, without autograd, with the capture's switches (math attention, no
MultiheadAttention fast path, no parameter requiring grad), on one input (seeded random unless given),
at a fixed thread count. A timed forward whose calls differ from the others' (another branch taken) is
lined up with the most common one by ``perfsim.host.match``; its calls that have no counterpart are
counted apart (``HostTimes.unmatched_s``).
"""
from __future__ import annotations

import functools
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import InputError
from ..frontends.lowering.calls import Call, Role
from ..frontends.lowering.capture import _ModuleStack, _Recorder, _tensors, _Val


@dataclass(frozen=True)
class Spread:
    """Median and the quartiles of repeated timings, in seconds."""

    median_s: float
    q1_s: float
    q3_s: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Spread":
        s = sorted(samples)
        if not s:
            raise ValueError("no samples")
        return cls(median_s=median(s), q1_s=_quantile(s, 0.25), q3_s=_quantile(s, 0.75), n=len(s))


def _quantile(s: Sequence[float], q: float) -> float:
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True)
class HostTimes:
    """One module's timings on this machine."""

    calls: list[Call]  # the timed forward's calls (the most common sequence over the rounds)
    call_s: list[Spread]  # per call (0 in a round that did not run it)
    whole: Spread  # the plain eager forward
    threads: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    allocator: str = "system"  # what held while timing (``set_allocator``)
    rounds_differing: int = 0  # timed forwards whose calls were not ``calls``
    unmatched_s: Spread | None = None  # per round: its calls with no counterpart in ``calls``
    unmatched_calls: int = 0  # the most such calls in one round
    # (index in ``calls``, subnormal floats read, written) of each call that met any, in one untimed
    # forward after the timed ones (``count_subnormals``)
    subnormal: tuple[tuple[int, int, int], ...] = ()
    probe_s: float | None = None  # the speed probe's median over the rounds (``speed_probe``)


# The speed probe: one float32 GEMM of this side, timed 7 times (~2 ms at one thread here).
PROBE_SIDE = 256


@functools.cache
def _probe_operands() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(PROBE_SIDE, PROBE_SIDE, generator=g), torch.randn(PROBE_SIDE, PROBE_SIDE, generator=g),
            torch.empty(PROBE_SIDE, PROBE_SIDE))


def speed_probe(reps: int = 7) -> float:
    """How fast this machine runs now: the median time of a 256x256 by 256x256 float32 ``torch.mm`` at the
    thread count that holds (call it inside ``host_settings``). On this shared KVM guest whole forwards move
    by up to 2x minute to minute; over 150 s of alternating probes and forwards at one thread, the probe's
    time correlated 0.79-0.84 with ResNet-18's, MobileNet's and DeiT-Tiny's (docs/hardware.md). A
    calibration keeps its probe (``measurements["speed_probe"]``) and a validation its own, so that a
    prediction can be read at the speed the machine had when it was measured."""
    a, b, c = _probe_operands()
    torch.mm(a, b, out=c)  # warm: the first call of a thread count builds its kernel
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        out.append(time.perf_counter() - t0)
    return median(out)


class _Timer(_Recorder):
    """The capture's recorder, computing every call for real and timing each one."""

    def __init__(self, modules: _ModuleStack, params: dict[int, str]):
        super().__init__(modules, params)
        self.seconds: dict[int, float] = {}

    def _execute(self, func, args, kwargs):
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds[len(self.calls)] = time.perf_counter() - t0  # the index the call is recorded under
        return out


def subnormals(tensors: Sequence[torch.Tensor]) -> int:
    """How many of the floats in ``tensors`` are subnormal (non-zero, smaller in size than the dtype's
    smallest normal number). x86 cores compute with them through a microcode assist, tens to a hundred
    times slower per element: a batched product with 40 % subnormal operands took 24.3 ms here where the
    same product on normal numbers took 0.5 ms (docs/hardware.md, "Subnormal floats")."""
    n = 0
    for t in tensors:
        if t.is_floating_point() and t.numel() and not t.is_complex():
            size = t.detach().abs()
            n += int(((size < torch.finfo(t.dtype).tiny) & (size > 0)).sum())
    return n


class _Subnormals(_Recorder):
    """The capture's recorder, computing every call for real and counting the subnormal floats it reads
    (its tensor arguments, weights included) and writes."""

    def __init__(self, modules: _ModuleStack, params: dict[int, str]):
        super().__init__(modules, params)
        self.found: dict[int, tuple[int, int]] = {}

    def _execute(self, func, args, kwargs):
        read = subnormals(_tensors(*args, *kwargs.values()))
        out = func(*args, **kwargs)
        written = subnormals(_tensors(out))
        if read or written:
            self.found[len(self.calls)] = (read, written)  # the index the call is recorded under
        return out


def count_subnormals(module: nn.Module, x: torch.Tensor, params: dict[int, str],
                     calls: Sequence[Call]) -> tuple[tuple[int, int, int], ...]:
    """One forward (untimed) counting each call's subnormal floats: (index in ``calls``, read, written) of
    the calls that met any, lined up with ``calls`` as the timed rounds are (``perfsim.host.match``).
    Call it inside ``host_settings``."""
    from .match import align
    modules = _ModuleStack(module)
    counter = _Subnormals(modules, params)
    counter.vals[x] = _Val(Role.ACT, -1)
    with modules, counter:
        module(x)
    index = {j: i for i, j in align(_signature(calls), _signature(counter.calls))}
    return tuple((index[j], read, written) for j, (read, written) in sorted(counter.found.items()) if j in index)


ALLOCATORS = ("keep", "system")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest on 64-bit: bigger blocks are mapped whatever is asked
_kept = False  # mallopt is for the whole process and has no undo to glibc's own adaptive thresholds


def set_allocator(kind: str) -> str:
    """Set how this process's C allocator treats freed memory; return what holds.

    ``keep``: freed blocks stay with the process (glibc's ``mallopt``: blocks up to 32 MiB come from the
    heap, which is never trimmed), so a tensor allocated again reuses pages already touched, as with
    the jemalloc/tcmalloc set-ups PyTorch's CPU tuning guide advises. ``system``: glibc's own adaptive
    thresholds, under which a large output may be freshly mapped and page-faulted on every call, by an
    amount that depends on the history of the process (docs/hardware.md, "The allocator"). Where there
    is no glibc ``mallopt``, the system's allocator is what holds."""
    global _kept
    if kind not in ALLOCATORS:
        raise InputError(f"--allocator must be one of {', '.join(ALLOCATORS)}, got {kind!r}")
    if kind == "keep" and not _kept:
        import ctypes
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return "system"
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)  # 1 when glibc took it
        trimmed = mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        _kept = bool(mapped and trimmed)
    return "keep" if _kept else "system"


@contextmanager
def host_settings(threads: int, allocator: str = "keep") -> Iterator[str]:
    """The capture's switches and a fixed thread count, restored afterwards; the allocator as
    ``set_allocator`` sets it (for the rest of the process). Yields the allocator that holds."""
    held = set_allocator(allocator)
    old_threads = torch.get_num_threads()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.set_num_threads(threads)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            yield held
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _timed_forward(module: nn.Module, x: torch.Tensor, params: dict[int, str]) -> tuple[list[Call], dict[int, float]]:
    modules = _ModuleStack(module)
    timer = _Timer(modules, params)
    timer.vals[x] = _Val(Role.ACT, -1)
    with modules, timer:
        module(x)
    return timer.calls, timer.seconds


def time_calls(module: nn.Module, x: torch.Tensor, samples: int, *, warmup_s: float = 0.02,
               budget_s: float = 0.05) -> Spread:
    """The summed time of a module's calls per forward, timed as ``time_module`` times each call of a
    model (inside the capture's dispatch mode, one plain forward between two timed ones), so that a
    micro-benchmark and a network's layer are measured alike: ``samples`` forwards or as many more (up
    to 10x) as fit in ``budget_s``, after a warm-up of 3 forwards and ``warmup_s``. Call it inside
    ``host_settings``."""
    params = {id(p): name for name, p in module.named_parameters()}
    start, fastest, n = time.perf_counter(), float("inf"), 0
    while n < 3 or time.perf_counter() - start < warmup_s:
        module(x)
        fastest = min(fastest, sum(_timed_forward(module, x, params)[1].values()))
        n += 1
    out = []
    for _ in range(max(samples, min(10 * samples, int(budget_s / max(2 * fastest, 1e-7))))):
        module(x)
        out.append(sum(_timed_forward(module, x, params)[1].values()))
    return Spread.of(out)


def _signature(calls: Sequence[Call]) -> list[tuple[str, str, int]]:
    return [(c.target, c.path, c.module_call) for c in calls]


@contextmanager
def _frozen_parameters(module: nn.Module) -> Iterator[None]:
    """No parameter requires grad, as in the capture: a linear on a 3-D input whose rows cannot be folded
    into one matrix without a copy then runs as the capture records it (a batched product), not as one
    ``mm`` (PyTorch's ``matmul`` folds whenever the weight requires grad). Restored afterwards."""
    grads = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


Round = tuple[list[Call], dict[int, float]]  # one timed forward: its calls, seconds by call index


def _per_call(rounds: list[Round]) -> tuple[list[Call], list[list[float]], list[float], int, int]:
    """The timed rounds lined up with their most common call sequence (``perfsim.host.match``): that
    sequence, each of its calls' samples (0 in a round without it), per round the time of its calls
    with no counterpart there, the rounds that differ, and the most unmatched calls in one round."""
    from collections import Counter

    from .match import align
    sigs = [tuple(_signature(calls)) for calls, _ in rounds]
    common = Counter(sigs).most_common(1)[0][0]
    reference = rounds[sigs.index(common)][0]
    keys = [(c.target, c.path) for c in reference]
    per_call: list[list[float]] = [[] for _ in reference]
    unmatched, most, differing = [], 0, 0
    for (calls, seconds), sig in zip(rounds, sigs):
        if sig == common:
            got = {i: i for i in range(len(calls))}
        else:
            differing += 1
            got = dict(align(keys, [(c.target, c.path) for c in calls]))
        for i, samples in enumerate(per_call):
            samples.append(seconds.get(got[i], 0.0) if i in got else 0.0)  # a write into a view: no time
        seen = set(got.values())
        unmatched.append(sum((seconds.get(j, 0.0) for j in range(len(calls)) if j not in seen), 0.0))
        most = max(most, len(calls) - len(seen))
    return reference, per_call, unmatched, differing, most


def time_module(module: nn.Module, input_shape: Sequence[int], *, threads: int = 2, warmup: int = 3,
                repeats: int = 15, per_round: int = 3, seed: int = 0, allocator: str = "keep",
                progress: Callable[[int, int], None] | None = None, input: torch.Tensor | None = None) -> HostTimes:
    """Warm up, then ``repeats`` rounds of (``per_round`` plain forwards, one timed-call forward), on
    ``input`` (default: ``random_input(input_shape, seed)``); last, one untimed forward counting the calls'
    subnormal floats (``count_subnormals``). Before each round, the speed probe (``speed_probe``)."""
    if threads < 1 or warmup < 0 or repeats < 1 or per_round < 1:
        raise InputError("threads, repeats and per_round must be positive and warmup not negative")
    module.eval()
    params = {id(p): name for name, p in module.named_parameters()}
    x = random_input(input_shape, seed) if input is None else input
    whole: list[float] = []
    rounds: list[Round] = []
    probes: list[float] = []
    load_before = os.getloadavg()
    with host_settings(threads, allocator) as held, _frozen_parameters(module):
        for _ in range(warmup):
            module(x)
            _timed_forward(module, x, params)
        for r in range(repeats):
            probes.append(speed_probe())
            for _ in range(per_round):
                t0 = time.perf_counter()
                module(x)
                whole.append(time.perf_counter() - t0)
            rounds.append(_timed_forward(module, x, params))
            if progress:
                progress(r + 1, repeats)
        reference, per_call, unmatched, differing, most = _per_call(rounds)
        subnormal = count_subnormals(module, x, params, reference)
    return HostTimes(calls=reference, call_s=[Spread.of(s) for s in per_call], whole=Spread.of(whole),
                     threads=threads, load_before=load_before, load_after=os.getloadavg(), allocator=held,
                     rounds_differing=differing, unmatched_s=Spread.of(unmatched), unmatched_calls=most,
                     subnormal=subnormal, probe_s=median(probes))


def random_input(input_shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """The input ``perfsim validate`` captures and times: standard normal, seeded."""
    return torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(seed))


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def others_busy_cpus(window_s: float = 0.5) -> float:
    """CPUs' worth of work other processes did over ``window_s`` while this one slept (load average
    where /proc/stat is missing; it lags by a minute and counts this process's own past work)."""
    a = _cpu_times()
    if a is None:
        return os.getloadavg()[0]
    time.sleep(window_s)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return os.getloadavg()[0]
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def busy_warning(threads: int) -> str | None:
    """A warning when other processes compete for the CPUs the measurement needs: PyTorch's parallel
    regions then wait for a preempted worker thread (milliseconds per op), so timings say more about
    the load than about the machine."""
    busy = others_busy_cpus()
    free = (os.cpu_count() or 1) - threads
    if busy <= free + 0.25:
        return None
    return (f"other processes keep {busy:.1f} of {os.cpu_count()} CPUs busy; timings with {threads} thread(s) "
            "will be slow and noisy (quiet the machine, or measure with fewer --threads)")


def describe_host() -> dict[str, Any]:
    """What was measured on: CPU model, cores, torch and its threads."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model or "unknown", "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads_default": torch.get_num_threads()}
