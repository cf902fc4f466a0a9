"""DNeRV (Zhao et al., CVPR 2023, arXiv 2304.06544) and its HNeRV ablation.

DNeRV = HNeRV (a decoder fed by a learned per-frame content embedding) + a second stream of
frame differences, fused into the decoder by the Collaborative Content Unit (CCU):

    content encoder : frame          -> d x (Hp/P) x (Wp/P)      (not transmitted)
    diff encoder    : [x_t - x_{t-1}, x_{t+1} - x_t] -> 2 x Hp/24 x Wp/24   (not transmitted)
    decoder         : 1x1 stem, blocks of conv(k) -> PixelShuffle(s) -> GELU, CCU after the block
                      at 1/6 of the frame, 3x3 head -> sigmoid         (transmitted)
    diff decoder    : 1x1 conv, conv3x3 -> PixelShuffle(4) -> GELU       (transmitted)

`ModelConfig` (architecture.py, re-exported here) is everything the bitstream stores about the
architecture. With `diff_stream=False` the same code is HNeRV: content stream only, no diff
branch, no CCU.

This module never touches files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The transmitted architecture is plain arithmetic in architecture.py (torch-free, so that the
# file readers can use it); it is re-exported here, where the modules that realise it live.
from dnerv_codec.format.architecture import (  # noqa: F401  (re-exported)
    CCU_CONVS,
    CHANNEL_REDUCTION,
    DIFF_EMBED_CHANNELS,
    DIFF_ENCODER_STRIDES,
    DIFF_UPSCALE,
    EMBED_CHANNELS,
    PADDING_WEIGHT,
    PIXELS_PER_EMBED_POSITION,
    STRIDE_PREFIXES,
    STRIDE_TAIL,
    Conv,
    ModelConfig,
    choose_strides,
    decoder_channels,
    make_config,
    with_width,
)
from dnerv_codec.models.base import EmbeddingGrid, initial_log_steps  # noqa: F401  (re-exported)

# Fixed by the paper and not transmitted (the encoders stay with the encoder).
ENCODER_CHANNELS = 64          # c1


# ----------------------------------------------------------------------------- encoders


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (ConvNeXt's channels_first form)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _DepthwiseConv(torch.autograd.Function):
    """A stride-1, odd-kernel, same-padded depthwise convolution whose backward is two plain
    convolutions. On CPU, torch's own depthwise backward is the slowest part of a large frame's
    training step: at 1280x720 the first encoder stage's 7x7 over 64 x 180 x 324 took 114 ms for
    the weight gradient and 44 ms for the input gradient, against 11 ms for the forward pass.
    Written as a correlation of the input with the output gradient (one group per channel) and
    a convolution with the flipped kernel, they take 28 and 11 ms (the whole step:
    `benchmarks/throughput.py --variants default torch-depthwise`, docs/training.md)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")  # the backward runs under the forward's autocast
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, c = x.shape[:2]
        pad = weight.shape[-1] // 2
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(-1, -2), padding=pad, groups=c)
        if ctx.needs_input_grad[1]:
            # grad_w[c] = sum over the batch of the padded input correlated with grad[c]: the
            # batch becomes each group's input channels, grad the group's kernel.
            padded = F.pad(x, (pad,) * 4)
            grouped = padded.transpose(0, 1).reshape(1, c * n, *padded.shape[2:])
            grad_w = F.conv2d(grouped, grad.transpose(0, 1), groups=c).transpose(0, 1)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def depthwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a depthwise, stride-1, same-padded `conv`; on CPU with the faster backward."""
    if x.device.type != "cpu":
        return conv(x)
    return _DepthwiseConv.apply(x, conv.weight, conv.bias)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, 4x pointwise MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, 1)
        self.pwconv2 = nn.Conv2d(4 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x):
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(depthwise_conv(self.dwconv, x)))))
        return x + self.gamma * y


class FrameEncoder(nn.Module):
    """Stages of [Conv(k=s, stride=s) -> LayerNorm -> ConvNeXt], then a 1x1 conv to the embedding."""

    def __init__(self, in_channels: int, strides, out_channels: int, width: int = ENCODER_CHANNELS):
        super().__init__()
        layers, c = [], in_channels
        for s in strides:
            layers += [nn.Conv2d(c, width, s, stride=s), LayerNorm2d(width), ConvNeXtBlock(width)]
            c = width
        self.stages = nn.Sequential(*layers)
        self.embed = nn.Conv2d(width, out_channels, 1)

    def forward(self, x):
        return self.embed(self.stages(x))


def frame_differences(prev, cur, nxt):
    """The diff stream's input: backward and forward differences, interleaved per colour
    channel as in the official code (R_b, R_f, G_b, G_f, B_b, B_f)."""
    return torch.stack([cur - prev, nxt - cur], dim=2).flatten(1, 2)


# ----------------------------------------------------------------------------- decoder


def _conv(spec: Conv) -> nn.Conv2d:
    return nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, padding=spec.kernel // 2)


class UpBlock(nn.Module):
    """NeRV block: conv(k) -> PixelShuffle(s) -> GELU (no normalisation)."""

    def __init__(self, conv: nn.Conv2d, stride: int):
        super().__init__()
        self.conv = conv
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, x):
        return F.gelu(self.shuffle(self.conv(x)))


class CollaborativeContentUnit(nn.Module):
    """CCU: p = tanh(Wpc*O + Wpd*D); s = sigmoid(Wsc*O + Wsd*D); O' = s*p + (1-s)*O."""

    def __init__(self, p_content: nn.Conv2d, p_diff: nn.Conv2d, s_content: nn.Conv2d,
                 s_diff: nn.Conv2d):
        super().__init__()
        self.p_content, self.p_diff = p_content, p_diff
        self.s_content, self.s_diff = s_content, s_diff

    def forward(self, content, diff):
        p = torch.tanh(self.p_content(content) + self.p_diff(diff))
        s = torch.sigmoid(self.s_content(content) + self.s_diff(diff))
        return s * p + (1 - s) * content


