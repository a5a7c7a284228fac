"""Data sets: MNIST, Fashion-MNIST, CIFAR-10 from their standard files, an embedded MNIST subset.

Images are float32 (N,C,H,W) tensors in [0,1]; normalization constants travel with the data set
so that models put them in their first (``Normalize``) layer.
"""

from verifriend.data.datasets import (
    ALIASES,
    CIFAR10_CLASSES,
    KNOWN_DATASETS,
    Dataset,
    canonical_name,
    dataset_info,
    load_dataset,
    select_per_class,
)

__all__ = [
    "ALIASES",
    "CIFAR10_CLASSES",
    "KNOWN_DATASETS",
    "Dataset",
    "canonical_name",
    "dataset_info",
    "load_dataset",
    "select_per_class",
]
