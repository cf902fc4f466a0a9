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


class FlatTensors:
    """Several tensors as one flat vector, for charging them all in a few operations: the
    per-tensor ops of tensor_bits (about 40 small kernels forward and back, for each of a
    decoder's 12-24 tensors) cost 15 % of a training step on 2 CPU cores at 320x180."""

    def __init__(self, shapes: list[torch.Size], device: torch.device):
        self.shapes = list(shapes)
        self.sizes = [math.prod(s) for s in self.shapes]
        counts = torch.tensor(self.sizes, device=device)
        # segment[i]: which tensor element i of the flat vector belongs to
        self.segment = torch.repeat_interleave(torch.arange(len(self.sizes), device=device), counts)
        self.counts = counts.to(torch.float32)

    def flatten(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def spread(self, per_tensor: torch.Tensor) -> torch.Tensor:
        """A value per tensor, repeated over that tensor's elements (index_select: its backward
        is an index_add, twice as fast here as indexing's accumulating index_put)."""
        return torch.index_select(per_tensor, 0, self.segment)

    def means(self, flat: torch.Tensor) -> torch.Tensor:
        """Each tensor's mean of `flat`."""
        sums = torch.zeros(len(self.sizes), dtype=flat.dtype, device=flat.device)
        return sums.index_add(0, self.segment, flat) / self.counts

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """`flat` cut back into the tensors' shapes (views)."""
        return [piece.view(shape) for piece, shape in zip(flat.split(self.sizes), self.shapes)]


def flat_bits(flat: FlatTensors, weights: torch.Tensor, y: torch.Tensor,
              steps: torch.Tensor) -> torch.Tensor:
    """tensor_bits summed over every tensor of `flat`: `weights` and `y` flat, `steps` one a
    tensor. The same sum as calling tensor_bits on each, in one pass."""
    scale = (flat.means(weights.abs()) / steps).clamp(min=MIN_SCALE)
    return laplace_bits(y, flat.spread(scale)).sum()