class Decoder(nn.Module):
    """Everything that is transmitted: embeddings in, a padded RGB frame in [0, 1] out. Its
    layers' shapes come from `config.convolutions()` (format/architecture.py), created in that
    (file) order; this class only wires them."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        convs = {spec.name: _conv(spec) for spec in config.convolutions()}
        self.stem = convs["stem"]
        self.blocks = nn.ModuleList(
            UpBlock(convs[f"blocks.{i}.conv"], s) for i, s in enumerate(config.strides))
        self.head = convs["head"]
        if config.diff_stream:
            self.diff_stem = convs["diff_stem"]
            self.diff_block = UpBlock(convs["diff_block.conv"], DIFF_UPSCALE)
            self.ccu = CollaborativeContentUnit(*(convs[f"ccu.{n}"] for n in CCU_CONVS))

    def forward(self, content_embed, diff_embed=None):
        x = self.stem(content_embed)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.config.diff_stream and i == self.config.ccu_block:
                x = self.ccu(x, self.diff_block(self.diff_stem(diff_embed)))
        return torch.sigmoid(self.head(x))


class DNeRV(nn.Module):
    """Encoders plus decoder: what the overfitting loop trains."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.content_encoder = FrameEncoder(3, config.strides, config.embed_channels)
        if config.diff_stream:
            self.diff_encoder = FrameEncoder(6, DIFF_ENCODER_STRIDES, config.diff_channels)
        self.decoder = Decoder(config)
        self.log_steps = initial_log_steps(self.decoder)
        # Set by the fine-tune (scaling/chunkwork.py): the embeddings are rounded to the grid
        # the file will hold them on, so that the decoder learns from what it will be given.
        self.embedding_grid: EmbeddingGrid | None = None

    def transmitted(self) -> list[tuple[str, torch.Tensor]]:
        """(name, parameter) of every tensor the file carries, in the file's order."""
        return list(self.decoder.named_parameters())

    def steps(self) -> torch.Tensor:
        """The current quantization step of each transmitted tensor."""
        return self.log_steps.exp()

    def embed(self, prev, cur, nxt):
        """Per-frame embeddings (content, diff or None) from frames in [0, 1]; on the
        `embedding_grid` when one is set."""
        content = self.content_encoder(cur)
        diff = None
        if self.config.diff_stream:
            diff = self.diff_encoder(frame_differences(prev, cur, nxt))
        if self.embedding_grid is not None:
            content, diff = self.embedding_grid.round(content, diff)
        return content, diff

    def forward(self, prev, cur, nxt):
        return self.decoder(*self.embed(prev, cur, nxt))
