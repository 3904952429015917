"""SCALE-Sim topology CSV files, both ways (docs/systolic.md). Torch-free.

A SCALE-Sim (v2/v3) convolution topology has a header line, then one line per layer:
``name, IFMAP height, IFMAP width, filter height, filter width, channels, number of filters,
stride,`` (a trailing comma; an optional sparsity cell such as ``2:4`` may follow). SCALE-Sim has
no padding (the IFMAP sizes are padded sizes), one stride for both directions, and rounds the output
size up (ceil((H - F + s) / s)); a layer whose
name contains ``DP`` is depthwise: SCALE-Sim runs it as ``channels`` layers of one channel and
``number of filters`` filters each.

``export_rows(graph)`` writes perfsim's matrix rows in that form: a conv with the extent of its
padded input it reads, ((out - 1) * stride + kernel), so both roundings give its output size;
a depthwise conv as a ``DP`` row (its name gets the marker, other names lose any ``DP`` they had);
a grouped conv as one row per group (``_g0``, ``_g1``, ...); a linear as a 1x1 conv over an IFMAP
of (rows x 1); a batched matmul as one such row per product (``_p0``, ...). Dilated convs and
unequal strides have no SCALE-Sim form: refused, naming the layer.

``read_topology(path)`` builds a graph of convs from such a file, with SCALE-Sim's output sizes. A
layer reads the previous layer's output when its channels are that output's channels and a conv
over that output with padding p = ceil((IFMAP - output) / 2) < kernel gives the layer's output size
(the border becomes the conv's padding); otherwise it reads a network
input of its own IFMAP size (as every SCALE-Sim layer reads its IFMAP from memory). Outputs no later
layer reads are the network's outputs.
"""
from __future__ import annotations

import csv
import io
from math import prod
from pathlib import Path
from typing import NamedTuple

from ..errors import InputError
from ..files import TooLarge, read_bounded
from ..ir.fuse import fuse
from ..ir.gemm import gemm_dims
from ..ir.graph import Graph, Layer, Op, OpKind, Unit
from ..units import shown

HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
          "Num Filter", "Strides")
MAX_TOPOLOGY_BYTES = 4 * 2**20
MAX_DIM = 2**20  # one IFMAP side, channel or filter count


