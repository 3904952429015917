"""The simulator: the memory plan (``memory``, ``tiling``, ``capacity``), timing, the result records, ``simulate``
and the batch evaluation sweeps use. Torch-free, numpy and dataclasses.

``MAX_BATCH`` bounds a batch everywhere one enters (``simulate``, ``run_model``, ``simulate_models``,
``sweep_frame`` and the command line's ``--batch``): 65,536 inputs per inference, the bound of a training
batch too, far past any accelerator's batch; at it every total stays a float and an int64 (a model of up to
1.4e14 MACs per input)."""
from __future__ import annotations

from ..errors import InputError
from ..units import shown

MAX_BATCH = 2**16


def check_batch(batch: object) -> int:
    """``batch`` if it is an int from 1 to ``MAX_BATCH``, else an InputError naming the bound."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise InputError(f"batch must be an integer from 1 to {MAX_BATCH:,}, got {shown(batch)}")
    return batch
