"""A test-only model family: what adding one to the codec takes.

Not DNeRV: each decoder block upsamples first (bilinear) and then convolves at the
larger size, to the block's own width (DNeRV convolves to width x s^2 and PixelShuffles), with
no difference stream. It reads HEAD's fields as DNeRV does (strides, kernels, widths, embedding
channels), so its file is a DNeRV file's sections plus MODL naming it. This module is the whole
family: a torch-free config (its tensors' shapes, what rendering it costs, its band geometry),
the network, and `FAMILY` / `MODELS` for models.registry.register.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dnerv_codec.format.architecture import Conv, Model, ModelConfig
from dnerv_codec.models.base import EmbeddingGrid, initial_log_steps
from dnerv_codec.models.dnerv import FrameEncoder
from dnerv_codec.models.registry import Family


class ToyConfig(ModelConfig):
    family = "toy"

    def validate(self) -> None:
        if self.diff_stream:
            raise ValueError("the toy family has no difference stream")
        super().validate()

    def convolutions(self) -> list[Conv]:
        p = self.stride_product
        widths = (self.stem_channels,) + self.channels
        cells = 1 / (p * p)
        convs = [Conv("stem", self.embed_channels, self.stem_channels, 1, cells)]
        for i, (s, k) in enumerate(zip(self.strides, self.kernels)):
            cells *= s * s  # upsampled first: the conv runs at the block's output size
            convs.append(Conv(f"blocks.{i}.conv", widths[i], widths[i + 1], k, cells))
        convs.append(Conv("head", widths[-1], 3, 3, 1.0))
        return convs

    def halo_rows(self) -> int:
        p, radius, scale = self.stride_product, 0, 1
        for s, k in zip(self.strides, self.kernels):
            radius += p // scale  # bilinear upsampling reads a row either side
            scale *= s
            radius += (k // 2) * (p // scale)  # a k x k conv on rows p/scale pixels tall
        radius += 1  # the head
        unit = self.band_unit()
        return -(-radius // unit) * unit


class _Upsample(nn.Module):
    """Bilinear upsampling by `stride`, then `conv` and GELU."""

    def __init__(self, conv: nn.Conv2d, stride: int):
        super().__init__()
        self.conv, self.stride = conv, stride

    def forward(self, x):
        x = F.interpolate(x, scale_factor=self.stride, mode="bilinear", align_corners=False)
        return F.gelu(self.conv(x))


class ToyDecoder(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        config.validate()
        self.config = config
        convs = {c.name: nn.Conv2d(c.c_in, c.c_out, c.kernel, padding=c.kernel // 2)
                 for c in config.convolutions()}
        self.stem = convs["stem"]
        self.blocks = nn.ModuleList(_Upsample(convs[f"blocks.{i}.conv"], s)
                                    for i, s in enumerate(config.strides))
        self.head = convs["head"]

    def forward(self, content, diff=None):
        x = self.stem(content)
        for block in self.blocks:
            x = block(x)
        return torch.sigmoid(self.head(x))


class ToyModel(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.content_encoder = FrameEncoder(3, config.strides, config.embed_channels, width=16)
        self.decoder = ToyDecoder(config)
        self.log_steps = initial_log_steps(self.decoder)
        self.embedding_grid: EmbeddingGrid | None = None

    def transmitted(self):
        return list(self.decoder.named_parameters())

    def steps(self):
        return self.log_steps.exp()

    def embed(self, prev, cur, nxt):
        content = self.content_encoder(cur)
        if self.embedding_grid is not None:
            content, _ = self.embedding_grid.round(content, None)
        return content, None

    def forward(self, prev, cur, nxt):
        return self.decoder(*self.embed(prev, cur, nxt))


FAMILY = Family("toy", ToyConfig, ToyModel, ToyDecoder)
MODELS = {"toy": Model("toy", False, "Toy")}
