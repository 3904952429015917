"""clcNet: CNNs built from channel local convolution (CLC) blocks.

Source: Dong-Qing Zhang, "clcNet: Improving the Efficiency of Convolutional
Neural Network using Channel Local Convolutions", arXiv:1712.06145 (2017),
Section 3.2 (CLC block), Section 4.1 and Table 2 (network), Tables 3-5; the
author's Torch code dqzhang17/clcnet.torch, ``models/clcnet.lua`` and
``models/ChannelInterlace.lua``; perfsim's ZOO.md, section "clcNet".

Definition
----------
* Stem: conv 3x3, 3 -> 32, stride 2, padding 1, no bias; BatchNorm; ReLU.
* CLC block ``(M -> N, stride, g1, g2)`` with ``L = M``:
  IGC = grouped conv 3x3 ``M -> M``, ``groups=g1``, the block's stride,
  padding 1, no bias; BatchNorm (no ReLU after the IGC, as in Xception);
  channel interlace with ``g1`` groups; GC = conv 1x1 ``M -> N``,
  ``groups=g2=2``, no bias; BatchNorm; ReLU.
* Head: global average pool, flatten, FC 1024 -> num_classes with bias.

The interlace (the paper's "interlacing the output channels into fields",
Fig. 5b) puts channel ``k`` of IGC group ``j`` at position ``k*g1 + j``: field
``k`` gathers the ``k``-th output of every group. It is the author's
``ChannelInterlace(M, g1)`` (forward index ``f_idx``) and equals a ShuffleNet
channel shuffle with ``g1`` groups. Each GC group then reads ``M/g2``
contiguous interlaced channels, which hold outputs of every IGC group when
``g1*g2 <= M`` (the rule for FCRF, Eq. 1) -- true for every block below
(``g1*g2 = M``). See ``perfsim.papers.clcnet_design`` for the channel dependency graph.

Convolutions have no bias: the Torch code creates them with bias and then
deletes it (``v.bias = nil`` for cuDNN >= 4) before training. Initialisation
follows that code (fb.resnet.torch): conv weights ~ N(0, 2/(k*k*out)),
BN weight 1 / bias 0, FC bias 0.

Table 2 (structure and block parameters; a, b, c, d are repetition counts)
-------------------------------------------------------------------------
=========================  =====  ======  ======  ====  ====
Block type & repetition    Input  Output  Stride  g1    g2
=========================  =====  ======  ======  ====  ====
Regular 3x3 conv           3      32      2
BatchNorm + ReLU
CLC block                  32     64      1       16    2
CLC block                  64     128     2       32    2
CLC block x a              128    128     1       64    2
CLC block                  128    256     2       64    2
CLC block x b              256    256     1       128   2
CLC block                  256    512     2       128   2
CLC block x c              512    512     1       256   2
CLC block                  512    1024    2       256   2
CLC block x d              1024   1024    1       512   2
Average pooling
FC layer                   1024   1000
=========================  =====  ======  ======  ====  ====

clcNet-A = (a,b,c,d) = (1,1,5,2); clcNet-B = (1,1,7,3) (Table 3).
clcNet-Ap = clcNet-A with every IGC replaced by a plain GC, i.e. no interlace
(Table 4, Sec. 5.2). Published: clcNet-A 343M mult-adds / 3.25M params,
clcNet-B 425M / 4.1M (Table 5, FC included, BN parameters counted).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from perfsim.papers.clcnet_design import GroupedConv, Interlace, Stage

__all__ = [
    "TABLE2_BLOCKS",
    "ChannelInterlace",
    "CLCBlock",
    "ClcNet",
    "clcnet",
    "clcnet_a",
    "clcnet_b",
    "clcnet_ap",
    "clc_blocks",
]

# Table 2 of the clcNet paper (arXiv:1712.06145), CLC block rows; identical to
# the clcBlock(...) calls of dqzhang17/clcnet.torch models/clcnet.lua.
# (input channels, output channels, stride, g1, g2, repetition), where the
# repetition is 1 or the name of the configuration parameter a/b/c/d.
TABLE2_BLOCKS: tuple[tuple[int, int, int, int, int, int | str], ...] = (
    (32, 64, 1, 16, 2, 1),
    (64, 128, 2, 32, 2, 1),
    (128, 128, 1, 64, 2, "a"),
    (128, 256, 2, 64, 2, 1),
    (256, 256, 1, 128, 2, "b"),
    (256, 512, 2, 128, 2, 1),
    (512, 512, 1, 256, 2, "c"),
    (512, 1024, 2, 256, 2, 1),
    (1024, 1024, 1, 512, 2, "d"),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1024


class ChannelInterlace(nn.Module):
    """Interlace channels into fields after a grouped conv with ``groups`` groups.

    Output position ``k*groups + j`` takes input channel ``j*(C/groups) + k``
    (channel ``k`` of group ``j``); a channel shuffle with ``groups`` groups.
    Uses only view/transpose/contiguous, so it traces with ``torch.fx``.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        return x.view(n, self.groups, -1, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class CLCBlock(nn.Module):
    """IGC 3x3 (g1, stride) -> BN -> interlace -> GC 1x1 (g2) -> BN -> ReLU.

    With ``interlace=False`` the interlace is an ``nn.Identity`` and the IGC is
    a plain grouped conv (the clcNet-Ap block).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        g1: int,
        g2: int,
        interlace: bool = True,
    ) -> None:
        super().__init__()
        mid = in_channels  # L = M for every clcNet block (Sec. 4.1)
        self.igc = nn.Conv2d(in_channels, mid, 3, stride=stride, padding=1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.interlace = ChannelInterlace(g1) if interlace else nn.Identity()
        self.gc = nn.Conv2d(mid, out_channels, 1, groups=g2, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.igc(x))
        x = self.interlace(x)
        return self.relu(self.bn2(self.gc(x)))

    def clc_stages(self) -> list[Stage]:
        """The block's channel stages for ``perfsim.papers.clcnet_design``, read off its layers."""
        stages: list[Stage] = [
            GroupedConv(self.igc.in_channels, self.igc.out_channels, self.igc.groups)
        ]
        if isinstance(self.interlace, ChannelInterlace):
            stages.append(Interlace(self.interlace.groups))
        stages.append(GroupedConv(self.gc.in_channels, self.gc.out_channels, self.gc.groups))
        return stages


class ClcNet(nn.Module):
    """clcNet for 224x224 ImageNet-style input (any size that survives /32 works)."""

    def __init__(
        self,
        a: int,
        b: int,
        c: int,
        d: int,
        num_classes: int = 1000,
        interlace: bool = True,
    ) -> None:
        super().__init__()
        reps = {"a": a, "b": b, "c": c, "d": d}
        for key, value in reps.items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"repetition {key} must be a non-negative int, got {value!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = (a, b, c, d)
        self.interlace = interlace

        layers: list[nn.Module] = [
            nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
        ]
        for cin, cout, stride, g1, g2, rep in TABLE2_BLOCKS:
            count = reps[rep] if isinstance(rep, str) else rep
            for _ in range(count):
                layers.append(CLCBlock(cin, cout, stride, g1, g2, interlace=interlace))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FEATURE_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # fb.resnet.torch initialisation, as in the author's clcnet.lua.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def clc_blocks(model: nn.Module) -> Iterator[CLCBlock]:
    """The CLC blocks of a model, in execution order."""
    for module in model.modules():
        if isinstance(module, CLCBlock):
            yield module


def clcnet(
    a: int, b: int, c: int, d: int, num_classes: int = 1000, interlace: bool = True
) -> ClcNet:
    """clcNet with block repetitions (a, b, c, d) of Table 2."""
    return ClcNet(a, b, c, d, num_classes=num_classes, interlace=interlace)


def clcnet_a(num_classes: int = 1000) -> ClcNet:
    """clcNet-A, (a,b,c,d) = (1,1,5,2): 70.4 % top-1 (Table 3)."""
    return clcnet(1, 1, 5, 2, num_classes=num_classes)


def clcnet_b(num_classes: int = 1000) -> ClcNet:
    """clcNet-B, (a,b,c,d) = (1,1,7,3): 71.6 % top-1 (Table 3)."""
    return clcnet(1, 1, 7, 3, num_classes=num_classes)


def clcnet_ap(num_classes: int = 1000) -> ClcNet:
    """clcNet-Ap: clcNet-A with every IGC a plain grouped conv (Table 4, 67.7 %)."""
    return clcnet(1, 1, 5, 2, num_classes=num_classes, interlace=False)
