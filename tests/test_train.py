"""perfsim.accuracy.data (CIFAR pickles, loaders) and perfsim.accuracy.train (SGD loop, evaluate), on tiny fake data."""
from __future__ import annotations

import copy
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from perfsim.accuracy.data import (BatchLoader, CifarDataset, channel_stats, find_cifar_dir, load_cifar,
                          load_cifar10, load_cifar100, make_loader)
from perfsim.errors import InputError

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from perfsim.accuracy.train import TrainProgress, evaluate, lr_at, train  # noqa: E402

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


def test_import_is_torch_free():
    code = "import sys, perfsim.accuracy.data, perfsim.accuracy.train; assert 'torch' not in sys.modules"
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


# ---------------------------------------------------------------- training

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


class ProgressNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def update_progress(self, progress: float) -> None:
        self.seen.append(progress)


def test_training_reduces_loss_and_evaluate_is_sane():
    torch.manual_seed(0)
    x, y = colour_task(192, seed=0)
    xt, yt = colour_task(96, seed=1)
    model = TinyNet()
    top1_0, loss_0 = evaluate(model, (xt, yt))
    assert 0.0 <= top1_0 <= 1.0 and 0.0 < loss_0 < 5.0
    res = train(model, (x, y), epochs=5, batch_size=32, lr=0.05, momentum=0.9, nesterov=True,
                weight_decay=5e-4, padding=2, show_progress=False, eval_data=(xt, yt))
    assert res.steps == 30 and len(res.step_losses) == 30 and len(res.epoch_losses) == 5
    assert res.epoch_losses[-1] < 0.5 * res.epoch_losses[0]
    assert all(math.isfinite(v) for v in res.step_losses)
    top1, loss = evaluate(model, (xt, yt), mean=res.mean, std=res.std)
    assert top1 >= 0.9 and loss < loss_0
    assert res.eval_history[-1] == (4, top1, pytest.approx(loss))
    # the cosine schedule was applied per iteration
    assert res.lrs[0] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(res.lrs, res.lrs[1:]))
    assert res.lrs[-1] == pytest.approx(lr_at(29, 30, 0.05))
    assert model.training  # evaluate restored the mode


def test_update_progress_hook_and_callback():
    torch.manual_seed(0)
    x, y = colour_task(80, seed=2)
    model = ProgressNet()
    reports: list[TrainProgress] = []
    res = train(model, (x, y), epochs=3, batch_size=16, lr=0.02, show_progress=False,
                progress_callback=reports.append)
    total = res.steps
    assert total == 15 and len(model.seen) == total and len(reports) == total
    assert model.seen[0] == 0.0
    assert all(b > a for a, b in zip(model.seen, model.seen[1:]))
    assert all(0.0 <= p < 1.0 for p in model.seen)
    assert model.seen[-1] == pytest.approx((total - 1) / total) and model.seen[-1] > 0.9
    assert [r.step for r in reports] == list(range(total))
    assert reports[-1].progress == 1.0 and reports[-1].epoch == 2


def test_training_is_deterministic_with_a_seed():
    torch.manual_seed(0)
    x, y = colour_task(64, seed=3)
    init = TinyNet()
    runs = []
    for seed in (7, 7, 8):
        model = copy.deepcopy(init)
        train(model, (x, y), epochs=2, batch_size=16, lr=0.05, seed=seed, show_progress=False)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_fastnet_trains_a_few_steps_at_small_input():
    from perfsim.models.fastnet import fastnet

    torch.manual_seed(0)
    x, y = colour_task(8, seed=4)
    model = fastnet(num_classes=10)
    before = copy.deepcopy(model.state_dict())
    res = train(model, (x, y), epochs=1, batch_size=4, lr=0.01, show_progress=False)
    assert res.steps == 2 and all(math.isfinite(v) for v in res.step_losses)
    changed = [k for k in before if not torch.equal(before[k], model.state_dict()[k])]
    assert any(k.endswith("conv.weight") for k in changed)
    top1, loss = evaluate(model, (x, y), mean=res.mean, std=res.std)
    assert 0.0 <= top1 <= 1.0 and math.isfinite(loss)


