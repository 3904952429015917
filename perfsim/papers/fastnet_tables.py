"""The FastNet paper's published numbers, transcribed as data (perfsim's paper 003).

Source: J. Olafenwa and M. Olafenwa, "FastNet: An Efficient Architecture for Smart Devices" (2018),
and the authors' code johnolafenwa/FastNet (cifar10.py) where the text is ambiguous (ZOO.md).
perfsim's copy of the paper is its text without page breaks, so every cell names its section. The
paper has one table (under "COMPARISONS", unnumbered); its other numbers are in the text. Torch-free.
"""
from __future__ import annotations

__all__ = ["PAPER", "TITLE", "COMPARISON", "COMPARISON_NOT_MODELLED", "STRUCTURE", "TRAINING_TIME", "RECIPE",
           "RECIPE_WORDS"]

PAPER = "003"
TITLE = "FastNet: An Efficient Architecture for Smart Devices (J. Olafenwa and M. Olafenwa, 2018)"

# The comparison table ("COMPARISONS"): ARCHITECTURE, CIFAR 10, CIFAR 100, Params. Accuracies are
# top-1 in percent; one "Params" figure serves both data sets. The "FASTNET" section's text repeats
# the row ("93.98% on CIFAR10 and 70.81% on CIFAR100, with only 1.6M parameters").
COMPARISON = {"fastnet": ("93.98", "70.81", "1.6 M")}
COMPARISON_NOT_MODELLED = (
    ("Network In Network", "91.19", "64.32", "1 M"), ("ALL CNN", "92.75", "66.29", "1.3 M"),
    ("MaxOut", "90.62", "65.46", "6 M"), ("Resnet 110", "93.57", "74.84", "1.7 M"),
    ("Wide Resnet", "95.83", "79.5", "36 M"), ("VGG Net", "91.4", "-", "138 M"),
    ("Fractal Net", "95.4", "76.27", "38.6 M"), ("Stochastic Depth", "94.77", "75.42", "1.7 M"),
    ("Fractional Max Pooling", "-", "68.55", "-"), ("Fractional Max Pooling With Large Aug. (12 tests)", "95.5",
                                                    "73.61", "50 M"),
)

# The structure, as the text states it: key -> (printed, section, quantity, the words).
STRUCTURE: dict[str, tuple[object, str, str, str]] = {
    "conv_layers": ("15", "FASTNET", "conv layers", "'FastNet is a 15 layer Convolutional Network'"),
    "leading_3x3": ("12", "3 x 3 Convolutions", "leading 3x3 conv layers",
                    "'The first 12 layers of FastNet are constructed with 3 x 3 convolutions'"),
    "trailing_1x1": ("3", "Final 1 X 1 Convolutions", "final 1x1 conv layers",
                     "'a stack of 3, 1 x 1 Convolutions followed by a GlobalAveragePooling layer'"),
    "summary_1x1": ("2", "Summary", "final 1x1 unit cells (Summary)",
                    "'Finally, we stack two 1 x 1 Unit Cells followed by Global Average Pooling'"),
    "before_first_pool": ("4", "Late Downsampling", "conv layers before the first pool",
                          "'we perform the first pooling after the first four Convolutional layers'"),
    "pool_size": ("2", "Late Downsampling", "max-pool size", "'We use MaxPooling with a pool size of 2'"),
    "first_width": ("64", "Summary", "first layer's channels",
                    "'FastNet begins with a 64 channels 3 x 3 Conv Unit layer'"),
    "width": ("128", "Summary", "channels of the other layers",
              "'followed by three 128 channel layers with similar composition'"),
    "stage_convs": ((4, 3, 3, 2), "Summary", "conv layers before each pool",
                    "the 64-channel layer and three 128-channel layers, down sampling, '3 Unit Layers', down "
                    "sampling, 'another three layers followed by down sampling', '2 layers followed by down sampling'"),
}

# "FASTNET": "training on CIFAR100 takes approximately 3 hours on a single NVIDIA P100" (Keras with
# the TensorFlow backend); "EXPERIMENT SETUP": 200 epochs.
TRAINING_TIME = ("3", "hours", "a single NVIDIA P100, Keras with the TensorFlow backend", "cifar100")

# "EXPERIMENT SETUP": "Adam optimizer with an initial learning rate of 0.001 ... the learning rate
# was divided at 80, 120, 160 and 180 epochs ... All experiments ran for a total of 200 epochs".
RECIPE: tuple[tuple[str, object], ...] = (("lr", "0.001"), ("milestones", (80, 120, 160, 180)), ("epochs", "200"))
RECIPE_WORDS: tuple[tuple[str, object, str], ...] = (("optimizer", "adam", "Adam optimizer"),)
