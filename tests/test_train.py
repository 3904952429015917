"""perfsim.accuracy: CIFAR pickles (read without running code) and loaders (data), the training loop
(train.fit, with the recipe's schedule) and scoring (evaluation.measure), on tiny fake data."""
from __future__ import annotations

import builtins
import copy
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from perfsim.accuracy.data import (BatchLoader, CifarDataset, channel_stats, find_cifar_dir, load_cifar,
                          load_cifar10, load_cifar100, make_loader)
from perfsim.errors import InputError

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import perfsim.accuracy.train as train_module  # noqa: E402
from perfsim.accuracy.checkpoints import load_checkpoint  # noqa: E402
from perfsim.accuracy.config import NetOptions, RunConfig  # noqa: E402
from perfsim.accuracy.evaluation import measure  # noqa: E402
from perfsim.accuracy.recipes import Recipe, apply_overrides, lr_for, recipe_for  # noqa: E402
from perfsim.accuracy.train import fit  # noqa: E402

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


# ---------------------------------------------------------------- fake CIFAR folders

def _images(rng, n):
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def _dump(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root, per_batch=6, seed=0):
    """cifar-10-batches-py/ under root; returns {file: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in CIFAR10_TRAIN + ["test_batch"]:
        imgs = _images(rng, per_batch)
        labels = rng.integers(0, 10, size=per_batch).tolist()  # the real files hold lists
        _dump(folder / name, {b"batch_label": name.encode(), b"labels": labels,
                              b"data": imgs.reshape(per_batch, -1),
                              b"filenames": [b"x.png"] * per_batch})
        written[name] = (imgs, np.array(labels))
    return folder, written


def write_cifar100(root, n_train=20, n_test=8, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        imgs = _images(rng, n)
        fine = rng.integers(0, 100, size=n).tolist()
        _dump(folder / name, {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                              b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
                              b"data": imgs.reshape(n, -1)})
        written[name] = (imgs, np.array(fine))
    return folder, written


def test_load_cifar10_folder_and_parent(tmp_path):
    folder, written = write_cifar10(tmp_path)
    for path in (folder, tmp_path, str(folder)):
        x, y = load_cifar(path, "train")
        assert x.shape == (30, 3, 32, 32) and x.dtype == np.uint8
        assert y.shape == (30,) and y.dtype == np.int64
        np.testing.assert_array_equal(x, np.concatenate([written[f][0] for f in CIFAR10_TRAIN]))
        np.testing.assert_array_equal(y, np.concatenate([written[f][1] for f in CIFAR10_TRAIN]))
    xt, yt = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(xt, written["test_batch"][0])
    np.testing.assert_array_equal(yt, written["test_batch"][1])
    assert find_cifar_dir(tmp_path) == (folder, "cifar10")


def test_rows_are_channel_major(tmp_path):
    """A CIFAR row is 1024 red, 1024 green, 1024 blue bytes, each a row-major 32x32 plane."""
    folder, _ = write_cifar10(tmp_path, per_batch=1)
    row = np.zeros(3072, np.uint8)
    row[0] = 11  # R at (0, 0)
    row[1024 + 33] = 22  # G at (1, 1)
    row[2048 + 1023] = 33  # B at (31, 31)
    _dump(folder / "test_batch", {b"data": row[None], b"labels": [7]})
    x, y = load_cifar10(folder, "test")
    assert x[0, 0, 0, 0] == 11 and x[0, 1, 1, 1] == 22 and x[0, 2, 31, 31] == 33
    assert int(x.sum()) == 66 and y.tolist() == [7]


def test_load_cifar100_fine_labels(tmp_path):
    folder, written = write_cifar100(tmp_path)
    x, y = load_cifar(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and y.dtype == np.int64
    np.testing.assert_array_equal(x, written["train"][0])
    np.testing.assert_array_equal(y, written["train"][1])  # fine, not coarse
    xt, yt = load_cifar100(folder, "test")
    assert xt.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(yt, written["test"][1])
    assert find_cifar_dir(tmp_path) == (folder, "cifar100")


def test_parent_holding_both_needs_a_choice(tmp_path):
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    with pytest.raises(InputError, match="both"):
        load_cifar(tmp_path)
    assert load_cifar(tmp_path, dataset="cifar100")[0].shape[0] == 20
    assert load_cifar(tmp_path, dataset="CIFAR-10")[0].shape[0] == 30


def test_missing_folder_and_batch(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere"):
        load_cifar(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no CIFAR data at .*empty"):
        load_cifar(empty)
    folder, _ = write_cifar10(tmp_path / "c10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(InputError, match="data_batch_3"):
        load_cifar10(folder)
    load_cifar10(folder, "test")  # the test split is still complete
    with pytest.raises(InputError, match="split"):
        load_cifar10(folder, "validation")


@pytest.mark.parametrize("payload,match", [
    (b"this is not a pickle", "not a valid pickle"),
    (None, "not a valid pickle"),  # a truncated real batch
    ([1, 2, 3], "expected a dict"),
    ({b"labels": [1]}, "'data'"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "3072"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels outside 0..9"),
])
def test_malformed_batches(tmp_path, payload, match):
    folder, _ = write_cifar10(tmp_path)
    target = folder / "test_batch"
    if payload is None:  # a truncated real batch
        target.write_bytes(target.read_bytes()[:200])
    elif isinstance(payload, bytes):
        target.write_bytes(payload)
    else:
        _dump(target, payload)
    with pytest.raises(InputError, match=match) as info:
        load_cifar10(folder, "test")
    assert str(folder) in str(info.value)


def py2_batch(rows, labels):
    """A batch as CIFAR's own files are: written by Python 2's cPickle at protocol 2 (str is bytes,
    numpy's module is numpy.core.multiarray). Built opcode by opcode, as Python 3 cannot write it."""
    def string(b):  # Python 2 str: SHORT_BINSTRING / BINSTRING
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def small_int(i):
        return b"K" + bytes([i])

    n = rows.shape[0]
    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + small_int(0) + small_int(1) + b"\x87R"
             + b"(" + small_int(3) + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + small_int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + small_int(0) + b"\x85" + string(b"b")
             + b"\x87R(" + small_int(1) + b"M" + struct.pack("<H", n) + b"M" + struct.pack("<H", rows.shape[1])
             + b"\x86" + dtype + b"\x89" + string(rows.tobytes()) + b"tb")
    return (b"\x80\x02}(" + string(b"batch_label") + string(b"testing batch 1 of 1") + string(b"labels")
            + b"]" + b"(" + b"".join(small_int(v) for v in labels) + b"e" + string(b"data") + array
            + string(b"filenames") + b"](" + string(b"x.png") * n + b"eu.")


