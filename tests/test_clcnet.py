"""clcNet: the zoo models (models/clcnet.py) and the design tools (perfsim/clc.py).

Checks against the clcNet paper (Zhang 2017, arXiv:1712.06145): Table 1 (the
Eq. 2 minimiser), Table 2 (g1 with g2 fixed to 2), Table 4 (clcNet-Ap loses
FCRF), Table 5 (mult-adds and parameters). MACs are counted independently of
perfsim: torch's FlopCounterMode, fvcore, and a closed-form sum.
"""
from __future__ import annotations

import itertools
import json
import operator

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsim.papers.clcnet_design import (
    TABLE1,
    ClcGroups,
    GroupedConv,
    Interlace,
    channel_dependency,
    clc_block_stages,
    clc_cost,
    clc_groups,
    crf_sizes,
    feasible_groups,
    has_fcrf,
    interlace_permutation,
)
from perfsim.errors import InputError
from perfsim.models.clcnet import (
    TABLE2_BLOCKS,
    ChannelInterlace,
    CLCBlock,
    clc_blocks,
    clcnet,
    clcnet_a,
    clcnet_ap,
    clcnet_b,
)

FACTORIES = {"clcnet_a": clcnet_a, "clcnet_b": clcnet_b, "clcnet_ap": clcnet_ap}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: f().eval() for name, f in FACTORIES.items()}


# --------------------------------------------------------------------------
# Table 1: the Eq. (2) minimiser
# --------------------------------------------------------------------------
@pytest.mark.parametrize("row", TABLE1, ids=lambda r: "M{}-L{}-N{}".format(*r[:3]))
def test_table1_row(row):
    m, l, n, g1, g2 = row
    got = clc_groups(m, l, n, kernel_area=9)
    assert (got.g1, got.g2) == (g1, g2)
    assert got.cost == 9 * l * m // g1 + n * l // g2


def test_table1_transcription():
    assert len(TABLE1) == 10
    assert len({r[:3] for r in TABLE1}) == 10
    assert all(m == l for m, l, *_ in TABLE1)  # the paper's rows all have L = M


@pytest.mark.parametrize("row", TABLE1, ids=lambda r: "M{}-L{}-N{}".format(*r[:3]))
def test_table1_minima_are_unique(row):
    """No Table 1 row is decided by tie-breaking: the runner-up costs strictly more."""
    m, l, n, *_ = row
    costs = sorted(clc_cost(m, l, n, a, b) for a, b in feasible_groups(m, l, n))
    assert costs[0] < costs[1]


def _brute_force(m, l, n, area):
    """Independent enumeration of Eq. (2): every integer pair, constraints as printed."""
    best = None
    for g1, g2 in itertools.product(range(1, min(m, l) + 1), range(1, min(l, n) + 1)):
        if m % g1 or l % g1 or l % g2 or n % g2 or g1 * g2 > l:
            continue
        cost = area * l * m / g1 + n * l / g2
        if best is None or cost < best[0]:  # strict: first (g1, g2) in lexicographic order
            best = (cost, g1, g2)
    return best


@settings(max_examples=150, deadline=None)
@given(
    m=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]),
    l=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]),
    n=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]),
    area=st.sampled_from([1, 9, 25]),
)
def test_clc_groups_matches_brute_force(m, l, n, area):
    cost, g1, g2 = _brute_force(m, l, n, area)
    got = clc_groups(m, l, n, kernel_area=area)
    assert got == ClcGroups(g1, g2, int(cost))


def test_tie_break_prefers_smallest_g1():
    # A=1, M=L=N=8: C = 64/g1 + 64/g2; (2,4) and (4,2) both cost 48.
    assert clc_cost(8, 8, 8, 2, 4, 1) == clc_cost(8, 8, 8, 4, 2, 1) == 48
    assert clc_groups(8, 8, 8, kernel_area=1) == ClcGroups(2, 4, 48)


def test_table2_g1_from_eq2_with_g2_fixed():
    """Sec. 4.1: g2 = 2 and L = M; Eq. (2) over g1 alone gives Table 2's g1."""
    for m, n, _stride, g1, g2, _rep in TABLE2_BLOCKS:
        assert g2 == 2
        assert clc_groups(m, m, n, g2=2).g1 == g1


