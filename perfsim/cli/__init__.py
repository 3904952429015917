"""The ``perfsim`` command line: ``main`` maps errors to exit codes; each capability's commands live in a
module of their own, registered on the group in ``main``."""
from __future__ import annotations

from .main import cli, entry, main

__all__ = ["cli", "entry", "main"]
