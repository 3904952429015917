"""The ways papers count, as hypotheses computed from perfsim's op graph (torch-free).

perfsim counts SPEC's way: MACs of conv and linear layers, PyTorch's parameters (BN's gamma and
beta in, its running statistics out). A paper's figure that differs may have been counted another
way; each function here computes what another way gives on the same network, with a sentence that
names it and shows its numbers. :func:`perfsim.papers.published.judge_value` tries them in order.
"""
from __future__ import annotations

from ..ir.conventions import condensenet_flops
from ..ir.graph import Graph, OpKind
from .published import Hypothesis

__all__ = ["bn_channels", "linear_macs", "param_hypotheses", "mac_hypotheses", "reduction_hypotheses",
           "shown_mb"]


def bn_channels(graph: Graph) -> int:
    """Channels of every BatchNorm (each holds a running mean and a running variance)."""
    return sum(op.bn_channels for op in graph.ops if op.kind is OpKind.BATCHNORM)


def linear_macs(graph: Graph) -> int:
    return sum(layer.macs for layer in graph.layers if layer.kind is OpKind.LINEAR)


def _unbiased_conv_channels(graph: Graph) -> int:
    return sum(op.out_shape[1] for op in graph.ops if op.kind is OpKind.CONV and op.bias_elems == 0)


def param_hypotheses(graph: Graph, other_heads: dict[int, Graph] | None = None) -> list[Hypothesis]:
    """Parameter counts a paper may print for ``graph``'s network: with BN's running statistics
    (Keras' summary and TensorFlow count them), without BN's affine parameters, with a bias on every
    conv, or with another classifier head (``other_heads``: class count -> that network's graph)."""
    p, bn = graph.params, bn_channels(graph)
    out = []
    if bn:
        out.append(Hypothesis("BN running statistics counted", p + 2 * bn,
                              f"perfsim's {p:,} parameters + the running mean and variance of {bn:,} BN "
                              f"channels ({2 * bn:,} values, which Keras and TensorFlow count)"))
        out.append(Hypothesis("BN's affine parameters left out", p - 2 * bn,
                              f"perfsim's {p:,} parameters - gamma and beta of {bn:,} BN channels"))
    unbiased = _unbiased_conv_channels(graph)
    if unbiased:
        out.append(Hypothesis("a bias on every conv", p + unbiased,
                              f"perfsim's {p:,} parameters + one bias per output channel of the convs "
                              f"that have none ({unbiased:,})"))
    for classes, other in sorted((other_heads or {}).items()):
        out.append(Hypothesis(f"the {classes}-class head", other.params,
                              f"the same network with a {classes}-class classifier has {other.params:,} "
                              "parameters"))
    return out


def mac_hypotheses(graph: Graph) -> list[Hypothesis]:
    """MAC counts a paper may print: FLOPs as 2 x MACs, without the classifier, or the CondenseNet
    papers' counter (conv MACs + one per ReLU input + k^2 per average-pool output + FC in*out + out)."""
    m, fc = graph.macs, linear_macs(graph)
    out = [Hypothesis("FLOPs counted as 2 x MACs", 2 * m, f"2 x perfsim's {m:,} MACs")]
    if fc:
        out.append(Hypothesis("the classifier left out", m - fc, f"perfsim's {m:,} MACs - the classifier's {fc:,}"))
    cn = condensenet_flops(graph)
    out.append(Hypothesis("CondenseNet's counter", cn,
                          f"perfsim counts MACs ({m:,}); the CondenseNet papers' own counter (conv MACs + one "
                          "per ReLU input element + k^2 per average-pool output + the classifier's in*out + out; "
                          f"perfsim.ir.conventions.condensenet_flops) adds {cn - m:,}"))
    return out


def reduction_hypotheses(paper_new: float, paper_old: float, printed_new: str, printed_old: str) -> list[Hypothesis]:
    """A reduction a paper states in its text, recomputed from its own rounded table figures."""
    if not paper_old:
        return []
    pct = 100.0 * (1.0 - paper_new / paper_old)
    return [Hypothesis("the paper's own rounded figures", pct, f"1 - {printed_new} / {printed_old} from its table")]


def shown_mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.2f} MB"
