"""The training loop of ``perfsim train``: a zoo network trained with its paper's recipe
(:mod:`perfsim.accuracy.recipes`) on ``(images, labels)`` splits, scored on the test split after every
epoch (:mod:`perfsim.accuracy.evaluation`) and checkpointed every epoch
(:mod:`perfsim.accuracy.checkpoints`); :func:`fit` runs it.

Every iteration takes its learning rate from :func:`perfsim.accuracy.recipes.lr_for`. A model with a
method ``update_progress(progress)`` gets it called first with the fraction of training done,
``step / total_steps`` (0 at the first iteration, ``(T-1)/T`` at the last), the convention of
CondenseNet's training loop (ShichenLiu/CondenseNet, ``main.py``: ``progress = (epoch * nBatch + i) /
(epochs * nBatch)``), which its learned group convolutions use to decide when to condense. With
``recipe.group_lasso > 0``, ``recipe.group_lasso * model.group_lasso()`` is added to the loss. A loss
that is not finite stops the run (InputError naming the step).

The seed makes a run reproducible: on the CPU, the same configuration, data and thread count give
bit-identical weights and metrics, and a resumed run continues exactly. :func:`fit` forks torch's
global RNG, so the caller's RNG state is left as it was. Importing this module does not import torch.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..files import write_atomic
from .checkpoints import CHECKPOINT_NAME, CURVES_NAME, METRICS_NAME, TrainState, checkpoint_of, load_checkpoint, restore
from .config import RunConfig, build_network, setup_torch
from .evaluation import TOP5_MIN_CLASSES, measure
from .recipes import lr_for

__all__ = ["fit", "make_optimizer", "make_loss", "check_data", "write_metrics", "plot_curves"]

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                  "epoch_s", "elapsed_s")


def make_optimizer(recipe, params):
    import torch

    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=recipe.lr, alpha=recipe.rmsprop_alpha,
                                   eps=recipe.rmsprop_eps, momentum=recipe.momentum,
                                   weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_loss(recipe, train_labels: np.ndarray, num_classes: int):
    """Cross entropy, or the class-balanced focal loss (Cui et al. 2019; softmax form):
    ``-w_y (1 - p_y)^gamma log p_y`` with ``w_c = (1 - beta) / (1 - beta^n_c)`` scaled to sum to
    the number of classes (``n_c``: training images of class c; balanced data gives w = 1)."""
    import torch
    import torch.nn.functional as F

    if recipe.loss == "cross_entropy":
        def ce(logits, target):
            return F.cross_entropy(logits, target, label_smoothing=recipe.label_smoothing)
        return ce
    counts = np.bincount(np.asarray(train_labels), minlength=num_classes).astype(np.float64)
    eff = (1.0 - np.power(recipe.cb_beta, np.maximum(counts, 1))) / (1.0 - recipe.cb_beta)
    w = 1.0 / eff
    w = torch.as_tensor(w * num_classes / w.sum(), dtype=torch.float32)
    gamma = recipe.focal_gamma

    def focal(logits, target):
        logp = F.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]
        weight = w.to(logits.device)[target]
        return (-weight * (1.0 - logp.exp()).pow(gamma) * logp).mean()
    return focal


def _prepare(config: RunConfig, train_split, test_split) -> TrainState:
    from .data import BatchLoader, channel_stats

    recipe = config.recipe
    (xtr, ytr), (xte, yte) = train_split, test_split
    mean, std = channel_stats(xtr)
    loader = BatchLoader(xtr, ytr, batch_size=recipe.batch_size, shuffle=True, augment=True,
                         crop_size=recipe.crop, padding=recipe.padding, flip=recipe.flip,
                         mean=mean, std=std, seed=config.seed)
    eval_loader = BatchLoader(xte, yte, batch_size=max(recipe.batch_size, 256), shuffle=False,
                              augment=False, crop_size=loader.crop_size, mean=mean, std=std)
    model = build_network(config.net, config.seed).to(config.device)
    return TrainState(model=model, optimizer=make_optimizer(recipe, model.parameters()), loader=loader,
                      eval_loader=eval_loader, loss_fn=make_loss(recipe, ytr, config.net.num_classes),
                      mean=[float(v) for v in mean], std=[float(v) for v in std])


def _train_epoch(config: RunConfig, st: TrainState) -> dict:
    """One epoch of the recipe; returns the epoch's lr (first iteration), mean loss and top-1."""
    recipe, model = config.recipe, st.model
    steps_per_epoch = len(st.loader)
    total = recipe.epochs * steps_per_epoch
    update_progress = getattr(model, "update_progress", None)
    lasso = getattr(model, "group_lasso", None) if recipe.group_lasso > 0 else None
    model.train()
    loss_sum, correct, seen, first_lr = 0.0, 0, 0, None
    for x, y in st.loader:
        if callable(update_progress):
            update_progress(min(st.step / total, 1.0))
        lr = lr_for(recipe, st.step, steps_per_epoch)
        first_lr = lr if first_lr is None else first_lr
        for group in st.optimizer.param_groups:
            group["lr"] = lr
        x, y = x.to(config.device), y.to(config.device)
        logits = model(x)
        loss = st.loss_fn(logits, y)
        if callable(lasso):
            loss = loss + recipe.group_lasso * lasso()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InputError(f"training diverged: loss is {value} at step {st.step + 1} "
                             f"(lr {lr:.3g}); lower the learning rate (--lr)")
        st.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        st.optimizer.step()
        n = int(y.shape[0])
        loss_sum, seen = loss_sum + value * n, seen + n
        correct += int((logits.detach().argmax(1) == y).sum())
        st.step += 1
    return {"lr": first_lr, "train_loss": loss_sum / seen, "train_top1": correct / seen}


