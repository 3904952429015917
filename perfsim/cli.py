"""The ``perfsim`` command line.

Bad input gets one line on stderr and exit status 2; an internal fault exits 1
(set PERFSIM_DEBUG=1 for its traceback). Heavy imports (torch, matplotlib,
the simulator) happen inside the commands that need them.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from .errors import InputError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="perfsim", prog_name="perfsim")
def cli() -> None:
    """perfsim: how fast does a CNN run on an accelerator, and where does the time go?

    Lowers a PyTorch model to per-layer ops, simulates them on a memory hierarchy
    (SRAM, DRAM bandwidth, matrix and vector units) and reports per layer.
    """


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--profile", "profile_name", default="edge_1mb", show_default=True,
              help="Hardware profile: a name (see `perfsim profiles`) or a YAML path.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override a profile field, e.g. --set sram_bytes=256KiB (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/<model>/<profile>/].")
@click.option("--batch", type=int, default=1, show_default=True, help="Inputs per inference.")
@click.option("--width", type=float, default=None, help="Width multiplier alpha in (0, 1].")
@click.option("--resolution", type=float, default=1.0, show_default=True,
              help="Resolution multiplier rho in (0, 1]: scales the input's side.")
@click.option("--classes", "num_classes", type=int, default=None, help="Number of classes of the classifier.")
@click.option("--input-shape", default=None, metavar="CxHxW",
              help="Input shape; required for a model given as file.py:factory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and JSON only.")
@click.option("--no-cache", is_flag=True, help="Lower the model again instead of using the graph cache.")
def run(model, profile_name, overrides, out, batch, width, resolution, num_classes, input_shape, as_json,
        no_plots, no_cache):
    """Simulate MODEL (a registry name, or path/to/file.py:factory) on a hardware profile.

    Prints a per-layer table and totals, and writes layers.csv, summary.json and
    plots under reports/<model>/<profile>/ (or --out).
    """
    from .pipeline import ModelRequest, graph_for, parse_shape
    from .profile import load_profile, parse_override

    if batch < 1:
        raise InputError(f"--batch must be a positive integer, got {batch}")
    pairs = [parse_override(o) for o in overrides]
    profile = load_profile(profile_name, **dict(pairs))
    shape = parse_shape(input_shape) if input_shape else None
    req = ModelRequest(model, num_classes=num_classes, width=width, resolution=resolution, input_shape=shape)
    graph, _info = graph_for(req, use_cache=not no_cache)

    from .report import format_table, format_totals, summary_json, write_report
    from .simulate import simulate

    result = simulate(graph, profile, batch=batch, model=graph.name)
    if out is None:
        model_part = graph.name + (f"_w{width:g}" if width and width != 1 else "") \
            + (f"_r{resolution:g}" if resolution != 1 else "") + (f"_c{num_classes}" if num_classes else "")
        profile_part = profile.name + "".join(f"+{k}={v}" for k, v in pairs) + (f"_b{batch}" if batch > 1 else "")
        out = Path("reports") / _safe(model_part) / _safe(profile_part)
    folder = write_report(result, out, plots=not no_plots)
    if as_json:
        click.echo(summary_json(result), nl=False)
        return
    click.echo(format_table(result))
    click.echo("")
    click.echo(format_totals(result))
    click.echo(f"report           {folder}/")


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--no-cache", is_flag=True, help="Lower every model again instead of using the graph cache.")
def models(as_json, no_cache):
    """List the model zoo: input shape, classes, params, MACs and source."""
    from . import zoo
    from .pipeline import ModelRequest, graph_for

    rows = []
    for spec in zoo.specs():
        graph, _ = graph_for(ModelRequest(spec.name), use_cache=not no_cache)
        rows.append({"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes,
                     "params": sum(l.params for l in graph.layers), "macs": graph.macs,
                     "layers": len(graph.layers), "source": spec.source, "description": spec.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from .units import format_count
    click.echo(f"{'name':14} {'input':10} {'classes':>7} {'params':>8} {'MACs':>8} {'layers':>6}  source")
    for r in rows:
        click.echo(f"{r['name']:14} {'x'.join(map(str, r['input_shape'])):10} {r['num_classes']:>7} "
                   f"{format_count(r['params']):>8} {format_count(r['macs']):>8} {r['layers']:>6}  {r['source']}")


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved profiles as JSON.")
def profiles(as_json):
    """List the hardware profiles (shipped, and those in ./hardware_profiles/)."""
    from .profile import describe, list_profiles, load_profile

    loaded = [load_profile(n) for n in list_profiles()]
    if as_json:
        click.echo(json.dumps([p.resolved() for p in loaded], indent=2))
        return
    for p in loaded:
        click.echo(f"{p.name:14} {describe(p)}")
        if p.description:
            click.echo(f"{'':14} {p.description}")


@cli.command("clc-groups", context_settings=CONTEXT)
@click.argument("m", type=int)
@click.argument("l", type=int)
@click.argument("n", type=int)
@click.option("--kernel-area", type=int, default=9, show_default=True, help="A: spatial area of the IGC kernel.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def clc_groups_cmd(m, l, n, kernel_area, as_json):
    """clcNet's group minimiser (paper Eq. 2): the (g1, g2) minimising
    C = A*L*M/g1 + N*L/g2 under the full-channel-receptive-field rule g1*g2 <= L.

    M input channels, L channels between IGC and GC, N output channels.
    """
    from .clc import clc_groups

    for label, v in (("M", m), ("L", l), ("N", n), ("--kernel-area", kernel_area)):
        if v <= 0:
            raise InputError(f"{label} must be positive, got {v}")
    res = clc_groups(m, l, n, kernel_area=kernel_area)
    if as_json:
        click.echo(json.dumps({"M": m, "L": l, "N": n, "kernel_area": kernel_area, "g1": res.g1, "g2": res.g2,
                               "cost": res.cost}))
        return
    click.echo(f"M={m} L={l} N={n} A={kernel_area}: g1={res.g1} g2={res.g2} cost={res.cost:g}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: map errors to exit codes (2: bad input, 1: internal fault)."""
    try:
        cli.main(args=argv, prog_name="perfsim", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("perfsim: aborted", err=True)
        return 1
    except click.UsageError as e:
        hint = f" (see 'perfsim {e.ctx.info_name} --help')" if e.ctx is not None and e.ctx.parent else \
            " (see 'perfsim --help')"
        click.echo(f"perfsim: error: {e.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"perfsim: error: {e.format_message()}", err=True)
        return 2
    except InputError as e:
        click.echo(f"perfsim: error: {e}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("perfsim: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal fault: say so plainly; the traceback on request
        if os.environ.get("PERFSIM_DEBUG"):
            raise
        click.echo(f"perfsim: internal error: {type(e).__name__}: {e} (set PERFSIM_DEBUG=1 for the traceback)",
                   err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
