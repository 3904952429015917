"""CIFAR-10 / CIFAR-100 from a local folder, and a CPU-friendly batch loader.

perfsim never downloads anything: the user points it at a copy of the standard "python version"
archives, unpacked:

* CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``;
  each a pickle of a dict with ``b"data"`` (N x 3072 uint8, channel-major rows: 1024 R, 1024 G,
  1024 B) and ``b"labels"`` (N ints).
* CIFAR-100: ``cifar-100-python/`` with ``train`` and ``test``; ``b"data"`` as above,
  ``b"fine_labels"`` (0..99) and ``b"coarse_labels"`` (0..19).

The path may be that folder or its parent. Loading returns numpy arrays: images ``(N, 3, 32, 32)``
uint8 and labels ``(N,)`` int64. Anything wrong with the folder or the files raises
:class:`perfsim.errors.InputError` naming the path. The pickles are read by a restricted unpickler
(:mod:`perfsim.accuracy.safe_pickle`): a crafted file cannot run code.

The loaders (:class:`CifarDataset`, per sample, for ``torch.utils.data.DataLoader``; and
:class:`BatchLoader`, vectorised whole-batch augmentation, much faster on a CPU) normalise per
channel and augment with random crops (zero padding, or smaller crops such as 28x28 for the
MobileNet CIFAR variant) and horizontal flips, in torch -- torchvision is not used. Importing this
module does not import torch; the loaders import it when used.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import InputError
from .safe_pickle import load_batch_pickle

__all__ = [
    "CIFAR_FOLDERS",
    "find_cifar_dir",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "channel_stats",
    "CifarDataset",
    "BatchLoader",
    "make_loader",
]

# data set -> (folder name, train files, test files, label key)
CIFAR_FOLDERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bytes]] = {
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), b"fine_labels"),
}
_ALIASES = {"cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
            "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100"}
_IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32


def _canonical(dataset: str) -> str:
    key = _ALIASES.get(str(dataset).lower())
    if key is None:
        raise InputError(f"unknown data set {dataset!r}: expected 'cifar10' or 'cifar100'")
    return key


def _has_files(folder: Path, files: Sequence[str]) -> bool:
    return any((folder / f).is_file() for f in files)


def find_cifar_dir(path: str | Path, dataset: str | None = None) -> tuple[Path, str]:
    """Locate the CIFAR folder at ``path`` (the folder itself or its parent).

    Returns ``(folder, dataset)`` with ``dataset`` in ``{"cifar10", "cifar100"}``. With
    ``dataset=None`` the kind is detected from the folder name or the files in it; if the parent
    holds both data sets, ``dataset`` must be given.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"CIFAR data folder does not exist: {root}")
    if not root.is_dir():
        raise InputError(f"CIFAR data path is not a folder: {root}")
    kinds = [_canonical(dataset)] if dataset is not None else list(CIFAR_FOLDERS)
    found: list[tuple[Path, str]] = []
    for kind in kinds:
        folder_name, train_files, test_files, _ = CIFAR_FOLDERS[kind]
        if root.name == folder_name or _has_files(root, train_files + test_files):
            found.append((root, kind))
        elif (root / folder_name).is_dir():
            found.append((root / folder_name, kind))
    if not found:
        wanted = " or ".join(f"{CIFAR_FOLDERS[k][0]}/" for k in kinds)
        raise InputError(f"no CIFAR data at {root}: expected {wanted} (the python-pickle "
                         f"version) in it or to be it; perfsim does not download data")
    if len(found) > 1:
        raise InputError(f"{root} holds both CIFAR-10 and CIFAR-100; say which (dataset=...)")
    return found[0]


