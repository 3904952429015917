"""The CondenseNeXt paper's published numbers, transcribed as data (perfsim's paper 000; it also
reports its baseline, CondenseNet-86).

Source: P. Kalgaonkar and M. El-Sharkawy, "CondenseNeXt: An Ultra-Efficient Deep Neural Network
for Embedded Systems", IEEE CCWC 2021. perfsim's copy of the paper is its text without page
breaks (its equations and several inline symbols lost), so every cell names its table and section.
Cells are kept as printed; Table I's FLOPs and parameter columns are "(in millions)". Torch-free.
"""
from __future__ import annotations

__all__ = ["PAPER", "TITLE", "TABLE1", "TABLE2", "EPOCHS", "DEVICE", "SEC4_CLAIMS", "SEC6_INPUT",
           "SEC6_RECIPE", "SEC6_RECIPE_WORDS"]

PAPER = "000"
TITLE = ("CondenseNeXt: An Ultra-Efficient Deep Neural Network for Embedded Systems (Kalgaonkar & "
         "El-Sharkawy, IEEE CCWC 2021), with its baseline CondenseNet-86")

# Table I (Sec. IV-B): FLOPs (in millions), Parameters (in millions), CIFAR-10 Top-1 Accuracy,
# Trained Model Size. Rows: "CondenseNet (Baseline Architecture)", "CondenseNeXt (Our Proposed
# Architecture)".
TABLE1: dict[str, tuple[str, str, str, str]] = {
    "condensenet": ("65.81", "0.52", "94.24%", "16.7 MB"),
    "condensenext": ("23.80", "0.16", "92.28%", "2.9 MB"),
}

# Table II (Sec. VI): Total Training Time (HH:MM:SS), Training Time Per Epoch (in seconds).
TABLE2: dict[str, tuple[str, str]] = {
    "condensenet": ("02:59:19", "53.79"),
    "condensenext": ("01:04:48", "19.42"),
}
# Tables I and II's captions: "for 200 epochs each"; Sec. VI: "trained ... for 200 epochs".
EPOCHS = "200"
# Sec. V, "Training Infrastructure": the machine of Table II.
DEVICE = "an NVIDIA Tesla V100 GPU with an Intel Xeon Gold 6126 CPU (Sec. V), PyTorch 1.1.0"

# Sec. IV: the architecture's rules, in words. IV-B: "We set the cardinality equal to the number of
# output channels"; IV-A: the grouped convolution of the learned group convolution is replaced by a
# depthwise separable convolution; IV-C: "ReLU6 activation function along with Batch Normalization
# before each layer".
SEC4_CLAIMS = {
    "cardinality": "cardinality equal to the number of output channels (Sec. IV-B)",
    "relu6": "ReLU6 activation function (Sec. IV-C)",
    "bn_before": "Batch Normalization before each layer (Sec. IV-C)",
}

# Sec. VI: CIFAR-10 images "of size 32x32 pixels", evaluated "with a single crop".
SEC6_INPUT = "32"

# Sec. VI, "Training Details": "Nesterov Momentum Weight of 0.9 and Stochastic Gradient Descent
# (SGD) for 200 epochs ... cosine shape learning rate and dropout rate of 0.1". (recipe field,
# printed); the words as (recipe field, expected value, printed words).
SEC6_RECIPE: tuple[tuple[str, str], ...] = (("momentum", "0.9"), ("epochs", "200"))
SEC6_RECIPE_WORDS: tuple[tuple[str, object, str], ...] = (
    ("optimizer", "sgd", "Stochastic Gradient Descent"),
    ("nesterov", True, "Nesterov momentum"),
    ("schedule", "cosine", "cosine shape learning rate"),
    ("loss", "class_balanced_focal", "class balanced focal loss (Sec. IV-B)"),
)
