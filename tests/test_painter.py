"""perfsim.report.painter: plots drawn in a forked process, and every way that can go wrong falls back to
drawing here (a plot is never lost to the painter) or surfaces the drawing's own error."""
from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from cli_checks import assert_input_error, cli_run
from perfsim.report import painter as painting


def write_pid(path):
    path.write_text(str(os.getpid()))


def fail(path):
    raise ValueError(f"cannot draw {path.name}")


@pytest.fixture
def painter():
    p = painting.start()
    if p is None:
        pytest.skip("no fork or a single core here")
    yield p
    p.close()


def test_drawings_run_in_the_painter_and_finish_waits_for_them(painter, tmp_path):
    paths = [tmp_path / f"{k}.txt" for k in range(3)]
    for p in paths:
        painter.draw(write_pid, p)
    painter.finish()
    pids = {p.read_text() for p in paths}
    assert pids and str(os.getpid()) not in pids
    assert multiprocessing.active_children() == []


def test_an_error_in_the_painter_is_raised_here(painter, tmp_path):
    painter.draw(write_pid, tmp_path / "a.txt")
    painter.draw(fail, tmp_path / "b.png")
    with pytest.raises(ValueError, match="cannot draw b.png"):
        painter.finish()
    assert (tmp_path / "a.txt").exists()


def test_a_dead_painter_leaves_the_drawing_to_this_process(painter, tmp_path):
    os.kill(painter._proc.pid, signal.SIGKILL)
    painter._proc.join()
    painter.draw(write_pid, tmp_path / "a.txt")
    painter.finish()
    assert (tmp_path / "a.txt").read_text() == str(os.getpid())


def test_no_painter_when_plots_must_stay_in_process(monkeypatch):
    monkeypatch.setenv("PERFSIM_SERIAL_PLOTS", "1")
    assert painting.start() is None


def test_sweep_plots_are_the_same_drawn_here_or_in_the_painter(isolated, capsys, monkeypatch):
    args = ["sweep", "mobilenet", "--vary", "sram_bytes=32KiB..1MiB:x2", "--vary", "dram_bandwidth=1GB/s,4GB/s"]
    rc, _, err = cli_run(capsys, *args, "--out", "painted")
    assert rc == 0, err
    monkeypatch.setenv("PERFSIM_SERIAL_PLOTS", "1")
    rc, _, err = cli_run(capsys, *args, "--out", "here")
    assert rc == 0, err
    for name in ("sweep.csv", "latency_vs_sram_bytes.png", "latency_sram_bytes_x_dram_bandwidth.png"):
        assert (isolated / "painted" / name).read_bytes() == (isolated / "here" / name).read_bytes(), name
    assert multiprocessing.active_children() == []


def test_bad_input_after_the_painter_started_leaves_no_process(isolated, capsys):
    rc, out, err = cli_run(capsys, "sweep", "mobilenet", "--vary", "sram_bytes=2KiB..1KiB:x2")
    assert_input_error(rc, out, err, "sram_bytes")
    assert multiprocessing.active_children() == []


def test_helpers_die_with_their_parent(tmp_path):
    """A parent killed outright (SIGKILL) leaves no forked helper behind (busy or waiting) and no traceback."""
    import subprocess
    import sys
    import time
    script = (
        "import multiprocessing, os, signal, sys, time\n"
        "from perfsim.children import as_child\n"
        "from perfsim.report import painter\n"
        "def pid(_): time.sleep(30); return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    p = painter.start()\n"
        "    pool = multiprocessing.get_context('fork').Pool(2, initializer=as_child, initargs=(os.getpid(),))\n"
        "    pending = pool.map_async(pid, range(8))\n"
        "    time.sleep(1.5)  # the helpers are set up and busy (or waiting) when it dies\n"
        "    print(p._proc.pid, *{c.pid for c in multiprocessing.active_children()}, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    pids = [int(x) for x in run.stdout.split()]
    assert len(pids) >= 3
    assert time.monotonic() - start < 20  # its helpers held its pipes open no longer than it lived
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _alive(p)]
    assert alive == []
    assert "Traceback" not in run.stderr


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return False
