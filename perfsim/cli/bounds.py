"""The bound of every number the command line takes, in one place (README, "Option bounds").

Each integer or float option and argument of every command has one of the types below: click shows
the bound in ``--help`` (``[default: 1; 1<=x<=65,536]``) and refuses a value outside it, or one that is
not a number, as a usage error before the command runs: one line naming the option and the bound,
exit status 2 (``perfsim.cli.main``). A huge value is named by its digit count, never echoed;
``nan`` and infinities are refused. tests/test_cli_bounds.py enumerates the commands' parameters,
so an option added without one of these types fails it, and holds each bound equal to the library's
own (the library functions check theirs again: the API refuses bad values with InputError).
"""
from __future__ import annotations

import math
import re

import click

from ..sim import MAX_BATCH
from ..units import shown

_INTEGER = re.compile(r"[+-]?\d+")
_MAX_DIGITS = 40  # more digits than any bound has: out of range, without building the int


class BoundedInt(click.IntRange):
    """An integer from ``min`` to ``max`` (both included)."""

    name = "integer"

    def _describe_range(self) -> str:  # in --help and in the refusal: 1<=x<=1,000,000
        return f"{self.min:,}<=x<={self.max:,}"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):  # a default, or already converted
            number = value
        else:
            text = str(value).strip()
            if not _INTEGER.fullmatch(text):
                self.fail(f"{shown(text)} is not an integer", param, ctx)
            digits = text.lstrip("+-").lstrip("0") or "0"
            if len(digits) > _MAX_DIGITS:  # past every bound; int() of it is slow, and refused past 4300 digits
                sign = "negative " if text.startswith("-") else ""
                self.fail(f"a {sign}{len(digits)}-digit number is not in the range {self._describe_range()}", param, ctx)
            number = -int(digits) if text.startswith("-") else int(digits)
        if not self.min <= number <= self.max:
            self.fail(f"{shown(number)} is not in the range {self._describe_range()}", param, ctx)
        return number


class BoundedFloat(click.FloatRange):
    """A finite number in the range (``min_open``: ``min`` excluded)."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number, text = float(value), repr(value)
        else:
            text = str(value).strip()
            try:
                number = float(text)
            except ValueError:
                self.fail(f"{shown(text)} is not a number", param, ctx)
        low = number <= self.min if self.min_open else number < self.min
        if not math.isfinite(number) or low or number > self.max:
            self.fail(f"{shown(text, 40)} is not in the range {self._describe_range()}", param, ctx)
        return number


# Integers. Where a library function holds the same bound, it is named (tests/test_cli_bounds.py).
BATCH = BoundedInt(1, MAX_BATCH)  # --batch, --batch-size: perfsim.sim.MAX_BATCH = the recipes' batch_size bound
CLASSES = BoundedInt(1, 1_000_000)  # --classes: perfsim.frontends.sources.MAX_CLASSES
THREADS = BoundedInt(1, 4096)  # --threads: perfsim.host.calibrate's bound
ROUNDS = BoundedInt(1, 1000)  # validate --repeats: timed rounds of the whole network
WARMUP = BoundedInt(0, 1000)  # validate --warmup
EPOCHS = BoundedInt(1, 100_000)  # train --epochs, --stop-after: the recipes' epochs bound
SEED = BoundedInt(0, 2**64 - 1)  # train --seed: torch.manual_seed's range (it takes -1 as 2**64 - 1)
CHANNELS = BoundedInt(1, 2**40)  # clc-groups M L N: perfsim.papers.clcnet_design.MAX_CHANNELS
KERNEL_AREA = BoundedInt(1, 2**20)  # clc-groups --kernel-area: clcnet_design.MAX_KERNEL_AREA

# Numbers.
MULTIPLIER = BoundedFloat(0, 1, min_open=True)  # --width alpha, --resolution rho: perfsim.frontends.sources.ModelOptions
LR = BoundedFloat(0, 10, min_open=True)  # train --lr: the recipes' lr bound
