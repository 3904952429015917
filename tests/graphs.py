"""A torch-free graph builder for simulator tests.

Tests describe a network op by op, as a front end would report it (shapes at batch 1,
the counting rules of SPEC and ``perfsim.lower``), and ``perfsim.ir.fuse.fuse`` makes the
layers, exactly as for a traced PyTorch module. ``tests/test_properties_zoo.py`` checks
that these graphs equal what ``perfsim.lower`` makes of the same networks in PyTorch.

    n = Net((3, 8, 8))
    y = n.relu(n.bn(n.conv(n.input, 16, 3, padding=1)))
    graph = n.build(n.linear(n.flatten(n.global_avgpool(y)), 10))
"""
from __future__ import annotations

from math import prod

from hypothesis import strategies as st

from perfsim.ir.fuse import fuse
from perfsim.ir.graph import VECTOR_OPS_PER_ELEMENT, Graph, Op, OpKind


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Net:
    """Ops in execution order; each method appends one op and returns the value's name."""

    def __init__(self, input_shape: tuple[int, ...], name: str = "net", input_name: str = "x"):
        self.name = name
        self.input = input_name
        self.input_shape = (1,) + tuple(input_shape) if len(input_shape) == 3 else tuple(input_shape)
        self.shapes: dict[str, tuple[int, ...]] = {input_name: self.input_shape}
        self.ops: list[Op] = []

    def _add(self, kind: OpKind, inputs: tuple[str, ...], out_shape: tuple[int, ...], name: str | None,
             **fields) -> str:
        name = name or f"{kind.value}_{len(self.ops)}"
        if name in self.shapes:
            raise ValueError(f"duplicate op name {name!r}")
        self.ops.append(Op(name=name, path=name, kind=kind, target=kind.value, inputs=inputs,
                           in_shapes=tuple(self.shapes[i] for i in inputs), out_shape=out_shape, **fields))
        self.shapes[name] = out_shape
        return name

    # matrix ops ------------------------------------------------------------
    def conv(self, x: str, out_channels: int, kernel, stride=1, padding=0, *, groups: int = 1, dilation=1,
             bias: bool = False, name: str | None = None) -> str:
        n, c, h, w = self.shapes[x]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
        out = (n, out_channels, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
        weights = out_channels * (c // groups) * kh * kw
        biases = out_channels if bias else 0
        return self._add(OpKind.CONV, (x,), out, name, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                         dilation=(dh, dw), groups=groups, params=weights + biases, weight_elems=weights,
                         bias_elems=biases, macs=prod(out) * (c // groups) * kh * kw)

    def linear(self, x: str, out_features: int, *, bias: bool = True, name: str | None = None) -> str:
        shape = self.shapes[x]
        out = shape[:-1] + (out_features,)
        weights, biases = shape[-1] * out_features, (out_features if bias else 0)
        return self._add(OpKind.LINEAR, (x,), out, name, params=weights + biases, weight_elems=weights,
                         bias_elems=biases, macs=prod(out) * shape[-1])

    # vector ops ------------------------------------------------------------
    def _elementwise(self, kind: OpKind, inputs: tuple[str, ...], name: str | None, **fields) -> str:
        shape = self.shapes[inputs[0]]
        return self._add(kind, inputs, shape, name, vector_ops=VECTOR_OPS_PER_ELEMENT[kind] * prod(shape), **fields)

    def bn(self, x: str, *, name: str | None = None) -> str:
        c = self.shapes[x][1]
        return self._elementwise(OpKind.BATCHNORM, (x,), name, params=2 * c, bn_channels=c)

    def relu(self, x: str, *, name: str | None = None) -> str:
        return self._elementwise(OpKind.RELU, (x,), name)

    def relu6(self, x: str, *, name: str | None = None) -> str:
        return self._elementwise(OpKind.RELU6, (x,), name)

    def add(self, a: str, b: str, *, name: str | None = None) -> str:
        return self._elementwise(OpKind.ADD, (a, b), name)

    def softmax(self, x: str, *, name: str | None = None) -> str:
        return self._elementwise(OpKind.SOFTMAX, (x,), name, reduce_dims=(-1,))

    def layernorm(self, x: str, *, name: str | None = None) -> str:
        """Over the last dim, with an affine (as ``nn.LayerNorm``): 5 + 2 vector ops per element."""
        c = self.shapes[x][-1]
        return self._add(OpKind.LAYERNORM, (x,), self.shapes[x], name, params=2 * c, bn_channels=c,
                         vector_ops=(VECTOR_OPS_PER_ELEMENT[OpKind.LAYERNORM] + 2) * prod(self.shapes[x]),
                         reduce_dims=(-1,))

    def reduce(self, x: str, dims: tuple[int, ...], *, keepdim: bool = True, name: str | None = None) -> str:
        """A mean over ``dims`` (negative, from the last): 1 vector op per input element."""
        shape = self.shapes[x]
        kept = [(1 if i - len(shape) in dims else d) for i, d in enumerate(shape)]
        out = tuple(d for i, d in enumerate(kept) if keepdim or i - len(shape) not in dims)
        return self._add(OpKind.REDUCE, (x,), out, name, vector_ops=prod(shape), reduce_dims=tuple(sorted(dims)))

    def matmul(self, a: str, b: str, *, name: str | None = None) -> str:
        """A batched product of two activations: (..., M, K) x (..., K, N)."""
        sa, sb = self.shapes[a], self.shapes[b]
        out = sa[:-1] + (sb[-1],)
        return self._add(OpKind.MATMUL, (a, b), out, name, macs=prod(out) * sa[-1])

    def _pool(self, kind: OpKind, x: str, kernel, stride, name: str | None) -> str:
        n, c, h, w = self.shapes[x]
        (kh, kw) = _pair(kernel)
        (sh, sw) = _pair(stride if stride is not None else kernel)
        out = (n, c, (h - kh) // sh + 1, (w - kw) // sw + 1)
        per_out = kh * kw - 1 if kind is OpKind.MAXPOOL else kh * kw  # comparisons / additions per output
        return self._add(kind, (x,), out, name, kernel=(kh, kw), stride=(sh, sw), padding=(0, 0),
                         vector_ops=per_out * prod(out))

    def maxpool(self, x: str, kernel, stride=None, *, name: str | None = None) -> str:
        return self._pool(OpKind.MAXPOOL, x, kernel, stride, name)

    def avgpool(self, x: str, kernel, stride=None, *, name: str | None = None) -> str:
        return self._pool(OpKind.AVGPOOL, x, kernel, stride, name)

    def global_avgpool(self, x: str, *, name: str | None = None) -> str:
        n, c, h, w = self.shapes[x]
        return self._add(OpKind.GLOBAL_AVGPOOL, (x,), (n, c, 1, 1), name, kernel=(h, w),
                         vector_ops=n * c * h * w)  # 1 per input element (SPEC)

    # aliases: no row -----------------------------------------------------------
    def concat(self, *xs: str, name: str | None = None) -> str:
        first = self.shapes[xs[0]]
        out = (first[0], sum(self.shapes[x][1] for x in xs)) + first[2:]
        return self._add(OpKind.CONCAT, tuple(xs), out, name)

    def flatten(self, x: str, *, name: str | None = None) -> str:
        shape = self.shapes[x]
        return self._add(OpKind.ALIAS, (x,), (shape[0], prod(shape[1:])), name)

    def view(self, x: str, shape: tuple[int, ...], *, name: str | None = None) -> str:
        """A reshape or permute (no row): ``shape`` holds the same elements."""
        assert prod(shape) == prod(self.shapes[x])
        return self._add(OpKind.ALIAS, (x,), tuple(shape), name)

    def part(self, x: str, shape: tuple[int, ...], *, name: str | None = None) -> str:
        """A slice or split (no row): a reader reads the whole source."""
        assert prod(shape) <= prod(self.shapes[x])
        return self._add(OpKind.GATHER, (x,), tuple(shape), name)

    def build(self, *outputs: str) -> Graph:
        return fuse(self.name, self.input_shape, self.ops, [(self.input, self.input_shape)], list(outputs),
                    sum(op.params for op in self.ops))


# The random networks of tests/test_properties.py, op for op as their PyTorch twins
# (tests/test_properties_zoo.py) trace.

def conv_bn_relu(n: Net, x: str, out_channels: int, kernel: int, stride: int = 1) -> str:
    return n.relu(n.bn(n.conv(x, out_channels, kernel, stride, kernel // 2)))


def random_net(c_in: int, hw: int, plan: list[tuple]) -> Graph:
    """A conv stack from a plan of (kind, arg) blocks, then global pool and a 10-way linear head."""
    n = Net((c_in, hw, hw), name="RandomNet")
    x, c = n.input, c_in
    for kind, arg in plan:
        if kind == "conv":
            k, cout, stride = arg
            x, c = conv_bn_relu(n, x, cout, k, stride), cout
        elif kind == "dw":
            x = n.relu6(n.bn(n.conv(x, c, 3, arg, 1, groups=c)))
        elif kind == "group":
            x = n.conv(x, c, 3, 1, 1, groups=arg if c % arg == 0 else 1, bias=True)
        elif kind == "res":
            y = n.bn(n.conv(conv_bn_relu(n, x, c, 3), c, 3, 1, 1))
            x = n.relu(n.add(y, x))
        elif kind == "dense":
            y = n.conv(n.relu(n.bn(x)), arg, 3, 1, 1)
            x, c = n.concat(x, y), c + arg
        elif kind == "pool":
            x = n.maxpool(x, 2) if arg == "max" else n.avgpool(x, 2)
    return n.build(n.linear(n.flatten(n.global_avgpool(x)), 10))


def merge_partner(kind: str, src: int, arg: int, chans: list[int], down: list[int]) -> int | None:
    """The earlier value a random DAG's add/cat step joins with ``src``: same resolution, and for an
    add the same channels; None when there is none (the step is skipped). Shared with the PyTorch
    twin of this builder (tests/test_properties_zoo.py), so both read a plan the same way."""
    partners = [j for j in range(len(chans)) if j != src and down[j] == down[src]
                and (kind == "cat" or chans[j] == chans[src])]
    return partners[arg % len(partners)] if partners else None


def dag_net(c_in: int, hw: int, steps: list[tuple]) -> Graph:
    """A random DAG: each step reads an arbitrary earlier value (long skips), adds or concatenates two."""
    n = Net((c_in, hw, hw), name="DagNet")
    vals, chans, down = [n.input], [c_in], [0]
    for kind, pick, arg in steps:
        src = pick % len(chans)
        c = chans[src]
        if kind == "conv":
            k, cout, stride = arg
            vals.append(conv_bn_relu(n, vals[src], cout, k, stride))
            chans.append(cout)
            down.append(down[src] + (stride == 2))
        elif kind == "dw":
            vals.append(n.relu6(n.bn(n.conv(vals[src], c, 3, 1, 1, groups=c))))
            chans.append(c)
            down.append(down[src])
        elif kind == "bnrelu_conv":
            vals.append(n.conv(n.relu(n.bn(vals[src])), arg, 3, 1, 1))
            chans.append(arg)
            down.append(down[src])
        elif kind in ("add", "cat"):
            j = merge_partner(kind, src, arg, chans, down)
            if j is None:
                continue
            vals.append(n.add(vals[src], vals[j]) if kind == "add" else n.concat(vals[src], vals[j]))
            chans.append(c if kind == "add" else c + chans[j])
            down.append(down[src])
    return n.build(n.linear(n.flatten(n.global_avgpool(vals[-1])), 10))


# Hypothesis strategies for the plans above (shared by the torch-free property tests and the
# check that random_net / dag_net equal their PyTorch twins).

block = st.one_of(
    st.tuples(st.just("conv"), st.tuples(st.sampled_from([1, 3]), st.sampled_from([4, 8, 16, 24]),
                                         st.sampled_from([1, 1, 2]))),
    st.tuples(st.just("dw"), st.sampled_from([1, 2])),
    st.tuples(st.just("group"), st.sampled_from([2, 4])),
    st.tuples(st.just("res"), st.none()),
    st.tuples(st.just("dense"), st.sampled_from([4, 8])),
    st.tuples(st.just("pool"), st.sampled_from(["max", "avg"])),
)


@st.composite
def random_plans(draw) -> tuple[int, int, list[tuple]]:
    """(c_in, hw, plan) for ``random_net``."""
    c_in = draw(st.sampled_from([3, 8]))
    hw = draw(st.sampled_from([8, 12, 16, 20]))
    plan = draw(st.lists(block, min_size=1, max_size=8))
    # keep spatial sizes >= 1 for the pools and strides
    size, safe = hw, []
    for kind, arg in plan:
        shrinks = (kind == "pool") or (kind == "conv" and arg[2] == 2) or (kind == "dw" and arg == 2)
        if shrinks and size < 4:
            continue
        size = size // 2 if kind == "pool" else (size + 1) // 2 if shrinks else size
        safe.append((kind, arg))
    return c_in, hw, safe


dag_step = st.one_of(
    st.tuples(st.just("conv"), st.integers(0, 99), st.tuples(st.sampled_from([1, 3]), st.sampled_from([4, 8, 16, 32]),
                                                             st.sampled_from([1, 1, 1, 2]))),
    st.tuples(st.just("dw"), st.integers(0, 99), st.none()),
    st.tuples(st.just("bnrelu_conv"), st.integers(0, 99), st.sampled_from([4, 8, 24])),
    st.tuples(st.sampled_from(["add", "cat"]), st.integers(0, 99), st.integers(0, 99)),
)


@st.composite
def dag_plans(draw) -> tuple[int, int, list[tuple]]:
    """(c_in, hw, steps) for ``dag_net``."""
    c_in = draw(st.sampled_from([3, 8]))
    hw = draw(st.sampled_from([8, 12, 16]))
    steps = draw(st.lists(dag_step, min_size=2, max_size=10))
    return c_in, hw, steps


# The small networks of tests/test_simulate.py, worked out by hand there.

def skip_net() -> Graph:
    """stem y = conv(x); a = c1(y); b = c2(a); z = y + b. 1x1 convs, 4 channels, 4x4, no bias.

    Sizes at 8 bits: x 48 B, y/a/b/z 64 B; weights: stem 12 B, c1/c2 16 B.
    """
    n = Net((3, 4, 4), name="SkipNet")
    y = n.conv(n.input, 4, 1, name="stem")
    return n.build(n.add(y, n.conv(n.conv(y, 4, 1, name="c1"), 4, 1, name="c2"), name="add"))


def wide(skip: bool = False) -> Graph:
    """One 1x1 conv 16->16 on 16x16: input 4096 B, output 4096 B, weights 256 B. With ``skip``
    its input is read again afterwards (y + x), so it cannot be overwritten."""
    n = Net((16, 16, 16), name="WideSkip" if skip else "Wide")
    y = n.conv(n.input, 16, 1, name="conv")
    return n.build(n.add(y, n.input, name="add") if skip else y)


def dense_block(c0: int = 16, growth: int = 8, layers: int = 6) -> Graph:
    """Dense connectivity on 3x16x16: every earlier feature map stays alive until the last reader."""
    n = Net((3, 16, 16), name="DenseBlock")
    x = n.conv(n.input, c0, 3, padding=1, name="stem")
    for i in range(layers):
        y = n.conv(n.relu(n.bn(x, name=f"layers.{i}.0"), name=f"layers.{i}.1"), growth, 3, padding=1,
                   name=f"layers.{i}.2")
        x = n.concat(x, y, name=f"cat_{i}")
    return n.build(x)


def conv_bn_act(act: str = "relu6") -> Graph:
    """Conv 3->8 3x3 (no bias) + BN + ReLU6 on 3x8x8."""
    n = Net((3, 8, 8), name="Sequential")
    y = n.bn(n.conv(n.input, 8, 3, padding=1, name="0"), name="1")
    return n.build(n.relu6(y, name="2") if act == "relu6" else n.relu(y, name="2"))


def two_convs() -> Graph:
    """Conv 3->16 3x3 then conv 16->64 1x1 on 3x32x32, no bias."""
    n = Net((3, 32, 32), name="Sequential")
    return n.build(n.conv(n.conv(n.input, 16, 3, padding=1, name="0"), 64, 1, name="1"))


def tie_net() -> Graph:
    """a = c1(x); b = c2(a); e = c4(c3(b)); c5(cat(a, b)) + e on 3x8x8, convs with biases."""
    n = Net((3, 8, 8), name="Net")
    a = n.conv(n.input, 8, 1, bias=True, name="c1")
    b = n.conv(a, 32, 1, bias=True, name="c2")
    e = n.conv(n.conv(b, 24, 3, padding=1, bias=True, name="c3"), 26, 3, padding=1, bias=True, name="c4")
    cat = n.concat(a, b, name="cat")
    return n.build(n.add(n.conv(cat, 26, 1, bias=True, name="c5"), e, name="add"))
