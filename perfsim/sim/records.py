"""The records the simulator's stages hand each other: which term bounds a row (``Bound``), how the memory
plan held a layer's tensors (``Plan``) and what it moved (``Traffic``). Torch-free, no numpy.

The memory plan (``perfsim.sim.memory``, ``perfsim.sim.tiling``) gives one ``Traffic`` per layer; timing
names each row's ``Bound``; ``perfsim.sim.results`` holds what the simulator returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Label(str, Enum):
    """A closed set of report values: compares equal to its text, prints as its text."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Bound(Label):
    """Which term of a row's time dominates (SPEC "Timing"); ties go in this order."""

    DATA = "data"
    MATRIX = "matrix"
    VECTOR = "vector"


class Plan(Label):
    """How a layer's tensors were held: resident, one of the tiling plans, or the paper replay."""

    RESIDENT = "resident"  # its whole working set fit in SRAM
    KEEP_IN_OUT = "keep_in_out"
    OVERWRITE = "overwrite"
    KEEP_IN = "keep_in"
    STREAM = "stream"
    PAPER = "paper"  # memory_policy paper: the running total still fits
    PAPER_FLUSH = "paper-flush"  # memory_policy paper: the running total was flushed to DRAM here


@dataclass(frozen=True, slots=True)
class Traffic:
    """The DRAM traffic and SRAM use of one layer, as the memory plan decided them."""

    read_bytes: int
    write_bytes: int  # spills included
    spill_bytes: int  # written now to be read back later (or flushed, under the paper policy)
    refetch_bytes: int  # read more than once by a streaming tiling plan
    transfers: int  # DRAM reads and writes, one per tensor (or tile) moved
    tiles: int
    sram_bytes: int  # peak resident during the layer
    plan: Plan
