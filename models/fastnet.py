"""FastNet (Olafenwa & Olafenwa, "FastNet: An Efficient Architecture for Smart Devices", paper 003).

Built from the authors' Keras code (github.com/johnolafenwa/FastNet, ``cifar10.py`` /
``cifar100.py``; both define the same ``FastNet(input_shape, num_classes)``), which is more
precise than the paper's prose. Every unit ("UnitCell") is

    BatchNormalization -> ReLU -> Conv2D(kernel, stride 1, padding "same", with bias)

and the network is (``U(c, k)`` = unit with ``c`` output channels and a k x k kernel)::

    U(64,3) U(128,3) U(128,3) U(128,3) MaxPool2      32x32 -> 16x16
    U(128,3) U(128,3) U(128,3)          MaxPool2      16x16 ->  8x8
    U(128,3) U(128,3) U(128,3)          MaxPool2       8x8  ->  4x4
    U(128,3) U(128,3)                   MaxPool2       4x4  ->  2x2
    U(128,1) U(128,1) U(128,1)
    global average pool -> flatten -> Linear(128, num_classes)

12 3x3 + 3 1x1 = 15 convolutions, the paper's "15 layer Convolutional Network".

Definition choices (each read from the Keras code unless stated):

* **The first unit's BN sits on the raw image.** ``y = UnitCell(inputs, 64)`` applies
  ``BatchNormalization`` (3 channels) and ``ReLU`` directly to the input tensor, before the first
  convolution. The Keras script feeds images standardised per pixel; the BN's learnt affine
  (gamma, beta) decides how much of the input survives the ReLU. Kept as is, so the first layer is
  BN(3) -> ReLU -> conv 3->64.
* **No dropout.** Neither script nor the paper uses dropout anywhere (no ``Dropout`` import);
  ``dropout`` defaults to 0 and then no ``nn.Dropout`` module exists at all. A positive value
  (perfsim's own option, not the paper's) inserts one ``nn.Dropout`` before the classifier.
* **Three 1x1 units**, as in the code and the paper's text ("a stack of 3, 1 x 1 Convolutions");
  the paper's summary paragraph says two, which contradicts both.
* **Every conv has a bias** (Keras ``Conv2D`` default ``use_bias=True``), padding "same" = 1 for
  3x3, 0 for 1x1; all strides 1; downsampling only by the four 2x2/stride-2 max pools.
* **Global average pool.** Keras uses ``AveragePooling2D(pool_size=(2, 2))`` on the 2x2 map that
  a 32x32 input leaves, i.e. a global pool; ``nn.AdaptiveAvgPool2d(1)`` is identical at 32x32 and
  lets other input sizes (resolution multiplier) work.
* **Softmax omitted**: ``Dense(num_classes, activation="softmax")`` becomes ``nn.Linear``
  returning logits; the softmax lives in the cross-entropy loss.
* **BN hyper-parameters as in Keras**: ``momentum=0.95`` in Keras (weight of the old running
  value) is PyTorch ``momentum=0.05``; Keras' default ``epsilon=1e-3`` is kept. ``scale=True``,
  ``center=True``: BN has gamma and beta (counted in the parameters).
* **Initialisation as in Keras 2.1**: conv kernels ``he_normal`` (truncated normal, std
  sqrt(2 / fan_in), cut at 2 std), conv biases 0, dense ``glorot_uniform`` with bias 0.

Parameters: 1,605,776 trainable for 10 classes, 1,617,386 for 100 (conv 1,601,024 + BN gamma/beta
3,462 + dense) -- the paper's "1.6 M" for both CIFAR-10 and CIFAR-100. (Keras' summary would add
the 3,462 non-trainable running means/variances; still 1.6 M.)
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["FastNet", "UnitCell", "fastnet", "FASTNET_STAGES"]

# (out_channels, kernel) of each unit, per stage; a 2x2/2 max pool follows every stage except the
# last (the 1x1 head).
FASTNET_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((64, 3), (128, 3), (128, 3), (128, 3)),
    ((128, 3), (128, 3), (128, 3)),
    ((128, 3), (128, 3), (128, 3)),
    ((128, 3), (128, 3)),
    ((128, 1), (128, 1), (128, 1)),
)

# Keras BatchNormalization(momentum=0.95) -> PyTorch momentum 1 - 0.95; Keras default epsilon.
_BN_MOMENTUM = 0.05
_BN_EPS = 1e-3


class UnitCell(nn.Module):
    """One FastNet unit: BN -> ReLU -> conv (bias, "same" padding, stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"'same' padding needs an odd kernel, got {kernel_size}")
        self.bn = nn.BatchNorm2d(in_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              stride=1, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.bn(x)))


class FastNet(nn.Module):
    """FastNet for 3-channel images (CIFAR 32x32); see the module docstring."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        channels = in_channels
        unit = 0
        for stage, units in enumerate(FASTNET_STAGES):
            for out_channels, kernel in units:
                unit += 1
                layers[f"unit{unit}"] = UnitCell(channels, out_channels, kernel)
                channels = out_channels
            if stage < len(FASTNET_STAGES) - 1:
                layers[f"pool{stage + 1}"] = nn.MaxPool2d(kernel_size=2, stride=2)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.classifier = nn.Linear(channels, num_classes)
        self.num_classes = num_classes
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras 2.1 initialisation: he_normal (truncated) convs, glorot_uniform dense, zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                std = math.sqrt(2.0 / fan_in)
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)


def fastnet(num_classes: int = 10, **kwargs) -> FastNet:
    """FastNet for CIFAR-10 (``num_classes=10``) or CIFAR-100 (``num_classes=100``)."""
    return FastNet(num_classes=num_classes, **kwargs)
