"""Data modules for supernet training, built from a plain config dict by :func:`create_datamodule`.

Every module yields ``(images, labels)`` batches at the dataset's native size; the training step resizes
each batch to the resolution its subnets were sampled at (elastic resolution, one size per batch).
The config dict a module was built from is exactly what a checkpoint stores under ``"data"``, so
``create_datamodule(**meta["data"])`` rebuilds the same splits later (accuracy datasets, BN recalibration).

Modules: ``mnist10k`` (bundled, default), ``digits`` (scikit-learn's bundled 8×8 digits), ``cifar10``
(torchvision, local files only), ``imagenet`` (ImageFolder) and ``synthetic`` (random tensors for tests).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

__all__ = [
    "DATAMODULES",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "EpochSeededSampler",
    "ImageNetDataModule",
    "MNIST10kDataModule",
    "SupernetDataModule",
    "SyntheticDataModule",
    "create_datamodule",
    "load_mnist_idx",
]

MNIST_DIR = Path(__file__).resolve().parent / "datasets" / "mnist"
MNIST_FILES = {
    "images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class EpochSeededSampler(Sampler[int]):
    """A shuffling sampler whose order depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a checkpoint sees the same
    order as an uninterrupted one (a ``RandomSampler`` with a running generator would not).
    """

    def __init__(self, n: int, seed: int = 0, skip: int = 0) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        #: indices to leave out of the next epoch's start: a run resumed mid-epoch goes on where it stopped
        self.skip = int(skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        skip, self.skip = self.skip, 0  # once: the following epochs are whole
        return iter(rng.permutation(self.n)[skip:].tolist())

    def __len__(self) -> int:
        return self.n


class SupernetDataModule(L.LightningDataModule):
    """Base: shared loaders, the config it was built from, and the facts a supernet needs.

    Subclasses set ``num_classes``, ``in_chans``, ``image_size`` and implement ``_build()``
    returning ``(train_dataset, val_dataset)``.
    """

    name: str = "base"
    num_classes: int
    in_chans: int
    image_size: int

    def __init__(self, *, batch_size: int = 128, val_batch_size: int | None = None, num_workers: int = 0,
                 seed: int = 0, pin_memory: bool = False, drop_last: bool = True, **unused: Any) -> None:
        super().__init__()
        if unused:
            raise TypeError(f"data module {self.name!r} got unknown options {sorted(unused)}")
        from supernets.config_checks import check_int

        self.batch_size = check_int("data.batch_size", batch_size, min=1)
        self.val_batch_size = check_int("data.val_batch_size", val_batch_size or batch_size, min=1)
        self.num_workers = check_int("data.num_workers", num_workers, min=0)
        self.seed = check_int("data.seed", seed, min=0)
        self.pin_memory = bool(pin_memory)
        self.drop_last = bool(drop_last)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    # -- to implement ------------------------------------------------------------------------
    def _build(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    # -- Lightning hooks -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self._build()

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.train_set is not None
        # a module resumed from a mid-epoch checkpoint says how many batches of the epoch it already trained on
        done = int(getattr(getattr(self.trainer, "lightning_module", None), "resume_batches", 0) or 0)
        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=EpochSeededSampler(len(self.train_set), self.seed, skip=done * self.batch_size),
                          num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=self.drop_last,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=self.val_batch_size, shuffle=False,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _seeded_split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_val:], perm[:n_val]


# ------------------------------------------------------------------------------------------ MNIST
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load_mnist_idx(directory: str | Path = MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST test set as ``(images uint8 (10000, 28, 28), labels int64 (10000,))``.

    Both files are checked against their published md5 before parsing.
    """
    directory = Path(directory)
    arrays = {}
    for key, (fname, md5) in MNIST_FILES.items():
        path = directory / fname
        if not path.is_file():
            raise FileNotFoundError(f"bundled MNIST file {path} is missing; reinstall oncenas (pip install -e .)")
        got = _md5(path)
        if got != md5:
            raise ValueError(f"MNIST file {path} has md5 {got}, expected {md5}: the file is corrupt; reinstall it")
        raw = gzip.decompress(path.read_bytes())
        magic = int.from_bytes(raw[:4], "big")
        ndim = magic & 0xFF
        dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        arrays[key] = data.reshape(dims)
    images, labels = arrays["images"], arrays["labels"].astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST images ({images.shape[0]}) and labels ({labels.shape[0]}) disagree in count")
    return images, labels


