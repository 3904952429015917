"""A registry of handlers by key that refuses a second handler for one key (STYLE: one
registry per concern, and it complains about gaps and duplicates). Torch-free."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """``{key: handler}``; ``register(*keys)`` is a decorator; a duplicate key is a bug."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what  # for the error: "lowering rule", "ONNX rule", ...

    def register(self, *keys: Hashable) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            for key in keys:
                if key in self:
                    raise RuntimeError(f"{self.what} for {key!r} registered twice")
                self[key] = fn
            return fn
        return deco