def test_clc_groups_json_and_errors():
    res = clc_groups(32, 32, 64)
    assert json.loads(json.dumps(res.to_dict())) == {"g1": 16, "g2": 2, "cost": 1600}
    with pytest.raises(AttributeError):
        res.g1 = 1  # frozen
    for bad in [(0, 32, 64), (32, -1, 64), (32, 32, 64.0), (True, 32, 64)]:
        with pytest.raises(InputError):
            clc_groups(*bad)
    with pytest.raises(InputError):
        clc_groups(32, 32, 64, kernel_area=0)
    with pytest.raises(InputError):
        clc_groups(32, 32, 64, g2=3)  # 3 divides neither L nor N


# --------------------------------------------------------------------------
# Channel dependency graph and FCRF
# --------------------------------------------------------------------------
def test_interlace_permutation_hand_checked():
    # 6 channels, 3 groups of 2: fields {ch0 of each group}, {ch1 of each group}.
    assert interlace_permutation(6, 3).tolist() == [0, 2, 4, 1, 3, 5]
    assert interlace_permutation(4, 2).tolist() == [0, 2, 1, 3]
    assert interlace_permutation(5, 1).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(InputError):
        interlace_permutation(6, 4)


def test_interlace_permutation_matches_author_torch_code():
    """0-based transcription of f_idx in dqzhang17/clcnet.torch ChannelInterlace.lua."""
    for channel, group in [(8, 4), (12, 3), (64, 32), (32, 16)]:
        f_idx = [0] * channel
        nxt = 1
        for i in range(1, group + 1):
            p = i
            while p <= channel:
                f_idx[p - 1] = nxt
                p += group
                nxt += 1
        assert interlace_permutation(channel, group).tolist() == [v - 1 for v in f_idx]


def test_channel_interlace_module_matches_permutation():
    for c, g in [(6, 3), (64, 32), (128, 64), (10, 1)]:
        x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).expand(2, c, 3, 3)
        out = ChannelInterlace(g)(x)
        assert out.shape == x.shape
        assert out[0, :, 1, 2].long().tolist() == interlace_permutation(c, g).tolist()


def test_cdg_tiny_block_hand_checked():
    # M = L = N = 4, g1 = g2 = 2. IGC: {0,1}->{0,1}, {2,3}->{2,3}. Interlace
    # order [0, 2, 1, 3]. GC group 0 reads interlaced positions {0,1} = IGC
    # outputs {0,2} = both IGC groups = all inputs; GC group 1 reads {1,3}.
    with_interlace = channel_dependency(clc_block_stages(4, 4, 4, 2, 2))
    assert with_interlace.dtype == bool
    assert with_interlace.tolist() == [[True] * 4] * 4
    assert has_fcrf(with_interlace)
    # Without the interlace it is block diagonal: outputs 0,1 see inputs 0,1 only.
    plain = channel_dependency(clc_block_stages(4, 4, 4, 2, 2, interlace=False))
    expected = np.array(
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=bool
    )
    np.testing.assert_array_equal(plain, expected)
    assert not has_fcrf(plain)
    assert crf_sizes(plain).tolist() == [2, 2, 2, 2]


def test_cdg_single_stages_and_shapes():
    # GroupedConv 4 -> 6 with 2 groups: outputs 0-2 from inputs 0-1, 3-5 from 2-3.
    d = channel_dependency([GroupedConv(4, 6, 2)])
    assert d.shape == (6, 4)
    assert d.astype(int).tolist() == [[1, 1, 0, 0]] * 3 + [[0, 0, 1, 1]] * 3
    # An interlace alone is a permutation matrix.
    p = channel_dependency([Interlace(3)], in_channels=6)
    assert p.sum(axis=1).tolist() == [1] * 6 and p.sum(axis=0).tolist() == [1] * 6
    assert [int(np.flatnonzero(r)[0]) for r in p] == [0, 2, 4, 1, 3, 5]
    # M = 6 -> L = 6 (g1 = 3) -> N = 4: GC groups of 3 interlaced channels.
    assert has_fcrf(clc_block_stages(6, 6, 4, 3, 2))  # g1*g2 = 6 <= 6
    six = channel_dependency(clc_block_stages(6, 6, 6, 3, 3))  # g1*g2 = 9 > 6
    assert not has_fcrf(six)
    # GC group 0 reads positions {0,1} = IGC outputs {0,2} = groups 0,1 = inputs 0-3.
    assert six[0].astype(int).tolist() == [1, 1, 1, 1, 0, 0]
    with pytest.raises(InputError):
        channel_dependency([GroupedConv(4, 4, 2), GroupedConv(6, 6, 1)])
    with pytest.raises(InputError):
        GroupedConv(4, 6, 4)


