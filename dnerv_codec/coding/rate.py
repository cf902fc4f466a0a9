"""The rate that training charges for the decoder's weights, in bits.

Each transmitted tensor t has a learned step s_t. Its symbols y = w / s (soft: with noise or
straight-through rounding, see quantize.py) are charged under a zero-mean discretized Laplace
whose scale is the tensor's own mean |w| / s: the continuous twin of the two-sided geometric
model that tensorcode.py codes with (entropy_models.GEOMETRIC), as C3 does for its weights.
The rate pulls weights to zero and steps up; the distortion, through the quantization noise
the steps put on the weights, pulls the other way, layer by layer. Nothing here reads or
writes a file.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)
MIN_PROBABILITY = 1e-9   # one symbol costs at most ~30 bits in the estimate
MIN_SCALE = 1e-3         # in steps: a tensor all at zero still has a defined rate


def laplace_bits(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bits of each y under a zero-mean Laplace of `scale` integrated over [y - 1/2, y + 1/2]."""
    a = y.abs()
    inv = 1.0 / scale
    upper = torch.exp(-(a + 0.5) * inv)
    # |y| >= 1/2: the interval lies on one side of zero.
    tail = 0.5 * (torch.exp(-(a - 0.5).clamp(min=0) * inv) - upper)
    # |y| < 1/2: the interval holds the mode.
    centre = 1.0 - 0.5 * (torch.exp(-(0.5 - a).clamp(min=0) * inv) + upper)
    p = torch.where(a >= 0.5, tail, centre)
    return -torch.log(p.clamp(min=MIN_PROBABILITY)) / LN2


def tensor_bits(weights: torch.Tensor, y: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The estimated bits of one tensor whose soft symbols are y (= weights / step, perturbed)."""
    scale = (weights.abs().mean() / step).clamp(min=MIN_SCALE)
    return laplace_bits(y, scale).sum()