def test_a_python2_batch_as_cifar_ships_it(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    rows = np.random.default_rng(9).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(py2_batch(rows, [4, 0, 9]))
    x, y = load_cifar10(folder, "test")
    np.testing.assert_array_equal(x, rows.reshape(3, 3, 32, 32))
    assert y.tolist() == [4, 0, 9] and y.dtype == np.int64


class RunsCode:
    """Unpickled by plain pickle.load, this calls ``fn(*args)``: a crafted CIFAR batch."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def crafted(marker, how):
    """A payload that leaves ``marker`` behind if it runs, and the global it names."""
    if how == "os.system":
        return RunsCode(os.system, f"touch '{marker}'"), f"{os.system.__module__}.system"
    return RunsCode(builtins.open, str(marker), "w"), f"{builtins.open.__module__}.open"


@pytest.mark.parametrize("how", ["os.system", "builtins.open"])
@pytest.mark.parametrize("where", ["labels", "top"])
def test_a_crafted_batch_runs_no_code(tmp_path, how, where):
    folder, _ = write_cifar10(tmp_path)
    marker = tmp_path / "ran"
    payload, name = crafted(marker, how)
    _dump(folder / "test_batch", payload if where == "top" else
          {b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]})
    with pytest.raises(InputError) as info:
        load_cifar10(folder, "test")
    message = str(info.value)
    assert str(folder / "test_batch") in message and name in message and "refused" in message
    assert "\n" not in message
    assert not marker.exists()
    with open(folder / "test_batch", "rb") as fh:  # the same file does run code through pickle.load
        pickle.load(fh, encoding="bytes")
    assert marker.exists()


def test_a_batch_pickled_by_python3_is_read_at_any_protocol(tmp_path):
    folder, written = write_cifar10(tmp_path)
    for protocol in (2, 4, pickle.HIGHEST_PROTOCOL):
        imgs, labels = written["test_batch"]
        with open(folder / "test_batch", "wb") as fh:
            pickle.dump({"data": imgs.reshape(len(labels), -1), "labels": labels.tolist(),
                         "filenames": [b"", b"a.png"] * 3}, fh, protocol=protocol)
        x, y = load_cifar10(folder, "test")
        np.testing.assert_array_equal(x, imgs)
        np.testing.assert_array_equal(y, labels)


def test_import_is_torch_free():
    code = ("import sys, perfsim.accuracy.data, perfsim.accuracy.train, perfsim.accuracy.checkpoints, "
            "perfsim.accuracy.config, perfsim.accuracy.evaluation, perfsim.accuracy.safe_pickle; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- loaders

def test_channel_stats_matches_numpy():
    rng = np.random.default_rng(3)
    x = _images(rng, 10)
    mean, std = channel_stats(x)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, xf.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, xf.std(axis=(0, 2, 3)), rtol=1e-4)


def test_batch_loader_shapes_normalisation_and_determinism():
    rng = np.random.default_rng(4)
    x, y = _images(rng, 37), rng.integers(0, 10, 37)
    mean, std = channel_stats(x)
    ev = make_loader(x, y, train=False, batch_size=16)
    assert len(ev) == 3
    batches = list(ev)
    assert [b[0].shape for b in batches] == [(16, 3, 32, 32)] * 2 + [(5, 3, 32, 32)]
    xs = torch.cat([b[0] for b in batches])
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(y))  # in order
    assert xs.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # standardised per channel
    assert (xs.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    expect = (torch.from_numpy(x).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(xs, expect)

    tr1 = [b for b in BatchLoader(x, y, batch_size=8, mean=mean, std=std, seed=5)]
    tr2 = [b for b in BatchLoader(x, y, batch_size=8, mean=mean, std=std, seed=5)]
    tr3 = [b for b in BatchLoader(x, y, batch_size=8, mean=mean, std=std, seed=6)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(tr1, tr2))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(tr1, tr3))
    assert sorted(torch.cat([b[1] for b in tr1]).tolist()) == sorted(y.tolist())  # a permutation


def test_crop_and_flip_are_real_augmentations():
    rng = np.random.default_rng(6)
    x = _images(rng, 64)
    y = np.arange(64)
    base = torch.from_numpy(x).float() / 255

    # flip only: every sample is the image or its mirror, and both occur
    loader = BatchLoader(x, y, batch_size=64, shuffle=False, padding=0, seed=1)
    out, _ = next(iter(loader))
    same = [(o == b).all().item() for o, b in zip(out, base)]
    mirrored = [(o == b.flip(2)).all().item() for o, b in zip(out, base)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54

    # pad 4 + crop 32: each output is a shifted window of the zero-padded image
    loader = BatchLoader(x, y, batch_size=64, shuffle=False, padding=4, flip=False, seed=2)
    out, _ = next(iter(loader))
    padded = torch.nn.functional.pad(base, (4, 4, 4, 4))
    shifts = []
    for o, p in zip(out, padded):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.equal(o, p[:, dy:dy + 32, dx:dx + 32])]
        assert hits, "output is not a crop of the padded image"
        shifts.append(hits[0])
    assert len(set(shifts)) > 10

    # MobileNet-CIFAR: 28x28 random crops (train), centre crops (eval)
    tr = BatchLoader(x, y, batch_size=64, shuffle=False, crop_size=28, padding=0, seed=3)
    assert next(iter(tr))[0].shape == (64, 3, 28, 28)
    ev = BatchLoader(x, y, batch_size=64, shuffle=False, augment=False, crop_size=28)
    torch.testing.assert_close(next(iter(ev))[0], base[:, :, 2:30, 2:30])
    with pytest.raises(InputError, match="crop size 40"):
        BatchLoader(x, y, crop_size=40, padding=0)


def test_cifar_dataset_with_torch_dataloader():
    rng = np.random.default_rng(7)
    x, y = _images(rng, 10), rng.integers(0, 10, 10)
    keep = x.copy()
    mean, std = channel_stats(x)
    ds = CifarDataset(x, y, mean=mean, std=std, train=True, crop_size=28, padding=0)
    img, label = ds[3]
    assert img.shape == (3, 28, 28) and img.dtype == torch.float32 and int(label) == y[3]
    assert ds[-1][0].shape == (3, 28, 28)
    with pytest.raises(IndexError):
        ds[10]
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 3, 28, 28) and yb.tolist() == y[:4].tolist()
    np.testing.assert_array_equal(x, keep)  # augmentation never writes into the source array




# ---------------------------------------------------------------- the training loop: train.fit

def colour_task(n, seed, classes=3):
    """Separable: class k has channel k brighter than the others (with noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    imgs = rng.normal(90, 25, size=(n, 3, 16, 16))
    imgs[np.arange(n), labels] += 70
    return np.clip(imgs, 0, 255).astype(np.uint8), labels.astype(np.int64)


class TinyNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


TINY_RECIPE = dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                   schedule="cosine", epochs=5, batch_size=32, padding=2)


def tiny_config(seed=0, classes=3, **recipe):
    return RunConfig(net=NetOptions("tiny", classes), dataset="colours",
                     recipe=Recipe(**{**TINY_RECIPE, **recipe}), seed=seed, threads=1)


@pytest.fixture
def network(monkeypatch):
    """``network(module)``: fit trains ``module`` instead of building a zoo network."""
    def use(module):
        monkeypatch.setattr(train_module, "build_network", lambda net, seed: module)
        return module
    return use


def run(config, train_split, test_split, out, **kw):
    return fit(config, train_split, test_split, out, log=lambda s: None, **kw)


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("epoch_s", "elapsed_s")} for r in rows]


