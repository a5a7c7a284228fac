"""The compute device a job asked for (``--device cpu|cuda``), checked once where it starts.

Every stage that computes bounds, attacks or trains runs on that device; the exact stages
(HiGHS MILPs and LPs, convex hulls) read CPU arrays and move what they need there, and
verdicts and counterexamples come back on the CPU.
"""

from __future__ import annotations

import torch

from verifriend.errors import UserError


def torch_device(name: str | torch.device) -> torch.device:
    """``torch.device(name)``; one sentence when CUDA is asked for and PyTorch sees no GPU."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"--device must be cpu or cuda, got '{name}'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU here "
                        "(a CPU build of torch, or no driver); use --device cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got '{name}'.")
    return dev
