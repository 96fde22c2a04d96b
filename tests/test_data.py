"""Data modules: the bundled MNIST split, scikit-learn digits, synthetic data, and clear errors for missing data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from supernets.data.modules import (
    MNIST_DIR,
    MNIST_FILES,
    EpochSeededSampler,
    create_datamodule,
    load_mnist_idx,
)


def test_bundled_mnist_parses_to_ten_thousand_labelled_digits():
    images, labels = load_mnist_idx()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert 0.10 < images.mean() / 255 < 0.16  # MNIST's mean intensity is 0.1307


def test_mnist10k_splits_8k_2k_disjoint_and_reproducible():
    a = create_datamodule(name="mnist10k", batch_size=64, split_seed=0)
    b = create_datamodule(name="mnist10k", batch_size=64, split_seed=0)
    a.setup(), b.setup()
    assert len(a.train_set) == 8000 and len(a.val_set) == 2000
    assert (a.num_classes, a.in_chans, a.image_size) == (10, 1, 28)
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])
    assert _disjoint_and_whole(a, 10_000)
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    assert abs(float(a.train_set.tensors[0].mean())) < 0.05  # normalised


def test_mnist_with_a_corrupted_file_is_refused(tmp_path):
    for fname, _ in MNIST_FILES.values():
        shutil.copy(MNIST_DIR / fname, tmp_path / fname)
    img = tmp_path / MNIST_FILES["images"][0]
    data = bytearray(img.read_bytes())
    data[-1] ^= 0xFF
    img.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="md5"):
        load_mnist_idx(tmp_path)


def test_digits_comes_from_sklearn_with_a_fixed_held_out_split():
    dm = create_datamodule(name="digits", batch_size=32, n_val=360)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 1797 and len(dm.val_set) == 360
    assert dm.image_size == 8 and dm.in_chans == 1
    assert _disjoint_and_whole(dm, 1797)
    again = create_datamodule(name="digits", batch_size=32, n_val=360)
    again.setup()
    assert torch.equal(dm.val_set.tensors[0], again.val_set.tensors[0])


def _disjoint_and_whole(dm, n_images: int) -> bool:
    """No image is in both splits, and together they hold all ``n_images`` distinct images of the set (both
    bundled sets hold no two identical images)."""
    train = {t.numpy().tobytes() for t in dm.train_set.tensors[0]}
    val = {t.numpy().tobytes() for t in dm.val_set.tensors[0]}
    return not train & val and len(train | val) == n_images


def test_synthetic_data_has_the_requested_shapes_and_is_seeded():
    kw = dict(name="synthetic", batch_size=4, n_train=8, n_val=4, image_size=16, in_chans=3, num_classes=5)
    a, b = create_datamodule(**kw), create_datamodule(**kw)
    a.setup(), b.setup()
    x, y = next(iter(a.val_dataloader()))
    assert x.shape == (4, 3, 16, 16) and int(y.max()) < 5
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])


def test_cifar10_never_downloads_and_says_how_to_get_it(tmp_path, monkeypatch):
    dm = create_datamodule(name="cifar10", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="download"):
        dm.setup()
    # A root that passes the folder checks but holds no data reaches torchvision, which must not download.
    from torchvision.datasets import CIFAR10

    def no_download(self):
        raise AssertionError("CIFAR10.download was called")

    monkeypatch.setattr(CIFAR10, "download", no_download)
    (tmp_path / "empty" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not found"):  # torchvision's own error; AssertionError is not one
        create_datamodule(name="cifar10", root=str(tmp_path / "empty")).setup()


def test_imagenet_without_a_root_is_a_clear_error():
    with pytest.raises(ValueError, match=r"data\.root"):
        create_datamodule(name="imagenet").setup()


def _image_folder(root, classes):
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / c / "0.png")


def test_imagenet_val_with_other_classes_than_train_is_refused(tmp_path):
    _image_folder(tmp_path / "train", ["a", "b", "c"])
    _image_folder(tmp_path / "val", ["a", "c"])  # ImageFolder would label val's 'c' as 1, train's as 2
    with pytest.raises(ValueError, match=r"val lacks \['b'\]"):
        create_datamodule(name="imagenet", root=str(tmp_path), num_classes=3, image_size=8).setup()
    _image_folder(tmp_path / "val", ["b"])
    dm = create_datamodule(name="imagenet", root=str(tmp_path), num_classes=3, image_size=8, batch_size=1)
    dm.setup()
    assert dm.val_set.class_to_idx == dm.train_set.class_to_idx


def test_unknown_dataset_or_option_is_rejected():
    with pytest.raises(ValueError, match="mnist10k"):
        create_datamodule(name="mnist60k")
    with pytest.raises(TypeError, match="bacth_size"):
        create_datamodule(name="mnist10k", bacth_size=3)


def test_shuffling_order_depends_only_on_seed_and_epoch():
    s = EpochSeededSampler(50, seed=3)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    s2 = EpochSeededSampler(50, seed=3)
    s2.set_epoch(1)
    assert sorted(first) == list(range(50)) and first != second and list(s2) == second
