"""perfsim's version, from the installed distribution's metadata. A leaf: the package root and every
module that records the version (the simulator's summary, the graph cache's key) import it from here."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("perfsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
