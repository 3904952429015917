"""``python -m perfsim.cli``: the console script's entry point."""
from .main import entry

entry()
