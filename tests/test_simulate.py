"""The simulator on small networks whose traffic and time are worked out by hand."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from perfsim.errors import DoesNotFitError
from perfsim.lowering import lower
from perfsim.profile import load_profile
from perfsim.simulate import COLUMNS, simulate


def profile(**kw):
    base = dict(sram_bytes=10**6, dram_bandwidth=1e9, matrix_flops=1e12, vector_flops=1e10, bias_bits=32)
    base.update(kw)
    return load_profile("edge_1mb", **base)


class SkipNet(nn.Module):
    """stem y = conv(x); a = c1(y); b = c2(a); z = y + b. 1x1 convs, 4 channels, 4x4, no bias.

    Sizes at 8 bits: x 48 B, y/a/b/z 64 B; weights: stem 12 B, c1/c2 16 B.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1, bias=False)
        self.c1 = nn.Conv2d(4, 4, 1, bias=False)
        self.c2 = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x):
        y = self.stem(x)
        return y + self.c2(self.c1(y))


@pytest.fixture(scope="module")
def skip_graph():
    return lower(SkipNet(), (3, 4, 4))


def test_unbounded_sram_moves_only_compulsory_traffic(skip_graph):
    r = simulate(skip_graph, profile())
    s = r.summary
    assert s["dram_read_bytes"] == 48 + 12 + 16 + 16
    assert s["dram_write_bytes"] == 64  # the network output
    assert s["spill_bytes"] == 0
    assert [row.sram_used_bytes for row in r.rows] == [124, 144, 208, 192]


def test_spill_is_written_and_read_back(skip_graph):
    # 200 B: at c2, y (dirty, next used by the add) must make room -> spilled, then read back at the add
    r = simulate(skip_graph, profile(sram_bytes=200))
    stem, c1, c2, add = r.rows
    assert c2.spill_bytes == 64 and c2.dram_write_bytes == 64
    assert add.dram_read_bytes == 64 and add.dram_write_bytes == 64
    s = r.summary
    assert s["dram_read_bytes"] == 48 + 12 + 16 + 16 + 64
    assert s["dram_write_bytes"] == 64 + 64
    assert s["spill_bytes"] == 64
    assert all(row.sram_used_bytes <= 200 for row in r.rows)


def test_timing_rules(skip_graph):
    p = profile(sram_bytes=200, dram_latency="10ns")
    r = simulate(skip_graph, p)
    stem = r.rows[0]
    assert stem.t_data_s == pytest.approx((48 + 12) / 1e9 + 2 * 10e-9)
    assert stem.t_matrix_s == pytest.approx(2 * 4 * 16 * 3 / 1e12)
    assert stem.t_total_s == pytest.approx(stem.t_data_s + stem.t_matrix_s)
    add = r.rows[3]
    assert add.t_vector_s == pytest.approx(64 / 1e10)
    assert add.bound in ("data", "vector")
    over = simulate(skip_graph, profile(sram_bytes=200, dram_latency="10ns", overlap=True))
    for a, b in zip(r.rows, over.rows):
        assert b.t_total_s == pytest.approx(max(a.t_data_s, a.t_matrix_s + a.t_vector_s))
    assert over.latency_s <= r.latency_s
    assert r.summary["latency_s"] == pytest.approx(sum(row.t_total_s for row in r.rows))


def test_batch_scales_activations_not_weights(skip_graph):
    one = simulate(skip_graph, profile())
    four = simulate(skip_graph, profile(), batch=4)
    assert four.summary["macs"] == 4 * one.summary["macs"]
    assert four.summary["dram_read_bytes"] == 4 * 48 + 12 + 16 + 16
    assert four.rows[0].in_shape == "4x3x4x4"
    assert four.summary["latency_per_sample_s"] == pytest.approx(four.latency_s / 4)


def test_resident_weights_preload_and_fallback(skip_graph):
    r = simulate(skip_graph, profile(weights="resident"))
    assert r.summary["preload_bytes"] == 12 + 16 + 16
    assert r.summary["dram_read_bytes"] == 48
    # pinned weights are resident: they count in every layer's SRAM figure
    assert [row.sram_used_bytes for row in r.rows] == [48 + 64 + 44, 64 + 64 + 44, 64 + 64 + 64 + 44,
                                                        64 + 64 + 64 + 44]
    small = simulate(skip_graph, profile(weights="resident", sram_bytes=200))
    assert small.summary["preload_bytes"] == 0
    assert any("stream instead" in n for n in small.summary["notes"])