class MNIST10kDataModule(SupernetDataModule):
    """The bundled MNIST test set (10k) split 8k train / 2k held-out with a fixed seed."""

    name = "mnist10k"
    num_classes, in_chans, image_size = 10, 1, 28

    def __init__(self, *, n_val: int = 2000, split_seed: int = 0, root: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_val, self.split_seed = int(n_val), int(split_seed)
        self.root = Path(root) if root else MNIST_DIR

    def _build(self) -> tuple[Dataset, Dataset]:
        images, labels = load_mnist_idx(self.root)
        x = _normalise(torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1), MNIST_MEAN, MNIST_STD)
        y = torch.from_numpy(labels)
        tr, va = _seeded_split(len(y), self.n_val, self.split_seed)
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        return TensorDataset(x[tr_t], y[tr_t]), TensorDataset(x[va_t], y[va_t])


# ----------------------------------------------------------------------------------------- digits
class DigitsDataModule(SupernetDataModule):
    """scikit-learn's bundled 8×8 digits (1,797 images), split with a fixed seed."""

    name = "digits"
    num_classes, in_chans, image_size = 10, 1, 8

    def __init__(self, *, n_val: int = 360, split_seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_val, self.split_seed = int(n_val), int(split_seed)

    def _build(self) -> tuple[Dataset, Dataset]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
        x = (x - x.mean()) / x.std()
        y = torch.from_numpy(bunch.target.astype(np.int64))
        tr, va = _seeded_split(len(y), self.n_val, self.split_seed)
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        return TensorDataset(x[tr_t], y[tr_t]), TensorDataset(x[va_t], y[va_t])


# -------------------------------------------------------------------------------------- synthetic
class SyntheticDataModule(SupernetDataModule):
    """Random images whose class shifts their mean: learnable, instant, for tests."""

    name = "synthetic"

    def __init__(self, *, n_train: int = 256, n_val: int = 64, image_size: int = 32, in_chans: int = 3,
                 num_classes: int = 10, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_train, self.n_val = int(n_train), int(n_val)
        self.image_size, self.in_chans, self.num_classes = int(image_size), int(in_chans), int(num_classes)

    def _make(self, n: int, gen: torch.Generator) -> TensorDataset:
        y = torch.randint(0, self.num_classes, (n,), generator=gen)
        x = torch.randn(n, self.in_chans, self.image_size, self.image_size, generator=gen)
        x += (y.float() / max(self.num_classes - 1, 1) - 0.5).view(-1, 1, 1, 1)
        return TensorDataset(x, y)

    def _build(self) -> tuple[Dataset, Dataset]:
        gen = torch.Generator().manual_seed(self.seed)
        return self._make(self.n_train, gen), self._make(self.n_val, gen)


# ---------------------------------------------------------------------------------------- cifar10
def _require_dir(root: str | None, what: str, how: str) -> Path:
    if not root:
        raise ValueError(f"data.root is not set for {what}; expected a local folder. {how}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {str(path)!r} does not exist. {how}")
    return path


class CIFAR10DataModule(SupernetDataModule):
    """CIFAR-10 from local files in ``root`` (torchvision's layout); never downloads."""

    name = "cifar10"
    num_classes, in_chans, image_size = 10, 3, 32

    HOW = ("oncenas never downloads data: fetch CIFAR-10 once, e.g. "
           "`python -c \"import torchvision; torchvision.datasets.CIFAR10('<root>', download=True)\"`, "
           "then pass data.root=<root> (the folder holding cifar-10-batches-py).")

    def __init__(self, *, root: str | None = None, augment: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self.root, self.augment = root, bool(augment)

    def _build(self) -> tuple[Dataset, Dataset]:
        from torchvision import datasets, transforms

        root = _require_dir(self.root, "CIFAR-10", self.HOW)
        if not (root / "cifar-10-batches-py").is_dir():
            raise FileNotFoundError(f"{root} has no cifar-10-batches-py folder. {self.HOW}")
        norm = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
        aug = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if self.augment else []
        train = datasets.CIFAR10(str(root), train=True, download=False, transform=transforms.Compose(aug + norm))
        val = datasets.CIFAR10(str(root), train=False, download=False, transform=transforms.Compose(norm))
        return train, val


# --------------------------------------------------------------------------------------- imagenet
class ImageNetDataModule(SupernetDataModule):
    """ImageNet-style ImageFolder at ``root`` (``root/train/<class>/*``, ``root/val/<class>/*``).

    Training crops at ``image_size`` (the supernet's largest resolution); the training step resizes each batch
    to its sampled resolution. Validation resizes to ``image_size / 0.875`` and centre-crops, as OFA does.
    """

    name = "imagenet"
    in_chans = 3

    HOW = ("oncenas never downloads data: place ImageNet (ILSVRC2012) as root/train/<wnid>/*.JPEG and "
           "root/val/<wnid>/*.JPEG, then pass data.root=<root>.")

    def __init__(self, *, root: str | None = None, image_size: int = 224, num_classes: int = 1000,
                 resize_scale: float = 0.08, **kw: Any) -> None:
        super().__init__(**kw)
        self.root, self.image_size, self.num_classes = root, int(image_size), int(num_classes)
        self.resize_scale = float(resize_scale)

    def _build(self) -> tuple[Dataset, Dataset]:
        from torchvision import datasets, transforms

        root = _require_dir(self.root, "ImageNet", self.HOW)
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise FileNotFoundError(f"ImageNet folder {root} has no {split}/ subfolder. {self.HOW}")
        norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        train_tf = transforms.Compose([
            transforms.RandomResizedCrop(self.image_size, scale=(self.resize_scale, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=32.0 / 255.0, saturation=0.5),  # OFA's 'tf' colour distortion
            *norm,
        ])
        val_tf = transforms.Compose([
            transforms.Resize(round(self.image_size / 0.875)),
            transforms.CenterCrop(self.image_size),
            *norm,
        ])
        train = datasets.ImageFolder(str(root / "train"), transform=train_tf)
        val = datasets.ImageFolder(str(root / "val"), transform=val_tf)
        if len(train.classes) != self.num_classes:
            raise ValueError(f"ImageNet folder {root}/train has {len(train.classes)} classes, "
                             f"data.num_classes is {self.num_classes}; set data.num_classes to match")
        if val.classes != train.classes:
            # ImageFolder numbers the classes of each split by its own sorted folder names: a class missing
            # from val/ would shift every later label and make the validation accuracy silently wrong.
            missing = sorted(set(train.classes) - set(val.classes))
            extra = sorted(set(val.classes) - set(train.classes))
            raise ValueError(f"ImageNet folders {root}/train and {root}/val hold different classes (val lacks "
                             f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, has extra {extra[:5]}"
                             f"{' ...' if len(extra) > 5 else ''}); both need the same <class> subfolders "
                             f"so that labels match")
        return train, val


DATAMODULES: dict[str, type[SupernetDataModule]] = {
    m.name: m
    for m in (MNIST10kDataModule, DigitsDataModule, SyntheticDataModule, CIFAR10DataModule, ImageNetDataModule)
}


def create_datamodule(name: str, **data_cfg: Any) -> SupernetDataModule:
    """Build a data module from its config dict, e.g. ``create_datamodule(name="mnist10k", batch_size=128)``."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown data module {name!r}; available: {sorted(DATAMODULES)}")
    dm = DATAMODULES[name](**data_cfg)
    dm.config = {"name": name, **data_cfg}
    return dm
