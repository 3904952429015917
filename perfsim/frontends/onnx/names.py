"""Layer names: the module path the exporter recorded (legacy node names, or the dynamo exporter's scopes)."""
from __future__ import annotations

import ast
import re


def _name_scopes(node) -> list[str] | None:
    """The dynamo exporter's module scopes, e.g. ['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_1']."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return None
            return [str(s) for s in scopes] if isinstance(scopes, list) else None
    return None


def _bn_folded_into(node) -> bool:
    return any(p.key == "pkg.onnxscript.rewriter.rule_name" and "FuseBatchNormIntoConv" in p.value
               for p in node.metadata_props)


def _child(path: str, prev: str, segment: str) -> str:
    """The module path of a scope segment under ``path`` (whose own segment was ``prev``).

    TorchScript scopes name a Sequential's child by the Sequential's segment plus the index
    (``features`` then ``features.0``), any other child by its attribute name (``conv1``).
    """
    if prev and segment.startswith(prev + "."):
        return path + segment[len(prev):]
    return f"{path}.{segment}" if path else segment


_CALL_SUFFIX = re.compile(r"^(.*)_(\d+)$")


class Namer:
    """Module paths from the legacy exporter's node names, ``/layer1/layer1.0/relu_1/Relu``.

    A module called twice gets ``relu``, then ``relu_1`` in its scope; the suffix is dropped when
    the unsuffixed path also occurs in the graph (so a module really named ``relu_1`` keeps it).
    """

    def __init__(self, nodes):
        self.raw: set[str] = set()
        for n in nodes:
            path, prev = "", ""
            for seg in self._segments(n.name):
                path, prev = _child(path, prev, seg), seg
                self.raw.add(path)

    @staticmethod
    def _segments(name: str) -> list[str]:
        return [s for s in name.split("/")[1:-1] if s] if name.startswith("/") else []

    def _legacy(self, name: str) -> str:
        path, prev = "", ""
        for seg in self._segments(name):
            m = _CALL_SUFFIX.match(seg)
            if m and _child(path, prev, m.group(1)) in self.raw:
                seg = m.group(1)
            path, prev = _child(path, prev, seg), seg
        return path

    def path(self, node, weight: str | None) -> str:
        scopes = _name_scopes(node)
        if scopes is not None:
            if _bn_folded_into(node) and weight and weight.endswith(".weight"):
                return weight[: -len(".weight")]  # the conv a BN was folded into carries the BN's scope
            module = next((s for s in reversed(scopes[:-1]) if s), "")
            return module or (scopes[-1] if scopes else "") or node.name or node.output[0]
        return self._legacy(node.name) or node.name.strip("/") or node.output[0]