def _read_batch(file: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not file.is_file():
        raise InputError(f"missing CIFAR batch file: {file}")
    batch = load_batch_pickle(file)
    if not isinstance(batch, dict):
        raise InputError(f"malformed CIFAR batch {file}: expected a dict, "
                         f"got {type(batch).__name__}")
    # Files written under Python 3 with str keys are accepted too.
    def get(key: bytes) -> Any:
        if key in batch:
            return batch[key]
        skey = key.decode()
        if skey in batch:
            return batch[skey]
        raise InputError(f"malformed CIFAR batch {file}: no {skey!r} entry "
                         f"(keys: {sorted(map(str, batch))})")

    try:
        data = np.asarray(get(b"data"))
        labels = np.asarray(get(label_key))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"malformed CIFAR batch {file}: {exc}") from None
    _check_batch(file, data, labels)
    return data.reshape(-1, *_IMAGE_SHAPE), labels.astype(np.int64)


def _check_batch(file: Path, data: np.ndarray, labels: np.ndarray) -> None:
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        raise InputError(f"malformed CIFAR batch {file}: data must be N x {_ROW} uint8, "
                         f"got shape {data.shape} dtype {data.dtype}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise InputError(f"malformed CIFAR batch {file}: {labels.shape[0] if labels.ndim else 0} "
                         f"labels for {data.shape[0]} images")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"malformed CIFAR batch {file}: labels are {labels.dtype}, not integers")


