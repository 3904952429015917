"""Files, read and written safely: the one atomic write, the one bounded read, the one file hash. Stdlib only.

Every file perfsim writes outside a report folder (graph cache entries, calibrated profiles, checkpoints,
metrics, topology CSVs, evaluations) goes through ``write_atomic``: a reader sees the old file or the new
one, never half of either. Every file perfsim reads from a user (profiles, topologies, manifests) goes
through ``read_bounded``, so a huge or endless file costs at most its limit.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

Content = Union[bytes, str, Callable[[Path], None]]


class TooLarge(Exception):
    """A file holds more than the reader's limit."""

    def __init__(self, limit: int):
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


def write_atomic(path: str | os.PathLike, content: Content, *,
                 check: Callable[[Path], None] | None = None) -> None:
    """Write ``content`` (bytes, UTF-8 text, or a function that writes the file it is given) to a temporary
    sibling of ``path``, run ``check`` on it (it may raise: then nothing is replaced), and rename it over
    ``path`` in one step. The temporary file is removed whatever stops the write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # an ordinary file, as open() would make it (mkstemp's is 0600)
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, str)):
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        if callable(content):
            content(tmp)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_bounded(path: Any, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (a path, or a package resource with ``open``).
    Raises ``TooLarge`` if it holds more, ``OSError`` if it cannot be read, is not a regular file, or (with
    ``follow_symlinks`` false) is a symlink."""
    if not isinstance(path, (str, os.PathLike)):  # a resource inside an installed package
        with path.open("rb") as f:
            data = f.read(limit + 1)
    else:
        # non-blocking open: a FIFO without a writer would otherwise block here (a regular file ignores it)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO or a device would never end
                raise IsADirectoryError(f"{os.fspath(path)} is not a regular file")
            data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(limit)
    return data


def sha256_file(path: str | os.PathLike, *, follow_symlinks: bool = True) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)))
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str | bytes) -> str:
    """The hex sha256 of a text (UTF-8) or of bytes."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()
