"""The plot cache: a warm re-run copies the PNGs an identical result drew before; any other result,
or --no-cache, or a damaged entry, draws them again."""
from __future__ import annotations

import os

from perfsim.cli import main
from perfsim.report.plots import PLOTS


def _run(tmp_path, out, *extra):
    assert main(["run", "mobilenet", "--out", str(tmp_path / out), *extra]) == 0


def _entries(cache):
    return sorted(p.name for p in (cache / "plots").iterdir() if not p.name.startswith("."))


def test_a_warm_run_reuses_the_plots_and_a_new_result_draws_its_own(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "a")
    assert len(_entries(cache)) == 1
    entry = cache / "plots" / _entries(cache)[0]
    stamp = {f: os.stat(entry / f).st_mtime_ns for f in PLOTS}
    _run(tmp_path, "b")
    for f in PLOTS:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() == (entry / f).read_bytes()
        assert os.stat(entry / f).st_mtime_ns == stamp[f]  # read, not rewritten
    _run(tmp_path, "c", "--set", "sram_bytes=256KiB")  # another result: other plots, another entry
    assert len(_entries(cache)) == 2
    assert (tmp_path / "c" / "sram_occupancy.png").read_bytes() != (tmp_path / "a" / "sram_occupancy.png").read_bytes()
    (entry / "roofline.png").unlink()  # a damaged entry is drawn again
    _run(tmp_path, "d")
    assert (tmp_path / "d" / "roofline.png").read_bytes() == (tmp_path / "a" / "roofline.png").read_bytes()
    capsys.readouterr()


def test_no_cache_draws_and_stores_nothing(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PERFSIM_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "a", "--no-cache")
    assert not (cache / "plots").exists()
    assert all((tmp_path / "a" / f).stat().st_size > 1000 for f in PLOTS)
    capsys.readouterr()
