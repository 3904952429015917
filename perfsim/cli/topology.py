"""``perfsim export-topology``: a model as a SCALE-Sim topology CSV (docs/systolic.md).

Its converse, reading such a file, is ``perfsim run --topology FILE.csv``.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..files import write_atomic
from .bounds import CLASSES, MULTIPLIER

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("export-topology", context_settings=CONTEXT)
@click.argument("model")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="CSV file to write [default: print on stdout].")
@click.option("--width", type=MULTIPLIER, default=None, help="Width multiplier alpha.")
@click.option("--resolution", type=MULTIPLIER, default=1.0, show_default=True, help="Resolution multiplier rho.")
@click.option("--classes", "num_classes", type=CLASSES, default=None, help="Number of classes of the classifier.")
@click.option("--input-shape", default=None, metavar="CxHxW", help="Input shape; required for file.py:factory.")
@click.option("--no-cache", is_flag=True, help="Lower the model again instead of using the graph cache.")
def export_topology(model, out, width, resolution, num_classes, input_shape, no_cache):
    """Write MODEL's matrix layers as a SCALE-Sim topology CSV: one line per conv (padded input size,
    SCALE-Sim has no padding), depthwise convs as DP lines, grouped convs one line per group,
    linears and matmuls as 1x1 convs. MODEL is any model `perfsim run` takes."""
    from ..frontends.sources import ModelOptions, load_graph, parse_shape
    from ..frontends.topology import export_rows, topology_csv

    options = ModelOptions(num_classes=num_classes, width=width, resolution=resolution,
                           input_shape=parse_shape(input_shape) if input_shape is not None else None)
    graph = load_graph(model, options, use_cache=not no_cache).graph
    rows = export_rows(graph)
    if not rows:
        raise InputError(f"{model}: no matrix layers to export")
    text = topology_csv(rows)
    if out is None:
        click.echo(text, nl=False)
        return
    target = Path(out)
    try:
        write_atomic(target, text)  # a failed write leaves no half-written file
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror or e}") from None
    click.echo(f"{len(rows)} layers written to {target}", err=True)
