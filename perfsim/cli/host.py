"""``perfsim calibrate`` and ``perfsim validate``: this machine, measured (docs/model.md,
"Calibrated profiles"). Both import torch; the rest of the CLI does not need them."""
from __future__ import annotations

import json
import sys

import click

from .bounds import CLASSES, MULTIPLIER, ROUNDS, THREADS, WARMUP

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _stderr_progress(enabled: bool):
    """One line per step on stderr, rewritten in place on a terminal."""
    tty = sys.stderr.isatty()

    def show(text: str) -> None:
        if not enabled:
            return
        if tty:
            sys.stderr.write(f"\r\033[K  {text[:100]}")
            sys.stderr.flush()
        else:
            sys.stderr.write(f"  {text}\n")

    def done() -> None:
        if enabled and tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    return show, done


def _warn_if_busy(threads: int | None) -> None:
    import os

    from ..host.measure import busy_warning
    warning = busy_warning(threads or os.cpu_count() or 1)
    if warning:
        click.echo(f"perfsim: warning: {warning}", err=True)


@click.command(context_settings=CONTEXT)
@click.option("--out", default="hardware_profiles/host.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Profile to write (then `--profile host` finds it from this folder).")
@click.option("--name", default="host", show_default=True, help="The profile's name.")
@click.option("--threads", type=THREADS, default=1, show_default=True,
              help="Threads to measure with. One by default: on this project's 2-vCPU machine a 2-thread "
                   "calibration predicted 5 of 28 networks within both targets (Spearman >= 0.9, error within "
                   "20 %) against 16 of 28 at one thread, PyTorch's split of small layers across threads and a "
                   "preempted worker being what it measures (docs/hardware.md); give --threads N to measure N.")
@click.option("--quick", is_flag=True, help="Fewer shapes and repeats: under a minute.")
@click.option("--force", is_flag=True, help="Replace --out even if perfsim calibrate did not write it.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--allocator", type=click.Choice(["keep", "system"]), default="keep", show_default=True,
              help="keep: freed memory stays with the process (no page faults on reuse, as with jemalloc); "
                   "system: glibc's own adaptive thresholds.")
def calibrate(out, name, threads, quick, force, quiet, allocator):
    """Measure this machine with micro-benchmarks (GEMM and elementwise peaks, streaming bandwidth,
    the last-level cache, and per op label a per-kernel overhead and a fraction of peak) and write
    a hardware profile that predicts PyTorch eager float32 on this CPU. Never runs the zoo."""
    from ..host.calibrate import calibrate as measure
    from ..host.calibrate import write_profile
    _warn_if_busy(threads)
    show, done = _stderr_progress(not quiet)
    profile = measure(quick=quick, threads=threads, name=name, allocator=allocator, progress=show)
    done()
    write_profile(profile, out, force=force)
    c = profile.calibration
    click.echo(f"matrix peak      {profile.matrix.flops / 1e9:.1f} GFLOP/s (GEMM, {c.threads} thread(s), "
               f"allocator {c.allocator})")
    click.echo(f"vector peak      {profile.vector.flops / 1e9:.2f} Gop/s")
    click.echo(f"stream bandwidth {profile.memory.dram_bandwidth / 1e9:.2f} GB/s")
    click.echo(f"cache (SRAM)     {profile.memory.sram_bytes / 2**20:.1f} MiB ({c.host.get('sram_from')})")
    click.echo(f"first touch      {profile.kernels.first_touch * 1e12:.0f} us/MB of output beyond it (in context)")
    blocks = ", ".join(f"{label} {b}" for label, b in profile.kernels.row_block.items()) or "none"
    click.echo(f"row block        {blocks} (output positions a kernel computes at once)")
    click.echo(f"{'op':18} {'overhead':>9} {'efficiency':>24} {'fit error':>9}")
    for label, f in c.fits.items():
        if isinstance(f.efficiency, float):
            eff = f"{f.efficiency:.3f}"
        elif isinstance(f.efficiency, dict):
            eff = " ".join(f"{k}:{v:.2f}" for k, v in list(f.efficiency.items())[:4])
        else:  # a grouped conv's model: its call overhead per kernel area
            eff = "model, " + " ".join(f"{a}:{k.overhead * 1e6:.0f}us" for a, k in f.efficiency.kernels.items())
        click.echo(f"{label:18} {f.overhead_s * 1e6:>7.1f}us {eff:>24} {f.median_abs_error:>9.0%}")
    click.echo(f"profile          {out}  (load {c.load_average[0]:.2f} -> {c.load_average[1]:.2f})")
    if "stability" in c.measurements:
        s = c.measurements["stability"]
        click.echo(f"stability        {s.value:.1%} between two runs of a network, {s.q3:.1%} within one "
                   f"({c.threads} thread(s))")
    if "speed_probe" in c.measurements:
        p = c.measurements["speed_probe"]
        click.echo(f"speed probe      256x256 GEMM {p.value * 1e6:.0f} us (IQR {p.q1 * 1e6:.0f}-{p.q3 * 1e6:.0f}) "
                   "through the benchmarks; validate compares its own")
    spread = c.unstable()
    if spread is not None:
        click.echo(f"perfsim: warning: this machine's timings moved {spread:.0%} between runs at {c.threads} "
                   "thread(s); no prediction can be checked closer than that here"
                   + (" (--threads 1 is steadier on a small shared machine)" if c.threads > 1 else ""), err=True)


