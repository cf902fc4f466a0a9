"""One quantizer for training (torch) and packing (numpy): q = clip(round(x / step), +-MAX_SYMBOL).

Both sides divide in float32 and round half to even (np.round and torch.round agree on ties),
so a weight the trainer saw on the grid is the integer the writer stores:
`tests/test_quantize.py` checks that both give the same integers, ties included.

Training uses two relaxations of the same grid (NVRC, C3):
- `noisy`: x + u * step with u ~ U(-1/2, 1/2), which has the quantizer's error statistics and
  a gradient for both x and the step;
- `straight_through`: round(x / step) * step forward, identity backward for the rounding (the
  step still gets the LSQ gradient round(x/s) - x/s), used by the final fine-tune so that the
  network adapts to the exact values the file will hold.
"""

from __future__ import annotations

import numpy as np
import torch

from dnerv_codec.format.tensorcode import MAX_STEP_SYMBOL

MAX_SYMBOL = MAX_STEP_SYMBOL - 1


def symbols(x, step):
    """The integers q of x at `step` (a scalar or an array that broadcasts): int32 for numpy
    input, a float tensor holding integers for torch input."""
    if isinstance(x, torch.Tensor):
        return torch.round(x / step).clamp(-MAX_SYMBOL, MAX_SYMBOL)
    ratio = np.asarray(x, np.float32) / np.asarray(step, np.float32)
    return np.clip(np.round(ratio), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)


def noisy(x: torch.Tensor, step: torch.Tensor, generator: torch.Generator | None = None):
    """x / step plus uniform noise of one step's width: the soft symbols of training."""
    u = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) - 0.5
    return x / step + u


def straight_through(x: torch.Tensor, step: torch.Tensor):
    """round(x / step), with the rounding's gradient taken as 1: the hard symbols of fine-tuning."""
    y = x / step
    return y + (symbols(x, step) - y).detach()
