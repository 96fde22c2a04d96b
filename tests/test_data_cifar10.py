"""CIFAR-10: the bundled test archive, the JPEG layout (archive or folder) and torchvision's binary format
read into the same arrays, batched augmentation, and clear errors for missing or corrupt files."""

from __future__ import annotations

import io
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import torch

from supernets.data.modules import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_TEST_ARCHIVE,
    CIFARTensorDataset,
    create_datamodule,
    load_cifar10_jpegs,
)

BUNDLED = CIFAR10_DIR / CIFAR10_TEST_ARCHIVE[0]


def test_bundled_cifar10_test_archive_decodes_to_ten_thousand_labelled_colour_images():
    images, labels = load_cifar10_jpegs(BUNDLED, "test")
    assert images.shape == (10000, 3, 32, 32) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    # CIFAR-10's per-channel means (0.4914, 0.4822, 0.4465); the JPEG re-encoding moves them by < 0.005.
    assert np.allclose(images.mean(axis=(0, 2, 3)) / 255, (0.4914, 0.4822, 0.4465), atol=0.01)
    # Same pixels as PIL decodes from the archive (torchvision's and PIL's libjpeg agree).
    from PIL import Image

    with tarfile.open(BUNDLED) as tar:
        names = sorted(m.name for m in tar if m.name.startswith("test/truck/"))
        blob = tar.extractfile(names[0]).read()
    pil = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(images[9000], pil)  # truck = class 9, its first file by name
    assert load_cifar10_jpegs(BUNDLED, "test")[0] is images  # decoded once, then cached


