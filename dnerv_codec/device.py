"""Where the networks run, for the encoder and the decoder alike."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """'auto' takes CUDA when present; asking for CUDA without it is the caller's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
