"""perfsim.files: the one atomic write, bounded read and hash every other module uses."""
from __future__ import annotations

import hashlib
import os
import stat

import pytest

from perfsim.files import TooLarge, read_bounded, sha256_file, sha256_text, write_atomic


def test_write_atomic_writes_bytes_text_or_through_a_function_with_an_ordinary_mode(tmp_path):
    umask = os.umask(0o027)
    os.umask(umask)
    write_atomic(tmp_path / "a" / "b.bin", b"\x00\x01")
    write_atomic(tmp_path / "c.txt", "é")
    write_atomic(tmp_path / "d.txt", lambda p: p.write_text("from a writer"))
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01" and (tmp_path / "c.txt").read_text() == "é"
    assert (tmp_path / "d.txt").read_text() == "from a writer"
    assert stat.S_IMODE((tmp_path / "c.txt").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.txt", "d.txt"]  # no temporary left


def test_a_failed_write_or_check_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.yaml"
    target.write_text("old")

    def refuse(tmp):
        assert tmp.read_text() == "new" and tmp.parent == tmp_path
        raise ValueError("not valid")
    with pytest.raises(ValueError):
        write_atomic(target, "new", check=refuse)

    def half(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.yaml"]


def test_read_bounded_reads_up_to_its_limit_and_no_further(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"12345")
    assert read_bounded(f, 5) == b"12345"
    with pytest.raises(TooLarge):
        read_bounded(f, 4)
    link = tmp_path / "link"
    link.symlink_to(f)
    assert read_bounded(link, 5) == b"12345"
    with pytest.raises(OSError):
        read_bounded(link, 5, follow_symlinks=False)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for not_a_file in (fifo, tmp_path):  # a pipe with no writer is refused at once, not waited on
        with pytest.raises(OSError):
            read_bounded(not_a_file, 5)


def test_hashes(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"abc" * 1000)
    assert sha256_file(f) == hashlib.sha256(b"abc" * 1000).hexdigest() == sha256_text(b"abc" * 1000)
    assert sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()
