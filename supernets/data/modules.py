"""Data modules for supernet training, built from a plain config dict by :func:`create_datamodule`.

Below the training code, which imports them from here, as do search (BN recalibration of exported subnets) and
the accuracy-dataset builder: neither imports ``supernets.training``.

Every module yields ``(images, labels)`` batches at the dataset's native size; the training step resizes
each batch to the resolution its subnets were sampled at (elastic resolution, one size per batch).
The config dict a module was built from is exactly what a checkpoint stores under ``"data"``, so
``create_datamodule(**meta["data"])`` rebuilds the same splits later (accuracy datasets, BN recalibration).

Modules: ``mnist10k`` (bundled, default), ``digits`` (scikit-learn's bundled 8×8 digits), ``cifar10``
(local files only: torchvision's binary release or the JPEG layout, folder or archive), ``cifar10_test`` (the
bundled CIFAR-10 test set, split 8k/2k), ``imagefolder`` (the user's ``<class>/*`` folder), ``imagenet`` (ImageFolder) and ``synthetic`` (random tensors for tests).
"""

from __future__ import annotations

import fnmatch
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
    "CIFAR10TestDataModule",
    "CIFARTensorDataset",
    "DigitsDataModule",
    "EpochSeededSampler",
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "MNIST10kDataModule",
    "SupernetDataModule",
    "SyntheticDataModule",
    "create_datamodule",
    "list_datamodules",
    "load_cifar10_jpegs",
    "load_mnist_idx",
    "register_datamodule",
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


def _split_tensors(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train, held-out) datasets of in-memory images, split with :func:`_seeded_split`."""
    tr, va = (torch.from_numpy(i) for i in _seeded_split(len(y), n_val, seed))
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])


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


#: data-module name -> class: the timm-style registry (as supernets, search algorithms and predictor kinds have),
#: filled by :func:`register_datamodule`; checkpoints name their data by it (``meta["data"]["name"]``).
DATAMODULES: dict[str, type[SupernetDataModule]] = {}


def register_datamodule(cls: type[SupernetDataModule]) -> type[SupernetDataModule]:
    """Register a data-module class under its ``name``."""
    if cls.name in DATAMODULES and DATAMODULES[cls.name] is not cls:
        raise ValueError(f"data module {cls.name!r} is registered twice ({DATAMODULES[cls.name].__name__}, "
                         f"{cls.__name__})")
    DATAMODULES[cls.name] = cls
    return cls


def list_datamodules(pattern: str = "*") -> list[str]:
    return sorted(n for n in DATAMODULES if fnmatch.fnmatch(n, pattern))


@register_datamodule
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
        return _split_tensors(x, torch.from_numpy(labels), self.n_val, self.split_seed)


# ----------------------------------------------------------------------------------------- digits
@register_datamodule
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
        return _split_tensors(x, torch.from_numpy(bunch.target.astype(np.int64)), self.n_val, self.split_seed)


# -------------------------------------------------------------------------------------- synthetic
@register_datamodule
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


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_DIR = Path(__file__).resolve().parent / "datasets" / "cifar10"
CIFAR10_TEST_ARCHIVE = ("cifar10_test.tar.gz", "c9a3dd16ab82544cfc9c619453dee17ae243a8b799d9bec1fec79dca429ada43")
# Decoded splits, keyed by (file or folder, split, size, mtime): decoding 60k JPEGs takes seconds, and the
# accuracy-dataset builder, BN recalibration and training build the same module several times in one process.
_CIFAR_CACHE: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _decode_jpegs(blobs: list[bytes], names: list[str]) -> np.ndarray:
    """Decode JPEG byte strings to one ``uint8 (N, 3, H, W)`` array (torchvision's batched libjpeg decoder,
    ~2.5x faster than PIL one by one here, same pixels)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:
        images = decode_jpeg(tensors, mode=ImageReadMode.RGB)
    except RuntimeError:
        for t, name in zip(tensors, names):  # name the broken file, which the batched call does not
            try:
                decode_jpeg(t, mode=ImageReadMode.RGB)
            except RuntimeError as err:
                raise ValueError(f"CIFAR-10 image {name} is not a readable JPEG: {err}") from None
        raise
    shapes = {tuple(im.shape) for im in images}
    if shapes != {(3, 32, 32)}:
        raise ValueError(f"CIFAR-10 images must be 32x32 RGB; found shapes {sorted(shapes)[:3]}")
    return torch.stack(images).numpy()


