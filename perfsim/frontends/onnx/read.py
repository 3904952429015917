"""Reading the file: load an ``.onnx`` file, find its one image input, fix its shape at batch 1, infer static shapes."""
from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any, Sequence

from ...errors import InputError

MAX_FILE_BYTES = 2 * 1024 ** 3  # protobuf's limit for one message: no single-file ONNX model is larger
ONNX_DOMAINS = ("", "ai.onnx")
# a constant subgraph evaluated for a small value (constants.py) reads at most this many initializer elements;
# larger weights skip shape inference
EVAL_MAX_ELEMS = 65536


def import_onnx():
    try:
        import onnx
    except ModuleNotFoundError:
        raise InputError("onnx is not installed: pip install 'perfsim[onnx]'") from None
    return onnx


def load_model(onnx, path: Path):
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {size / 2 ** 30:.2f} GiB; an ONNX model file is at most 2 GiB "
                         "(larger weights live in external data files)")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path} is not a readable ONNX model: {first}") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph in it)")
    if model.functions:  # model-local functions (the dynamo exporter emits some): expand them in place
        from onnx import inliner
        model = inliner.inline_local_functions(model)
    return model


def network_input(graph, path: Path):
    """The one activation input (initializers listed as inputs by old exporters are not inputs)."""
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise InputError(f"{path} has {len(inputs)} inputs ({names}); perfsim simulates one image input")
    return inputs[0]


def dims_of(value_info) -> list[int | str | None]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _fmt(shape: Sequence[Any]) -> str:
    return "x".join("?" if not isinstance(s, int) else str(s) for s in shape)


def resolve_input_shape(vi, input_shape, path: Path) -> tuple[int, ...]:
    """The input's shape at batch 1: the file's own when static, else ``input_shape`` (C,H,W)."""
    dims = dims_of(vi)
    if not dims:
        raise InputError(f"{path}: input {vi.name!r} has no shape; give --input-shape CxHxW")
    given = None
    if input_shape is not None:
        given = tuple(int(s) for s in input_shape)
        given = given if len(given) == len(dims) else (1,) + given
        if len(given) != len(dims) or any(s <= 0 for s in given) or given[0] != 1:
            raise InputError(f"--input-shape {_fmt(input_shape)} does not fit {path}'s input {_fmt(dims)} "
                             "(give C,H,W at batch 1)")
    static = [d if isinstance(d, int) and d > 0 else None for d in dims]
    if static[0] not in (None, 1):
        raise InputError(f"{path} was exported at batch {static[0]}; perfsim lowers at batch 1 "
                         "(export at batch 1 or with a dynamic batch, and give the batch to simulate)")
    if given is None:
        if any(s is None for s in static[1:]):
            raise InputError(f"{path}: input {vi.name!r} has dynamic dims ({_fmt(dims)}); "
                             "give --input-shape CxHxW")
        return (1,) + tuple(static[1:])
    clash = [(a, b) for a, b in zip(static[1:], given[1:]) if a is not None and a != b]
    if clash:
        raise InputError(f"{path} was exported for input {_fmt(dims)}, not {_fmt(given)}: "
                         "shapes inside it were fixed at export (re-export with dynamic axes)")
    return given


def infer_shapes(onnx, model, input_name: str, shape: tuple[int, ...], path: Path) -> list:
    """Static shapes (value infos) for every value. Inference runs on a copy whose large weights
    hold their dims but not their bytes: it reads no weight data (ResNet-18: 0.2 s -> 3 ms)."""
    for vi in model.graph.input:
        if vi.name == input_name:
            for d, s in zip(vi.type.tensor_type.shape.dim, shape):
                d.Clear()
                d.dim_value = s
    g = model.graph
    light = onnx.helper.make_graph(
        list(g.node), g.name, list(g.input), list(g.output), value_info=list(g.value_info),
        initializer=[i if prod(i.dims) <= EVAL_MAX_ELEMS else
                     onnx.TensorProto(name=i.name, data_type=i.data_type, dims=i.dims) for i in g.initializer])
    light_model = onnx.helper.make_model(light, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(light_model, strict_mode=False, data_prop=True).graph
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: ONNX shape inference failed: {first}") from None
    return [*inferred.input, *inferred.value_info, *inferred.output]