def load_cifar(path: str | Path, split: str = "train", *,
               dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-10 or CIFAR-100 from ``path``.

    ``split`` is ``"train"`` (50,000 images in the real data) or ``"test"`` (10,000).
    Returns ``(images, labels)``: ``(N, 3, 32, 32)`` uint8 and ``(N,)`` int64 (CIFAR-100: the
    fine labels, 0..99).
    """
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r}: expected 'train' or 'test'")
    folder, kind = find_cifar_dir(path, dataset)
    _, train_files, test_files, label_key = CIFAR_FOLDERS[kind]
    files = train_files if split == "train" else test_files
    parts = [_read_batch(folder / name, label_key) for name in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    num_classes = 10 if kind == "cifar10" else 100
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(f"malformed CIFAR data in {folder}: labels outside 0..{num_classes - 1}")
    return np.ascontiguousarray(images), labels


def load_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_cifar` for CIFAR-10."""
    return load_cifar(path, split, dataset="cifar10")


def load_cifar100(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_cifar` for CIFAR-100 (fine labels)."""
    return load_cifar(path, split, dataset="cifar100")


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images, on a 0..1 scale.

    Computed from the data (use the training split's figures for both splits).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"expected a non-empty (N, C, H, W) image array, got {images.shape}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    # float64 sums of per-channel moments; chunked so 50,000 images need no big float copy.
    c = images.shape[1]
    count = 0
    s1 = np.zeros(c)
    s2 = np.zeros(c)
    for start in range(0, images.shape[0], 4096):
        chunk = images[start:start + 4096].astype(np.float64) / scale
        s1 += chunk.sum(axis=(0, 2, 3))
        s2 += (chunk * chunk).sum(axis=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = s1 / count
    var = np.maximum(s2 / count - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _check_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise InputError(f"images must be (N, C, H, W), got shape {images.shape}")
    if labels.shape != (images.shape[0],):
        raise InputError(f"labels must be ({images.shape[0]},), got shape {labels.shape}")
    return images, labels.astype(np.int64, copy=False)


def _crop_geometry(size: tuple[int, int], crop_size: int | None, padding: int) -> int:
    h, w = size
    crop = min(h, w) if crop_size is None else int(crop_size)
    if padding < 0:
        raise InputError(f"padding must be >= 0, got {padding}")
    if crop < 1 or crop > min(h, w) + 2 * padding:
        raise InputError(f"crop size {crop} does not fit {h}x{w} images with padding {padding}")
    return crop


class _Normaliser:
    """uint8 -> float, (x/255 - mean) / std per channel; float input is taken as already done."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
        import torch

        if (mean is None) != (std is None):
            raise InputError("give both mean and std, or neither")
        self.enabled = mean is not None
        if self.enabled:
            m = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(1, -1, 1, 1)
            s = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(1, -1, 1, 1)
            if m.shape[1] != channels or s.shape[1] != channels:
                raise InputError(f"mean/std need {channels} values each")
            if bool((s <= 0).any()):
                raise InputError("std values must be positive")
            self.mean, self.std = m, s

    def __call__(self, x):  # x: torch uint8 or float (N, C, H, W)
        import torch

        if x.dtype == torch.uint8:
            x = x.to(torch.float32).div_(255.0)
            if self.enabled:
                x = x.sub_(self.mean).div_(self.std)
            return x
        return x.to(torch.float32)


def _augment(x, *, crop: int, padding: int, flip: bool, train: bool, generator):
    """Random (train) or centre (eval) crop with zero padding, then random horizontal flips.

    ``x`` is a normalised float batch (N, C, H, W); padding adds zeros, i.e. the channel mean.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    if train:
        if padding:
            x = F.pad(x, (padding, padding, padding, padding))
        ph, pw = x.shape[2], x.shape[3]
        if crop != ph or crop != pw:
            oy = torch.randint(0, ph - crop + 1, (n,), generator=generator)
            ox = torch.randint(0, pw - crop + 1, (n,), generator=generator)
            ar = torch.arange(crop)
            rows = (oy[:, None] + ar)[:, None, :, None]  # N,1,crop,1
            cols = (ox[:, None] + ar)[:, None, None, :]  # N,1,1,crop
            x = x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows, cols]
        if flip:
            mask = torch.rand(n, generator=generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
    elif crop < h or crop < w:  # evaluation: centre crop (no padding)
        top = (h - crop) // 2
        left = (w - crop) // 2
        x = x[:, :, top:top + crop, left:left + crop]
    return x.contiguous()


class CifarDataset:
    """Map-style data set (usable with ``torch.utils.data.DataLoader``): one image at a time.

    ``images`` uint8 ``(N, C, H, W)`` (or already-normalised float), ``labels`` ``(N,)``.
    ``mean``/``std`` per channel on the 0..1 scale (e.g. from :func:`channel_stats` of the
    training split; ``None`` = only scale to 0..1). With ``train=True`` each item is randomly
    cropped to ``crop_size`` (default: the image size) after zero ``padding`` and flipped with
    probability 1/2; with ``train=False`` it is centre-cropped to ``crop_size``. Items are
    ``(float tensor (C, crop, crop), int64 tensor label)``. ``seed`` makes the augmentation
    reproducible in a single process.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 train: bool = False, crop_size: int | None = None, padding: int = 4,
                 flip: bool = True, seed: int = 0):
        import torch

        self.images, self.labels = _check_arrays(images, labels)
        self.train = train
        self.padding = padding if train else 0
        self.flip = flip
        self.crop_size = _crop_geometry(self.images.shape[2:], crop_size, self.padding)
        self._normalise = _Normaliser(mean, std, self.images.shape[1])
        self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int):
        import torch

        n = len(self)
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        x = torch.from_numpy(np.array(self.images[index:index + 1]))  # a copy, never a view
        x = _augment(self._normalise(x), crop=self.crop_size, padding=self.padding,
                     flip=self.flip, train=self.train, generator=self._generator)
        return x[0], torch.tensor(int(self.labels[index]), dtype=torch.int64)


class BatchLoader:
    """Iterable of ``(x, y)`` batches with augmentation done on whole batches (fast on a CPU).

    Re-iterable: each ``for`` loop is one epoch, reshuffled (``shuffle=True``) from a generator
    seeded with ``seed``, so a fresh loader with the same seed yields the same epochs. ``len()``
    is the number of batches per epoch. ``augment=True`` applies random crop (zero ``padding``,
    output ``crop_size``) and horizontal ``flip``; ``augment=False`` centre-crops to
    ``crop_size``. ``x`` is float32 ``(B, C, crop, crop)``, ``y`` int64 ``(B,)``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 128,
                 shuffle: bool = True, augment: bool = True, crop_size: int | None = None,
                 padding: int = 4, flip: bool = True, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, drop_last: bool = False, seed: int = 0):
        import torch

        self.images, self.labels = _check_arrays(images, labels)
        if self.images.shape[0] == 0:
            raise InputError("cannot make a loader from an empty data set")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.padding = padding if augment else 0
        self.flip = flip
        self.drop_last = drop_last and self.images.shape[0] >= batch_size
        self.crop_size = _crop_geometry(self.images.shape[2:], crop_size, self.padding)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self._normalise = _Normaliser(mean, std, self.images.shape[1])
        self._generator = torch.Generator().manual_seed(int(seed))
        self._images_t = torch.from_numpy(np.ascontiguousarray(self.images))
        self._labels_t = torch.from_numpy(np.ascontiguousarray(self.labels))

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        import torch

        n = self.images.shape[0]
        order = (torch.randperm(n, generator=self._generator) if self.shuffle
                 else torch.arange(n))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self._normalise(self._images_t[idx])
            x = _augment(x, crop=self.crop_size, padding=self.padding, flip=self.flip,
                         train=self.augment, generator=self._generator)
            yield x, self._labels_t[idx]


def make_loader(images: np.ndarray, labels: np.ndarray, *, train: bool = True,
                batch_size: int = 128, crop_size: int | None = None, padding: int = 4,
                flip: bool = True, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, seed: int = 0) -> BatchLoader:
    """Training (shuffled, augmented) or evaluation (in order, centre crop) :class:`BatchLoader`.

    ``mean``/``std`` default to :func:`channel_stats` of ``images`` when they are uint8; for
    an evaluation split pass the training split's statistics.
    """
    images = np.asarray(images)
    if mean is None and std is None and images.dtype == np.uint8:
        mean, std = channel_stats(images)
    return BatchLoader(images, labels, batch_size=batch_size, shuffle=train, augment=train,
                       crop_size=crop_size, padding=padding, flip=flip, mean=mean, std=std,
                       drop_last=False, seed=seed)


# --------------------------------------------------------------------------
# Named data sets for ``perfsim train`` / ``eval``
# --------------------------------------------------------------------------
DATASETS = ("cifar10", "cifar100", "digits")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}
DIGITS_TEST_FRACTION = 0.25  # held out, stratified, fixed seed 0 (independent of --seed)


def load_digits(side: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled handwritten digits (1,797 8x8 scans, values 0..16), as
    ``((train_images, train_labels), (test_images, test_labels))``: uint8 ``(N, 3, side, side)``
    (the grey level on all three channels, bilinearly resized to the model's input side),
    a stratified 75/25 split with a fixed seed, so every run sees the same test set."""
    try:
        from sklearn.datasets import load_digits as sk_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise InputError("--dataset digits needs scikit-learn: pip install 'perfsim[train]'") from None
    import torch
    import torch.nn.functional as F

    if not 1 <= side <= 1024:
        raise InputError(f"digits: input side must be in 1..1024, got {side}")
    bunch = sk_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
    images = images.round().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).numpy()
    labels = np.asarray(bunch.target, dtype=np.int64)
    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=DIGITS_TEST_FRACTION,
                                          random_state=0, stratify=labels)
    return (np.ascontiguousarray(xtr), ytr), (np.ascontiguousarray(xte), yte)


def resolve_dataset(dataset: str | None, data_dir: str | Path | None) -> str:
    """The data set's canonical name: given, or found from the CIFAR folder ``data_dir``."""
    if dataset is not None:
        name = str(dataset).lower()
        if name == "digits":
            return name
        if name not in _ALIASES:
            raise InputError(f"unknown data set {dataset!r}: expected one of {', '.join(DATASETS)}")
        name = _ALIASES[name]
        if data_dir is None:
            raise InputError(f"--dataset {name} needs --data DIR (the folder holding "
                             f"{CIFAR_FOLDERS[name][0]}/); nothing is downloaded")
        return name
    if data_dir is None:
        raise InputError("give --data DIR (a CIFAR-10/100 python folder) or --dataset digits")
    return find_cifar_dir(data_dir)[1]


def load_splits(dataset: str, data_dir: str | Path | None, side: int):
    """``((train_x, train_y), (test_x, test_y))`` of a named data set; ``side`` is the model's
    input side (used by digits only: CIFAR images stay 32x32 and are cropped by the recipe)."""
    if dataset == "digits":
        return load_digits(side)
    return (load_cifar(data_dir, "train", dataset=dataset),
            load_cifar(data_dir, "test", dataset=dataset))
