"""The run folder and its checkpoint: the files a training run writes, the state a checkpoint
saves (:class:`TrainState`), writing and reading it back, and the checks that make ``--resume``
continue exactly the run it came from (same network, data set, seed and recipe).

Importing this module does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .config import NetOptions, RunConfig

__all__ = ["TrainState", "checkpoint_of", "restore", "load_checkpoint", "check_checkpoint_net",
           "check_resume"]

CHECKPOINT_FORMAT = "perfsim-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
CURVES_NAME = "curves.png"
CONFIG_NAME = "config.json"
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, CURVES_NAME, CONFIG_NAME)


@dataclass
class TrainState:
    """A training run in progress: what a checkpoint saves and a resume restores."""

    model: Any
    optimizer: Any
    loader: Any  # the training BatchLoader (its generator draws the shuffling and augmentation)
    eval_loader: Any
    loss_fn: Any
    mean: list
    std: list
    epoch: int = 0  # epochs done
    step: int = 0  # iterations done
    elapsed_s: float = 0.0
    rows: list = field(default_factory=list)  # one metric row per epoch done


def checkpoint_of(config: RunConfig, st: TrainState) -> dict:
    """The checkpoint of ``st`` (plain data and tensors: it loads with ``weights_only``)."""
    import torch

    ckpt = {"format": CHECKPOINT_FORMAT, "config": config.choices(), "net": config.net.as_dict(),
            "epoch": st.epoch, "step": st.step, "elapsed_s": st.elapsed_s,
            "model": st.model.state_dict(), "optimizer": st.optimizer.state_dict(),
            "scheduler": {"schedule": config.recipe.schedule, "step": st.step},
            "rng": {"torch": torch.get_rng_state(), "loader": st.loader._generator.get_state()},
            "normalisation": {"mean": st.mean, "std": st.std, "crop": st.loader.crop_size},
            "rows": st.rows}
    if config.device == "cuda":
        ckpt["rng"]["cuda"] = torch.cuda.get_rng_state()
    return ckpt


def restore(config: RunConfig, st: TrainState, ckpt: dict, path) -> None:
    """Continue ``st`` exactly where the checkpoint ``ckpt`` (read from ``path``) stopped."""
    import torch

    check_resume(config, ckpt, path)
    try:
        st.model.load_state_dict(ckpt["model"])
        st.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        st.loader._generator.set_state(ckpt["rng"]["loader"])
        if "cuda" in ckpt["rng"] and config.device == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise InputError(f"checkpoint {path} does not fit this network: "
                         f"{str(exc).splitlines()[0]}") from None
    st.epoch, st.step, st.elapsed_s = int(ckpt["epoch"]), int(ckpt["step"]), float(ckpt["elapsed_s"])
    st.rows = [dict(r) for r in ckpt["rows"]]


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`perfsim.accuracy.train.fit` (tensors and plain data only:
    ``weights_only``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: not a perfsim checkpoint "
                         f"({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"cannot read checkpoint {path}: not a {CHECKPOINT_FORMAT} file")
    return ckpt


def check_checkpoint_net(ckpt: dict, net: NetOptions, path: str | Path) -> None:
    saved = NetOptions(**ckpt["net"])
    if saved != net:
        raise InputError(f"checkpoint {path} is of {saved.describe()}, not {net.describe()}")


def check_resume(config: RunConfig, ckpt: dict, path) -> None:
    """Refuse to resume a checkpoint of another network, data set, seed or recipe."""
    check_checkpoint_net(ckpt, config.net, path)
    saved = ckpt["config"]
    mine = config.choices()
    for key in ("dataset", "seed", "recipe"):
        if saved[key] != mine[key]:
            raise InputError(f"checkpoint {path} was trained with another {key} "
                             f"({_differs(saved[key], mine[key])}); resume takes the same one")


def _differs(saved: Any, mine: Any) -> str:
    if isinstance(saved, dict) and isinstance(mine, dict):
        keys = [k for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)]
        return ", ".join(f"{k}: {saved.get(k)!r} there, {mine.get(k)!r} here" for k in keys[:3])
    return f"{saved!r} there, {mine!r} here"
