"""Never lose a user's file (issue 7, point 1).

A report folder is replaced only when perfsim can prove it wrote it: its manifest
(.perfsim-report.json) lists every file with size and sha256, and every entry must match.
A symlinked --out keeps its link; signals mid-write leave no temporaries (and put the old
report back); temporaries of a run killed with SIGKILL are removed by the next run;
concurrent runs into one folder all succeed; a 250-character folder name works.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from perfsim.cli import main
from perfsim.errors import InputError
from perfsim.report.folder import (
    MANIFEST,
    Terminated,
    check_folder,
    clean_stale,
    unproven,
    write_folder,
)

RUN = ["run", "mobilenet", "--no-plots"]


@pytest.fixture(autouse=True)
def _env(isolated, monkeypatch):
    monkeypatch.delenv("PERFSIM_DEBUG", raising=False)
    monkeypatch.delenv("PERFSIM_TEST_WRITE_DELAY", raising=False)


@pytest.fixture(scope="module")
def warm_cache(graph_cache, tmp_path_factory):
    """mobilenet lowered once into the session cache, so subprocesses start without torch."""
    work = tmp_path_factory.mktemp("warm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSIM_CACHE_DIR", str(graph_cache))
        mp.chdir(work)
        assert main(RUN + ["--json", "--out", "r"]) == 0
    return graph_cache


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(rc, out, err, *needles):
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and err.startswith("perfsim: error: --out"), err
    for n in needles:
        assert n in err, (n, err)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under root (hidden ones included), with file contents."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def a_report(capsys, out="rep", *more) -> Path:
    rc, _, err = cli(capsys, *RUN, "--out", out, *more)
    assert rc == 0, err
    return Path(out)


# --------------------------------------------------------------------------
# The manifest proves authorship
# --------------------------------------------------------------------------


def test_every_report_lists_its_files_with_size_and_sha256(capsys):
    rep = a_report(capsys)
    manifest = json.loads((rep / MANIFEST).read_text())
    files = {p.name for p in rep.iterdir()} - {MANIFEST}
    assert set(manifest["files"]) == files == {"layers.csv", "summary.json"}
    for name, rec in manifest["files"].items():
        data = (rep / name).read_bytes()
        assert rec == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert unproven(rep) is None


def test_an_unchanged_report_is_replaced(capsys):
    rep = a_report(capsys)
    a_report(capsys, "rep", "--set", "sram_bytes=64KiB")
    assert json.loads((rep / "summary.json").read_text())["profile"]["sram_bytes"] == 65536


def test_a_report_missing_some_of_its_files_is_replaced(capsys):
    rep = a_report(capsys)
    (rep / "layers.csv").unlink()
    a_report(capsys)
    assert (rep / "layers.csv").is_file()


def test_an_empty_folder_is_used(capsys):
    Path("empty").mkdir()
    a_report(capsys, "empty")
    assert (Path("empty") / "summary.json").is_file()


def _subfolder_named_like_a_plot(rep: Path) -> None:
    (rep / "roofline.png").mkdir()
    (rep / "roofline.png" / "data.csv").write_text("the user's measurements")


def _users_own_summary(rep: Path) -> None:
    (rep / "summary.json").write_text('{"mine": true}')


def _edited_csv(rep: Path) -> None:
    with open(rep / "layers.csv", "a") as f:
        f.write("# my note\n")


def _same_size_different_bytes(rep: Path) -> None:
    data = bytearray((rep / "layers.csv").read_bytes())
    data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
    (rep / "layers.csv").write_bytes(bytes(data))


def _extra_file(rep: Path) -> None:
    (rep / "notes.txt").write_text("mine")


def _symlink_entry(rep: Path) -> None:
    Path("precious.txt").write_text("mine")
    (rep / "time_per_layer.png").symlink_to(Path("precious.txt").resolve())


def _broken_manifest(rep: Path) -> None:
    (rep / MANIFEST).write_text("{not json")


def _manifest_is_a_symlink(rep: Path) -> None:
    real = Path("elsewhere.json")
    real.write_bytes((rep / MANIFEST).read_bytes())
    (rep / MANIFEST).unlink()
    (rep / MANIFEST).symlink_to(real.resolve())


def _manifest_is_a_folder(rep: Path) -> None:
    (rep / MANIFEST).unlink()
    (rep / MANIFEST).mkdir()


@pytest.mark.parametrize("spoil", [_subfolder_named_like_a_plot, _users_own_summary, _edited_csv,
                                   _same_size_different_bytes, _extra_file, _symlink_entry, _broken_manifest,
                                   _manifest_is_a_symlink, _manifest_is_a_folder])
def test_a_folder_perfsim_cannot_prove_it_wrote_is_refused_and_left_alone(capsys, tmp_path, spoil):
    rep = a_report(capsys)
    spoil(rep)
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, *RUN, "--out", "rep")
    refused(rc, out, err, "cannot prove")
    assert snapshot(tmp_path) == before


def test_a_folder_of_the_users_files_named_like_a_report_is_refused(capsys, tmp_path):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "summary.json").write_text('{"months": "of work"}')
    (mine / "layers.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, *RUN, "--out", "results")
    refused(rc, out, err, "no perfsim manifest")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", [".", "..", "sub/..", "sub/../.."])
def test_the_working_folder_and_its_ancestors_are_refused_even_when_empty(capsys, tmp_path, target):
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, *RUN, "--out", target)
    refused(rc, out, err, "working folder")
    assert snapshot(tmp_path) == before


def test_a_folder_whose_content_changes_after_the_check_is_refused_at_the_swap(tmp_path, monkeypatch):
    """The proof is checked again under the lock, just before the old folder moves aside."""
    out = tmp_path / "rep"
    write_folder(out, lambda f: (f / "a.txt").write_text("1"))

    def fill(folder):
        (folder / "a.txt").write_text("2")
        (out / "late.txt").write_text("the user's, written meanwhile")
    with pytest.raises(InputError, match="late.txt"):
        write_folder(out, fill)
    assert (out / "late.txt").read_text() == "the user's, written meanwhile" and (out / "a.txt").read_text() == "1"
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------
# Symlinks and long names
# --------------------------------------------------------------------------


def test_a_symlinked_out_keeps_its_link(capsys, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    Path("link").symlink_to(store / "rep")
    a_report(capsys, "link")
    assert Path("link").is_symlink() and os.readlink("link") == str(store / "rep")
    assert (store / "rep" / "summary.json").is_file()
    a_report(capsys, "link", "--set", "sram_bytes=64KiB")  # and again: replaced behind the link
    assert Path("link").is_symlink()
    assert json.loads((store / "rep" / "summary.json").read_text())["profile"]["sram_bytes"] == 65536
    assert hidden(tmp_path) == [] and hidden(store) == []


def test_a_symlink_to_a_folder_of_the_users_is_refused(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("years")
    Path("link").symlink_to(tmp_path / "data")
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, *RUN, "--out", "link")
    refused(rc, out, err, "thesis.tex")
    assert snapshot(tmp_path) == before


def test_a_symlink_to_the_working_folder_is_refused(capsys, tmp_path):
    Path("here").symlink_to(tmp_path)
    rc, out, err = cli(capsys, *RUN, "--out", "here")
    refused(rc, out, err, "working folder")


@pytest.mark.parametrize("name", ["r" * 250, "r" * 255, "é" * 127])
def test_a_long_folder_name_works(capsys, tmp_path, name):
    assert len(os.fsencode(name)) >= 250
    a_report(capsys, name)
    a_report(capsys, name, "--set", "sram_bytes=64KiB")  # replacing it needs the old-folder name too
    assert (tmp_path / name / "summary.json").is_file()
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------
# Failures and signals in process: cleanup, the old report restored
# --------------------------------------------------------------------------


def test_a_failure_after_the_old_report_moved_aside_puts_it_back(tmp_path, monkeypatch):
    import perfsim.report.folder as rf
    out = tmp_path / "rep"
    write_folder(out, lambda f: (f / "a.txt").write_text("old"))
    before = snapshot(tmp_path)

    def pause(phase):
        if phase == "moved":
            assert not out.exists()  # really moved aside
            raise Terminated(signal.SIGTERM)
    monkeypatch.setattr(rf, "_test_pause", pause)
    with pytest.raises(Terminated):
        write_folder(out, lambda f: (f / "a.txt").write_text("new"))
    assert snapshot(tmp_path) == before


def test_a_failed_write_removes_the_parent_folders_it_made(tmp_path):
    def fill(folder):
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        write_folder(tmp_path / "a" / "b" / "rep", fill)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.txt").write_text("x")
    with pytest.raises(OSError):
        write_folder(tmp_path / "a" / "b" / "rep", fill)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "mine.txt"]


def test_signal_handlers_are_restored_and_ignored_signals_stay_ignored(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        term = signal.getsignal(signal.SIGTERM)
        seen = {}

        def fill(folder):
            seen["int"] = signal.getsignal(signal.SIGINT)
            seen["term"] = signal.getsignal(signal.SIGTERM)
            (folder / "a").write_text("x")
        write_folder(tmp_path / "rep", fill)
        assert seen["int"] is signal.SIG_IGN and callable(seen["term"]) and seen["term"] is not term
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_during_fill_raises_terminated_and_cleans_up(tmp_path):
    def fill(folder):
        (folder / "half").write_text("x")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
    with pytest.raises(Terminated) as e:
        write_folder(tmp_path / "rep", fill)
    assert e.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Stale temporaries of killed runs
# --------------------------------------------------------------------------


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_dead_runs_are_removed_by_the_next_run(capsys, tmp_path):
    dead = dead_pid()
    stale = [f".rep.{dead}-0badcafe.tmp", f".rep.old-{dead}-0badcafe", f".rep.old-{dead}"]
    live = [f".rep.{os.getpid()}-0badcafe.tmp"]  # a live process's: kept
    foreign = [f".rep.{dead}-0badcafe.tmp.mine", ".other.123.tmp"]
    for name in stale + live + foreign:
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("x")
    (tmp_path / f".rep.old-{dead}-feedbeef").write_text("a file, not our folder: kept")
    a_report(capsys)
    assert hidden(tmp_path) == sorted(live + foreign + [f".rep.old-{dead}-feedbeef"])


def test_clean_stale_only_matches_its_own_folder(tmp_path):
    dead = dead_pid()
    (tmp_path / f".rep2.{dead}-00.tmp").mkdir()
    assert clean_stale(tmp_path, "rep") == []
    assert clean_stale(tmp_path, "rep2") == [f".rep2.{dead}-00.tmp"]


# --------------------------------------------------------------------------
# Real processes: SIGTERM / SIGINT / SIGKILL mid-write, concurrent runs
# --------------------------------------------------------------------------


def _default_signals() -> None:
    """In the child: the dispositions an interactive shell gives a command. A test run started in
    the background by a non-interactive shell (as CI may be) inherits SIGINT ignored, and perfsim
    rightly keeps an ignored signal ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _spawn(tmp_path, cache, *args, delay=None):
    env = dict(os.environ, PERFSIM_CACHE_DIR=str(cache))
    env.pop("PERFSIM_DEBUG", None)
    if delay:
        env["PERFSIM_TEST_WRITE_DELAY"] = delay
    return subprocess.Popen([sys.executable, "-m", "perfsim.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)


def _wait_for(pred, timeout=60.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _tmp_with(folder: Path, name: str | None = None):
    def pred():
        tmps = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        return bool(tmps) and (name is None or any((t / name).exists() for t in tmps))
    return pred


@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "fill"), (signal.SIGINT, "fill"),
                                        (signal.SIGTERM, "filled"), (signal.SIGHUP, "filled"),
                                        (signal.SIGTERM, "moved"), (signal.SIGINT, "moved")])
