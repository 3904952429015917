"""``perfsim run`` as a library call: a model and a profile in, a simulation and its report folder out.

The folder holds layers.csv (SPEC's columns, bytes and seconds), summary.json, the plots (``plots``,
reused from ``plot_cache`` on an identical re-run), and with ``html`` report.html. Everything is written
into a temporary sibling folder first and moved into place only when complete, so a failed run never
leaves a half-written report; a folder is replaced only when its manifest proves perfsim wrote it
(``perfsim.report.folder``)."""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from ..frontends.sources import LoweredModel, ModelOptions, ModelSource, SourceKind, load_graph
from ..sim import check_batch
from ..sim.results import COLUMNS, SimResult
from .folder import MANIFEST, write_folder
from .plot_cache import cached_plots
from .plots import PLOTS
from .text import format_totals


def simulator():
    """The one place the simulator is imported (it is torch-free, but not needed to list or lower)."""
    from ..sim.simulator import simulate
    return simulate


@dataclass(frozen=True)
class RunOutcome:
    result: Any  # the simulator's result (SimResult)
    folder: Path  # the report folder written
    model: LoweredModel


def safe_name(text: str) -> str:
    """A path component from a model or profile name: never empty, hidden, '.' or '..'."""
    s = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)
    return "_" + s[1:] if s.startswith(".") else (s or "_")


def default_folder(model_label: str, options: ModelOptions, profile_name: str,
                   overrides: Sequence[tuple[str, Any]], batch: int) -> Path:
    """reports/<model>[_w..][_r..][_c..]/<profile>[+field=value...][_b..]"""
    model_part = model_label + (f"_w{options.width:g}" if options.width and options.width != 1 else "") \
        + (f"_r{options.resolution:g}" if options.resolution != 1 else "") \
        + (f"_c{options.num_classes}" if options.num_classes else "")
    profile_part = profile_name + "".join(f"+{k}={v}" for k, v in overrides) + (f"_b{batch}" if batch > 1 else "")
    return Path("reports") / safe_name(model_part) / safe_name(profile_part)


def run_model(model: str | None, *, profile: str = "edge_1mb", overrides: Sequence[str] = (), out: str | Path | None = None,
              batch: int = 1, options: ModelOptions = ModelOptions(), plots: bool = True,
              use_cache: bool = True, html: bool = False, topology: str | Path | None = None) -> RunOutcome:
    """Lower ``model`` (or take it from the cache), simulate it on ``profile`` with ``overrides``
    (``field=value`` strings) and write the report folder (``out`` or reports/<model>/<profile>/)."""
    check_batch(batch)
    if topology is None:
        source = ModelSource.parse(model)
        source.check(options)  # bad model options fail before the profile is read (and before torch)
    from ..hardware.loader import load_profile, parse_override
    pairs = [parse_override(o) for o in overrides]
    hw = load_profile(profile, **dict(pairs))
    if topology is None:
        lowered = load_graph(source, options, use_cache=use_cache)
    else:  # a SCALE-Sim topology CSV (perfsim.frontends.topology): torch-free
        from ..frontends.topology import read_topology
        graph = read_topology(topology)
        lowered = LoweredModel(graph=graph, source=ModelSource(SourceKind.FILE, graph.name, Path(topology)),
                               input_shape=tuple(graph.input_shape[1:]), cache_hit=False)
    result = simulator()(lowered.graph, hw, batch=batch, model=lowered.graph.name)

    target = Path(out) if out is not None else default_folder(lowered.graph.name, options, hw.name, pairs, batch)
    try:
        folder = write_report(result, target, plots=plots, html=html, plot_cache=use_cache)
    except OSError as e:
        raise InputError(f"cannot write the report to {target}/: {e.strerror or e}") from None
    return RunOutcome(result=result, folder=folder, model=lowered)


def layers_csv(result: SimResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in result.rows:
        w.writerow([repr(v) if isinstance(v, float) else v for v in r.as_tuple()])
    return buf.getvalue()


def summary_json(result: SimResult) -> str:
    return json.dumps(result.summary, indent=2, sort_keys=False) + "\n"


REPORT_FILES = frozenset(("layers.csv", "summary.json", MANIFEST) + PLOTS)


def write_report(result: SimResult, out_dir: str | Path, *, plots: bool = True, html: bool = False,
                 plot_cache: bool = True) -> Path:
    """Write the report folder atomically, with its manifest; returns its path. ``html``: also
    report.html, one self-contained page (perfsim.report.html).

    Raises ``InputError`` (and writes nothing) if ``out_dir`` may not be replaced. ``plot_cache``: reuse
    the PNGs of an identical result (``cached_plots``).
    """
    def fill(folder: Path) -> None:
        csv, summary = layers_csv(result), summary_json(result)
        (folder / "layers.csv").write_text(csv, encoding="utf-8")
        (folder / "summary.json").write_text(summary, encoding="utf-8")
        if plots:
            cached_plots(result, folder, csv + summary, enabled=plot_cache)
        if html:
            from .html import run_html
            page = run_html(result, format_totals(result), folder, PLOTS)
            (folder / "report.html").write_text(page, encoding="utf-8")

    return write_folder(Path(out_dir), fill)
