"""Tiling of token and channels-last layouts: a layer's geometry follows its op kind, not its rank.

A token-wise linear on (1, 3136, 384) tokens is tiled by token rows (each output token reads only
its own input token and the weights); a reduction never splits the dims it reduces; a matmul's
tiles read all of what they need. Torch-free but for the last test (torchvision through perfsim).
"""
from __future__ import annotations

import pytest

from perfsim.errors import DoesNotFitError
from perfsim.ir.graph import OpKind
from perfsim.sim.simulator import simulate
from perfsim.sim.tiling import geometry, min_sram
from graphs import Net
from invariants import check_single, check_sweep, compulsory, prof

MB = 1_000_000


def tokens_linear(c_in: int = 384, c_out: int = 96, side: int = 56):
    """Channels-last input (1, H, W, C) viewed as tokens, one token-wise linear (ConvNeXt's second MLP)."""
    n = Net((1, side, side, c_in))
    t = n.view(n.input, (1, side * side, c_in))
    return n.build(n.linear(t, c_out))


def _row(result, kind: OpKind):
    return next(r for r in result.rows if r.kind is kind)


def _geometry(graph, layer):
    sizes = [t.numel for t in graph.tensors]  # 8-bit activations: one byte per element
    return geometry(layer, sum(sizes[t] for t in layer.inputs), sizes[layer.output], 0,
                    sum(sizes[t] for t in layer.inputs))


def test_token_linear_too_big_for_sram_tiles_by_token_rows_at_compulsory_traffic():
    g = tokens_linear()
    r = simulate(g, prof(sram_bytes=MB))  # the input alone (1,204,224 B) exceeds SRAM
    row = _row(r, OpKind.LINEAR)
    assert row.in_bytes > MB and row.tiles > 1
    geo = _geometry(g, g.layers[0])
    # 3,136 tokens in 784 row units of 4 (the plan search is quadratic in the rows: at most 1,024 units)
    assert (geo.out_rows, geo.in_rows, geo.out_channels, geo.groups) == (784, 784, 96, 1)
    net_in, weights, net_out, s = compulsory(g, r)
    assert s["dram_read_bytes"] == net_in + weights  # weights fit: every byte read once
    assert s["dram_write_bytes"] == net_out
    assert s["refetch_bytes"] == 0
    check_single(g, r)


def test_channels_last_linear_reads_the_last_dim_as_channels():
    n = Net((1, 28, 28, 96))
    g = n.build(n.linear(n.input, 384))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.in_rows, geo.out_channels, geo.kernel_rows) == (784, 784, 384, 1)


def test_a_2d_linear_stays_one_row():
    n = Net((1, 1280))
    g = n.build(n.linear(n.input, 1000))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.in_rows, geo.out_channels, geo.groups) == (1, 1, 1000, 1)


@pytest.mark.parametrize("dims, rows, channels", [
    ((-1,), 784, 1),  # over the channels of tokens: rows are tokens (units of 4), the channels never split
    ((-2,), 1, 384),  # over the tokens: channel blocks, each reading every token of its channels
])
def test_a_reduction_never_splits_the_dims_it_reduces(dims, rows, channels):
    n = Net((1, 56, 56, 384))
    t = n.view(n.input, (1, 3136, 384))
    g = n.build(n.reduce(t, dims))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.in_rows, geo.out_channels) == (rows, rows, channels)
    assert geo.groups == channels  # channelwise: a block of c channels reads c/C of the input
    r = simulate(g, prof(sram_bytes=MB))
    assert _row(r, OpKind.REDUCE).tiles > 1
    check_single(g, r)


def test_reduction_over_inner_dims_keeps_the_outer_as_rows_and_the_inner_whole():
    n = Net((1, 64, 3, 64, 32))
    g = n.build(n.reduce(n.input, (-3, -1)))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.out_channels) == (64, 1)  # the 64 between the reduced dims stays whole


