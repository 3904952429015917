"""A report folder, written so that nothing of a user's is ever lost (stdlib only).

perfsim replaces a folder only when it can prove that perfsim wrote it:

* every report holds a manifest, ``.perfsim-report.json``, listing each file perfsim wrote
  with its size and sha256;
* an existing folder is replaced only if it is empty, or if every entry in it is a regular
  file listed in its manifest and unchanged (a subfolder, a symlink, a file of the user's,
  an edited file: refused, nothing written). The working folder and its ancestors are
  always refused;
* the new report is written into a temporary sibling folder and renamed into place when
  complete; the old one is moved aside first and deleted after. A symlinked ``--out`` is
  followed: the report is swapped in at the link's target and the link survives;
* the swap is serialised between processes with ``flock`` on the parent folder (no lock
  file), so concurrent runs into one folder each succeed and the last one's report stands;
* SIGTERM, SIGINT and SIGHUP during the write raise :class:`Terminated`, so the temporary
  and moved-aside folders are removed (the previous report restored if it was moved aside);
  temporaries left by a run killed with SIGKILL (their pid is dead) are removed by the
  next run into the same parent folder;
* temporary names hold the folder's name only when it is short (long names are hashed),
  so a 250-character folder name stays under NAME_MAX.

Test hook (tests only, never needed otherwise): ``PERFSIM_TEST_WRITE_DELAY=SECONDS[@PHASE]``
sleeps at one point of the write so a test can signal a process mid-write; PHASE is ``fill``
(the default: the temporary folder exists, nothing written yet), ``filled`` (the new report
is complete in its temporary folder) or ``moved`` (the old report has just been moved aside).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError
from ..files import TooLarge, read_bounded, sha256_file

MANIFEST = ".perfsim-report.json"
FORMAT = "perfsim-report/1"
MAX_MANIFEST_BYTES = 1 << 20
MAX_ENTRIES = 1000  # a report has 7 files; a folder with more is not one
_STEM_BYTES = 200  # longest folder name kept readable in temporary names (NAME_MAX is 255)
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))


class Terminated(BaseException):
    """A signal arrived while a report was being written; raised so that cleanup runs.

    A BaseException, like KeyboardInterrupt: it is not an error of the program. The CLI
    exits with 128 + ``signum``.
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


# --------------------------------------------------------------------------
# Proof of authorship: the manifest
# --------------------------------------------------------------------------


def write_manifest(folder: Path) -> None:
    """List every regular file in ``folder`` (size, sha256) in its manifest."""
    files = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name != MANIFEST and entry.is_file(follow_symlinks=False):
            files[entry.name] = {"size": entry.stat(follow_symlinks=False).st_size,
                                 "sha256": sha256_file(entry.path, follow_symlinks=False)}
    text = json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text, encoding="utf-8")


def _read_manifest(folder: Path) -> dict | None:
    """The manifest's file table, or None if there is no valid manifest."""
    try:
        data = json.loads(read_bounded(folder / MANIFEST, MAX_MANIFEST_BYTES, follow_symlinks=False))
    except (OSError, ValueError, TooLarge):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return None
    files = data["files"]
    ok = all(isinstance(v, dict) and type(v.get("size")) is int and isinstance(v.get("sha256"), str)
             for v in files.values())
    return files if ok else None


def _listing(folder: Path) -> list[os.DirEntry]:
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            entries.append(entry)
            if len(entries) > MAX_ENTRIES:
                break
    return entries


def unproven(folder: Path) -> str | None:
    """Why ``folder`` (an existing folder) is not provably a perfsim report; None if it is
    one, unchanged, or is empty."""
    entries = _listing(folder)
    if not entries:
        return None
    if len(entries) > MAX_ENTRIES:
        return f"it holds more than {MAX_ENTRIES} entries"
    files = _read_manifest(folder)
    if files is None:
        shown = ", ".join(sorted(e.name for e in entries)[:3]) + (", ..." if len(entries) > 3 else "")
        return f"it holds {shown} and no perfsim manifest ({MANIFEST})"
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.name == MANIFEST:
            continue
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            return f"{entry.name} is not a file perfsim wrote"
        record = files.get(entry.name)
        if record is None:
            return f"{entry.name} is not part of the report"
        if entry.stat(follow_symlinks=False).st_size != record["size"] or sha256_file(entry.path, follow_symlinks=False) != record["sha256"]:
            return f"{entry.name} has changed since perfsim wrote it"
    return None


# --------------------------------------------------------------------------
# Which folder, and may it be replaced
# --------------------------------------------------------------------------


def target_of(out: Path) -> Path:
    """The real folder a report at ``out`` goes to: symlinks (of ``out`` or above) followed."""
    return Path(os.path.realpath(out))


def check_folder(out: Path) -> Path:
    """Refuse (InputError) a folder perfsim may not replace; return the real target folder.

    The folder is read under a shared lock on its parent, so a concurrent run's swap (under
    the exclusive lock) is never seen half done.
    """
    target = target_of(out)
    if not os.path.isdir(target.parent):
        return _verified(out, target)
    with _locked(target.parent, shared=True):
        return _verified(out, target)