def test_schedules_and_bad_arguments():
    assert lr_at(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(50, 100, 0.1) == pytest.approx(0.05)
    assert lr_at(99, 100, 0.1) < 1e-3
    assert [lr_at(s, 100, 0.1, "step") for s in (0, 49, 50, 75)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001])
    assert lr_at(7, 100, 0.1, "constant") == 0.1
    assert lr_at(0, 100, 0.1, warmup_steps=10) == pytest.approx(0.01)
    x, y = colour_task(8, seed=5)
    with pytest.raises(InputError, match="schedule"):
        train(TinyNet(), (x, y), epochs=1, schedule="linear", show_progress=False)
    with pytest.raises(InputError, match="epochs"):
        train(TinyNet(), (x, y), epochs=0, show_progress=False)
    with pytest.raises(InputError, match="diverged"):
        train(TinyNet(), (x, y), epochs=3, batch_size=4, lr=1e30, show_progress=False)


def test_progress_display_with_and_without_tqdm(monkeypatch, capsys):
    x, y = colour_task(32, seed=6)
    train(TinyNet(), (x, y), epochs=1, batch_size=8, lr=0.01, show_progress=True)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm", None)
    train(TinyNet(), (x, y), epochs=1, batch_size=8, lr=0.01, show_progress=True)
    err = capsys.readouterr().err
    assert "train: step 4/4" in err


def test_train_accepts_a_batch_iterable():
    torch.manual_seed(0)
    x, y = colour_task(48, seed=7)
    mean, std = channel_stats(x)
    loader = BatchLoader(x, y, batch_size=16, mean=mean, std=std, padding=0)
    res = train(TinyNet(), loader, epochs=2, lr=0.05, show_progress=False)
    assert res.steps == 6 and res.mean is None
    # tensors work like arrays (not as an iterable of two batches)
    top1, _ = evaluate(TinyNet(), (torch.from_numpy(x), torch.from_numpy(y)))
    assert 0.0 <= top1 <= 1.0
    with pytest.raises(InputError, match="iterable"):
        train(TinyNet(), 42, epochs=1, show_progress=False)


def test_scheduled_lr_reaches_the_optimizer():
    """A schedule that is 0 from the first step must leave every weight as it was."""
    torch.manual_seed(0)
    x, y = colour_task(32, seed=8)
    model = TinyNet()
    before = copy.deepcopy(model.state_dict())
    res = train(model, (x, y), epochs=1, batch_size=8, lr=0.1, schedule="step",
                milestones=(0.0,), gamma=0.0, show_progress=False)
    assert res.lrs == [0.0] * 4
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    train(model, (x, y), epochs=1, batch_size=8, lr=0.1, schedule="constant", show_progress=False)
    assert not torch.equal(model.fc.weight, before["fc.weight"])


def test_group_lasso_is_added_to_the_loss():
    """CondenseNet's regulariser: train(group_lasso=w) adds w * model.group_lasso() to every step's loss."""
    import numpy as np
    from torch import nn

    from perfsim.accuracy.train import train

    class WithLasso(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 4 * 4, 2)
            self.calls = 0

        def forward(self, x):
            return self.fc(x.flatten(1))

        def group_lasso(self):
            self.calls += 1
            return self.fc.weight.abs().sum()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    plain = train(WithLasso(), (x, y), epochs=1, batch_size=8, show_progress=False, flip=False, padding=0)
    m = WithLasso()
    reg = train(m, (x, y), epochs=1, batch_size=8, show_progress=False, flip=False, padding=0, group_lasso=1.0)
    assert m.calls == 2
    assert reg.step_losses[0] > plain.step_losses[0]
    with pytest.raises(InputError):
        train(nn.Linear(2, 2), (x, y), epochs=1, show_progress=False, group_lasso=1.0)