def test_softmax_and_layernorm_tile_by_rows_not_by_the_normalised_dim():
    n = Net((1, 8, 512, 512))
    g = n.build(n.softmax(n.input))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.out_channels) == (8 * 512 // 4, 1)  # units of 4 rows
    n = Net((1, 56, 56, 384))
    g = n.build(n.layernorm(n.view(n.input, (1, 3136, 384))))
    geo = _geometry(g, g.layers[0])
    assert (geo.out_rows, geo.out_channels) == (784, 1)


def test_batched_matmul_tiles_by_batch_slices_reading_both_operands_slices():
    n = Net((1, 8, 1024, 64))
    k = n.view(n.linear(n.input, 64), (1, 8, 64, 1024), name="kt")
    g = n.build(n.matmul(n.input, k))  # Q·Kᵀ: (1, 8, 1024, 1024) scores
    geo = _geometry(g, g.layers[-1])
    assert (geo.out_rows, geo.in_rows, geo.out_channels, geo.whole_in_bytes) == (8, 8, 1024, 0)


def test_a_matmul_of_a_tensor_with_itself_reads_it_whole_in_every_tile():
    n = Net((1, 8, 1024, 64))
    g = n.build(n.matmul(n.input, n.view(n.input, (1, 8, 64, 1024), name="t")))  # x·xᵀ
    geo = _geometry(g, g.layers[0])
    assert geo.whole_in_bytes == geo.in_bytes == 8 * 1024 * 64


def test_unbatched_matmul_tiles_by_rows_of_its_first_operand_and_reads_the_second_whole():
    n = Net((1, 1, 4096, 64), input_name="a")
    b = n.view(n.linear(n.view(n.input, (1, 4096, 64)), 64, bias=False), (1, 64, 4096), name="b")
    a = n.view(n.input, (1, 4096, 64), name="a2")
    g = n.build(n.matmul(a, b))  # (1, 4096, 64) x (1, 64, 4096): 16 MB of scores
    layer = g.layers[-1]
    geo = _geometry(g, layer)
    second = 64 * 4096
    assert (geo.out_rows, geo.in_rows, geo.out_channels) == (1024, 1024, 4096)  # units of 4 rows
    assert geo.whole_in_bytes == second  # every tile needs all of the second operand
    assert min_sram(geo) > second
    r = simulate(g, prof(sram_bytes=MB))
    check_single(g, r)
    assert _row(r, OpKind.MATMUL).tiles > 1


def transformer_block(tokens: int = 784, dim: int = 96, heads: int = 3, grid: int = 28):
    """A Swin-like block on channels-last input: norm, qkv, attention, projection, MLP, residuals."""
    n = Net((1, grid, grid, dim))
    x = n.view(n.input, (1, tokens, dim), name="tokens")
    h = n.layernorm(x)
    qkv = n.linear(h, 3 * dim)
    d = dim // heads
    q = n.part(qkv, (1, heads, tokens, d), name="q")
    kt = n.part(qkv, (1, heads, d, tokens), name="kt")
    v = n.part(qkv, (1, heads, tokens, d), name="v")
    a = n.softmax(n.matmul(q, kt))
    o = n.view(n.matmul(a, v), (1, tokens, dim), name="o")
    x = n.add(x, n.linear(o, dim))
    h = n.linear(n.relu(n.linear(n.layernorm(x), 4 * dim)), dim)
    x = n.add(x, h)
    pooled = n.reduce(x, (-2,), keepdim=False)
    return n.build(n.linear(pooled, 10))


SIZES = sorted({int(16 * 1024 * 1.25 ** k) for k in range(32)})  # 16 KiB to ~16 MiB


@pytest.mark.parametrize("shape", [dict(), dict(tokens=1024, grid=32), dict(tokens=196, dim=192, heads=6, grid=14)])
def test_token_graphs_keep_spec_invariants_over_an_sram_sweep(shape):
    g = transformer_block(**shape)
    check_sweep(g, SIZES)
    check_sweep(g, SIZES[::3], dram_latency=1e-7)
    big = simulate(g, prof(sram_bytes=1 << 40))
    net_in, weights, net_out, s = compulsory(g, big)
    assert s["dram_read_bytes"] == net_in + weights and s["dram_write_bytes"] == net_out


def test_the_smallest_sram_of_a_token_graph_is_far_below_its_largest_tensor():
    g = transformer_block(tokens=3136, grid=56)
    with pytest.raises(DoesNotFitError):
        simulate(g, prof(sram_bytes=16 * 1024))
    r = simulate(g, prof(sram_bytes=MB))  # scores (1, 3, 3136, 3136) alone are 29.5 MB
    check_single(g, r)


def test_torchvision_convnext_and_swin_run_on_edge_1mb(isolated, capsys):
    from perfsim.cli import main
    for args in (["torchvision:convnext_tiny", "--resolution", "0.5"], ["torchvision:swin_t"]):
        rc = main(["run", *args, "--no-plots", "--out", str(isolated / "rep"), "--profile", "edge_1mb"])
        out, err = capsys.readouterr()
        assert rc == 0, err