def _verified(out: Path, target: Path) -> Path:
    if target.is_symlink():
        raise InputError(f"--out {out}: a symlink that leads nowhere (a loop)")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise InputError(f"--out {out}: a report replaces its folder; refusing the working folder or one "
                         "above it (name a subfolder)")
    if not os.path.lexists(target):
        return target
    if not target.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    reason = unproven(target)
    if reason:
        raise InputError(f"--out {out}: refusing to replace a folder perfsim cannot prove it wrote: {reason}; "
                         "name a new or empty folder")
    return target


# --------------------------------------------------------------------------
# Signals, the lock, temporary names
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While writing: SIGTERM/SIGINT/SIGHUP raise Terminated (ignored signals stay ignored);
    the previous handlers are restored after. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(signum)
    previous = {}
    try:
        for sig in _SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Cleanup runs to its end: a second signal waits until it is done."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _locked(folder: Path, shared: bool = False) -> Iterator[None]:
    """A flock on ``folder`` itself (no lock file to leave behind): exclusive for a swap,
    shared to read a folder's proof."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        yield  # no flock here: the swap below still retries a rename that loses a race
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stem(name: str) -> str:
    raw = os.fsencode(name)
    return name if len(raw) <= _STEM_BYTES else "perfsim-" + hashlib.sha256(raw).hexdigest()[:16]


def _stale_pattern(stem: str) -> re.Pattern:
    # this version's temporaries (.NAME.PID-TOKEN.tmp, .NAME.old-PID-TOKEN) and older ones' (.NAME.old-PID)
    return re.compile(rf"\.{re.escape(stem)}\.(?:(\d+)-[0-9a-f]+\.tmp|old-(\d+)(?:-[0-9a-f]+)?)")


def _alive(pid: int) -> bool:
    if not 0 < pid < 2**31:
        return True  # not a pid: leave the entry alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def clean_stale(parent: Path, name: str) -> list[str]:
    """Remove temporaries of ``name`` left in ``parent`` by runs whose process is dead."""
    pattern, removed = _stale_pattern(_stem(name)), []
    with contextlib.suppress(OSError), os.scandir(parent) as it:
        for entry in it:
            m = pattern.fullmatch(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not _alive(int(m.group(1) or m.group(2))):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _test_pause(phase: str) -> None:
    """PERFSIM_TEST_WRITE_DELAY=SECONDS[@PHASE]: tests only (see the module docstring)."""
    spec = os.environ.get("PERFSIM_TEST_WRITE_DELAY")
    if spec:
        seconds, _, at = spec.partition("@")
        if (at or "fill") == phase:
            time.sleep(float(seconds))


# --------------------------------------------------------------------------
# The write
# --------------------------------------------------------------------------


class _Swap:
    """The temporary folder, the moved-aside old folders, and how to undo either."""

    def __init__(self, target: Path):
        self.target = target
        self.stem = _stem(target.name)
        self.tmp: Path | None = None
        self.olds: list[Path] = []

    def _sibling(self, kind: str) -> Path:
        token = secrets.token_hex(4)
        name = f".{self.stem}.{os.getpid()}-{token}.tmp" if kind == "tmp" else f".{self.stem}.old-{os.getpid()}-{token}"
        return self.target.parent / name

    def make_tmp(self) -> Path:
        self.tmp = self._sibling("tmp")  # named before it exists: a signal after mkdir still finds it
        os.mkdir(self.tmp, 0o777)  # the umask applies: an ordinary folder
        return self.tmp

    def swap(self, out: Path) -> None:
        """Move a replaceable old folder aside and the new one in (a few tries if a rename loses a race)."""
        for _ in range(8):
            if os.path.lexists(self.target):
                _verified(out, self.target)  # again, under the exclusive lock: it may have changed
                old = self._sibling("old")
                self.olds.append(old)
                os.rename(self.target, old)
                _test_pause("moved")
            try:
                os.rename(self.tmp, self.target)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue
            self.tmp = None
            return
        raise OSError(errno.ENOTEMPTY, "another process keeps replacing the folder")

    def drop_olds(self) -> None:
        while self.olds:
            shutil.rmtree(self.olds.pop(), ignore_errors=True)

    def rollback(self) -> None:
        """Remove the temporary folder; put the previous report back if it was moved aside."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        for old in self.olds:
            if os.path.lexists(old) and not os.path.lexists(self.target):
                try:
                    os.rename(old, self.target)
                    continue
                except OSError:
                    pass
            shutil.rmtree(old, ignore_errors=True)
        self.olds = []


def write_folder(out: str | Path, fill: Callable[[Path], None]) -> Path:
    """Write a report folder at ``out`` atomically: ``fill(folder)`` writes the files into a
    temporary folder, a manifest is added, and the folder replaces ``out`` in one rename.

    Raises InputError, and writes nothing, if ``out`` may not be replaced (see the module
    docstring); Terminated on a signal, after cleaning up. Returns ``out``.
    """
    out = Path(out)
    target = check_folder(out)
    created = [p for p in reversed(target.parents) if not os.path.lexists(p)]
    target.parent.mkdir(parents=True, exist_ok=True)
    job = _Swap(target)
    with _signals_raise():
        try:
            job.make_tmp()
            _test_pause("fill")
            fill(job.tmp)
            write_manifest(job.tmp)
            _test_pause("filled")
            with _locked(target.parent):
                clean_stale(target.parent, target.name)
                job.swap(out)
            job.drop_olds()
        except BaseException:
            with _signals_blocked():
                job.rollback()
                for folder in reversed(created):  # parents this write made, if still empty
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
            raise
    return out
