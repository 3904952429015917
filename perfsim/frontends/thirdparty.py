"""Optional model libraries (torchvision, timm), imported on demand.

A normal install imports them as they are. One known broken install is bridged: a
torchvision wheel whose compiled extension does not match the installed torch fails
with ``operator torchvision::nms does not exist``. Classification models never call
its detection ops, so declaring their schemas (``nms``, ``qnms``) lets the Python
package import; this fallback runs only after the plain import has failed that way.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from ..errors import InputError

_DETECTION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES: list = []  # keeps the torch.library registration alive for the process


def _declare_detection_ops() -> None:
    import torch
    if _LIBRARIES:
        return
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _DETECTION_OPS:
        lib.define(schema)
    _LIBRARIES.append(lib)


def _forget(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def import_optional(name: str, extra: str | None = None) -> ModuleType:
    """Import ``torchvision`` or ``timm`` (or another optional package) with a one-line error when absent."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != name.split(".")[0] and e.name.split(".")[0] != "torchvision":
            raise
        missing = e.name.split(".")[0] if e.name else name
        raise InputError(f"{missing} is not installed: pip install 'perfsim[{extra or missing}]' "
                         f"(with torch==2.13.0 on the same pip line)") from None
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    # The torchvision extension does not match torch: declare its detection ops and retry.
    _forget("torchvision")
    _forget(name)
    _declare_detection_ops()
    return importlib.import_module(name)


def import_torchvision() -> ModuleType:
    return import_optional("torchvision")


def import_timm() -> ModuleType:
    return import_optional("timm")
