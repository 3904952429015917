"""CondenseNeXt (Kalgaonkar & El-Sharkawy, paper 000): a reconstruction from the paper's text.

The paper gives no layer table and its math did not survive in our copy of the text (equations
1-5 and several inline symbols, including the value of the pruning hyper-parameter, are blank).
ZOO.md records that the authors' code (priyankkalgaonkar/CondenseNeXt) does not reproduce the
published 23.80M FLOPs / 0.16M params / 2.9 MB. So this is a reconstruction on the
CondenseNet-86 skeleton (``condensenet.py``), each choice tied to a sentence of the paper; it is
*not* tuned towards the published figures.

Dense layer, training form (k = growth rate, 4k = bottleneck width)::

    x -> [learned group conv: BN -> ReLU6 -> Dropout(0.1) -> masked 1x1 conv in->4k,
          G = 4 groups, pruning hyper-parameter P = 4]
      -> BN -> ReLU6 -> depthwise 3x3 conv 4k->4k, groups = 4k (cardinality = output channels)
      -> BN -> ReLU6 -> pointwise 1x1 conv 4k->k
      -> concat([x, .])

Test-time ("condensed") form: the learned 1x1 conv becomes index_select -> BN -> ReLU6 -> 1x1
conv with 4 groups -> channel shuffle (exactly CondenseNet's conversion), the rest is unchanged,
and the classifier keeps half its inputs (400 of 800) as CondenseNet's does.

Choices, and the sentence each rests on:

1. **Skeleton = CondenseNet-86 for CIFAR, unchanged**: stem conv3x3 3->16, 3 stages x 14 dense
   layers, growth 8-16-32, bottleneck 4, 2x2 average-pool transitions, BN-act-global average
   pool-FC head. The paper presents CondenseNeXt as a modification of its baseline CondenseNet
   (Table I compares against CondenseNet-86's 65.81M / 0.52M) and names no other depth, growth or
   width, so none is changed.
2. **"Replace the grouped convolution with depthwise separable convolution in learned group
   convolution"**: the grouped convolution of CondenseNet's layer is the 3x3 group conv (4 groups)
   that follows the learned 1x1 conv, the only conv that "perform[s] regular spatial convolution
   over each independent group" (the paper's description of grouped convolution). It is
   replaced by a depthwise 3x3 conv (one filter per channel, "filtering") followed by a
   pointwise 1x1 conv ("combining", a dense linear combination, as in MobileNet/Xception which
   the paper cites). The learned 1x1 conv is kept: a 1x1 conv has no spatial part to separate.
3. **Cardinality = number of output channels**: cardinality is ResNeXt's number of groups; set to
   the output channels of the spatial grouped conv (4k), that conv has 4k groups of one channel,
   i.e. it is exactly the depthwise conv of choice 2 (in = out = 4k). No extra width is added.
4. **Group-wise pruning during training** ("discard inconsequential filters for every group ...
   determined by the L1-norm of F^g_{i,j} where for every group g, i is the input and j is the
   output", "before the first stage of depthwise separable convolution", "the second half of the
   training utilizes ... model compression"): CondenseNet's learned-group-convolution pruning of
   the 1x1 conv that precedes the depthwise stage, with its L1 criterion per (group, input
   channel) and its schedule (P - 1 stages in the first half of training, stage s at progress
   s / (2 (P - 1)), each dropping in/P inputs per group), implemented by ``LearnedGroupConv`` of
   ``condensenet.py``. The paper's second half of training then trains the pruned network,
   which is what the schedule does.
5. **Pruning hyper-parameter P = 4**: its value is blank in the text; P plays the role of
   CondenseNet's condensation factor C (the number of filters removed per group is set by it), and
   the baseline uses C = G = 4, so each group finally keeps 1/4 of its inputs. With P = G the
   condensed 1x1 conv gathers exactly ``in`` channels (G * in / P), as in CondenseNet.
6. **ReLU6 with BN before each layer**: every conv after the stem is pre-activated BN -> ReLU6
   (learned 1x1, depthwise, pointwise), and the head is BN -> ReLU6 -> pool (the paper: "ReLU6
   activation function along with Batch Normalization before each layer"). The stem conv reads the
   image directly, as in CondenseNet.
7. **Dropout 0.1**: placed where CondenseNet has its only dropout slot (``dropout_rate`` of the
   learned group conv, after BN-ReLU, before the masked 1x1 conv). At test time dropout is the
   identity and the condensed network omits it.
8. **Classifier**: CondenseNet's condensed linear layer (keep the 400 of 800 inputs with the
   largest L1 weight-column norm) is part of the skeleton's conversion and is kept.
9. Not part of the network: class-balanced focal loss, SGD + Nesterov 0.9, cosine learning rate,
   200 epochs (training recipe; ``perfsim.accuracy.recipes``).

Counts of the condensed network (batch 1, 3x32x32; asserted by tests/test_condensenext.py),
beside the paper's Table I:

    parameters (PyTorch count, BN included)        456,618    paper 0.16M
    conv + FC MACs                              55,840,672    (not published)
    "FLOPs", CondenseNet convention             60,077,994    paper 23.80M
    float32 parameters x 4 B, in 10^6 B           1.83 MB     paper 2.9 MB ("trained model size")

The gap: choices 2-3 change only the 3x3 part of each layer, which in CondenseNet-86 is 24.8M of
the 62.4M MACs and 169K of the 516K parameters; the depthwise-separable swap takes it to 18.2M
MACs and 103K parameters. The learned 1x1 group convs, untouched, alone cost 37.2M MACs and 310K
parameters, more than the paper's whole-network 23.80M and 0.16M, so no reading of the text that
keeps the CondenseNet-86 skeleton and P = 4 can reach the published figures; they need a smaller
network than the text describes. The paper's "trained model size" is not float32 parameters
either: CondenseNet-86's 16.7 MB in the same table equals, in 10^6 bytes, the float32 count of a
CondenseNet *training checkpoint* (training-form parameters + SGD momentum + the 1x1 masks + BN
running statistics = 4,176,996 floats = 16.71 MB), not its 516,202 parameters (2.06 MB). See
docs/condensenet.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .condensenet import CondenseNet, LearnedGroupConv, _condensed

__all__ = ["NeXtDenseLayer", "CondenseNeXt", "condensenext", "condensenext_condensed",
           "PRUNING_FACTOR", "DROPOUT"]

PRUNING_FACTOR = 4  # P: blank in the paper's text; = CondenseNet's C (choice 5)
DROPOUT = 0.1  # paper, section VI "Training Details"


class NeXtDenseLayer(nn.Module):
    """Learned group 1x1 conv (pruned) -> depthwise 3x3 -> pointwise 1x1, BN-ReLU6 before each."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4, group_1x1: int = 4,
                 pruning_factor: int = PRUNING_FACTOR, dropout: float = DROPOUT) -> None:
        super().__init__()
        mid = bottleneck * growth
        self.conv_1 = LearnedGroupConv(in_channels, mid, groups=group_1x1,
                                       condense_factor=pruning_factor, dropout=dropout,
                                       activation=nn.ReLU6)
        self.cardinality = mid  # = output channels of the spatial conv (choice 3)
        self.norm_dw = nn.BatchNorm2d(mid)
        self.act_dw = nn.ReLU6()
        self.conv_dw = nn.Conv2d(mid, mid, 3, padding=1, groups=self.cardinality, bias=False)
        self.norm_pw = nn.BatchNorm2d(mid)
        self.act_pw = nn.ReLU6()
        self.conv_pw = nn.Conv2d(mid, growth, 1, bias=False)

    def forward(self, x):
        y = self.conv_1(x)
        y = self.conv_dw(self.act_dw(self.norm_dw(y)))
        y = self.conv_pw(self.act_pw(self.norm_pw(y)))
        return torch.cat([x, y], 1)


class CondenseNeXt(CondenseNet):
    """CondenseNeXt on the CondenseNet-86 skeleton (training form; ``condense()`` converts)."""

    def __init__(self, num_classes: int = 10, stages=(14, 14, 14), growth=(8, 16, 32),
                 bottleneck: int = 4, group_1x1: int = 4,
                 pruning_factor: int = PRUNING_FACTOR, dropout: float = DROPOUT) -> None:
        def make_layer(c: int, k: int) -> nn.Module:
            return NeXtDenseLayer(c, k, bottleneck, group_1x1, pruning_factor, dropout)

        super().__init__(stages, growth, num_classes=num_classes, activation=nn.ReLU6,
                         make_layer=make_layer)


def condensenext(num_classes: int = 10) -> CondenseNeXt:
    """CondenseNeXt reconstruction, training form (learned group convs, group-wise pruning)."""
    return CondenseNeXt(num_classes=num_classes)


def condensenext_condensed(num_classes: int = 10):
    """CondenseNeXt reconstruction, condensed test-time network in eval mode (seed 0)."""
    return _condensed(lambda: condensenext(num_classes))
