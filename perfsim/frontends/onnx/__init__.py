"""ONNX import: an ``.onnx`` file to perfsim's op graph (the same ``Op`` records as the torch front end).

Torch-free: ``onnx`` (imported on first use) and numpy. The file is loaded, its shapes are
inferred (``onnx.shape_inference``, static, at batch 1), and every node is handled by exactly
one rule in a registry keyed by ONNX op type. A node that reads no activation (``Constant``,
``Shape`` arithmetic, anything computed from initializers) is a constant and makes no op. Every
node kind without a rule is reported in one ``UnsupportedOpError``: kinds, counts, first node.

Parameters are initializers read in a parameter position (Conv / Gemm / MatMul weight and bias,
BatchNormalization scale and bias, an elementwise operand), counted once per value; ONNX keeps BN's
running statistics as initializers too, and they never count (SPEC: buffers never count). Layers
are named by the module path the torch exporter records (``/features/features.0/features.0.0/Conv``
gives ``features.0.0``; the dynamo exporter's ``name_scopes`` metadata likewise); docs/onnx.md holds
every rule.

The package, in the order a file goes through it:

- ``read``: load the file, check its one input, infer static shapes;
- ``names``: layer names from the module path the exporter recorded;
- ``constants``: values that read no activation (initializers, literals, shape arithmetic);
- ``rules``: one rule per ONNX op type (matrix, vector and rowless ops), in a registry;
- ``importer``: runs every node through its rule and fuses the ops into a ``Graph`` (``lower_onnx``).
"""
from __future__ import annotations

from .importer import lower_onnx
from .read import MAX_FILE_BYTES

__all__ = ["MAX_FILE_BYTES", "lower_onnx"]
