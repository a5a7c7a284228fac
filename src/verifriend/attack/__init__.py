"""Adversarial attacks: PGD in Linf balls (training, PGD accuracy, falsification)."""

from verifriend.attack.pgd import margin_loss, pgd_accuracy, pgd_attack

__all__ = ["margin_loss", "pgd_accuracy", "pgd_attack"]
