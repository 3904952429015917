"""perfsim: lower a PyTorch model, simulate it on a memory hierarchy, report per layer.

The API is as small as the pipeline::

    graph = perfsim.lower(module, (3, 28, 28))
    profile = perfsim.load_profile("edge_1mb", sram_bytes="256KiB")
    result = perfsim.simulate(graph, profile)
    result.to_frame()

Importing perfsim does not import torch; ``lower`` does, on first use.
"""
from __future__ import annotations

from ._version import __version__

__all__ = ["__version__", "lower", "load_profile", "simulate"]


def __getattr__(name):  # lazy: keep `import perfsim` torch-free and quick
    if name == "lower":
        from .frontends.lowering import lower
        return lower
    if name == "load_profile":
        from .hardware.loader import load_profile
        return load_profile
    if name == "simulate":
        from .sim.simulator import simulate
        return simulate
    raise AttributeError(name)
