"""Exceptions. ``InputError`` is the user's mistake (CLI: one line, exit 2);
anything else escaping the library is an internal fault (CLI: exit 1)."""


class PerfsimError(Exception):
    """Base class of perfsim's own errors."""


class InputError(PerfsimError):
    """Bad input: unknown model or profile, malformed YAML, impossible sizes, ..."""


class UnsupportedOpError(InputError):
    """A module or function perfsim cannot lower; the message names it."""


class DoesNotFitError(InputError):
    """No tiling of a layer fits in SRAM; the message names the smallest SRAM that would."""