def _cifar_member_label(name: str, split: str) -> int | None:
    """The class index of ``<split>/<class>/<file>.jpg`` (any leading folders allowed), None for other paths."""
    parts = Path(name).parts
    if len(parts) < 3 or parts[-3] != split or not parts[-1].lower().endswith((".jpg", ".jpeg")):
        return None
    if parts[-2] not in CIFAR10_CLASSES:
        raise ValueError(f"CIFAR-10 file {name} is in class folder {parts[-2]!r}; allowed: {list(CIFAR10_CLASSES)}")
    return CIFAR10_CLASSES.index(parts[-2])


def _cifar_from_items(items: list[tuple[str, int, bytes]], source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if not items:
        raise FileNotFoundError(f"{source} holds no {split}/<class>/*.jpg images")
    items.sort(key=lambda it: (it[1], it[0]))  # class, then file name: the same order from archive or folder
    images = _decode_jpegs([b for _, _, b in items], [n for n, _, _ in items])
    return images, np.array([lab for _, lab, _ in items], dtype=np.int64)


def load_cifar10_jpegs(source: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of CIFAR-10 stored as ``<split>/<class>/NNNN.jpg``, from a ``.tar.gz`` archive or a folder.

    ``source`` is the archive or the folder that holds ``<split>/``. Returns ``(images uint8 (N, 3, 32, 32),
    labels int64 (N,))`` with torchvision's class numbering (airplane=0 ... truck=9), ordered by class then
    file name. Decoded once per process and cached in memory.
    """
    import tarfile

    source = Path(source).expanduser().resolve()
    st = source.stat()
    key = (str(source), split, st.st_size, st.st_mtime_ns)
    if key in _CIFAR_CACHE:
        return _CIFAR_CACHE[key]
    items: list[tuple[str, int, bytes]] = []
    if source.is_dir():
        for path in sorted((source / split).glob("*/*")):
            label = _cifar_member_label(str(path.relative_to(source)), split)
            if label is not None:
                items.append((path.name, label, path.read_bytes()))
    else:
        try:
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    label = _cifar_member_label(member.name, split) if member.isfile() else None
                    if label is not None:
                        f = tar.extractfile(member)
                        assert f is not None  # a regular file always has a stream
                        items.append((Path(member.name).name, label, f.read()))
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"CIFAR-10 archive {source} cannot be read ({err}); expected a .tar.gz holding "
                             f"{split}/<class>/*.jpg") from None
    _CIFAR_CACHE[key] = _cifar_from_items(items, source, split)
    return _CIFAR_CACHE[key]


class CIFARTensorDataset(Dataset):
    """Images kept as ``uint8 (N, 3, 32, 32)`` (60k images: 184 MB instead of 737 MB as float), normalised per
    batch; with ``augment`` the standard CIFAR augmentation (random 32x32 crop of the zero-padded 40x40 image,
    horizontal flip with p=0.5) done for a whole batch at once through ``__getitems__``, which the DataLoader
    calls with a batch's indices."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = False,
                 mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD, pad: int = 4) -> None:
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
            raise ValueError(f"expected uint8 images (N, C, H, W) and N labels; got {images.dtype} "
                             f"{images.shape} and {len(labels)} labels")
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.augment, self.pad = bool(augment), int(pad)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255.0

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(float images (B, C, H, W) normalised, labels (B,))`` for ``indices``, augmented if enabled."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[idx]
        if self.augment:
            b, _, h, w = x.shape
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # zeros = black, as torchvision's RandomCrop
            oy = torch.randint(0, 2 * p + 1, (b, 1, 1, 1))
            ox = torch.randint(0, 2 * p + 1, (b, 1, 1, 1))
            rows = oy + torch.arange(h).view(1, 1, h, 1)
            cols = ox + torch.arange(w).view(1, 1, 1, w)
            flip = torch.rand(b) < 0.5
            cols = torch.where(flip.view(b, 1, 1, 1), ox + (w - 1) - torch.arange(w).view(1, 1, 1, w), cols)
            x = padded[torch.arange(b).view(b, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
        return (x.float() - self.mean) / self.std, self.labels[idx]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.batch(indices)
        return list(zip(x.unbind(0), y.unbind(0)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([i])
        return x[0], y[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _find_cifar_split(root: Path, split: str) -> Path | None:
    """Where ``split`` lives under ``root``: an extracted ``root/<split>/`` folder, an archive
    ``root/cifar10_<split>.tar.gz`` / ``root/<split>.tar.gz``, or ``root`` itself when it is an archive."""
    if root.is_file():
        return root
    if (root / split).is_dir():
        return root
    for name in (f"cifar10_{split}.tar.gz", f"{split}.tar.gz"):
        if (root / name).is_file():
            return root / name
    return None


@register_datamodule
class CIFAR10DataModule(SupernetDataModule):
    """CIFAR-10 from local files at ``root`` (never downloads): 50k train, the 10k test set as validation.

    ``root`` may hold torchvision's binary release (``cifar-10-batches-py/``), or the JPEG layout
    ``<split>/<class>/NNNN.jpg`` (split ``train`` / ``test``) as extracted folders or as archives
    ``cifar10_train.tar.gz`` + ``cifar10_test.tar.gz``; ``root`` may also be one archive holding both splits.
    """

    name = "cifar10"
    num_classes, in_chans, image_size = 10, 3, 32

    HOW = ("oncenas never downloads data: pass data.root=<folder> holding torchvision's cifar-10-batches-py/ "
           "(e.g. from `python -c \"import torchvision; torchvision.datasets.CIFAR10('<folder>', download=True)\"`) "
           "or the JPEG layout train/<class>/*.jpg + test/<class>/*.jpg, extracted or as "
           "cifar10_train.tar.gz + cifar10_test.tar.gz.")

    def __init__(self, *, root: str | None = None, augment: bool = True, val_subset: int | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.root, self.augment = root, bool(augment)
        from supernets.config_checks import check_int

        # a seeded random subset of the test set as the held-out split (it is stored class by class, so never
        # its first n): accuracy datasets of large subnets in minutes instead of hours, at ~1 pt of sampling error
        self.val_subset = check_int("data.val_subset", val_subset, min=1, allow_none=True)

    def load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (images, labels), "test": (images, labels)}`` as uint8 ``(N, 3, 32, 32)`` / int64."""
        if not self.root:
            raise ValueError(f"data.root is not set for CIFAR-10; expected a local folder or archive. {self.HOW}")
        root = Path(self.root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"CIFAR-10 folder {str(root)!r} does not exist. {self.HOW}")
        if (root / "cifar-10-batches-py").is_dir():
            from torchvision import datasets

            # torchvision checks each batch file's md5 and parses the pickles; its `.data` is uint8 NHWC.
            out = {}
            for split in ("train", "test"):
                ds = datasets.CIFAR10(str(root), train=split == "train", download=False)
                out[split] = (np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets, np.int64))
            return out
        sources = {split: _find_cifar_split(root, split) for split in ("train", "test")}
        missing = [s for s, src in sources.items() if src is None]
        if missing:
            raise FileNotFoundError(f"{root} has no cifar-10-batches-py/ folder and no {' or '.join(missing)} split "
                                    f"(looked for {missing[0]}/<class>/*.jpg, cifar10_{missing[0]}.tar.gz, "
                                    f"{missing[0]}.tar.gz). {self.HOW}")
        return {split: load_cifar10_jpegs(src, split) for split, src in sources.items()}  # type: ignore[arg-type]

    def _build(self) -> tuple[Dataset, Dataset]:
        splits = self.load_splits()
        test_x, test_y = splits["test"]
        if self.val_subset is not None and self.val_subset < len(test_y):
            pick = np.sort(np.random.default_rng(0).permutation(len(test_y))[:self.val_subset])
            test_x, test_y = test_x[pick], test_y[pick]
        return (CIFARTensorDataset(*splits["train"], augment=self.augment),
                CIFARTensorDataset(test_x, test_y, augment=False))


@register_datamodule
class CIFAR10TestDataModule(CIFAR10DataModule):
    """The bundled CIFAR-10 test set (10k JPEGs, sha256-checked) split 8k train / 2k held-out with a fixed seed:
    colour images with nothing outside the repository."""

    name = "cifar10_test"

    def __init__(self, *, n_val: int = 2000, split_seed: int = 0, root: str | None = None, **kw: Any) -> None:
        super().__init__(root=root, **kw)
        self.n_val, self.split_seed = int(n_val), int(split_seed)

    def load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        fname, sha = CIFAR10_TEST_ARCHIVE
        path = Path(self.root).expanduser() / fname if self.root else CIFAR10_DIR / fname
        if not path.is_file():
            raise FileNotFoundError(f"bundled CIFAR-10 archive {path} is missing; reinstall oncenas (pip install -e .)")
        got = _sha256(path)
        if got != sha:
            raise ValueError(f"CIFAR-10 archive {path} has sha256 {got}, expected {sha}: the file is corrupt; "
                             f"reinstall it")
        images, labels = load_cifar10_jpegs(path, "test")
        if not 0 < self.n_val < len(labels):
            raise ValueError(f"data.n_val={self.n_val} must lie in 1..{len(labels) - 1} (the set has {len(labels)})")
        tr, va = _seeded_split(len(labels), self.n_val, self.split_seed)
        return {"train": (images[tr], labels[tr]), "test": (images[va], labels[va])}


# --------------------------------------------------------------------------------------- imagenet
@register_datamodule
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


@register_datamodule
class ImageFolderDataModule(SupernetDataModule):
    """The user's own images as one folder ``root/<class>/*`` (torchvision ``ImageFolder``), split with a fixed
    seed into train and held-out images: data for fine-tuning, accuracy datasets and BN recalibration of
    pretrained supernets (OFA's published ones recalibrate every subnet's BatchNorm on the target data).
    ImageNet-style transforms at ``image_size`` (training: random-resized crop + flip; held-out: resize to
    ``image_size / 0.875`` + centre crop) and ImageNet's normalisation, which pretrained weights expect."""

    name = "imagefolder"
    in_chans = 3

    HOW = "pass data.root=<folder> holding one subfolder of images per class (<folder>/<class>/*.jpg)"

    def __init__(self, *, root: str | None = None, image_size: int = 224, val_fraction: float = 0.2,
                 split_seed: int = 0, resize_scale: float = 0.08, **kw: Any) -> None:
        super().__init__(**kw)
        self.root, self.image_size = root, int(image_size)
        self.val_fraction, self.split_seed, self.resize_scale = float(val_fraction), int(split_seed), float(resize_scale)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must lie in [0, 1)")
        # The supernet's classifier is sized from this before setup(): count the class folders now (as ImageFolder
        # will: every subfolder is a class).
        folder = Path(root).expanduser() if root else None
        self.num_classes = sum(p.is_dir() for p in folder.iterdir()) if folder and folder.is_dir() else 0

    def _build(self) -> tuple[Dataset, Dataset]:
        from torch.utils.data import Subset
        from torchvision import datasets, transforms

        root = _require_dir(self.root, "image", self.HOW)
        norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        train_tf = transforms.Compose([transforms.RandomResizedCrop(self.image_size, scale=(self.resize_scale, 1.0)),
                                       transforms.RandomHorizontalFlip(), *norm])
        val_tf = transforms.Compose([transforms.Resize(round(self.image_size / 0.875)),
                                     transforms.CenterCrop(self.image_size), *norm])
        try:
            train_all = datasets.ImageFolder(str(root), transform=train_tf)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"image folder {root}: {err}; {self.HOW}") from None
        val_all = datasets.ImageFolder(str(root), transform=val_tf)
        self.num_classes = len(train_all.classes)
        n_val = round(len(train_all) * self.val_fraction)
        tr, va = _seeded_split(len(train_all), n_val, self.split_seed)
        return Subset(train_all, tr.tolist()), Subset(val_all, (va if n_val else tr).tolist())


def create_datamodule(name: str, **data_cfg: Any) -> SupernetDataModule:
    """Build a registered data module from its config dict, e.g. ``create_datamodule(name="mnist10k",
    batch_size=128)``: the ``_target_`` of ``configs/data/*.yaml``; ``dm.config`` (stored in checkpoints) rebuilds
    it with ``create_datamodule(**dm.config)``."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown data module {name!r}; available: {list_datamodules()}")
    dm = DATAMODULES[name](**data_cfg)
    dm.config = {"name": name, **data_cfg}
    return dm