def test_fit_learns_a_tiny_task(tmp_path, network):
    torch.manual_seed(0)
    model = network(TinyNet())
    train_split, test_split = colour_task(192, seed=0), colour_task(96, seed=1)
    config = tiny_config()
    rows = run(config, train_split, test_split, tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["val_top1"] >= 0.9 and rows[-1]["val_loss"] < rows[0]["val_loss"]
    # each epoch's lr is the recipe's schedule at its first iteration (6 iterations per epoch)
    assert [r["lr"] for r in rows] == [lr_for(config.recipe, 6 * e, 6) for e in range(5)]
    assert model.training
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "curves.png", "metrics.csv"]


def test_the_scheduled_lr_reaches_the_optimizer(tmp_path, network):
    """A step schedule that is 0 from the first epoch leaves every weight as it was."""
    torch.manual_seed(0)
    model = network(TinyNet())
    before = copy.deepcopy(model.state_dict())
    data = colour_task(32, seed=8)
    rows = run(tiny_config(schedule="step", milestones=(0,), factors=(0.0,), epochs=1, batch_size=8),
               data, data, tmp_path / "zero")
    assert rows[0]["lr"] == 0.0
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    run(tiny_config(schedule="constant", epochs=1, batch_size=8), data, data, tmp_path / "constant")
    assert not torch.equal(model.fc.weight, before["fc.weight"])