def _eta(st: TrainState, epochs: int, start_epoch: int, run_s: float) -> str:
    done = st.epoch - start_epoch
    left = (epochs - st.epoch) * run_s / max(done, 1)
    return time.strftime("%H:%M:%S", time.gmtime(left))


def _log_epoch(config: RunConfig, st: TrainState, row: dict, eta: str, log: Callable[[str], None]) -> None:
    top5 = f" top5 {row['val_top5']:.2%}" if row["val_top5"] != "" else ""
    log(f"epoch {row['epoch']}/{config.recipe.epochs}  lr {row['lr']:.3g}  "
        f"train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2%}  "
        f"val loss {row['val_loss']:.4f} top1 {row['val_top1']:.2%}{top5}  "
        f"{row['epoch_s']:.1f}s  ETA {eta}")


def fit(config: RunConfig, train_split, test_split, out: Path, *, resume: str | Path | None = None,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> list[dict]:
    """Train ``config`` on ``(images, labels)`` splits, evaluating on the test split after every
    epoch; after each epoch ``out/`` gets ``checkpoint.pt`` and ``metrics.csv`` (each replaced
    atomically), at the end ``curves.png``. ``resume``: a checkpoint to continue exactly from.
    Returns the metric rows (one per epoch, resumed ones included). The caller's torch RNG state
    is left as it was (the run draws from a fork of it, seeded with ``config.seed``)."""
    import torch

    setup_torch(config.device, config.threads)
    with torch.random.fork_rng(devices=None if config.device == "cuda" else []):
        torch.manual_seed(config.seed)
        st = _prepare(config, train_split, test_split)
        if resume is not None:
            restore(config, st, load_checkpoint(resume), resume)
        return _run_epochs(config, st, out, log)


def _run_epochs(config: RunConfig, st: TrainState, out: Path, log: Callable[[str], None]) -> list[dict]:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    top5 = config.net.num_classes >= TOP5_MIN_CLASSES
    start_epoch, start = st.epoch, time.perf_counter()
    last = config.recipe.epochs if config.stop_after is None else min(config.stop_after, config.recipe.epochs)
    while st.epoch < last:
        t0 = time.perf_counter()
        row = {"epoch": st.epoch + 1, **_train_epoch(config, st)}
        val = measure(st.model, st.eval_loader, loss_fn=st.loss_fn, device=config.device, top5=top5)
        st.epoch += 1
        st.elapsed_s += time.perf_counter() - t0
        row.update(val_loss=val["loss"], val_top1=val["top1"],
                   val_top5=val["top5"] if top5 else "", epoch_s=time.perf_counter() - t0,
                   elapsed_s=st.elapsed_s)
        st.rows.append(row)
        write_atomic(out / CHECKPOINT_NAME, lambda tmp: torch.save(checkpoint_of(config, st), tmp))
        write_atomic(out / METRICS_NAME, lambda tmp: write_metrics(st.rows, tmp))
        _log_epoch(config, st, row, _eta(st, last, start_epoch, time.perf_counter() - start), log)
    write_atomic(out / CURVES_NAME, lambda tmp: plot_curves(st.rows, tmp, title=config.net.describe()))
    return st.rows


def write_metrics(rows: list[dict], path: str | Path) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})


def plot_curves(rows: list[dict], path: str | Path, *, title: str = "") -> None:
    """Training/validation accuracy and loss per epoch (the MobileNet paper's Figs. 3-4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name in ((ax_acc, "top1", "accuracy"), (ax_loss, "loss", "loss")):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], marker="o", label="training")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], marker="o", label="validation (test split)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def check_data(config: RunConfig, train_split) -> None:
    """Refuse a recipe's crop that does not fit the images, before anything is printed."""
    from .data import _crop_geometry

    images = train_split[0]
    _crop_geometry(images.shape[2:], config.recipe.crop, config.recipe.padding)
