"""What the rest of the codec relies on in a model, and nothing more.

Training (training/loop.py), the coding layer (coding/) and the pipeline (codec.py) reach a
model only through these members, so that neither the rate term, nor rate control, nor the
container depends on DNeRV's layer order: the file carries `transmitted()` in that order, and a
decoder rebuilt from the header (format/architecture.py) lists the same names in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from dnerv_codec.format.architecture import ModelConfig


@dataclass(frozen=True)
class EmbeddingGrid:
    """A per-channel step for the content (and diff) embeddings, and the largest symbol: the
    grid the file's embeddings are written on. Rounding is in float32, as the writer's is."""

    content_step: torch.Tensor          # (C,)
    diff_step: torch.Tensor | None      # (2,) or None
    top: int

    def round(self, content, diff):
        return _on_grid(content, self.content_step, self.top), (
            None if diff is None else _on_grid(diff, self.diff_step, self.top))


def _on_grid(x: torch.Tensor, step: torch.Tensor, top: int) -> torch.Tensor:
    step = step.to(x.device).view(1, -1, 1, 1)
    return torch.clamp(torch.round(x.float() / step), -top, top) * step


def initial_log_steps(decoder: nn.Module) -> nn.Parameter:
    """One learned log quantization step per transmitted tensor (decoder.state_dict() order),
    as a log so that it stays positive. Rate-aware training moves them (coding/rate.py); a
    start at 1/63 of the tensor's peak is a 7-bit grid."""
    peaks = [float(t.detach().abs().max()) or 1.0 for t in decoder.state_dict().values()]
    return nn.Parameter(torch.log(torch.tensor(peaks) / 63.0))


@runtime_checkable
class VideoModel(Protocol):
    config: ModelConfig     # the transmitted architecture, all the header stores
    decoder: nn.Module      # the transmitted network: embeddings in, a padded frame out
    log_steps: nn.Parameter  # one learned log quantization step per transmitted tensor
    # Set by the fine-tune (scaling/chunkwork.py): `embed` then rounds its embeddings to the
    # grid the file holds them on. Every parameter outside `decoder` and `log_steps` is an
    # encoder's, frozen while it is set (training/loop.decoder_only).
    embedding_grid: EmbeddingGrid | None

    def embed(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame embeddings (content, diff or None) from frames in [0, 1]."""

    def transmitted(self) -> list[tuple[str, torch.Tensor]]:
        """(name within `decoder`, parameter) of every tensor the file carries, in file order."""

    def steps(self) -> torch.Tensor:
        """The current quantization step of each transmitted tensor, in the same order."""

    def __call__(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        """The reconstructed (padded) frame `cur`."""
