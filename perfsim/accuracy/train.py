"""Train and evaluate zoo networks on the CPU, for the accuracy side of accuracy-vs-latency plots.

SGD (momentum, optional Nesterov, weight decay) with a per-iteration learning-rate schedule
(cosine by default, as CondenseNet / CondenseNeXt train), cross-entropy loss, and a fixed seed
that makes a run reproducible: the same model weights, data and seed give the same trained
weights (the global torch RNG is forked, so the caller's RNG state is left untouched).

If the model has a method ``update_progress(progress: float)`` it is called before every
iteration with the fraction of training already done, ``step / total_steps`` (0 at the first
iteration, ``(T-1)/T`` at the last), the convention of CondenseNet's training loop
(ShichenLiu/CondenseNet, ``main.py``: ``progress = (epoch * nBatch + i) / (epochs * nBatch)``),
which its learned group convolutions use to decide when to condense.

Progress is shown with tqdm when it is installed (it is not a dependency), else with a few plain
lines on stderr; ``show_progress=False`` silences both. Importing this module does not import
torch.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..files import write_atomic
from .checkpoints import (CHECKPOINT_NAME, CURVES_NAME, METRICS_NAME, TrainState, checkpoint_of, load_checkpoint,
                          restore)
from .config import RunConfig, build_network, setup_torch
from .evaluation import TOP5_MIN_CLASSES, measure
from .recipes import lr_for

__all__ = ["TrainProgress", "TrainResult", "train", "evaluate", "lr_at", "fit", "make_optimizer", "make_loss",
           "check_data", "write_metrics", "plot_curves"]

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainProgress:
    """What ``progress_callback`` receives after each iteration."""

    epoch: int  # 0-based epoch of the iteration just done
    step: int  # 0-based global index of the iteration just done
    total_steps: int
    progress: float  # fraction of training done after this iteration, (step + 1) / total_steps
    loss: float  # this batch's training loss
    lr: float  # learning rate used for this iteration


@dataclass
class TrainResult:
    """History of a :func:`train` run."""

    epochs: int
    steps: int
    step_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    epoch_top1: list[float] = field(default_factory=list)  # training accuracy (augmented batches)
    eval_history: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch, top1, loss)
    seconds: float = 0.0
    # Normalisation used when train() built the loader from arrays (pass them to evaluate()).
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    crop_size: int | None = None


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str = "cosine", *,
          milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
          warmup_steps: int = 0) -> float:
    """Learning rate of iteration ``step`` (0-based) out of ``total_steps``.

    ``cosine``: ``base_lr * (1 + cos(pi * t / T)) / 2`` per iteration (CondenseNet's schedule);
    ``step``: multiplied by ``gamma`` at each of ``milestones`` (fractions of training);
    ``constant``: ``base_lr``. An optional linear warm-up over the first ``warmup_steps``.
    """
    if schedule not in SCHEDULES:
        raise InputError(f"unknown LR schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = step - warmup_steps
    total = max(total_steps - warmup_steps, 1)
    if schedule == "cosine":
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * t / total))
    if schedule == "step":
        return base_lr * gamma ** sum(1 for m in milestones if t >= m * total)
    return base_lr


class _Progress:
    """tqdm if available, else a line on stderr at about every 10 % of the steps."""

    def __init__(self, total: int, enabled: bool, desc: str = "train"):
        self.total = total
        self.enabled = enabled
        self.bar = None
        self._next_line = 0
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="it", leave=False,
                                dynamic_ncols=True)

    def update(self, step: int, epoch: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4f}", lr=f"{lr:.3g}",
                                 refresh=False)
        elif step + 1 >= self._next_line or step + 1 == self.total:
            print(f"train: step {step + 1}/{self.total} epoch {epoch + 1} "
                  f"loss {loss:.4f} lr {lr:.3g}", file=sys.stderr, flush=True)
            self._next_line = step + 1 + max(self.total // 10, 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_array(obj: Any) -> bool:
    """A numpy array or a torch tensor (checked without importing torch)."""
    return isinstance(obj, np.ndarray) or type(obj).__module__.startswith("torch")


def _as_loader(data: Any, *, train: bool, batch_size: int, crop_size: int | None, padding: int,
               flip: bool, mean, std, seed: int):
    """Arrays ``(images, labels)`` -> BatchLoader; anything else is taken as a batch iterable."""
    from .data import BatchLoader, channel_stats

    if isinstance(data, tuple) and len(data) == 2 and _is_array(data[0]):
        images, labels = (np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
                          for a in data)
        if (mean is None) != (std is None):
            raise InputError("give both mean and std, or neither")
        if mean is None and images.dtype == np.uint8:
            mean, std = channel_stats(images)
        loader = BatchLoader(images, labels, batch_size=batch_size, shuffle=train,
                             augment=train, crop_size=crop_size, padding=padding, flip=flip,
                             mean=mean, std=std, seed=seed)
        return loader, mean, std, loader.crop_size
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise InputError("training/evaluation data must be (images, labels) numpy arrays or an "
                         f"iterable of (x, y) batches, not {type(data).__name__}")
    return data, None, None, None


def train(model, train_data, *, epochs: int, batch_size: int = 128, lr: float = 0.1,  # noqa: C901
          momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 5e-4,
          schedule: str = "cosine", milestones: Sequence[float] = (0.5, 0.75),
          gamma: float = 0.1, warmup_epochs: float = 0.0, seed: int = 0,
          loss_fn: Callable[[Any, Any], Any] | None = None, label_smoothing: float = 0.0,
          crop_size: int | None = None, padding: int = 4, flip: bool = True,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          eval_data: Any = None, max_steps: int | None = None,
          progress_callback: Callable[[TrainProgress], None] | None = None,
          show_progress: bool = True, num_threads: int | None = None,
          group_lasso: float = 0.0) -> TrainResult:
    """Train ``model`` in place with SGD on the CPU; returns the :class:`TrainResult` history.

    (One loop with its options checked up front; it splits into recipe and loop with the
    training CLI, issue 10 -- hence the complexity exemption.)

    ``train_data``: ``(images, labels)`` numpy arrays -- uint8 ``(N, C, H, W)`` images are
    normalised per channel (``mean``/``std`` on the 0..1 scale; default: the statistics of
    these images) and augmented with random crops (zero ``padding``, output ``crop_size``,
    default the image size; use 28 with ``padding=0`` for the MobileNet CIFAR variant) and
    horizontal flips; float images are used as given, still augmented -- or any re-iterable
    with ``len()`` of ``(x, y)`` tensor batches (e.g. a :class:`perfsim.accuracy.data.BatchLoader` or a
    ``torch.utils.data.DataLoader``), used as is.

    ``schedule`` is ``"cosine"`` (per iteration), ``"step"`` (``gamma`` at each fraction in
    ``milestones``) or ``"constant"``, after ``warmup_epochs`` of linear warm-up. The loss is
    cross entropy (with ``label_smoothing``) unless ``loss_fn(logits, targets)`` is given.
    ``max_steps`` stops early (the schedule then spans ``max_steps``). ``eval_data`` (same forms
    as ``train_data``, normalised with the training statistics) is evaluated after each epoch.
    ``progress_callback`` receives a :class:`TrainProgress` after every iteration.
    ``group_lasso``: weight of the model's ``group_lasso()`` regulariser added to the loss
    (CondenseNet's learned group convolution; its authors use 1e-5); 0 adds nothing.
    """
    import torch
    import torch.nn.functional as F

    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise InputError(f"learning rate must be positive, got {lr}")
    if schedule not in SCHEDULES:
        raise InputError(f"unknown LR schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be >= 1, got {max_steps}")

    loader, mean, std, crop = _as_loader(train_data, train=True, batch_size=batch_size,
                                         crop_size=crop_size, padding=padding, flip=flip,
                                         mean=mean, std=std, seed=seed)
    try:
        steps_per_epoch = len(loader)
    except TypeError:
        raise InputError("the training batch iterable needs a len() (batches per epoch) "
                         "for the learning-rate schedule") from None
    if steps_per_epoch < 1:
        raise InputError("the training data yields no batches")
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, int(max_steps))
    run_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    if loss_fn is None:
        def loss_fn(logits, target):
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    lasso = getattr(model, "group_lasso", None) if group_lasso > 0 else None
    if group_lasso > 0 and not callable(lasso):
        raise InputError(f"group_lasso={group_lasso} but {type(model).__name__} has no group_lasso()")
    update_progress = getattr(model, "update_progress", None)
    if not callable(update_progress):
        update_progress = None

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                nesterov=nesterov, weight_decay=weight_decay)
    result = TrainResult(epochs=run_epochs, steps=total_steps, mean=mean, std=std,
                         crop_size=crop)
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    bar = _Progress(total_steps, show_progress)
    start = time.perf_counter()
    step = 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for epoch in range(run_epochs):
                model.train()
                loss_sum, correct, seen = 0.0, 0, 0
                for x, y in loader:
                    if step >= total_steps:
                        break
                    if update_progress is not None:
                        update_progress(step / total_steps)
                    cur_lr = lr_at(step, total_steps, lr, schedule, milestones=milestones,
                                   gamma=gamma, warmup_steps=warmup_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = cur_lr
                    x = torch.as_tensor(x, dtype=torch.float32)
                    y = torch.as_tensor(y, dtype=torch.int64)
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    if lasso is not None:
                        loss = loss + group_lasso * lasso()
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise InputError(f"training diverged: loss is {value} at step {step + 1} "
                                         f"(lr {cur_lr:.3g}); lower the learning rate")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

                    n = int(y.shape[0])
                    loss_sum += value * n
                    seen += n
                    correct += int((logits.detach().argmax(1) == y).sum())
                    result.step_losses.append(value)
                    result.lrs.append(cur_lr)
                    bar.update(step, epoch, value, cur_lr)
                    if progress_callback is not None:
                        progress_callback(TrainProgress(epoch=epoch, step=step,
                                                        total_steps=total_steps,
                                                        progress=(step + 1) / total_steps,
                                                        loss=value, lr=cur_lr))
                    step += 1
                if seen:
                    result.epoch_losses.append(loss_sum / seen)
                    result.epoch_top1.append(correct / seen)
                if eval_data is not None:
                    top1, eval_loss = evaluate(model, eval_data, batch_size=max(batch_size, 256),
                                               mean=mean, std=std, crop_size=crop,
                                               loss_fn=loss_fn)
                    result.eval_history.append((epoch, top1, eval_loss))
                if step >= total_steps:
                    break
    finally:
        bar.close()
        if num_threads is not None:
            torch.set_num_threads(old_threads)
    result.seconds = time.perf_counter() - start
    return result


def evaluate(model, data, *, batch_size: int = 256, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None, crop_size: int | None = None,
             loss_fn: Callable[[Any, Any], Any] | None = None) -> tuple[float, float]:
    """Top-1 accuracy (0..1) and mean loss (cross entropy by default) of ``model`` on ``data``.

    ``data``: ``(images, labels)`` arrays or an iterable of ``(x, y)`` batches. uint8 images are
    normalised with ``mean``/``std`` -- pass the training split's (``TrainResult.mean``/``std``);
    without them the statistics of ``data`` itself are used -- and centre-cropped to
    ``crop_size``. The model is run in eval mode under ``torch.no_grad`` and its previous mode is
    restored afterwards.
    """
    import torch
    import torch.nn.functional as F

    loader, _, _, _ = _as_loader(data, train=False, batch_size=batch_size, crop_size=crop_size,
                                 padding=0, flip=False, mean=mean, std=std, seed=0)
    if loss_fn is None:
        loss_fn = F.cross_entropy
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y in loader:
                x = torch.as_tensor(x, dtype=torch.float32)
                y = torch.as_tensor(y, dtype=torch.int64)
                logits = model(x)
                n = int(y.shape[0])
                loss_sum += float(loss_fn(logits, y)) * n
                correct += int((logits.argmax(1) == y).sum())
                seen += n
    finally:
        model.train(was_training)
    if seen == 0:
        raise InputError("evaluation data is empty")
    return correct / seen, loss_sum / seen


# ==========================================================================================
# Training runs (``perfsim train`` / ``perfsim eval``): a recipe, checkpoints, exact resume
# (the run's configuration: config.py; checkpoints: checkpoints.py; scoring: evaluation.py)
# ==========================================================================================
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
    Returns the metric rows (one per epoch, resumed ones included)."""
    import torch

    setup_torch(config.device, config.threads)
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
