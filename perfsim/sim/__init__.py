"""The simulator: the memory plan (``memory``, ``tiling``, ``capacity``), timing, the result records, ``simulate``
and the batch evaluation sweeps use. Torch-free, numpy and dataclasses."""
