"""The plot cache: a warm re-run of an identical result copies its PNGs instead of drawing them
(``$PERFSIM_CACHE_DIR/plots/``). A cache that cannot be read or written is skipped: the plots are drawn."""
from __future__ import annotations

import os
from pathlib import Path

from ..files import sha256_text
from ..frontends.cache import cache_dir, installed_version, key
from ..sim.results import SimResult
from .plots import plot_jobs, write_plots


def _plot_key(report_text: str) -> str:
    """The plots are a function of the report's cells and summary (``report_text``), perfsim's code and
    matplotlib."""
    return key(kind="plots", report=sha256_text(report_text),
               matplotlib=installed_version("matplotlib"))


def cached_plots(result: SimResult, folder: Path, report_text: str, *, enabled: bool = True) -> None:
    """The plots (``plot_jobs``): copied from the plot cache when an identical result was drawn before
    (a warm re-run), else rendered and stored there (``$PERFSIM_CACHE_DIR/plots/``). A cache that cannot
    be read or written is skipped: the plots are rendered."""
    import shutil

    names = [path.name for _, _, path in plot_jobs(result, folder)]
    entry = cache_dir() / "plots" / _plot_key(report_text) if enabled else None
    if entry is not None and all((entry / f).is_file() for f in names):
        try:
            for f in names:
                shutil.copyfile(entry / f, folder / f)
            return
        except OSError:
            pass
    write_plots(result, folder)
    if entry is not None:
        if entry.exists():  # damaged (a file missing): replaced
            shutil.rmtree(entry, ignore_errors=True)
        _store_plots(folder, entry, names)


def _store_plots(folder: Path, entry: Path, names: list[str]) -> None:
    import shutil
    import tempfile
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".plots.", dir=entry.parent))
        for f in names:
            shutil.copyfile(folder / f, tmp / f)
        try:
            os.rename(tmp, entry)  # atomic; another run may have stored the same plots first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass
