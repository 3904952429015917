"""``perfsim compare``, ``perfsim sweep`` and ``perfsim paper``: exploring the design space.

Registered at the end of perfsim/cli.py. Bad input raises InputError (one line, exit 2).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import InputError
from .bounds import BATCH

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _default_out(kind: str, models, profile_name: str, overrides=(), batch: int = 1) -> Path:
    from ..report.run import safe_name
    label = "+".join(models) if len(models) <= 4 else f"{models[0]}+{len(models) - 1}-more"
    part = profile_name + "".join(f"+{o}" for o in overrides) + (f"_b{batch}" if batch > 1 else "")
    return Path("reports") / kind / safe_name(label[:120]) / safe_name(part[:120])


def _written(folder) -> str:
    return f"report           {folder}/"


@click.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1)
@click.option("--zoo", is_flag=True, help="Every zoo model (see `perfsim models`), after any MODELS named.")
@click.option("--profile", "profile_name", default="edge_1mb", show_default=True,
              help="Hardware profile: a name (see `perfsim profiles`) or a YAML path.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a profile field (repeatable).")
@click.option("--batch", type=BATCH, default=1, show_default=True, help="Inputs per inference.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/compare/<models>/<profile>/].")
@click.option("--html", is_flag=True, help="Also write report.html: one self-contained page.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and JSON only.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON on stdout.")
@click.option("--no-cache", is_flag=True, help="Lower the models again instead of using the graph cache.")
def compare(models, zoo, profile_name, overrides, batch, out, html, no_plots, as_json, no_cache):
    """Compare MODELS on one profile: a table of totals (latency and its terms, DRAM traffic,
    spills, peak SRAM, MACs, params, model size), latency stacked by term per model, and latency
    against MACs (a point per model) showing where MAC counts mislead.

    Writes compare.csv, compare.json and the plots under reports/compare/... (or --out).
    """
    from ..explore.compare import compare_frame, simulate_models, zoo_models
    from ..report.compare import write_compare
    from ..report.text import format_compare
    names = list(dict.fromkeys(list(models) + (zoo_models() if zoo else [])))
    results = simulate_models(names, profile=profile_name, overrides=overrides, batch=batch,
                              use_cache=not no_cache)
    frame = compare_frame(results)
    target = Path(out) if out else _default_out("compare", [r.model for r in results], results[0].profile.name,
                                                overrides, batch)
    folder = _write(write_compare, results, frame, target, plots=not no_plots, html=html)
    if as_json:
        click.echo(frame.to_json(orient="records", indent=2))
        return
    click.echo(format_compare(frame, results[0].profile.name))
    click.echo(_written(folder))


def _write(writer, *args, **kwargs):
    try:
        return writer(*args, **kwargs)
    except OSError as e:
        raise InputError(f"cannot write the report to {args[-1]}/: {e.strerror or e}") from None


class _Progress:
    """Points done, on stderr when it is a terminal (tqdm); silent otherwise."""

    def __init__(self, total: int, label: str):
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=label, unit="pt", file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _import_for_report(plots: bool) -> None:
    """pandas, and matplotlib's figure and Agg canvas: most of the time a sweep's report takes
    besides its plans (imported while forked workers plan)."""
    import pandas  # noqa: F401
    if plots:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401


@click.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True)
@click.option("--profile", "profile_name", default="edge_1mb", show_default=True,
              help="Base hardware profile: a name or a YAML path.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a base profile field.")
@click.option("--vary", "varies", multiple=True, required=True, metavar="FIELD=SPEC",
              help="A profile field and its values: START..END:xFACTOR (geometric), START..END:+STEP (linear), "
                   "START..END:nCOUNT (COUNT log-spaced), or a list a,b,c; units as in profiles "
                   "(sram_bytes=16KiB..16MiB:x2, dram_bandwidth=0.5GB/s..8GB/s:x2, overlap=false,true). Repeat for a grid.")
@click.option("--batch", type=BATCH, default=1, show_default=True, help="Inputs per inference.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/sweep/<models>/<profile>/].")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on an existing Dask cluster (tcp://host:8786); default: in process.")
@click.option("--html", is_flag=True, help="Also write report.html: one self-contained page.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and JSON only.")
@click.option("--no-cache", is_flag=True, help="Lower the models again instead of using the graph cache.")
def sweep(models, profile_name, overrides, varies, batch, out, scheduler, html, no_plots, no_cache):
    """Sweep profile fields for MODELS: every point of the grid of --vary values, simulated.

    Writes sweep.csv (one row per model and point: the varied fields and every total), sweep.json,
    latency against the first varied field with each model's knee marked (the least value from
    which on nothing spills) and, for two or more fields, a latency heatmap of the first two.
    """
    from ..explore.sweep import connect, sweep_frame
    from ..explore.vary import check_grid, parse_vary
    from ..frontends.sources import ModelSource, load_graph
    from ..hardware.loader import load_profile, parse_override
    from ..report import painter as painting
    from ..report.run import simulator  # noqa: F401  (the simulator's import errors surface here, not in a worker)
    from ..report.sweep import knees, write_sweep
    from ..report.text import format_sweep
    from ..sim.batch import meanwhile
    sources = [ModelSource.parse(m) for m in models]
    # plots are drawn in a forked painter that imports matplotlib while the sweep runs
    painter = painting.start() if (html or not no_plots) else None
    try:
        base = load_profile(profile_name, **dict(parse_override(o) for o in overrides))
        axes = [parse_vary(v, base) for v in varies]
        n = check_grid(axes)
        graphs = [load_graph(s, use_cache=not no_cache).graph for s in sources]
        client = connect(scheduler) if scheduler else None
        progress = _Progress(n * len(graphs), "sweep")
        try:
            with meanwhile(lambda: _import_for_report(plots=painter is None and not no_plots)):
                frames = [sweep_frame(g, base, axes, batch=batch, model=g.name, client=client, progress=progress)
                          for g in graphs]
            import pandas as pd
            frame = pd.concat(frames, ignore_index=True)
        finally:
            progress.close()
            if client is not None:
                client.close()
        meta = {"profile": base.resolved(), "batch": batch, "models": [g.name for g in graphs],
                "scheduler": scheduler}
        target = Path(out) if out else _default_out("sweep", [g.name for g in graphs], base.name, overrides, batch)
        folder = _write(write_sweep, frame, axes, meta, target, plots=not no_plots, html=html, painter=painter)
    finally:
        if painter is not None:
            painter.close()
    click.echo(format_sweep(frame, axes, knees(frame, axes)))
    click.echo(_written(folder))


def _paper_list() -> str:
    from ..papers.registry import PAPERS
    lines = []
    for e in PAPERS.values():
        lines += [f"{e.name:<13} paper {e.paper}: {e.title}", f"{'':13} networks: {', '.join(e.networks)}",
                  f"{'':13} covers: {e.covers}"]
    return "\n".join(lines)


@click.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--list", "list_papers", is_flag=True, help="Name the papers and what each report covers.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Also write the report folder: paper.md, paper_rows.csv, paper.json, paper.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--results", type=click.Path(file_okay=False), default=None,
              help="A folder of `perfsim eval` results (eval.json, searched recursively): the measured accuracy "
                   "beside the paper's. Without it the accuracy cells say 'not measured'.")
@click.option("--no-cache", is_flag=True, help="Lower the models again instead of using the graph cache.")
def paper(name, list_papers, out, as_json, results, no_cache):
    """Compare perfsim with a seed paper's published numbers: NAME is mobilenet (paper 001), clcnet
    (002), condensenet or condensenext (000) or fastnet (003); --list says what each report covers.

    Every number the paper publishes about the networks perfsim models (MACs or FLOPs, parameters,
    shapes, group counts, design rules, accuracy, timings) beside perfsim's, with a verdict -- exact
    at the paper's printed precision, explained, or unexplained -- and a sentence computed from the
    data. mobilenet: Table 4's compute column and Table 3's memory accounting replayed, row by row.
    Only the MobileNet paper prints an inference time perfsim can model (on its own machine, edge_1mb);
    the others print training times or withhold theirs, and their reports say so.
    """
    from ..papers import registry
    if list_papers:
        click.echo(_paper_list())
        return
    if not name:
        raise InputError(f"perfsim paper needs a paper: {', '.join(registry.names())} (or --list)")
    registry.get(name)  # an unknown name: one line before anything is lowered
    if results is not None and not registry.get(name).shared:
        raise InputError(f"--results does not apply to {name!r}: its report has no accuracy cells")
    if results is not None and not Path(results).is_dir():
        raise InputError(f"--results {results} is not a folder")
    d = registry.analyse(name, results=Path(results) if results else None, use_cache=not no_cache)
    folder = _write(registry.write, name, d, Path(out)) if out else None
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(registry.text(name, d))
    if folder is not None:
        click.echo(_written(folder))


COMMANDS = (compare, sweep, paper)