class TopoRow(NamedTuple):
    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride: int

    @property
    def depthwise(self) -> bool:
        return "DP" in self.name  # SCALE-Sim's own marker (the file format's rule)

    @property
    def ofmap(self) -> tuple[int, int]:
        """SCALE-Sim's output size: ceil((H - F + s) / s) (rounded up, unlike a conv's floor)."""
        s = self.stride
        return -(-(self.ifmap_h - self.filter_h + s) // s), -(-(self.ifmap_w - self.filter_w + s) // s)


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def _plain_name(name: str) -> str:
    return name.replace(",", "_").replace("DP", "Dp").strip() or "layer"


def _conv_rows(layer: Layer) -> list[TopoRow]:
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    if layer.dilation not in (None, (1, 1)):
        raise InputError(f"layer {shown(layer.name)}: a dilated conv has no SCALE-Sim topology form")
    if sh != sw:
        raise InputError(f"layer {shown(layer.name)}: stride {sh}x{sw}: SCALE-Sim has one stride for both sides")
    _, cin = layer.in_shape[:2]
    cout, g = layer.out_shape[1], max(1, layer.groups)
    ho, wo = layer.out_shape[2:4]
    # the padded input's extent the conv reads: where (H + 2p - k) is not a multiple of the stride,
    # PyTorch never reads the last rows, and SCALE-Sim (which rounds the output size up) would add one
    hp, wp, name = (ho - 1) * sh + kh, (wo - 1) * sw + kw, _plain_name(layer.name)
    if g == 1:
        return [TopoRow(name, hp, wp, kh, kw, cin, cout, sh)]
    if g == cin:
        return [TopoRow(name + "_DP", hp, wp, kh, kw, cin, cout // g, sh)]
    return [TopoRow(f"{name}_g{i}", hp, wp, kh, kw, cin // g, cout // g, sh) for i in range(g)]


def layer_rows(layer: Layer) -> list[TopoRow]:
    """SCALE-Sim topology rows of one layer: none for a row off the matrix unit (module docstring)."""
    if layer.unit is not Unit.MATRIX or not layer.macs:
        return []
    if layer.kind is OpKind.CONV and len(layer.in_shape) == 4 and layer.kernel and layer.stride:
        return _conv_rows(layer)
    g, m, n, k = gemm_dims(layer, 1)
    name = _plain_name(layer.name)
    names = [name] if g == 1 else [f"{name}_p{i}" for i in range(g)]
    return [TopoRow(nm, m, 1, 1, 1, k, n, 1) for nm in names]


def export_rows(graph: Graph) -> list[TopoRow]:
    """SCALE-Sim topology rows of ``graph``'s matrix layers, in execution order."""
    return [row for layer in graph.layers for row in layer_rows(layer)]


def topology_csv(rows: list[TopoRow]) -> str:
    """The rows as SCALE-Sim reads them (each line ends with a comma)."""
    buf = io.StringIO()
    buf.write(", ".join(HEADER) + ",\n")
    for r in rows:
        buf.write(", ".join(str(v) for v in r) + ",\n")
    return buf.getvalue()


# --------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------


def _parse_row(cells: list[str], line: int, label: str) -> TopoRow:
    cells = [c.strip() for c in cells]
    while cells and cells[-1] == "":
        cells.pop()
    if len(cells) == 9 and ":" in cells[8]:
        cells.pop()  # sparsity ratio: not simulated (dense)
    if len(cells) != 8:
        raise InputError(f"{label} line {line}: expected 8 cells (name, IFMAP height, IFMAP width, filter height, "
                         f"filter width, channels, filters, stride), got {len(cells)}")
    values = []
    for what, text in zip(HEADER[1:], cells[1:]):
        if not (text.isascii() and text.isdecimal() and len(text) <= 8) or not 1 <= int(text) <= MAX_DIM:
            raise InputError(f"{label} line {line}: {what} must be a whole number from 1 to {MAX_DIM}, "
                             f"got {shown(text)}")
        values.append(int(text))
    row = TopoRow(cells[0] or f"layer{line}", *values)
    if row.filter_h > row.ifmap_h or row.filter_w > row.ifmap_w:
        raise InputError(f"{label} line {line}: filter {row.filter_h}x{row.filter_w} is larger than the IFMAP "
                         f"{row.ifmap_h}x{row.ifmap_w} (SCALE-Sim sizes are padded sizes)")
    return row


def parse_topology(text: str, label: str = "topology") -> list[TopoRow]:
    rows = []
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if line == 1 or not any(c.strip() for c in cells):
            continue  # the header (SCALE-Sim skips the first line whatever it holds), blank lines
        rows.append(_parse_row(cells, line, label))
    if not rows:
        raise InputError(f"{label}: no layers (a header line, then one line per layer)")
    return rows


def _conv_op(row: TopoRow, name: str, src: str, in_shape: tuple[int, ...], pad: int) -> Op:
    groups = row.channels if row.depthwise else 1
    cout = row.channels * row.filters if row.depthwise else row.filters
    ho, wo = row.ofmap
    out = (1, cout, ho, wo)
    weights = cout * (row.channels // groups) * row.filter_h * row.filter_w
    return Op(name=name, path=row.name, kind=OpKind.CONV, target="scalesim.conv", inputs=(src,), in_shapes=(in_shape,),
              out_shape=out, kernel=(row.filter_h, row.filter_w), stride=(row.stride, row.stride), padding=(pad, pad),
              dilation=(1, 1), groups=groups, params=weights, weight_elems=weights,
              macs=prod(out) * (row.channels // groups) * row.filter_h * row.filter_w)


def _reads_previous(row: TopoRow, prev: Op | None) -> int | None:
    """The padding p under which ``row`` reads ``prev``'s output (a conv with padding p over it gives
    the row's output size), or None."""
    if prev is None or prev.out_shape[1] != row.channels:
        return None
    h, w = prev.out_shape[2:4]
    pad = -(-(row.ifmap_h - h) // 2)
    if not 0 <= pad < min(row.filter_h, row.filter_w):
        return None
    out = ((h + 2 * pad - row.filter_h) // row.stride + 1, (w + 2 * pad - row.filter_w) // row.stride + 1)
    return pad if out == row.ofmap else None


def graph_from_rows(rows: list[TopoRow], name: str) -> Graph:
    ops: list[Op] = []
    inputs: list[tuple[str, tuple[int, ...]]] = []
    read: set[str] = set()
    for i, row in enumerate(rows):
        prev = ops[-1] if ops else None
        pad = _reads_previous(row, prev)
        if pad is None:
            src, shape, pad = f"ifmap{i}", (1, row.channels, row.ifmap_h, row.ifmap_w), 0
            inputs.append((src, shape))
        else:
            src, shape = prev.name, prev.out_shape
            read.add(src)
        ops.append(_conv_op(row, f"l{i}_{row.name}", src, shape, pad))
    outputs = [op.name for op in ops if op.name not in read]
    return fuse(name, inputs[0][1], ops, inputs, outputs, sum(op.params for op in ops))


def read_topology(path: str | Path) -> Graph:
    """A graph of the layers of a SCALE-Sim topology CSV file (module docstring)."""
    p = Path(path)
    label = f"topology {shown(str(path))}"
    try:
        data = read_bounded(p, MAX_TOPOLOGY_BYTES)
    except TooLarge:
        raise InputError(f"{label}: larger than {MAX_TOPOLOGY_BYTES // 2**20} MiB") from None
    except OSError as e:
        raise InputError(f"{label}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{label}: not UTF-8 text") from None
    return graph_from_rows(parse_topology(text, label), p.stem or "topology")
