"""CondenseNet-86 for CIFAR (Huang, Liu, van der Maaten, Weinberger, CVPR 2018), the baseline of paper 000.

Definition (ZOO.md "CondenseNet-86", read from the authors' code, github.com/ShichenLiu/CondenseNet:
``models/condensenet.py``, ``layers.py``, ``utils.py``; everything here is written afresh):

* stem: conv3x3 3->16, stride 1, padding 1, no bias (16 = 2 x the first growth rate);
* 3 dense stages of 14 layers each, growth rates 8, 16, 32; bottleneck 4;
  channels 16 -> 128 -> 352 -> 800;
* transitions: 2x2 average pool, stride 2, only (no conv);
* end: BN -> ReLU -> global average pool (8x8 on a 32x32 input; adaptive so other input
  sizes work) -> flatten -> classifier (FC 800 -> num_classes, with bias);
* dense layer (training form)::

      x -> [learned group conv: BN -> ReLU -> masked 1x1 conv in->4k (G = 4 groups, C = 4)]
        -> BN -> ReLU -> 3x3 conv 4k->k, 4 groups -> concat([x, .])

* dense layer (test-time, "condensed" form)::

      x -> index_select(kept channels) -> BN -> ReLU -> 1x1 conv (4 groups) -> channel shuffle
        -> BN -> ReLU -> 3x3 conv, 4 groups -> concat([x, .])

  and the classifier becomes index_select(400 of the 800 features) -> Linear(400, classes).

Learned group convolution (``LearnedGroupConv``). The 1x1 conv has a full weight and a 0/1
``mask`` buffer of the same shape; the forward uses ``weight * mask``. Output channel ``o``
belongs to group ``o % G`` (the reference's interleaved grouping). Training calls
``model.update_progress(p)`` every iteration with the fraction of training done, ``p`` in [0, 1].
With condensation factor C there are C-1 condensation stages in the first half of training: stage
``s`` (1..C-1) is reached when ``2 p >= s / (C-1)`` (C = 4: p = 1/6, 1/3, 1/2). At each stage, each
group drops ``in_channels // C`` of its still-connected input channels, those with the smallest
L1 norm of the group's (masked) weights, sum over the group's outputs of ``|W[o, i]|``. After the
last stage each group keeps ``in_channels / C`` inputs. ``group_lasso()`` is the reference's
group-lasso regulariser, ``sum_g sum_i sqrt(sum_{o in g} W[o, i]^2)`` over the masked weights
(zero once the last stage is reached), for the caller to add to the loss times a lambda.

Conversion (``condense()``). Each learned conv becomes ``CondensedGroupConv``: the kept input
indices of group 0, then group 1, ... are gathered (duplicates allowed) by ``torch.index_select``
with a registered index buffer; the BN is the gathered copy of the original BN (BN and ReLU are
per-channel, so gather-then-BN equals BN-then-gather); a 1x1 conv with G groups holds each
group's kept weights, its output channel ``g * O/G + k`` being original output ``g + k G``; the
channel shuffle (view as (G, O/G), transpose) restores the original order exactly. The
classifier keeps the 400 (= half) inputs whose weight columns have the largest L1 norm (the
reference's ``CondensingLinear(model, 0.5)``). The reference only applies that selection at
conversion time; here it is recorded on the training network too (``LearnedLinear.mask``), so
after ``condense()`` the masked training network and the condensed network compute the same
function (tested to 1e-5).

Deliberate differences from the reference code (behaviour-neutral in normal training):

* condensation happens in ``update_progress`` instead of inside ``forward`` (forward has no
  Python control flow, so ``torch.fx.symbolic_trace`` works on both forms);
* if the progress jumps over several stage boundaries at once, each missed stage's drop is done
  in turn (the reference does one drop and marks all stages done; with per-iteration calls the
  two never differ);
* selection uses a stable sort over the still-connected channels only (the reference sorts all
  columns and relies on pruned ones summing to exactly zero);
* the channel shuffle that makes the condensed 1x1 conv equal to the masked one sits right after
  that conv, as in the reference's ``CondensingConv``/``CondenseConv``. The reference has no shuffle
  after the 3x3 conv (``_DenseLayer.forward`` concatenates its output directly), and neither does
  this definition.

``condensenet86_condensed()`` builds the training form with a fixed seed (0) on fresh weights,
runs all condensation stages (L1 selection on those weights, the real procedure minus the
training), and returns the condensed network in eval mode: its structure, counts and cost are
exactly those of a trained CondenseNet-86; only the weight values (and so which channels are kept)
differ.

Counts of the condensed network (batch 1, 3x32x32; asserted by tests/test_condensenet.py):
65,812,394 "FLOPs" in the CondenseNet convention (conv MACs + one per ReLU input element + k^2 per
average-pool output + FC in*out + out; ``condensenet_flops``), the published 65.81M; 62,377,888
conv+FC MACs (``conv_fc_macs``; the "about 62.4M" of ZOO.md), of which 37,158,912 in the 1x1
group convs, 24,772,608 in the 3x3 group convs, 442,368 in the stem, 4,000 in the FC; 516,202
parameters (PyTorch's count, BN included, buffers not), the published 0.52M.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LearnedGroupConv",
    "CondensedGroupConv",
    "LearnedLinear",
    "CondensedLinear",
    "DenseLayer",
    "CondenseNet",
    "channel_shuffle",
    "condensenet86",
    "condensenet86_condensed",
    "count_params",
    "conv_fc_macs",
    "condensenet_flops",
]


def channel_shuffle(x: torch.Tensor, groups: int, channels: int) -> torch.Tensor:
    """Interleave ``groups`` contiguous channel groups (ShuffleNet's shuffle); fx-traceable."""
    n, h, w = x.size(0), x.size(2), x.size(3)
    x = x.view(n, groups, channels // groups, h, w)
    x = x.transpose(1, 2).contiguous()
    return x.view(n, channels, h, w)


def _he_init_(conv_weight: torch.Tensor) -> None:
    """The reference's init: N(0, sqrt(2 / (k*k*out_channels)))."""
    out_ch, _, kh, kw = conv_weight.shape
    with torch.no_grad():
        conv_weight.normal_(0.0, (2.0 / (kh * kw * out_ch)) ** 0.5)


class LearnedGroupConv(nn.Module):
    """BN -> activation -> (dropout) -> 1x1 conv whose weight is multiplied by a 0/1 mask.

    ``groups`` (G) groups of output channels (output ``o`` is in group ``o % G``) each learn which
    ``in_channels / condense_factor`` inputs to keep over ``condense_factor - 1`` stages.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4,
                 condense_factor: int = 4, dropout: float = 0.0,
                 activation: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        if in_channels % groups or in_channels % condense_factor or out_channels % groups:
            raise ValueError(f"LearnedGroupConv({in_channels}, {out_channels}): channels must be "
                             f"divisible by groups={groups} and condense_factor={condense_factor}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.condense_factor = condense_factor
        self.dropout = dropout
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = activation()
        if dropout > 0:
            self.drop = nn.Dropout(dropout)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        _he_init_(self.weight)
        self.register_buffer("mask", torch.ones(out_channels, in_channels, 1, 1))
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(x))
        if self.dropout > 0:  # static attribute, not data-dependent
            x = self.drop(x)
        return F.conv2d(x, self.weight * self.mask)

    # ----- condensation ---------------------------------------------------------------
    def target_stage(self, progress: float) -> int:
        """Condensation stage the reference reaches at training progress ``progress``."""
        c = self.condense_factor
        for i in range(c - 1):
            if progress * 2 < (i + 1) / (c - 1):
                return i
        return c - 1

    def kept_inputs(self) -> torch.Tensor:
        """Bool (G, in_channels): which inputs each group still uses."""
        d_out = self.out_channels // self.groups
        m = self.mask[:, :, 0, 0].view(d_out, self.groups, self.in_channels) > 0
        if not bool((m == m[0:1]).all()):
            raise RuntimeError("mask differs between output channels of one group")
        return m[0]

    @torch.no_grad()
    def _drop(self, delta: int) -> None:
        g, d_out = self.groups, self.out_channels // self.groups
        # importance of input i for group g: sum over the group's outputs of |W[o, i]|
        score = (self.weight * self.mask).abs().sum(dim=(2, 3))
        score = score.view(d_out, g, self.in_channels).sum(0)  # (G, in)
        kept = self.kept_inputs()
        if int(kept.sum(1).min()) < delta:
            raise RuntimeError("nothing left to drop")
        score = score.masked_fill(~kept, float("inf"))
        drop = torch.sort(score, dim=1, stable=True).indices[:, :delta]  # (G, delta)
        mask = self.mask.view(d_out, g, self.in_channels)
        for gi in range(g):
            mask[:, gi, drop[gi]] = 0.0

    @torch.no_grad()
    def update_progress(self, progress: float) -> None:
        target = self.target_stage(float(progress))
        while int(self.stage) < target:
            self._drop(self.in_channels // self.condense_factor)
            self.stage += 1

    def lasso_loss(self) -> torch.Tensor:
        if int(self.stage) >= self.condense_factor - 1:
            return self.weight.new_zeros(())
        d_out = self.out_channels // self.groups
        w = (self.weight * self.mask)[:, :, 0, 0].pow(2)
        w = w.view(d_out, self.groups, self.in_channels).sum(0)
        return w.clamp(min=1e-6).sqrt().sum()


class CondensedGroupConv(nn.Module):
    """Test-time learned group conv: gather -> BN -> activation -> 1x1 group conv -> shuffle."""

    def __init__(self, index: torch.Tensor, out_channels: int, groups: int,
                 activation: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        n = int(index.numel())
        self.in_channels = n  # gathered channels
        self.out_channels = out_channels
        self.groups = groups
        self.register_buffer("index", index.clone().long())
        self.norm = nn.BatchNorm2d(n)
        self.act = activation()
        self.conv = nn.Conv2d(n, out_channels, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.index_select(x, 1, self.index)
        x = self.conv(self.act(self.norm(x)))
        return channel_shuffle(x, self.groups, self.out_channels)

    @classmethod
    @torch.no_grad()
    def from_learned(cls, m: LearnedGroupConv) -> "CondensedGroupConv":
        g, d_out = m.groups, m.out_channels // m.groups
        kept = m.kept_inputs()
        counts = kept.sum(1)
        if not bool((counts == counts[0]).all()):
            raise RuntimeError("groups keep different numbers of inputs")
        sets = [torch.nonzero(kept[gi]).flatten() for gi in range(g)]
        index = torch.cat(sets)
        new = cls(index, m.out_channels, g, activation=type(m.act))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new.norm, name).copy_(getattr(m.norm, name)[index])
        new.norm.num_batches_tracked.copy_(m.norm.num_batches_tracked)
        new.norm.eps, new.norm.momentum = m.norm.eps, m.norm.momentum
        w = m.weight[:, :, 0, 0].view(d_out, g, m.in_channels)  # [k, g, i] = W[g + k*G, i]
        blocks = [w[:, gi][:, sets[gi]] for gi in range(g)]  # each (d_out, n_keep)
        new.conv.weight.copy_(torch.stack(blocks).reshape(m.out_channels, -1, 1, 1))
        return new


class LearnedLinear(nn.Module):
    """The classifier of the training form: a linear layer with a 0/1 input mask.

    The mask is all ones during training; ``select_inputs`` keeps the inputs with the largest
    L1 weight-column norm, as CondenseNet's conversion does."""

    def __init__(self, in_features: int, out_features: int, keep_fraction: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.keep_fraction = keep_fraction
        ref = nn.Linear(in_features, out_features)  # PyTorch's default init, zero bias (reference)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("mask", torch.ones(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    @property
    def n_keep(self) -> int:
        return int(self.in_features * self.keep_fraction)

    def selected(self) -> bool:
        return int(self.mask.sum()) == self.n_keep

    @torch.no_grad()
    def select_inputs(self) -> None:
        if self.selected():
            return
        score = (self.weight * self.mask).abs().sum(0)
        top = torch.topk(score, self.n_keep).indices
        self.mask.zero_()
        self.mask[top] = 1.0


class CondensedLinear(nn.Module):
    """Test-time classifier: gather the kept features -> Linear."""

    def __init__(self, index: torch.Tensor, out_features: int) -> None:
        super().__init__()
        self.register_buffer("index", index.clone().long())
        self.linear = nn.Linear(int(index.numel()), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.index_select(x, 1, self.index))

    @classmethod
    @torch.no_grad()
    def from_learned(cls, m: LearnedLinear) -> "CondensedLinear":
        index = torch.nonzero(m.mask > 0).flatten()
        new = cls(index, m.out_features)
        new.linear.weight.copy_(m.weight[:, index])
        new.linear.bias.copy_(m.bias)
        return new


class DenseLayer(nn.Module):
    """CondenseNet dense layer: learned group 1x1 conv -> BN -> ReLU -> 3x3 group conv; concat."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4, group_1x1: int = 4,
                 group_3x3: int = 4, condense_factor: int = 4, dropout: float = 0.0,
                 activation: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        mid = bottleneck * growth
        self.conv_1 = LearnedGroupConv(in_channels, mid, groups=group_1x1,
                                       condense_factor=condense_factor, dropout=dropout,
                                       activation=activation)
        self.norm_2 = nn.BatchNorm2d(mid)
        self.act_2 = activation()
        self.conv_2 = nn.Conv2d(mid, growth, 3, padding=1, groups=group_3x3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1(x)
        y = self.conv_2(self.act_2(self.norm_2(y)))
        return torch.cat([x, y], 1)


class CondenseNet(nn.Module):
    """CondenseNet skeleton for CIFAR: stem, dense stages with 2x2 avg-pool transitions, head.

    ``make_layer(in_channels, growth)`` builds one dense layer (default: CondenseNet's)."""

    def __init__(self, stages: Sequence[int] = (14, 14, 14), growth: Sequence[int] = (8, 16, 32),
                 num_classes: int = 10, bottleneck: int = 4, group_1x1: int = 4,
                 group_3x3: int = 4, condense_factor: int = 4, dropout: float = 0.0,
                 activation: Callable[[], nn.Module] = nn.ReLU, stem_stride: int = 1,
                 classifier_keep: float = 0.5,
                 make_layer: Callable[[int, int], nn.Module] | None = None) -> None:
        super().__init__()
        if len(stages) != len(growth):
            raise ValueError("stages and growth must have the same length")
        if make_layer is None:
            def make_layer(c: int, k: int) -> nn.Module:
                return DenseLayer(c, k, bottleneck, group_1x1, group_3x3, condense_factor,
                                  dropout, activation)
        self.progress = 0.0
        ch = 2 * growth[0]
        mods: "OrderedDict[str, nn.Module]" = OrderedDict()
        mods["init_conv"] = nn.Conv2d(3, ch, 3, stride=stem_stride, padding=1, bias=False)
        for i, (n, k) in enumerate(zip(stages, growth)):
            block = nn.Sequential(OrderedDict(
                (f"denselayer_{j + 1}", make_layer(ch + j * k, k)) for j in range(n)))
            mods[f"denseblock_{i + 1}"] = block
            ch += n * k
            if i < len(stages) - 1:
                mods[f"transition_{i + 1}"] = nn.AvgPool2d(2, 2)
        mods["norm_last"] = nn.BatchNorm2d(ch)
        mods["act_last"] = activation()
        mods["pool_last"] = nn.AdaptiveAvgPool2d(1)
        self.features = nn.Sequential(mods)
        self.num_features = ch
        self.classifier = LearnedLinear(ch, num_classes, keep_fraction=classifier_keep)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _he_init_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))

    # ----- learned group convolution over the whole network ---------------------------
    def learned_convs(self) -> Iterator[LearnedGroupConv]:
        return (m for m in self.modules() if isinstance(m, LearnedGroupConv))

    def update_progress(self, progress: float) -> None:
        """Call every training iteration with the fraction of training done, in [0, 1]."""
        progress = float(progress)
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        self.progress = progress
        for m in self.learned_convs():
            m.update_progress(progress)

    def group_lasso(self) -> torch.Tensor:
        """Sum of the learned convs' group-lasso terms (add ``lambda * group_lasso()``)."""
        total = self.classifier.weight.new_zeros(())
        for m in self.learned_convs():
            total = total + m.lasso_loss()
        return total

    @torch.no_grad()
    def condense(self) -> nn.Module:
        """Return the test-time network (eval mode); ``self`` is left a training network whose
        classifier mask now records the kept inputs (so both compute the same function)."""
        if isinstance(self.classifier, LearnedLinear):
            self.classifier.select_inputs()
        new = copy.deepcopy(self)
        _convert(new)
        new.eval()
        return new


def _convert(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, LearnedGroupConv):
            setattr(module, name, CondensedGroupConv.from_learned(child))
        elif isinstance(child, LearnedLinear):
            setattr(module, name, CondensedLinear.from_learned(child))
        else:
            _convert(child)


# ----- factories ------------------------------------------------------------------------
def condensenet86(num_classes: int = 10) -> CondenseNet:
    """CondenseNet-86 for CIFAR, training form (learned group convolutions, G = C = 4)."""
    return CondenseNet((14, 14, 14), (8, 16, 32), num_classes=num_classes, bottleneck=4,
                       group_1x1=4, group_3x3=4, condense_factor=4)


def _condensed(build: Callable[[], CondenseNet], seed: int = 0) -> nn.Module:
    # fork_rng: the caller's global RNG state is left as it was (building modules draws from it)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        model.update_progress(1.0)  # every condensation stage, in order, by L1 magnitude
        return model.condense()


def condensenet86_condensed(num_classes: int = 10) -> nn.Module:
    """CondenseNet-86, test-time (condensed) network in eval mode; deterministic (seed 0)."""
    return _condensed(lambda: condensenet86(num_classes))


# ----- counting (independent of perfsim) ------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Parameters as PyTorch counts them (BN affine included, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def _run_with_hooks(model: nn.Module, input_size, hook_for) -> None:
    handles = []
    for m in model.modules():
        fn = hook_for(m)
        if fn is not None:
            handles.append(m.register_forward_hook(fn))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(*input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def _conv_macs_hook(total: list[int]):
    """A forward hook adding a Conv2d's N*Ho*Wo*Co*(Ci/groups)*Kh*Kw to ``total[0]``."""
    def f(mod, inp, out):
        n, co, ho, wo = out.shape
        kh, kw = mod.kernel_size
        total[0] += n * ho * wo * co * (mod.in_channels // mod.groups) * kh * kw
    return f


def conv_fc_macs(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """Conv + FC multiply-accumulates as executed: N*Ho*Wo*Co*(Ci/groups)*Kh*Kw per conv,
    N*in*out per linear. A training-form masked conv/linear is executed dense and counted so."""
    total = [0]

    def hook_for(m):
        if isinstance(m, nn.Conv2d):
            return _conv_macs_hook(total)
        if isinstance(m, LearnedGroupConv):
            def f(mod, inp, out):
                n, co, ho, wo = out.shape
                total[0] += n * ho * wo * co * mod.in_channels
            return f
        if isinstance(m, (nn.Linear, LearnedLinear)):
            def f(mod, inp, out):
                total[0] += inp[0].shape[0] * mod.in_features * mod.out_features
            return f
        return None

    _run_with_hooks(model, input_size, hook_for)
    return total[0]


_ZERO_COST = (nn.BatchNorm2d, nn.Dropout, nn.Identity)


def condensenet_flops(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """"FLOPs" in the CondenseNet papers' convention (ShichenLiu/CondenseNet ``measure_model``):
    conv MACs + one per ReLU/ReLU6 input element + k^2 per average-pool output (a global
    adaptive pool: one per input element) + FC in*out + out; BN, dropout and index/shuffle ops
    cost nothing. A training-form masked conv/linear counts only its unmasked weights (after
    full condensation the reference's dense/C). Unknown leaf modules raise TypeError."""
    total = [0]

    def add(n: int) -> None:
        total[0] += n

    def avg_pool(mod, inp, out):
        k = mod.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else k
        add(out.numel() * kh * kw)

    # (module types, forward hook): the first match wins; the masked forms come first
    rules = (
        ((LearnedGroupConv,), lambda mod, inp, out: add(out.shape[0] * out.shape[2] * out.shape[3]
                                                        * int(mod.mask.sum()))),
        ((LearnedLinear,), lambda mod, inp, out: add(inp[0].shape[0] * (int(mod.mask.sum()) * mod.out_features
                                                                        + mod.out_features))),
        ((nn.Conv2d,), _conv_macs_hook(total)),
        ((nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2d), lambda mod, inp, out: add(inp[0].numel())),
        ((nn.AvgPool2d,), avg_pool),
        ((nn.Linear,), lambda mod, inp, out: add(inp[0].shape[0] * (mod.in_features * mod.out_features
                                                                    + mod.out_features))),
    )

    def hook_for(m):
        masked = isinstance(m, (LearnedGroupConv, LearnedLinear))
        if not masked and any(True for _ in m.children()):
            return None  # containers: their leaves are counted
        for types, hook in rules:
            if isinstance(m, types):
                return hook
        if isinstance(m, _ZERO_COST):
            return None
        raise TypeError(f"condensenet_flops: no rule for {type(m).__name__}")

    _run_with_hooks(model, input_size, hook_for)
    return total[0]
