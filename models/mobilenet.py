"""MobileNet: the seed paper's CIFAR variant and the ImageNet MobileNet v1.

CIFAR variant (seed paper 001, Table 1; registry name ``mobilenet``), input 3x28x28
(CIFAR images cropped to 28), 27 conv layers as its Table 4 counts them:

    conv3x3 3->32 s1, BN, ReLU
    depthwise-separable pairs (dw3x3 + BN + ReLU, pw1x1 + BN + ReLU):
      32->64; 64->64 (stride 2, 28->14); 64->128; 128->128; 128->128; 128->256;
      5x 256->256 (14x14); 256->256 (stride 2, 14->7); 256->256
    7x7 average pool (global), FC 256->10

Table 1 prints the FC as 256x1000 but its softmax is 10-way: the FC has
``num_classes`` outputs (10). The paper's head ends in a softmax; the module
returns logits (the loss applies the softmax), so no softmax row is simulated.
The width multiplier alpha scales every layer, stem included; the resolution
multiplier is applied to the input by the caller (``perfsim run --resolution``).

MobileNet v1 (Howard et al. 2017, registry ``mobilenet_v1``): the standard
224x224 ImageNet network, 569M mult-adds, 4.2M params. The original table's
stride 2 on the last depthwise layer is a known typo: stride 1.

No conv has a bias. Every final pool is global, so other input sizes work.
"""
from __future__ import annotations

import torch
from torch import nn

# (out_channels, stride) of each depthwise-separable pair, after the stem.
CIFAR_PAIRS: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 2), (128, 1), (128, 1), (128, 1), (256, 1),
    (256, 1), (256, 1), (256, 1), (256, 1), (256, 1),
    (256, 2), (256, 1),
)
CIFAR_STEM = 32

V1_PAIRS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
V1_STEM = 32


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """dw3x3 (carries the stride) + BN + ReLU, then pw1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.depthwise = conv_bn_relu(cin, cin, 3, stride, groups=cin)
        self.pointwise = conv_bn_relu(cin, cout, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNet(nn.Module):
    """A MobileNet body (stem + depthwise-separable pairs) and head (global pool + FC)."""

    def __init__(self, pairs, stem: int, stem_stride: int, num_classes: int, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        if not 0.0 < width <= 1.0:
            raise ValueError(f"width multiplier must be in (0, 1], got {width}")
        c = _scaled(stem, width)
        layers: list[nn.Module] = [conv_bn_relu(3, c, 3, stem_stride)]
        for cout, stride in pairs:
            cout = _scaled(cout, width)
            layers.append(DepthwiseSeparable(c, cout, stride))
            c = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        x = torch.flatten(x, 1)
        return self.classifier(self.dropout(x))


def mobilenet_cifar(num_classes: int = 10, width: float = 1.0) -> MobileNet:
    """The seed paper's CIFAR MobileNet (input 3x28x28)."""
    return MobileNet(CIFAR_PAIRS, CIFAR_STEM, 1, num_classes, width)


def mobilenet_v1(num_classes: int = 1000, width: float = 1.0) -> MobileNet:
    """MobileNet v1 for 224x224 ImageNet (stem stride 2)."""
    return MobileNet(V1_PAIRS, V1_STEM, 2, num_classes, width)