def test_fit_is_bit_exact_for_a_seed_and_leaves_the_callers_rng(tmp_path):
    """A zoo network (its weights, shuffling and augmentation drawn from the seed), run three times."""
    data = colour_task(48, seed=3)  # labels 0..2 of a 10-class network
    recipe = apply_overrides(recipe_for("mobilenet", "digits"),
                             {"epochs": 2, "batch_size": 16, "padding": 2, "flip": True})
    results = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        config = RunConfig(net=NetOptions("mobilenet", 10, 0.25), dataset="colours", recipe=recipe,
                           seed=seed, threads=1)
        torch.manual_seed(1234)
        caller = torch.get_rng_state()
        rows = run(config, data, data, tmp_path / name)
        assert torch.equal(torch.get_rng_state(), caller)  # the caller's RNG is left as it was
        results.append((without_timing(rows), load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]))
    (rows_a, wa), (rows_b, wb), (rows_c, wc) = results
    assert rows_a == rows_b and wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert rows_a != rows_c and not all(torch.equal(wa[k], wc[k]) for k in wa)


class ProgressNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def update_progress(self, progress: float) -> None:
        self.seen.append(progress)


def test_update_progress_gets_step_over_total_steps(tmp_path, network):
    """CondenseNet's convention: before every iteration, the fraction of training done (0 at the
    first, (T-1)/T at the last), carried on across a stop and a resume."""
    model = network(ProgressNet())
    data = colour_task(80, seed=2)
    config = tiny_config(epochs=3, batch_size=16)  # 5 iterations per epoch, 15 in all
    run(RunConfig(**{**config.__dict__, "stop_after": 1}), data, data, tmp_path / "run")
    assert model.seen == [s / 15 for s in range(5)]
    run(config, data, data, tmp_path / "run", resume=tmp_path / "run" / "checkpoint.pt")
    assert model.seen == [s / 15 for s in range(15)]


