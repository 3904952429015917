"""The ``perfsim`` command line.

Bad input gets one line on stderr and exit status 2; an internal fault exits 1
(set PERFSIM_DEBUG=1 for its traceback). Heavy imports (torch, matplotlib,
the simulator) happen inside the commands that need them.
"""
from __future__ import annotations

import json
import os
import sys

import click

from ..errors import InputError
from . import accuracy as _accuracy
from . import explore as _explore
from . import host as _host
from . import topology as _topology
from .bounds import BATCH, CHANNELS, CLASSES, KERNEL_AREA, MULTIPLIER

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


MAX_MESSAGE_CHARS = 1000


def _one_line(text: object) -> str:
    """Error messages are one line on stderr, whatever the exception carried, and bounded
    (a value echoed from a hostile argument is cut)."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS] + "..."


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="perfsim", prog_name="perfsim")
def cli() -> None:
    """perfsim: how fast does a CNN run on an accelerator, and where does the time go?

    Lowers a PyTorch model to per-layer ops, simulates them on a memory hierarchy
    (SRAM, DRAM bandwidth, matrix and vector units) and reports per layer.
    """


@cli.command(context_settings=CONTEXT)
@click.argument("model", required=False)
@click.option("--topology", type=click.Path(dir_okay=False), default=None,
              help="Simulate the layers of a SCALE-Sim topology CSV instead of a MODEL.")
@click.option("--profile", "profile_name", default="edge_1mb", show_default=True,
              help="Hardware profile: a name (see `perfsim profiles`) or a YAML path.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override a profile field, e.g. --set sram_bytes=256KiB (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/<model>/<profile>/].")
@click.option("--batch", type=BATCH, default=1, show_default=True, help="Inputs per inference.")
@click.option("--width", type=MULTIPLIER, default=None, help="Width multiplier alpha.")
@click.option("--resolution", type=MULTIPLIER, default=1.0, show_default=True,
              help="Resolution multiplier rho: scales the input's side.")
@click.option("--classes", "num_classes", type=CLASSES, default=None, help="Number of classes of the classifier.")
@click.option("--input-shape", default=None, metavar="CxHxW",
              help="Input shape; required for a model given as file.py:factory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and JSON only.")
@click.option("--html", is_flag=True, help="Also write report.html: one self-contained page (tables, plots).")
@click.option("--no-cache", is_flag=True, help="Lower the model again instead of using the graph cache.")
def run(model, topology, profile_name, overrides, out, batch, width, resolution, num_classes, input_shape, as_json,
        no_plots, html, no_cache):
    """Simulate MODEL on a hardware profile. MODEL is a zoo name (see `perfsim models`),
    path/to/file.py:factory, torchvision:NAME, timm:NAME or file.onnx.

    Prints a per-layer table and totals, and writes layers.csv, summary.json and
    plots under reports/<model>/<profile>/ (or --out).
    """
    from ..frontends.sources import ModelOptions, parse_shape
    from ..report.run import run_model

    options = ModelOptions(num_classes=num_classes, width=width, resolution=resolution,
                           input_shape=parse_shape(input_shape) if input_shape is not None else None)
    if (model is None) == (topology is None):
        raise click.UsageError("give a MODEL or --topology FILE.csv (one of them)")
    if topology is not None and (width is not None or resolution != 1.0 or num_classes or input_shape):
        raise click.UsageError("--topology takes the layers as the file gives them: no --width, --resolution, "
                               "--classes or --input-shape")
    done = run_model(model, profile=profile_name, overrides=overrides, out=out, batch=batch, options=options,
                     plots=not no_plots, use_cache=not no_cache, html=html, topology=topology)

    from ..report.run import summary_json
    from ..report.text import format_table, format_totals
    if as_json:
        click.echo(summary_json(done.result), nl=False)
        return
    click.echo(format_table(done.result))
    click.echo("")
    click.echo(format_totals(done.result))
    click.echo(f"report           {done.folder}/")


@cli.command(context_settings=CONTEXT)
@click.option("--source", "source", type=click.Choice(["zoo", "torchvision", "timm"]), default="zoo",
              show_default=True, help="Which models: the zoo (with sizes), or torchvision's / timm's names.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--no-cache", is_flag=True, help="Lower every model again instead of using the graph cache.")
def models(source, as_json, no_cache):
    """List the models perfsim can run: the zoo (input shape, classes, params, MACs and source),
    or the names of torchvision's / timm's classification models (run as torchvision:NAME, timm:NAME)."""
    from ..frontends.sources import list_names, zoo_catalog

    if source != "zoo":
        names = list_names(source)
        click.echo(json.dumps(names, indent=2) if as_json else "\n".join(names))
        return
    rows, missing = zoo_catalog(use_cache=not no_cache)
    if missing:
        click.echo(f"perfsim: note: not installed, skipped: {', '.join(missing)}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from ..units import format_count
    click.echo(f"{'name':14} {'input':10} {'classes':>7} {'params':>8} {'MACs':>8} {'layers':>6}  source")
    for r in rows:
        source = r["source"]
        if "flops_condensenet_convention" in r:
            source += f" [CondenseNet-convention FLOPs {format_count(r['flops_condensenet_convention'])}]"
        click.echo(f"{r['name']:14} {'x'.join(map(str, r['input_shape'])):10} {r['num_classes']:>7} "
                   f"{format_count(r['params']):>8} {format_count(r['macs']):>8} {r['layers']:>6}  {source}")


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved profiles as JSON.")
def profiles(as_json):
    """List the hardware profiles (shipped, and those in ./hardware_profiles/)."""
    from ..hardware.description import describe
    from ..hardware.loader import list_profiles, load_profile

    loaded = []
    for n in list_profiles():
        try:
            loaded.append(load_profile(n))
        except InputError as e:  # a broken ./hardware_profiles/ file: say so, list the rest
            click.echo(f"perfsim: warning: skipped {_one_line(e)}", err=True)
    if as_json:
        click.echo(json.dumps([p.resolved() for p in loaded], indent=2))
        return
    for p in loaded:
        click.echo(f"{p.name:14} {describe(p)}")
        if p.description:
            click.echo(f"{'':14} {p.description}")


@cli.command("clc-groups", context_settings=CONTEXT)
@click.argument("m", type=CHANNELS, metavar="M")
@click.argument("mid", type=CHANNELS, metavar="L")
@click.argument("n", type=CHANNELS, metavar="N")
@click.option("--kernel-area", type=KERNEL_AREA, default=9, show_default=True, help="A: spatial area of the IGC kernel.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def clc_groups_cmd(m, mid, n, kernel_area, as_json):
    """clcNet's group minimiser (paper Eq. 2): the (g1, g2) minimising
    C = A*L*M/g1 + N*L/g2 under the full-channel-receptive-field rule g1*g2 <= L.

    M input channels, L channels between IGC and GC, N output channels: each from 1 to 2^40.
    """
    from ..papers.clcnet_design import clc_groups

    res = clc_groups(m, mid, n, kernel_area=kernel_area)
    if as_json:
        click.echo(json.dumps({"M": m, "L": mid, "N": n, "kernel_area": kernel_area, "g1": res.g1, "g2": res.g2,
                               "cost": res.cost}))
        return
    click.echo(f"M={m} L={mid} N={n} A={kernel_area}: g1={res.g1} g2={res.g2} cost={res.cost:g}")


def _quiet_stdout() -> None:
    """After a closed pipe (``perfsim ... | head -1``): point stdout at /dev/null so the
    interpreter's final flush cannot fail with "Exception ignored ... BrokenPipeError"
    (the Python documentation's recipe, see the signal module's note on SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (captured in tests): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _invoke(argv: list[str] | None):
    """Parse and run one command. Unlike ``cli.main``, click's own handling of a closed
    pipe (exit 1) and of Ctrl-C is left to ``main`` below."""
    args = sys.argv[1:] if argv is None else list(argv)
    with cli.make_context("perfsim", args) as ctx:
        return cli.invoke(ctx)


def _click_status(e: click.exceptions.Exit | click.exceptions.Abort | click.ClickException) -> int:
    """Exit status of click's own outcomes: --help/--version, bare `perfsim`, usage errors, Abort."""
    if isinstance(e, click.exceptions.Exit):  # --help, --version
        return e.exit_code
    if isinstance(e, click.exceptions.NoArgsIsHelpError):  # bare `perfsim`: the help, not an error
        click.echo(e.ctx.get_help() if e.ctx is not None else e.format_message())
        return 0
    if isinstance(e, click.exceptions.Abort):
        interrupted = isinstance(e.__context__, KeyboardInterrupt)
        click.echo("perfsim: interrupted" if interrupted else "perfsim: aborted", err=True)
        return 130 if interrupted else 1
    hint = ""
    if isinstance(e, click.UsageError):
        hint = f" (see 'perfsim {e.ctx.info_name} --help')" if e.ctx is not None and e.ctx.parent else \
            " (see 'perfsim --help')"
    click.echo(f"perfsim: error: {_one_line(e.format_message())}{hint}", err=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point: map errors to exit codes (2: bad input, 1: internal fault, 0 on a closed
    stdout pipe, 128 + N on signal N while a report is written)."""
    from ..report.folder import Terminated
    try:
        rc = _invoke(argv)
        return rc if isinstance(rc, int) else 0
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException) as e:
        return _click_status(e)
    except InputError as e:
        click.echo(f"perfsim: error: {_one_line(e)}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("perfsim: interrupted", err=True)
        return 130
    except Terminated as e:  # SIGTERM (or SIGINT, SIGHUP) while a report was written: cleaned up
        click.echo(f"perfsim: interrupted by {e.name}; no report written", err=True)
        return 128 + e.signum
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except SystemExit as e:  # perfsim never calls sys.exit inside a command: code it ran did (a model file)
        click.echo(f"perfsim: error: code perfsim ran (a model file?) called sys.exit({_one_line(e.code)}) "
                   "instead of returning; no report written", err=True)
        return 2
    except Exception as e:  # an internal fault: say so plainly; the traceback on request
        if os.environ.get("PERFSIM_DEBUG"):
            raise
        click.echo(f"perfsim: internal error: {type(e).__name__}: {_one_line(e)} "
                   "(set PERFSIM_DEBUG=1 for the traceback)", err=True)
        return 1


def entry() -> None:
    """The ``perfsim`` console script: ``main``, then exit without the interpreter's teardown when
    nothing else runs (freeing pandas', matplotlib's and torch's modules takes ~0.1 s of a command
    that is otherwise done). Every report is complete and renamed into place by then; stdout and
    stderr are flushed here. With another thread or a child process still alive, or a stream that
    cannot be flushed, the ordinary exit runs instead."""
    rc = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(rc)
    import threading
    mp = sys.modules.get("multiprocessing")
    if threading.active_count() == 1 and not (mp and mp.active_children()):
        os._exit(rc)
    sys.exit(rc)


# The commands of the other capabilities, each in its own module (they import nothing heavy until run).
for _command in (*_explore.COMMANDS, _host.calibrate, _host.validate, _accuracy.train, _accuracy.evaluate_cmd,
                 _accuracy.pareto, _topology.export_topology):
    cli.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
