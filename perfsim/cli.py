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
    """A path component from a model or profile name: never empty, hidden, '.' or '..'."""
    s = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)
    return "_" + s[1:] if s.startswith(".") else (s or "_")


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
    out = Path(out)
    try:
        folder = write_report(result, out, plots=not no_plots)
    except OSError as e:
        raise InputError(f"cannot write the report to {out}/: {e.strerror or e}") from None
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
    import importlib.util

    from . import zoo
    from .pipeline import ModelRequest, graph_for

    rows = []
    missing = []
    for spec in zoo.specs():
        if importlib.util.find_spec(spec.module_name) is None:
            missing.append(spec.name)
            continue
        graph, _ = graph_for(ModelRequest(spec.name), use_cache=not no_cache)
        row = {"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes,
               "params": sum(l.params for l in graph.layers), "macs": graph.macs,
               "layers": len(graph.layers), "source": spec.source, "description": spec.description}
        if spec.count_convention == "condensenet":  # the paper counts differently: report both, named
            from .conventions import condensenet_flops
            row["flops_condensenet_convention"] = condensenet_flops(graph)
        rows.append(row)
    if missing:
        click.echo(f"perfsim: note: not installed, skipped: {', '.join(missing)}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from .units import format_count
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
    from .profile import describe, list_profiles, load_profile

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


def _paper_mobilenet(use_cache: bool = True) -> dict:
    """Seed paper 001 against perfsim: the facts ``perfsim paper mobilenet`` prints, as data."""
    from .papers import mobilenet_cifar as pm
    from .pipeline import ModelRequest, graph_for
    from .profile import load_profile
    from .simulate import simulate

    graph, _ = graph_for(ModelRequest("mobilenet"), use_cache=use_cache)
    base = load_profile("edge_1mb")
    live = simulate(graph, base, model="mobilenet")
    replay = simulate(graph, load_profile(base, memory_policy="paper"), model="mobilenet")
    replay_1bit = simulate(graph, load_profile(base, memory_policy="paper", weight_bits=1, bias_bits=1),
                           model="mobilenet")
    conv = [i for i, r in enumerate(live.rows) if r.unit == "matrix" and r.kernel]
    n_rows = len(pm.TABLE4)
    if len(conv) != n_rows or conv != list(range(n_rows)):
        raise RuntimeError(f"the mobilenet registry model has {len(conv)} conv layers ahead of its head; "
                           f"the paper's tables have {n_rows}")

    # (a) Table 4's compute column against 2 MACs / matrix_flops
    compute = pm.compare_compute([live.rows[i].t_matrix_s for i in conv])
    for c, i in zip(compute, conv):
        c["layer"] = live.rows[i].layer
    differ = [c["row"] for c in compute if not c["match"]]
    unexplained = [c["row"] for c in compute if c["note"] == "unexplained"]

    # (b) the Table 3 accounting replayed with true shapes and the profile's bits
    def first_flush(result) -> int | None:
        return next((k + 1 for k, i in enumerate(conv) if result.rows[i].plan == "paper-flush"), None)

    flush = first_flush(replay)
    flush_1bit = first_flush(replay_1bit)
    paper_sum = sum(t[2] for t in pm.TABLE4)
    gap = pm.TABLE4_PRINTED_TOTAL_S - paper_sum
    gap_row = min(range(n_rows), key=lambda k: abs(pm.TABLE4[k][2] - gap)) + 1
    gap_is_row = abs(pm.TABLE4[gap_row - 1][2] - gap) <= 1e-3 * abs(gap)
    paper_mem = [t[2] / 8 for t in pm.TABLE3]  # bits -> bytes
    paper_flush = pm.TABLE3_FIRST_FLUSH_ROW
    replay_out = {
        "profile": replay.profile.name + "+memory_policy=paper",
        "sram_bytes": base.sram_bytes,
        "weight_bits": base.weight_bits,
        "bias_bits": base.bias_bits,
        "first_flush_row": flush,
        "first_flush_layer": live.rows[conv[flush - 1]].layer if flush else None,
        "first_flush_total_bytes": replay.rows[conv[flush - 1]].sram_used_bytes if flush else None,
        "paper_first_flush_row": paper_flush,
        "paper_first_flush_total_bytes": paper_mem[paper_flush - 1],
        "paper_total_before_flush_bytes": paper_mem[paper_flush - 2],
        "first_flush_row_1bit_weights": flush_1bit,
        "peak_total_1bit_weights_bytes": max(replay_1bit.rows[i].sram_used_bytes for i in conv),
        "conv_latency_s": sum(replay.rows[i].t_total_s for i in conv),
        "latency_s": replay.latency_s,
        "paper_printed_total_s": pm.TABLE4_PRINTED_TOTAL_S,
        "paper_rows_sum_s": paper_sum,
        "paper_total_gap_s": gap,
        "paper_total_gap_row": gap_row if gap_is_row else None,
    }

    # (c) the known differences, each with the numbers that show it
    true_out_bits = [live.rows[i].out_bytes * 8 for i in conv]  # 8-bit activations, as the paper's
    shape_rows = [k + 1 for k in range(n_rows) if pm.TABLE3[k][1] != true_out_bits[k]]
    weights = [graph.layers[i].weight_elems for i in conv]  # Co * Ci/groups * Kh * Kw
    moved_rows = [k + 1 for k in range(1, n_rows) if k + 1 != paper_flush and pm.TABLE3[k][3] != 2 * weights[k]]
    diffs = [
        f"Table 4's compute time is 2*MACs / {base.matrix_flops / 1e12:g} TFLOPS: {n_rows - len(differ)} of "
        f"{n_rows} rows agree to 4 significant figures; rows {', '.join(map(str, differ)) or 'none'} "
        "(the stride-2 depthwise layers) were costed at the layer's input size, 4x the true MACs"
        + (f"; unexplained: rows {', '.join(map(str, unexplained))}" if unexplained else ""),
        "Table 3 counts each weight as 1 bit (data moved = 2 x weights, in and out); the replay stores "
        f"weights at {base.weight_bits} bits and folded-BN biases at {base.bias_bits} bits, so its running "
        f"total passes {base.sram_bytes:,} B at row {flush}, not row {paper_flush}",
        "with 1-bit weights and true shapes the running total peaks at "
        f"{replay_out['peak_total_1bit_weights_bytes']:,} B and "
        + ("never flushes" if flush_1bit is None else f"first flushes at row {flush_1bit}")
        + f": the paper's row-{paper_flush} flush comes from its size errors: rows "
        + ", ".join(f"{k} ({pm.TABLE3[k - 1][1]:,} output bits, true {true_out_bits[k - 1]:,})"
                    for k in shape_rows),
        "Table 3 moves 2 x weights (1 bit each) except at rows "
        + ", ".join(f"{k} ({pm.TABLE3[k - 1][3]:,} bits = 2 x {pm.TABLE3[k - 1][3] // 2:,} weights; "
                    f"the layer has {weights[k - 1]:,})" for k in moved_rows)
        + ": row 5 is costed as a 64->128 layer, row 9 moves 64x128 weights for a 128->128 layer",
        f"the flush at row {paper_flush} means a 10^6-byte limit: its running total is "
        f"{paper_mem[paper_flush - 2]:,.0f} B at row {paper_flush - 1} and {paper_mem[paper_flush - 1]:,.0f} B at "
        f"row {paper_flush}, below 1 MiB ({2**20:,} B); edge_1mb's sram_bytes is {base.sram_bytes:,} B",
        "after a flush nothing is read back, the network output is never written, and the pool and FC "
        "layers are not in the tables; the replay keeps these rules, the liveness policy does not "
        f"(edge_1mb, liveness: {live.latency_s:.6g} s, peak SRAM {live.summary['peak_sram_bytes']:,} B, "
        f"{live.summary['spill_bytes']:,} B spilled)",
        f"Table 4's printed total {pm.TABLE4_PRINTED_TOTAL_S:.9f} s is not the sum of its rows "
        f"({paper_sum:.9f} s): the difference, {gap:.6g} s, "
        + (f"equals row {gap_row}'s time" if gap_is_row else "matches no single row"),
    ]
    return {
        "model": "mobilenet",
        "paper": "seed paper 001: MobileNet on CIFAR-10, Section 5, Tables 3 and 4",
        "profile": base.resolved(),
        "compute": {"rows": compute, "matching_rows": n_rows - len(differ), "differing_rows": differ,
                    "unexplained_rows": unexplained},
        "replay": replay_out,
        "liveness": {"latency_s": live.latency_s, "conv_latency_s": sum(live.rows[i].t_total_s for i in conv),
                     "peak_sram_bytes": live.summary["peak_sram_bytes"]},
        "differences": diffs,
    }


@cli.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--no-cache", is_flag=True, help="Lower the model again instead of using the graph cache.")
def paper(model, as_json, no_cache):
    """Compare perfsim with a paper's published tables. Supported: mobilenet (seed paper 001).

    (a) Table 4's compute column beside perfsim's matrix time (edge_1mb) for the 27
    conv layers; (b) Table 3's accounting replayed (memory_policy: paper): the row of
    the first flush and the total latency beside the paper's; (c) what explains each
    difference.
    """
    if model != "mobilenet":
        raise InputError(f"perfsim paper supports only 'mobilenet' (seed paper 001's Tables 3 and 4), "
                         f"not {model!r}")
    d = _paper_mobilenet(use_cache=not no_cache)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    from .units import format_bytes, format_seconds

    c, r = d["compute"], d["replay"]
    click.echo(f"perfsim vs {d['paper']}")
    click.echo("")
    click.echo(f"(a) compute time, Table 4 vs perfsim t_matrix_s = 2*MACs / matrix_flops on {d['profile']['name']}")
    click.echo(f"{'row':>3}  {'layer':24}  {'paper (s)':>11}  {'perfsim (s)':>11}  agree  note")
    for row in c["rows"]:
        click.echo(f"{row['row']:>3}  {row['layer']:24}  {row['paper_s']:>11.5e}  {row['perfsim_s']:>11.5e}  "
                   f"{'yes' if row['match'] else 'NO':5}  {row['note']}")
    click.echo(f"     {c['matching_rows']} of {len(c['rows'])} rows agree to 4 significant figures"
               + (f"; rows {', '.join(map(str, c['differing_rows']))} differ" if c["differing_rows"] else ""))
    click.echo("")
    click.echo(f"(b) Table 3 accounting replayed ({r['profile']}: true shapes, {r['weight_bits']}-bit weights, "
               f"{r['bias_bits']}-bit biases, SRAM {format_bytes(r['sram_bytes'])})")
    if r["first_flush_row"] is not None:
        flush = (f"row {r['first_flush_row']} ({r['first_flush_layer']}, running total "
                 f"{r['first_flush_total_bytes']:,} B)")
    else:
        flush = "none"
    click.echo(f"    first flush      perfsim {flush}; paper row {r['paper_first_flush_row']} "
               f"(running total {r['paper_first_flush_total_bytes']:,.0f} B)")
    click.echo(f"    total latency    perfsim {r['conv_latency_s']:.9f} s over the 27 conv rows "
               f"({format_seconds(r['latency_s'])} with pool and FC)")
    click.echo(f"                     paper printed {r['paper_printed_total_s']:.9f} s, "
               f"its rows sum to {r['paper_rows_sum_s']:.9f} s")
    click.echo(f"    liveness policy  {format_seconds(d['liveness']['latency_s'])} on {d['profile']['name']} "
               f"(peak SRAM {format_bytes(d['liveness']['peak_sram_bytes'])})")
    click.echo("")
    click.echo("(c) known differences")
    for line in d["differences"]:
        click.echo(f"  - {line}")


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
    from .report_folder import Terminated
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
