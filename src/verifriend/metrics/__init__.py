"""Verification-friendliness metrics and reports."""

from verifriend.metrics.friendliness import (
    Friendliness,
    clean_accuracy,
    evaluate_friendliness,
    property_bounds,
)

__all__ = ["Friendliness", "clean_accuracy", "evaluate_friendliness", "property_bounds"]