def test_a_signal_mid_write_leaves_no_temporaries_and_the_old_report(tmp_path, warm_cache, sig, phase):
    first = _spawn(tmp_path, warm_cache, *RUN, "--out", "rep")
    assert first.wait(120) == 0, first.stderr.read()
    before = snapshot(tmp_path)
    proc = _spawn(tmp_path, warm_cache, *RUN, "--out", "rep", "--set", "sram_bytes=64KiB", delay=f"30@{phase}")
    if phase == "moved":
        _wait_for(lambda: any(".old-" in p.name for p in tmp_path.iterdir()))
    else:
        _wait_for(_tmp_with(tmp_path, MANIFEST if phase == "filled" else None))
    proc.send_signal(sig)
    rc = proc.wait(60)
    err = proc.stderr.read()
    assert rc == 128 + sig, (rc, err)
    assert err.strip() == f"perfsim: interrupted by {signal.Signals(sig).name}; no report written", err
    assert snapshot(tmp_path) == before  # the old report, byte for byte, and nothing hidden beside it


def test_sigterm_while_the_plots_render_in_forked_workers(tmp_path, warm_cache):
    # --no-cache: the plots are drawn (a warm run would copy them from the plot cache at once)
    proc = _spawn(tmp_path, warm_cache, "run", "mobilenet", "--out", "rep", "--no-cache")
    _wait_for(_tmp_with(tmp_path, "summary.json"))  # written just before the plots start
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    err = proc.stderr.read()
    assert rc == 128 + signal.SIGTERM, (rc, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_run_killed_with_sigkill_is_cleaned_up_by_the_next(tmp_path, warm_cache):
    proc = _spawn(tmp_path, warm_cache, *RUN, "--out", "rep", delay="30@filled")
    _wait_for(_tmp_with(tmp_path, MANIFEST))
    proc.kill()
    proc.wait(60)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # SIGKILL leaves it
    again = _spawn(tmp_path, warm_cache, *RUN, "--out", "rep")
    assert again.wait(120) == 0, again.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_concurrent_runs_into_one_folder_all_succeed(tmp_path, warm_cache):
    sizes = ["64KiB", "128KiB", "256KiB"]
    procs = [_spawn(tmp_path, warm_cache, *RUN, "--json", "--out", "rep", "--set", f"sram_bytes={s}",
                    delay="0.3@filled") for s in sizes]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert unproven(tmp_path / "rep") is None  # one complete, unchanged report
    on_disk = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert on_disk in [json.loads(out) for _, out, _ in results]


def test_many_threads_swapping_one_folder(tmp_path):
    """flock serialises the swaps (each thread's open() is its own lock holder)."""
    out, errors = tmp_path / "rep", []

    def writer(k):
        try:
            for i in range(6):
                write_folder(out, lambda f, i=i: (f / "who.txt").write_text(f"{k}.{i}"))
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert unproven(out) is None and sorted(p.name for p in out.iterdir()) == [MANIFEST, "who.txt"]


def test_check_folder_returns_the_real_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert check_folder(tmp_path / "link" / "rep") == (tmp_path / "real" / "rep").resolve()
