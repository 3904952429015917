"""CondenseNet-86 (models/condensenet.py): published counts, counting-tool agreement, the learned
group convolution's condensation schedule, and the exactness of ``condense()``.

Published figures (ZOO.md "CondenseNet-86"; paper 000 Table I): 65.81M "FLOPs" in the CondenseNet
convention, 0.52M parameters; pure conv+FC MACs "about 62.4M"; trained model size 16.7 MB.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.fx
import torch.nn as nn

from perfsim.models.condensenet import (CondensedGroupConv, CondensedLinear, LearnedGroupConv,
                                        LearnedLinear, condensenet86, condensenet86_condensed,
                                        condensenet_flops, conv_fc_macs, count_params)

X_SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def condensed():
    return condensenet86_condensed()


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics and affine terms, so the equivalence test can fail on them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)


def _closed_form_macs(model: nn.Module, x: torch.Tensor) -> int:
    """N*Ho*Wo*Co*(Ci/groups)*Kh*Kw per nn.Conv2d + N*in*out per nn.Linear (test's own)."""
    total = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal total
        n, co, ho, wo = out.shape
        total += n * ho * wo * co * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m, inp, out):
        nonlocal total
        total += inp[0].shape[0] * m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total


# ----- structure and published counts ----------------------------------------------------
def test_condensed_structure(condensed):
    assert not condensed.training
    assert not any(isinstance(m, (LearnedGroupConv, LearnedLinear)) for m in condensed.modules())
    convs = [m for m in condensed.modules() if isinstance(m, CondensedGroupConv)]
    assert len(convs) == 42
    ins = [c.in_channels for c in convs]
    expect = ([16 + 8 * i for i in range(14)] + [128 + 16 * i for i in range(14)]
              + [352 + 32 * i for i in range(14)])
    assert ins == expect  # G * in / C = in gathered channels
    for c in convs:
        assert c.conv.groups == 4 and c.conv.kernel_size == (1, 1)
        assert c.index.dtype == torch.long and "index" in dict(c.named_buffers())
        # each group gathers a quarter of the layer's inputs, no duplicates inside a group
        for g in range(4):
            part = c.index[g * c.in_channels // 4:(g + 1) * c.in_channels // 4]
            assert len(set(part.tolist())) == c.in_channels // 4
    assert isinstance(condensed.classifier, CondensedLinear)
    assert condensed.classifier.linear.in_features == 400
    assert condensed.classifier.index.numel() == 400


def test_published_flops_condensenet_convention(condensed):
    flops = condensenet_flops(condensed, X_SHAPE)
    assert round(flops / 1e6, 2) == 65.81  # paper: 65.81M
    assert flops == 65_812_394  # this definition, exactly


def test_convention_by_hand(condensed):
    """The convention rebuilt from the architecture alone: conv+FC MACs + ReLU inputs + pools."""
    macs = _closed_form_macs(condensed, torch.zeros(X_SHAPE))
    relu, pool, hw = 0, 0, 32
    c = 16
    for si, k in enumerate((8, 16, 32)):
        for _ in range(14):
            relu += (c + 4 * k) * hw * hw  # BN-ReLU of the gathered c channels, of the 4k bottleneck
            c += k
        if si < 2:
            hw //= 2
            pool += c * hw * hw * 4  # 2x2 average pool: k^2 per output
    relu += c * hw * hw  # final BN-ReLU, 800 x 8 x 8
    pool += c * hw * hw  # 8x8 global pool: 64 per output
    assert c == 800 and hw == 8
    assert macs + relu + pool + 10 == condensenet_flops(condensed, X_SHAPE)  # + FC bias adds


def test_published_params(condensed):
    n = count_params(condensed)
    assert n == sum(p.numel() for p in condensed.parameters())
    assert round(n / 1e6, 2) == 0.52  # paper: 0.52M
    assert n == 516_202
    # buffers (gather indices, BN statistics) never count
    assert sum(b.numel() for b in condensed.buffers()) > 0


def test_conv_fc_macs_agree_across_tools(condensed):
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(X_SHAPE)
    own = _closed_form_macs(condensed, x)
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            condensed(x)
    assert fc.get_total_flops() % 2 == 0
    fca = FlopCountAnalysis(condensed, x).unsupported_ops_warnings(False)
    fca = fca.uncalled_modules_warnings(False)
    by_op = fca.by_operator()
    fv = by_op["conv"] + by_op["linear"]
    assert own == fc.get_total_flops() // 2 == fv == conv_fc_macs(condensed, X_SHAPE)
    assert own == 62_377_888
    assert round(own / 1e6, 1) == 62.4  # ZOO.md: "about 62.4M"


def test_training_checkpoint_is_the_published_model_size():
    """Table I's 16.7 MB is not 516,202 float32 parameters (2.06 MB): it is the float count of a
    training checkpoint (training-form parameters + SGD momentum + masks + BN statistics)."""
    t = condensenet86()
    params = count_params(t)
    masks = sum(m.mask.numel() for m in t.learned_convs())
    bn_stats = sum(2 * m.num_features for m in t.modules() if isinstance(m, nn.BatchNorm2d))
    assert round((2 * params + masks + bn_stats) * 4 / 1e6, 1) == 16.7


# ----- learned group convolution ----------------------------------------------------------
def test_condensation_schedule():
    model = condensenet86()
    layers = list(model.learned_convs())
    assert len(layers) == 42
    first = layers[0]
    w0 = first.weight.detach().clone()

    def kept_fraction(m):
        k = m.kept_inputs()  # also checks every output of a group shares its mask
        counts = k.sum(1)
        assert bool((counts == counts[0]).all())
        return int(counts[0]) / m.in_channels

    for p, frac in [(0.0, 1.0), (1 / 6 - 1e-6, 1.0), (1 / 6, 0.75), (0.3, 0.75),
                    (1 / 3 - 1e-6, 0.75), (1 / 3, 0.5), (0.49, 0.5), (0.5, 0.25), (0.8, 0.25),
                    (1.0, 0.25)]:
        model.update_progress(p)
        for m in layers:
            assert kept_fraction(m) == frac, (p, m.in_channels)
            assert int(m.stage) == {1.0: 0, 0.75: 1, 0.5: 2, 0.25: 3}[frac]
        assert int(first.mask.sum()) == round(frac * first.weight.numel())
        if p == 1 / 6:
            # stage 1 dropped, in each group, the in/4 inputs with the smallest L1 group sum
            score = w0[:, :, 0, 0].abs().view(-1, 4, first.in_channels).sum(0)
            for g in range(4):
                expect = set(torch.argsort(score[g])[: first.in_channels // 4].tolist())
                assert set(torch.nonzero(~first.kept_inputs()[g]).flatten().tolist()) == expect
    with pytest.raises(ValueError):
        model.update_progress(1.5)


def test_group_lasso_positive_differentiable():
    model = condensenet86()
    loss = model.group_lasso()
    assert loss.item() > 0 and loss.requires_grad
    loss.backward()
    for m in model.learned_convs():
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    # hand check on one layer: sum over (group, input) of the group's L2 norm
    m = next(model.learned_convs())
    w = m.weight.detach()[:, :, 0, 0]
    ref = sum(w[g::4, i].norm() for g in range(4) for i in range(m.in_channels))
    assert math.isclose(m.lasso_loss().item(), float(ref), rel_tol=1e-5)
    model.update_progress(1.0)
    assert model.group_lasso().item() == 0.0


@pytest.mark.parametrize("final_progress", [0.25, 1.0])
def test_condense_equals_masked_training_network(final_progress):
    """The key correctness test: after training steps and condensation stages, the condensed
    network computes what the masked training network computes (eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = condensenet86()
        _randomise_bn(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for p in (0.1, final_progress):
            model.update_progress(p)
            model.train()
            x = torch.randn(4, 3, 32, 32)
            loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (4,)))
            loss = loss + 1e-5 * model.group_lasso()
            opt.zero_grad()
            loss.backward()
            opt.step()
        _randomise_bn(model, seed=2)
        model.eval()
        fast = model.condense()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            ref, out = model(x), fast(x)
    assert int(model.classifier.mask.sum()) == 400
    assert ref.shape == out.shape == (2, 10)
    assert torch.allclose(ref, out, atol=1e-5, rtol=0), (ref - out).abs().max()
    # and the masking really matters: without the classifier mask the outputs differ
    with torch.no_grad():
        model.classifier.mask.fill_(1.0)
        assert not torch.allclose(model(x), out, atol=1e-3)


# ----- tracing, shapes, training ------------------------------------------------------------
def test_fx_traces_both_forms(condensed):
    x = torch.randn(2, 3, 32, 32)
    train_form = condensenet86().eval()
    for m in (train_form, condensed):
        gm = torch.fx.symbolic_trace(m)
        with torch.no_grad():
            assert torch.allclose(gm(x), m(x), atol=1e-6)
    ops = {n.target for n in torch.fx.symbolic_trace(condensed).graph.nodes
           if n.op == "call_function"}
    assert torch.index_select in ops and torch.cat in ops


def test_forward_shapes(condensed):
    with torch.no_grad():
        assert condensed(torch.randn(1, 3, 32, 32)).shape == (1, 10)
        assert condensed(torch.randn(1, 3, 48, 48)).shape == (1, 10)  # global pool
        assert condensenet86(num_classes=100).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_one_sgd_step_trains():
    torch.manual_seed(0)
    model = condensenet86()
    model.update_progress(0.6)  # fully condensed masks; masked weights must stay inert
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    m = next(model.learned_convs())
    assert bool((m.weight.grad[m.mask == 0] == 0).all())  # pruned connections get no gradient
    opt.step()
    after = model.state_dict()
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["features.init_conv.weight"], after["features.init_conv.weight"])


def test_registry_and_determinism(condensed):
    from perfsim.frontends import zoo

    spec = zoo.get("condensenet")
    assert spec.load_factory() is condensenet86_condensed
    state = torch.random.get_rng_state()
    again = spec.build()
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    a, b = condensed.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
