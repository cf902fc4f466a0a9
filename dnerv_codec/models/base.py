"""What the rest of the codec relies on in a model, and nothing more.

Training (training/loop.py), the coding layer (coding/) and the pipeline (codec.py) reach a
model only through these members, so that neither the rate term, nor rate control, nor the
container depends on DNeRV's layer order: the file carries `transmitted()` in that order, and a
decoder rebuilt from the header (format/architecture.py) lists the same names in the same order.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from dnerv_codec.format.architecture import ModelConfig


@runtime_checkable
class VideoModel(Protocol):
    config: ModelConfig     # the transmitted architecture, all the header stores
    decoder: nn.Module      # the transmitted network: embeddings in, a padded frame out
    log_steps: nn.Parameter  # one learned log quantization step per transmitted tensor

    def embed(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame embeddings (content, diff or None) from frames in [0, 1]."""

    def transmitted(self) -> list[tuple[str, torch.Tensor]]:
        """(name within `decoder`, parameter) of every tensor the file carries, in file order."""

    def steps(self) -> torch.Tensor:
        """The current quantization step of each transmitted tensor, in the same order."""

    def __call__(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        """The reconstructed (padded) frame `cur`."""
