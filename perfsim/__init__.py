"""perfsim: lower a PyTorch model, simulate it on a memory hierarchy, report per layer.

The API is as small as the pipeline::

    graph = perfsim.lower(module, (3, 28, 28))
    profile = perfsim.load_profile("edge_1mb", sram_bytes="256KiB")
    result = perfsim.simulate(graph, profile)
    result.to_frame()

Importing perfsim does not import torch; ``lower`` does, on first use.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("perfsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

__all__ = ["__version__", "lower", "load_profile", "simulate"]


def __getattr__(name):  # lazy: keep `import perfsim` torch-free and quick
    if name == "lower":
        from .lowering import lower
        return lower
    if name == "load_profile":
        from .profile import load_profile
        return load_profile
    if name == "simulate":
        from .simulator import simulate
        return simulate
    raise AttributeError(name)