@click.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--profile", "profile_name", default="host", show_default=True,
              help="Hardware profile, usually one `perfsim calibrate` wrote.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a profile field.")
@click.option("--threads", type=THREADS, default=None, help="Threads [default: the calibration's].")
@click.option("--repeats", type=ROUNDS, default=15, show_default=True, help="Timed rounds.")
@click.option("--warmup", type=WARMUP, default=3, show_default=True, help="Untimed rounds first.")
@click.option("--width", type=MULTIPLIER, default=None, help="Width multiplier alpha.")
@click.option("--resolution", type=MULTIPLIER, default=1.0, show_default=True, help="Resolution multiplier.")
@click.option("--classes", "num_classes", type=CLASSES, default=None, help="Number of classes.")
@click.option("--input-shape", default=None, metavar="CxHxW", help="Input shape (for file.py:factory).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for validation.csv/json and scatter.png [default: reports/<model>/validate-<profile>/].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and JSON only.")
@click.option("--allocator", type=click.Choice(["keep", "system"]), default=None,
              help="keep: freed memory stays with the process; system: glibc's own thresholds "
                   "[default: the calibration's; keep without one].")
def validate(model, profile_name, overrides, threads, repeats, warmup, width, resolution, num_classes, input_shape,
             out, as_json, no_plots, allocator):
    """Run MODEL's real PyTorch module on this CPU layer by layer and line the measured times up
    with perfsim's rows: Spearman rank correlation, per-layer, per-op and whole-network error."""
    from pathlib import Path

    from ..frontends.sources import ModelOptions, parse_shape
    from ..host.validate import format_validation, write_validation
    from ..host.validate import validate as run_validation
    from ..report.run import safe_name
    options = ModelOptions(num_classes=num_classes, width=width, resolution=resolution,
                           input_shape=parse_shape(input_shape) if input_shape is not None else None)
    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  timing {done}/{total}" + ("\n" if done == total else ""))
            sys.stderr.flush()

    from ..frontends.sources import ModelSource
    from ..report.folder import check_folder
    label = ModelSource.parse(model).label
    folder = Path(out) if out else Path("reports") / safe_name(label) / safe_name(f"validate-{Path(profile_name).stem}")
    check_folder(folder)  # a folder that may not be replaced is refused before minutes of measuring
    v = run_validation(model, profile_name, options=options, overrides=overrides, threads=threads,
                       repeats=repeats, warmup=warmup, allocator=allocator, progress=progress,
                       before_timing=_warn_if_busy)
    write_validation(v, folder, plots=not no_plots)
    if as_json:
        click.echo(json.dumps(v.to_dict(), indent=2))
        return
    click.echo(format_validation(v))
    click.echo(f"report           {folder}/")
