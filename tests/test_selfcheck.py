"""The self-check: lowering fails, in one line naming the module, rather than be silently wrong."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from perfsim.frontends.lowering import lower, rules
from perfsim.frontends.lowering.selfcheck import SelfCheckError


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 16, 10))

    def forward(self, x):
        return self.head(self.stem(x))


def test_a_mac_count_that_disagrees_with_the_flop_counter_fails_naming_the_module(monkeypatch):
    honest = rules.RULES["addmm"]

    def halved(call):
        cost = honest(call)
        return rules.Cost(cost.kind, macs=cost.macs // 2, weight_elems=cost.weight_elems, bias_elems=cost.bias_elems)

    monkeypatch.setitem(rules.RULES, "addmm", halved)
    with pytest.raises(SelfCheckError) as e:
        lower(Mlp(), (3, 4, 4))
    assert str(e.value) == ("lowering disagrees with torch's flop counter at 'head.1' (Linear): 640 MACs lowered, "
                            "1,280 counted (640 MACs missing)")


def test_the_same_model_passes_with_the_honest_rule():
    assert lower(Mlp(), (3, 4, 4)).macs == 16 * 8 * 3 + 128 * 10


def test_a_parameter_that_lands_in_no_row_fails():
    """A parameter used as an index feeds a gather, which makes no row: refused, not dropped."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.order = nn.Parameter(torch.tensor([3.0, 2.0, 1.0, 0.0]))

        def forward(self, x):
            return self.conv(x)[:, self.order.long()]

    with pytest.raises(SelfCheckError, match=r"parameter 'order' read by the forward at '' \(M\) lands in no row: "
                                             r"4 parameter values would be dropped"):
        lower(M(), (3, 4, 4))


def test_data_that_leaves_torch_and_comes_back_keeps_its_work():
    """Through numpy the activation becomes a constant (the graph no longer knows b depends on a), but no
    work is dropped: a convolution counts whatever it reads, as the flop counter does."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            y = torch.from_numpy(self.a(x).numpy() * 2)
            return self.b(y)

    g = lower(M(), (3, 6, 6))
    assert g.macs == 36 * 4 * 3 + 16 * 4 * 36
    assert sum(layer.params for layer in g.layers) == 16 + 148
    assert g.layers[1].inputs == ()


def test_a_parameter_read_only_for_its_shape_is_not_used():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.template = nn.Parameter(torch.ones(1, 4, 1, 1))

        def forward(self, x):
            return self.conv(x) + torch.zeros_like(self.template)

    g = lower(M(), (3, 2, 2))
    assert sum(layer.params for layer in g.layers) == 16 and g.params == 20