def test_cifar10_test_splits_8k_2k_disjoint_reproducible_and_normalised():
    a = create_datamodule(name="cifar10_test", batch_size=64, split_seed=0)
    b = create_datamodule(name="cifar10_test", batch_size=64, split_seed=0, augment=False)
    a.setup(), b.setup()
    assert len(a.train_set) == 8000 and len(a.val_set) == 2000
    assert (a.num_classes, a.in_chans, a.image_size) == (10, 3, 32)
    assert torch.equal(a.val_set.images, b.val_set.images)
    train = {t.numpy().tobytes() for t in a.train_set.images}
    val = {t.numpy().tobytes() for t in a.val_set.images}
    assert not train & val and len(train) + len(val) == 10000
    x, y = next(iter(b.train_dataloader()))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (64,)
    xv, _ = b.val_set.batch(range(2000))
    assert xv.mean(dim=(0, 2, 3)).abs().max() < 0.05 and (xv.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    other = create_datamodule(name="cifar10_test", split_seed=1)
    other.setup()
    assert not torch.equal(other.val_set.images, a.val_set.images)


def test_augmentation_is_a_padded_crop_and_a_flip_of_each_image():
    images, labels = load_cifar10_jpegs(BUNDLED, "test")
    ds = CIFARTensorDataset(images[:64], labels[:64], augment=True, mean=(0, 0, 0), std=(1 / 255,) * 3)
    torch.manual_seed(0)
    x, y = ds.batch(range(64))
    assert torch.equal(y, torch.from_numpy(labels[:64]))
    padded = torch.nn.functional.pad(torch.from_numpy(images[:64]), (4, 4, 4, 4)).float()
    seen = set()
    for i in range(64):
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.equal(x[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert hits, f"augmented image {i} is no crop/flip of the original"
        seen.update(hits)
    assert {f for _, _, f in seen} == {False, True} and len({(dy, dx) for dy, dx, _ in seen}) > 20
    plain = CIFARTensorDataset(images[:8], labels[:8], augment=False, mean=(0, 0, 0), std=(1 / 255,) * 3)
    assert torch.equal(plain.batch(range(8))[0], torch.from_numpy(images[:8]).float())
    items = ds.__getitems__([3, 5])
    assert len(items) == 2 and items[0][0].shape == (3, 32, 32) and int(items[1][1]) == labels[5]


def _small_jpeg_tree(tmp_path, per_class: int = 2):
    """train/ and test/ with ``per_class`` bundled JPEGs of each class, as folders and as the two archives."""
    tree = tmp_path / "tree"
    with tarfile.open(BUNDLED) as tar:
        all_names = sorted(m.name for m in tar.getmembers() if m.isfile())
        for c in CIFAR10_CLASSES:
            names = [n for n in all_names if n.startswith(f"test/{c}/")][: 2 * per_class]
            for split, part in (("train", names[:per_class]), ("test", names[per_class:])):
                (tree / split / c).mkdir(parents=True, exist_ok=True)
                for n in part:
                    (tree / split / c / n.split("/")[-1]).write_bytes(tar.extractfile(n).read())
    archives = tmp_path / "archives"
    archives.mkdir()
    for split in ("train", "test"):
        with tarfile.open(archives / f"cifar10_{split}.tar.gz", "w:gz") as tar:
            tar.add(tree / split, arcname=split)
    return tree, archives


def test_cifar10_reads_archives_folders_and_torchvision_batches_into_the_same_arrays(tmp_path, monkeypatch):
    tree, archives = _small_jpeg_tree(tmp_path)
    sets = {}
    for kind, root in (("folder", tree), ("archives", archives)):
        dm = create_datamodule(name="cifar10", root=str(root), batch_size=4)
        dm.setup()
        sets[kind] = (dm.train_set, dm.val_set)
        assert len(dm.train_set) == 20 and len(dm.val_set) == 20
    # One archive holding both splits.
    with tarfile.open(tmp_path / "both.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname="cifar10")
    dm = create_datamodule(name="cifar10", root=str(tmp_path / "both.tar.gz"))
    dm.setup()
    sets["one archive"] = (dm.train_set, dm.val_set)
    # torchvision's binary release: pickled dicts with `data` (N, 3072) in CHW order and `labels`.
    batches = tmp_path / "bin" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    train, test = sets["folder"]
    chunks = np.array_split(np.arange(len(train)), 5)
    for k, idx in enumerate(chunks, start=1):
        _pickle(batches / f"data_batch_{k}", train.images[idx].numpy(), train.labels[idx].numpy())
    _pickle(batches / "test_batch", test.images.numpy(), test.labels.numpy())
    _pickle(batches / "batches.meta", None, None, meta=True)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # its md5s are the real release's
    dm = create_datamodule(name="cifar10", root=str(tmp_path / "bin"))
    dm.setup()
    sets["torchvision"] = (dm.train_set, dm.val_set)
    for kind, (tr, va) in sets.items():
        for got, want in ((tr, train), (va, test)):
            assert torch.equal(got.images, want.images), kind
            assert torch.equal(got.labels, want.labels), kind
    assert sets["folder"][0].labels.tolist() == [c for c in range(10) for _ in range(2)]


def _pickle(path, images, labels, meta=False):
    obj = {"label_names": list(CIFAR10_CLASSES)} if meta else {
        "data": images.reshape(len(images), -1), "labels": labels.tolist()}
    path.write_bytes(pickle.dumps(obj))


def test_cifar10_without_a_split_or_with_bad_files_is_a_clear_error(tmp_path):
    tree, archives = _small_jpeg_tree(tmp_path, per_class=1)
    (archives / "cifar10_train.tar.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"no train split .*cifar10_train\.tar\.gz"):
        create_datamodule(name="cifar10", root=str(archives)).setup()
    with pytest.raises(ValueError, match=r"data\.root is not set"):
        create_datamodule(name="cifar10").setup()
    (tree / "train" / "aeroplane").mkdir()
    (tree / "train" / "aeroplane" / "0.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"class folder 'aeroplane'.*'airplane'"):
        create_datamodule(name="cifar10", root=str(tree)).setup()
    shutil.rmtree(tree / "train" / "aeroplane")
    (tree / "train" / "cat" / "9999.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"9999\.jpg is not a readable JPEG"):
        create_datamodule(name="cifar10", root=str(tree)).setup()
    (archives / "cifar10_train.tar.gz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"cifar10_train\.tar\.gz cannot be read"):
        create_datamodule(name="cifar10", root=str(archives)).setup()


def test_a_corrupt_bundled_cifar10_archive_is_refused(tmp_path):
    data = bytearray(BUNDLED.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / CIFAR10_TEST_ARCHIVE[0]).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        create_datamodule(name="cifar10_test", root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match=r"n_val=10000 must lie in 1\.\.9999"):
        create_datamodule(name="cifar10_test", n_val=10000).setup()


def test_imagefolder_reads_the_users_class_folders_with_a_seeded_held_out_split(tmp_path):
    from PIL import Image

    for c in ("cats", "dogs", "owls"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (20 + i, 16), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    dm = create_datamodule(name="imagefolder", root=str(tmp_path), image_size=32, val_fraction=0.2, batch_size=4)
    assert dm.num_classes == 3  # before setup: the supernet's classifier is sized from it
    dm.setup()
    assert dm.num_classes == 3 and len(dm.train_set) == 12 and len(dm.val_set) == 3
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and int(y.max()) <= 2
    with pytest.raises(FileNotFoundError, match=r"image folder .*nowhere.*<class>"):
        create_datamodule(name="imagefolder", root=str(tmp_path / "nowhere")).setup()
