"""Training: one loop (``fit``) with one loss function per method."""

from verifriend.train.config import METHODS, TrainConfig
from verifriend.train.losses import LOSSES, natural_loss
from verifriend.train.nbc import (
    find_nbc_neighbour,
    hidden_preactivations,
    layer_gammas,
    model_gammas,
    nbc_loss,
    nbc_score,
)
from verifriend.train.trainer import fit

__all__ = [
    "LOSSES",
    "METHODS",
    "TrainConfig",
    "find_nbc_neighbour",
    "fit",
    "hidden_preactivations",
    "layer_gammas",
    "model_gammas",
    "natural_loss",
    "nbc_loss",
    "nbc_score",
]
