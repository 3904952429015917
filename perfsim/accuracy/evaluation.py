"""Scoring a network: top-1 (and top-5) accuracy and mean loss over a loader (:func:`measure`,
run after every training epoch), and a checkpoint's score on a data set's test split
(:func:`evaluate_checkpoint`, what ``perfsim eval`` reports).

Importing this module does not import torch.
"""
from __future__ import annotations

from ..errors import InputError
from .config import NetOptions, build_network, converted, setup_torch

__all__ = ["measure", "evaluate_checkpoint", "TOP5_MIN_CLASSES"]

TOP5_MIN_CLASSES = 20  # top-5 is reported only with at least this many classes (CIFAR-100, ImageNet)


def measure(model, loader, *, loss_fn=None, device: str = "cpu", top5: bool = False) -> dict:
    """Top-1 (and top-5) accuracy (0..1) and mean loss of ``model`` over ``loader``'s batches,
    in eval mode under no_grad (the model's mode is restored)."""
    import torch
    import torch.nn.functional as F

    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    loss_sum, hit1, hit5, seen = 0.0, 0, 0, 0
    try:
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss_sum += float(loss_fn(logits, y)) * int(y.shape[0])
                ranked = logits.topk(min(5, logits.shape[1]), 1).indices
                hit1 += int((ranked[:, 0] == y).sum())
                hit5 += int((ranked == y[:, None]).any(1).sum())
                seen += int(y.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise InputError("evaluation data is empty")
    return {"top1": hit1 / seen, "top5": hit5 / seen if top5 else None,
            "loss": loss_sum / seen, "images": seen}


def _max_logit_diff(a, b, loader, device: str) -> float:
    import torch

    worst = 0.0
    with torch.no_grad():
        for x, _ in loader:
            x = x.to(device)
            worst = max(worst, float((a(x) - b(x)).abs().max()))
    return worst


def evaluate_checkpoint(ckpt: dict, net: NetOptions, dataset: str, data, *, device: str = "cpu",
                        threads: int = 2, batch_size: int = 256, side: int) -> dict:
    """Accuracy of a checkpoint's network on the test split of ``dataset`` (normalised and
    cropped as in training). A network with ``condense()`` is scored after conversion; the
    result also holds the training form's score and the largest logit difference between the
    converted network and the training form it was converted from."""
    from .data import NUM_CLASSES, BatchLoader, load_splits

    if NUM_CLASSES.get(dataset) != net.num_classes:
        raise InputError(f"the checkpoint's network has {net.num_classes} classes; data set "
                         f"{dataset!r} has {NUM_CLASSES.get(dataset, '?')}")
    setup_torch(device, threads)
    _, (x, y) = load_splits(dataset, data, side)
    norm = ckpt["normalisation"]
    loader = BatchLoader(x, y, batch_size=batch_size, shuffle=False, augment=False,
                         crop_size=norm["crop"], mean=norm["mean"], std=norm["std"])
    model = build_network(net, 0)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint does not fit {net.describe()}: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    top5 = net.num_classes >= TOP5_MIN_CLASSES
    # condense() leaves ``model`` the training form of exactly the function it converts (its
    # classifier's input selection applied, as CondenseNet's conversion does): score both.
    final = converted(model)
    model.eval()
    before = measure(model, loader, device=device, top5=top5)
    result = {"model": net.model, "width": net.width, "num_classes": net.num_classes,
              "dataset": dataset, "input_side": norm["crop"], "epoch": int(ckpt["epoch"]),
              "converted": final is not model}
    scored = measure(final, loader, device=device, top5=top5) if final is not model else before
    result.update(top1=scored["top1"], top5=scored["top5"], loss=scored["loss"], images=scored["images"])
    if final is not model:
        result["conversion"] = {"training_form_top1": before["top1"],
                                "max_abs_logit_diff": _max_logit_diff(model, final, loader, device)}
    return result
