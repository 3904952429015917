"""Reading a CIFAR "python version" batch without letting the file run code.

A pickle may name any importable callable and have the unpickler call it (``os.system``,
``builtins.open``, ...): ``pickle.load`` of a crafted data file runs code on the user's machine. The
unpickler here builds what real CIFAR batches hold -- dicts, lists, bytes, str, numbers and numpy
arrays -- and refuses every other global before anything is called: one InputError naming the file
and the global. Real batches were written by Python 2 (protocol 2: numpy's ``_reconstruct``,
``ndarray`` and ``dtype``); Python 3 writers add ``_codecs.encode`` / ``bytes`` for bytes (protocol 2)
or numpy's ``_frombuffer`` (protocol 5), which are allowed too, the first only as str -> latin-1 bytes.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["load_batch_pickle"]


class _Refused(Exception):
    """The pickle names a global a CIFAR batch never holds (the argument says which)."""


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    # how Python 3 pickles bytes at protocol 2: _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _empty_bytes() -> bytes:  # how Python 3 pickles b"" at protocol 2: bytes()
    return b""


@functools.lru_cache(maxsize=1)
def _allowed() -> dict[tuple[str, str], object]:
    reconstruct = np.empty(0).__reduce__()[0]  # numpy 1 and 2 name its module differently
    frombuffer = np.empty(0).__reduce_ex__(5)[0]
    return {("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy.core.numeric", "_frombuffer"): frombuffer,
            ("numpy._core.numeric", "_frombuffer"): frombuffer,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1,
            ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _allowed()[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def load_batch_pickle(file: Path) -> object:
    """The object pickled in ``file`` (strings of Python 2 files as bytes, as CIFAR's are read)."""
    try:
        with open(file, "rb") as fh:
            return _BatchUnpickler(fh, encoding="bytes").load()
    except _Refused as exc:
        raise InputError(f"refused CIFAR batch {file}: it asks for {exc}, which a CIFAR batch never holds "
                         f"(only dicts, lists, bytes, str, numbers and numpy arrays are read)") from None
    except Exception as exc:  # truncated, not a pickle, wrong protocol ...
        raise InputError(f"cannot read CIFAR batch {file}: not a valid pickle "
                         f"({type(exc).__name__}: {exc})") from None