class Wide(nn.Module):
    """One 1x1 conv 16->16 on 16x16: input 4096 B, output 4096 B, weights 256 B."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 1, bias=False)

    def forward(self, x):
        return self.conv(x)


class WideSkip(Wide):
    """The same conv, but its input is read again afterwards (y + x), so it cannot be overwritten."""

    def forward(self, x):
        return self.conv(x) + x


@pytest.fixture(scope="module")
def wide_graph():
    return lower(Wide(), (16, 16, 16))


@pytest.fixture(scope="module")
def wide_skip_graph():
    return lower(WideSkip(), (16, 16, 16))


def test_tiling_keeps_input_and_output_when_they_fit(wide_skip_graph):
    row = simulate(wide_skip_graph, profile(sram_bytes=8400)).rows[0]
    assert row.plan == "keep_in_out" and row.tiles == 2
    assert row.dram_read_bytes == 4096 + 256 and row.refetch_bytes == 0
    assert row.sram_used_bytes <= 8400


def test_tiling_keeps_input_and_streams_output(wide_skip_graph):
    row = simulate(wide_skip_graph, profile(sram_bytes=5000)).rows[0]
    assert row.plan == "keep_in" and row.tiles > 1
    assert row.dram_read_bytes == 4096 + 256 and row.dram_write_bytes == 4096 == row.spill_bytes
    assert row.sram_used_bytes <= 5000


def test_output_bands_overwrite_a_dying_input(wide_graph):
    """SPEC: an output band may overwrite input rows already consumed (the input has no later reader)."""
    (row,) = simulate(wide_graph, profile(sram_bytes=5000)).rows
    assert row.plan == "overwrite" and row.tiles > 1
    # compulsory traffic only: the input and weights in, the network output out; nothing spilled
    assert (row.dram_read_bytes, row.dram_write_bytes, row.spill_bytes) == (4096 + 256, 4096, 0)
    # one 16-row band of 16 channels: peak = input not yet consumed + output so far + weights
    rows_per_band = 16 // row.tiles
    assert row.sram_used_bytes == max(4096 * (16 - k * rows_per_band) // 16 + 256 * rows_per_band * (k + 1) + 256
                                      for k in range(row.tiles))
    assert row.sram_used_bytes <= 5000


def test_tiling_streams_everything_when_nothing_fits(wide_graph):
    (row,) = simulate(wide_graph, profile(sram_bytes=600)).rows
    assert row.plan == "stream"
    assert row.dram_read_bytes >= 4096 + 256
    assert row.refetch_bytes == row.dram_read_bytes - (4096 + 256)
    assert row.sram_used_bytes <= 600


def test_layer_that_cannot_fit_names_the_smallest_sram(wide_graph):
    with pytest.raises(DoesNotFitError) as e:
        simulate(wide_graph, profile(sram_bytes=100))
    msg = str(e.value)
    assert "'conv'" in msg
    need = int(msg.rsplit("is ", 1)[1].split(" B")[0])
    simulate(wide_graph, profile(sram_bytes=need))  # the quoted size really runs it
    with pytest.raises(DoesNotFitError):
        simulate(wide_graph, profile(sram_bytes=need - 1))


def test_dense_block_spills_on_small_sram_not_on_large():
    """Dense connectivity keeps every earlier feature map alive until the last reader."""
    class DenseBlock(nn.Module):
        def __init__(self, c0=16, growth=8, n=6):
            super().__init__()
            self.stem = nn.Conv2d(3, c0, 3, padding=1, bias=False)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(c0 + i * growth), nn.ReLU(),
                              nn.Conv2d(c0 + i * growth, growth, 3, padding=1, bias=False))
                for i in range(n))

        def forward(self, x):
            x = self.stem(x)
            for layer in self.layers:
                x = torch.cat([x, layer(x)], 1)
            return x

    g = lower(DenseBlock(), (3, 16, 16))
    big = simulate(g, profile(sram_bytes="1MiB"))
    assert big.summary["spill_bytes"] == 0
    small = simulate(g, profile(sram_bytes="6KiB"))
    assert small.summary["spill_bytes"] > 0
    assert small.summary["peak_sram_bytes"] <= 6 * 1024
    # every concat part stays alive to the end: the final output is all of them, written once
    live_parts = len(g.outputs)
    assert live_parts == 7


def test_columns_are_specs_in_order(skip_graph):
    spec = ("layer, op, unit, in_shape, out_shape, kernel, stride, groups, macs, flops, vector_ops, params, "
            "weight_bytes, in_bytes, out_bytes, sram_used_bytes, dram_read_bytes, dram_write_bytes, spill_bytes, "
            "tiles, t_data_s, t_matrix_s, t_vector_s, t_total_s, bound").split(", ")
    assert list(COLUMNS[: len(spec)]) == spec
    df = simulate(skip_graph, profile()).to_frame()
    assert list(df.columns[: len(spec)]) == spec


def test_summary_totals_equal_column_sums(skip_graph):
    r = simulate(skip_graph, profile(sram_bytes=200))
    df = r.to_frame()
    for key in ("macs", "flops", "vector_ops", "params", "dram_read_bytes", "dram_write_bytes", "spill_bytes",
                "refetch_bytes"):
        assert r.summary[key] == df[key].sum(), key
    assert r.summary["model_size_bytes"] == df["weight_bytes"].sum()
    assert r.summary["peak_sram_bytes"] == df["sram_used_bytes"].max()
    assert sum(r.summary["bound_counts"].values()) == len(df)


def test_bad_batch_is_an_input_error(skip_graph):
    from perfsim.errors import InputError
    with pytest.raises(InputError):
        simulate(skip_graph, profile(), batch=0)


def test_simulator_core_does_not_import_torch(skip_graph, tmp_path):
    """simulate/tiling/profile/report are numpy + dataclasses; a cached CLI run never imports torch."""
    import json
    import subprocess
    import sys
    path = tmp_path / "g.json"
    path.write_text(json.dumps(skip_graph.to_dict()))
    code = (
        "import json, sys\n"
        "from perfsim.graph import Graph\n"
        "from perfsim.profile import load_profile\n"
        "from perfsim.simulate import simulate\n"
        "from perfsim.report import write_report\n"
        f"g = Graph.from_dict(json.load(open({str(path)!r})))\n"
        "r = simulate(g, load_profile('edge_1mb'))\n"
        f"write_report(r, {str(tmp_path / 'rep')!r}, plots=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(r.summary['dram_read_bytes'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 48 + 12 + 16 + 16


def test_fold_and_fuse_switches_change_vector_time_and_weight_bytes():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
    g = lower(net, (3, 8, 8))
    n = 8 * 8 * 8
    base = simulate(g, profile()).rows[0]
    assert base.vector_ops == 0 and base.t_vector_s == 0
    assert base.weight_bytes == 216 + 8 * 4  # folding creates 8 32-bit biases
    unfolded = simulate(g, profile(fold_batchnorm=False)).rows[0]
    assert unfolded.vector_ops == 2 * n and unfolded.weight_bytes == 216 + 16 * 4
    unfused = simulate(g, profile(fuse_activation=False)).rows[0]
    assert unfused.vector_ops == 2 * n  # ReLU6: 2 ops per element
    assert unfused.t_vector_s == pytest.approx(2 * n / 1e10)
    both = simulate(g, profile(fold_batchnorm=False, fuse_activation=False)).rows[0]
    assert both.vector_ops == 4 * n
    assert both.t_total_s == pytest.approx(both.t_data_s + both.t_matrix_s + both.t_vector_s)


def test_does_not_fit_also_names_the_network_wide_minimum():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.Conv2d(16, 64, 1, bias=False))
    g = lower(net, (3, 32, 32))
    with pytest.raises(DoesNotFitError) as e:
        simulate(g, profile(sram_bytes=64))
    whole = int(str(e.value).split("every layer of the network: ")[1].split(" B")[0])
    simulate(g, profile(sram_bytes=whole))  # the whole network runs at the quoted size
    with pytest.raises(DoesNotFitError):
        simulate(g, profile(sram_bytes=whole - 1))


def test_eviction_ties_prefer_the_smallest_that_suffices():
    """Found by an audit: with SPEC's literal tie rule (larger first), 4 more bytes of SRAM
    spilled b (2,048 B) instead of a (512 B) and total traffic rose by 18 %."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 32, 1)
            self.c3, self.c4 = nn.Conv2d(32, 24, 3, padding=1), nn.Conv2d(24, 26, 3, padding=1)
            self.c5 = nn.Conv2d(40, 26, 1)

        def forward(self, x):
            a = self.c1(x)
            b = self.c2(a)
            e = self.c4(self.c3(b))
            return self.c5(torch.cat([a, b], 1)) + e

    g = lower(Net(), (3, 8, 8))
    traffic = []
    for size in range(11000, 11300, 4):
        s = simulate(g, profile(sram_bytes=size)).summary
        traffic.append(s["dram_read_bytes"] + s["dram_write_bytes"])
    assert all(b <= a for a, b in zip(traffic, traffic[1:]))
    r = simulate(g, profile(sram_bytes=11104))
    assert max(row.spill_bytes for row in r.rows) == 512  # a, not b