class WithLasso(nn.Module):
    def __init__(self, lasso):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 3)
        self.lasso = lasso
        self.calls = 0

    def forward(self, x):
        return self.fc(x.flatten(1))

    def group_lasso(self):
        self.calls += 1
        return self.lasso(self)


def test_group_lasso_is_added_to_the_loss(tmp_path, network):
    """``recipe.group_lasso * model.group_lasso()`` joins every iteration's loss (CondenseNet's regulariser)."""
    data = colour_task(32, seed=5)
    config = tiny_config(schedule="constant", epochs=1, batch_size=8, padding=0, flip=False)
    torch.manual_seed(0)
    init = WithLasso(lambda m: torch.tensor(10.0)).state_dict()

    def trained(weight, lasso, name):
        model = network(WithLasso(lasso))
        model.load_state_dict(init)
        rows = run(tiny_config(**{**config.recipe.model_dump(), "group_lasso": weight}), data, data, tmp_path / name)
        return model, rows[0]["train_loss"]

    plain, plain_loss = trained(0.0, lambda m: torch.tensor(10.0), "plain")
    assert plain.calls == 0  # weight 0: not even called
    shifted, shifted_loss = trained(0.5, lambda m: torch.tensor(10.0), "constant")
    assert shifted.calls == 4  # once per iteration
    assert shifted_loss == pytest.approx(plain_loss + 0.5 * 10.0, abs=1e-5)
    assert torch.equal(shifted.fc.weight, plain.fc.weight)  # a constant adds no gradient
    l1, _ = trained(0.01, lambda m: m.fc.weight.abs().sum(), "l1")
    assert float(l1.fc.weight.detach().abs().sum()) < float(plain.fc.weight.detach().abs().sum())  # its gradient acts


class NanAtStep(TinyNet):
    def __init__(self, step):
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, x):
        self.calls += self.training
        out = super().forward(x)
        return out * float("nan") if self.calls == self.step else out


def test_divergence_is_one_input_error_naming_the_step(tmp_path, network):
    network(NanAtStep(3))
    data = colour_task(16, seed=6)  # 2 iterations per epoch: step 3 opens epoch 2
    with pytest.raises(InputError, match=r"training diverged: loss is nan at step 3 \(lr [0-9.e-]+\); lower"):
        run(tiny_config(epochs=3, batch_size=8), data, data, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1  # the last whole epoch stays


class FixedLogits(nn.Module):
    """Sample i (its image holds i) gets row i of ``LOGITS``; records the mode it ran in."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.logits[x[:, 0, 0, 0].long()]


LOGITS = [[5.0, 4, 3, 2, 1, 0, -1], [0.0, 1, 2, 3, 4, 5, 6], [1.0, 0, 0, 0, 0, 0, 9], [0.0, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("training", [True, False])
def test_measure_scores_top1_top5_and_loss_and_restores_the_mode(training):
    target = torch.tensor([0, 2, 5, 3])  # ranks 1, 5, 2 and 1 (a tie: the first index wins)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    batches = [(x[:3], target[:3]), (x[3:], target[3:])]
    model = FixedLogits(LOGITS).train(training)
    got = measure(model, batches, top5=True)
    logp = np.array(LOGITS) - np.log(np.exp(np.array(LOGITS)).sum(1, keepdims=True))
    assert got["top1"] == 2 / 4 and got["top5"] == 4 / 4 and got["images"] == 4
    assert got["loss"] == pytest.approx(-logp[np.arange(4), target.numpy()].mean(), rel=1e-6)
    assert model.modes == [False, False] and model.training is training
    assert measure(model, batches)["top5"] is None
    with pytest.raises(InputError, match="empty"):
        measure(model, [])