def test_cdg_equals_product_of_stage_matrices():
    """channel_dependency's row propagation equals the boolean matrix product."""
    stages = [GroupedConv(12, 12, 3), Interlace(3), GroupedConv(12, 8, 2), Interlace(4),
              GroupedConv(8, 8, 8)]
    reach = np.eye(12, dtype=int)
    channels = 12
    for stage in stages:
        reach = (stage.dependency(channels).astype(int) @ reach > 0).astype(int)
        channels = reach.shape[0]
    np.testing.assert_array_equal(channel_dependency(stages), reach.astype(bool))


def test_interlace_group_count_matters():
    """Shuffling with L/g1 groups (the inverse permutation) does not give FCRF."""
    m = 16
    g1 = m // 2
    assert has_fcrf([GroupedConv(m, m, g1), Interlace(g1), GroupedConv(m, m, 2)])
    assert not has_fcrf([GroupedConv(m, m, g1), Interlace(m // g1), GroupedConv(m, m, 2)])


@settings(max_examples=100, deadline=None)
@given(
    m=st.sampled_from([2, 4, 6, 8, 12, 16, 24]),
    l=st.sampled_from([2, 4, 6, 8, 12, 16, 24]),
    n=st.sampled_from([2, 4, 6, 8, 12, 16, 24]),
    data=st.data(),
)
def test_fcrf_rule_is_exact(m, l, n, data):
    """Eq. (1): a CLC block has FCRF if and only if g1*g2 <= L."""
    g1 = data.draw(st.sampled_from([g for g in range(1, l + 1) if l % g == 0 and m % g == 0]))
    g2 = data.draw(st.sampled_from([g for g in range(1, l + 1) if l % g == 0 and n % g == 0]))
    assert has_fcrf(clc_block_stages(m, l, n, g1, g2)) == (g1 * g2 <= l)


@pytest.mark.parametrize("name", ["clcnet_a", "clcnet_b", "clcnet_ap"])
def test_model_blocks_fcrf(models, name):
    blocks = list(clc_blocks(models[name]))
    a, b, c, d = models[name].config
    assert len(blocks) == 5 + a + b + c + d
    results = [has_fcrf(block.clc_stages()) for block in blocks]
    if name == "clcnet_ap":
        assert not any(results)
    else:
        assert all(results)


def _measured_cdg(block: CLCBlock) -> np.ndarray:
    """Which inputs each output of the block's linear part (pre-ReLU) responds to.

    Batch element i carries a random pattern on input channel i only; in eval
    mode the IGC -> BN -> interlace -> GC -> BN chain is affine, so the change
    in output channel o against an all-zero input is non-zero exactly when o
    depends on i (random weights make accidental cancellation vanishingly rare).
    """
    m = block.igc.in_channels
    # 1x1 spatial input: with padding 1 only the 3x3 centre tap is used, which
    # is enough to see every channel connection and keeps the test fast.
    x = torch.zeros(m + 1, m, 1, 1, dtype=torch.float64)
    x[torch.arange(m), torch.arange(m)] = torch.randn(m, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        y = block.bn2(block.gc(block.interlace(block.bn1(block.igc(x)))))
    delta = (y[:m] - y[m:]).abs().sum(dim=(2, 3))  # (input i, output o)
    return (delta > 0).T.numpy()


@pytest.mark.parametrize("name", ["clcnet_a", "clcnet_ap"])
def test_measured_cdg_equals_analytic(name):
    torch.manual_seed(1)
    model = FACTORIES[name]().double().eval()
    seen = set()
    for block in clc_blocks(model):
        key = (block.igc.in_channels, block.gc.out_channels, block.igc.stride)
        if key in seen:
            continue
        seen.add(key)
        np.testing.assert_array_equal(
            _measured_cdg(block), channel_dependency(block.clc_stages())
        )
    assert len(seen) == 9


# --------------------------------------------------------------------------
# Table 5: mult-adds and parameters
# --------------------------------------------------------------------------
def _closed_form_macs(model: nn.Module, hw: tuple[int, int]) -> int:
    """N*Ho*Wo*Co*(Ci/groups)*Kh*Kw over convs (run in order) + in*out for linear."""
    h, w = hw
    total = 0
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            (sh, sw), (ph, pw), (dh, dw) = mod.stride, mod.padding, mod.dilation
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            total += h * w * mod.out_channels * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features
    return total


def _flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def _fvcore_macs(model: nn.Module, x: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    ops = analysis.by_operator()
    return ops["conv"] + ops.get("linear", 0) + ops.get("addmm", 0)


PAPER_TABLE5 = {  # model: (mult-adds in M, printed decimals; params in M, printed decimals)
    "clcnet_a": (343, 0, 3.25, 2),
    "clcnet_b": (425, 0, 4.1, 1),
}


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["clcnet_a", "clcnet_b", "clcnet_ap"])
def test_macs_three_ways(models, name):
    model = models[name]
    x = torch.randn(1, 3, 224, 224)
    closed = _closed_form_macs(model, (224, 224))
    assert _flop_counter_macs(model, x) == closed
    assert _fvcore_macs(model, x) == closed


@pytest.mark.parametrize("name", sorted(PAPER_TABLE5))
def test_table5(models, name):
    model = models[name]
    macs_m, macs_dec, params_m, params_dec = PAPER_TABLE5[name]
    macs = _closed_form_macs(model, (224, 224))
    params = sum(p.numel() for p in model.parameters())  # BN weight+bias included
    assert round(macs / 1e6, macs_dec) == macs_m
    assert round(params / 1e6, params_dec) == params_m


def test_table5_needs_bn_params_and_ap_costs_the_same(models):
    a, ap = models["clcnet_a"], models["clcnet_ap"]
    bn = sum(
        p.numel() for m in a.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    params = sum(p.numel() for p in a.parameters())
    assert round((params - bn) / 1e6, 2) != 3.25  # ZOO.md: 3.25M only with BN counted
    # Table 4: clcNet-Ap has (here exactly) the cost of clcNet-A.
    assert sum(p.numel() for p in ap.parameters()) == params
    assert _closed_form_macs(ap, (224, 224)) == _closed_form_macs(a, (224, 224))


# --------------------------------------------------------------------------
# fx tracing, forward, training
# --------------------------------------------------------------------------
ALLOWED_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Linear, nn.Identity)
ALLOWED_FUNCTIONS = {torch.flatten, operator.getitem}
ALLOWED_METHODS = {"size", "view", "transpose", "contiguous"}


@pytest.mark.parametrize("name", ["clcnet_a", "clcnet_b", "clcnet_ap"])
def test_fx_trace_and_forward(models, name):
    model = models[name]
    gm = torch.fx.symbolic_trace(model)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            assert isinstance(gm.get_submodule(node.target), ALLOWED_MODULES), node.target
        elif node.op == "call_function":
            assert node.target in ALLOWED_FUNCTIONS, node.target
        elif node.op == "call_method":
            assert node.target in ALLOWED_METHODS, node.target
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, 1000)
        torch.testing.assert_close(gm(x), y, rtol=0, atol=0)
    n_interlace = sum(isinstance(m, ChannelInterlace) for m in model.modules())
    assert n_interlace == (0 if name == "clcnet_ap" else len(list(clc_blocks(model))))


def test_small_num_classes_and_general_constructor():
    model = clcnet(0, 0, 1, 0, num_classes=7).eval()
    assert len(list(clc_blocks(model))) == 6
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
        assert clcnet_b(num_classes=10).eval()(torch.randn(1, 3, 96, 96)).shape == (1, 10)
    with pytest.raises(ValueError):
        clcnet(-1, 1, 1, 1)


def test_zoo_registry_builds():
    from perfsim.frontends import zoo

    for name, factory in FACTORIES.items():
        built = zoo.get(name).build(num_classes=10)
        assert type(built) is type(factory(num_classes=10))
        assert built.fc.out_features == 10


def test_one_training_step_changes_weights():
    torch.manual_seed(0)
    model = clcnet_a(num_classes=10).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, target = torch.randn(2, 3, 224, 224), torch.tensor([3, 7])
    loss = nn.functional.cross_entropy(model(x), target)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = model.state_dict()
    for key in ["features.0.weight", "features.3.igc.weight", "features.3.gc.weight", "fc.weight"]:
        assert not torch.equal(before[key], after[key]), key
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
