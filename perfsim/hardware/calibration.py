"""What ``perfsim calibrate`` measured on a machine, kept in the profile it writes (its ``calibration:``
block): each measurement with its spread, and each op label's fitted line (SPEC "Efficiency and overhead")."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .efficiency import Entry

# run to run, a calibration's reference forward moving more than this is noise worth a warning (a quiet
# machine repeats itself within a few per cent; this KVM guest, idle, moved 7.5-9.7 ms on a 7.5 ms forward)
STABLE = 0.10


class Measured(BaseModel):
    """One calibration measurement: the median of repeats and its quartiles, in ``unit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    q1: float
    q3: float
    n: int = Field(ge=1)
    unit: str = Field(max_length=40)
    what: str = Field("", max_length=300)


class KindFit(BaseModel):
    """The line ``time = overhead + work / (peak * efficiency)`` fitted to one op label's micro-benchmarks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shapes: int = Field(ge=1)
    overhead_s: float = Field(ge=0)
    efficiency: Entry
    median_abs_error: float = Field(ge=0)  # of the fitted time, relative, over the shapes measured
    unit: Literal["matrix", "vector"]


class Calibration(BaseModel):
    """What ``perfsim calibrate`` measured on a machine, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    perfsim_version: str = Field(max_length=40)
    date: str = Field(max_length=40)
    host: dict[str, str | int] = Field(default_factory=dict)
    threads: int = Field(ge=1)
    allocator: Literal["keep", "system"] = "system"  # freed memory kept, or glibc's own (host.measure.set_allocator)
    quick: bool = False
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after
    measurements: dict[str, Measured] = Field(default_factory=dict)
    fits: dict[str, KindFit] = Field(default_factory=dict)

    def unstable(self, limit: float = STABLE) -> float | None:
        """The run-to-run spread calibrate measured (``measurements["stability"]``: one network's forward
        in two fresh processes, or the rounds of either) when it exceeds ``limit``; else None."""
        m = self.measurements.get("stability")
        if m is None:
            return None
        return m.q3 if m.q3 > limit else None
