"""The intermediate representation: ops, tensors and layers (``graph``), how ops fuse into a report's rows
(``fuse``), and other papers' counting conventions (``conventions``). Torch-free."""
