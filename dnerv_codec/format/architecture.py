"""The transmitted architecture as plain arithmetic: no torch, so untrusted-file readers can use it.

`ModelConfig` is everything a .dnv header says about the network; `choose_strides` picks the
strides from the frame size so that any width and height work (pad, never resize). The torch
modules that realise a config live in models/dnerv.py, which re-exports everything here.

`config_from_header` and `symbol_counts` turn a parsed header into the architecture and into
the exact number of quantized values each tensor section must hold. The decoder checks a file's
sections against these numbers before entropy-decoding anything, so a few hundred hostile bytes
cannot make it decode (or allocate for) more values than the header's own network needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations_with_replacement
from typing import ClassVar

from dnerv_codec.errors import BitstreamError, InputError

# The paper's embedding channels; the encoder may choose fewer (the header carries them).
EMBED_CHANNELS = 16            # d
DIFF_EMBED_CHANNELS = 2
# Fixed by the paper and not transmitted (the encoders stay with the encoder).
DIFF_ENCODER_STRIDES = (4, 3, 2)
DIFF_UNIT = math.prod(DIFF_ENCODER_STRIDES)  # 24: pixels per diff-embedding row
DIFF_UPSCALE = 4               # the diff decoder's single PixelShuffle
CHANNEL_REDUCTION = 1.2        # r: each decoder block divides the width by r (floor)
# The CCU sits where the content stream reaches 1/6 of the frame: the diff stream lands there
# (Hp/24 * 4). So the content strides always end with (3, 2) and the CCU follows the block
# before them.
STRIDE_TAIL = (3, 2)
STRIDE_PREFIXES = tuple(
    tuple(sorted(c, reverse=True))
    for n in (1, 2, 3)
    for c in combinations_with_replacement((5, 4, 3, 2), n)
)
# The reference embeddings have one position per 14k (9x16 at 1080x1920) to 230k (2x4 at
# 960x1920) pixels. We aim at one per 16k, so that small frames do not get embeddings denser
# than the paper ever used (at 96x64 they would otherwise dominate the bitstream), and weigh
# padding heavily, since padded pixels cost training time.
PIXELS_PER_EMBED_POSITION = 16384
PADDING_WEIGHT = 20.0
# `--arch paper`: the official five-stage configuration (DNeRV's 960x1920 UVG setting: a 2x4
# content embedding). It needs sides that are multiples of 480 (its strides' product and the
# diff encoder's 24), and is refused where padding to them would add more than this fraction
# of the frame's area: padded pixels cost training time and bits, never quality.
PAPER_STRIDES = (5, 4, 4, 3, 2)
PAPER_KERNELS = (1, 3, 5, 5, 5)
PAPER_MAX_PADDING = 0.125
ARCHES = ("auto", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """The transmitted architecture (the bitstream stores every field): DNeRV's, and the base of
    every other family's. A family is a subclass with its own `family` name (the header's
    `model`, "dnerv" when absent) that may read the same fields its own way: it restates
    `convolutions()` (the shapes of what the file carries) and, where its layers differ,
    `cost_stages()` and the band geometry, from which the decode cost is priced
    (format/budget.py) without building anything."""

    family: ClassVar[str] = "dnerv"
    padded_height: int
    padded_width: int
    strides: tuple[int, ...]
    kernels: tuple[int, ...]
    channels: tuple[int, ...]      # output channels of each decoder block
    stem_channels: int             # c2: width after the 1x1 stem conv
    embed_channels: int = EMBED_CHANNELS
    diff_stream: bool = True
    diff_channels: int = DIFF_EMBED_CHANNELS  # of the diff embedding (with the diff stream)
    ccu_block: int = 0             # the CCU fuses the diff stream after this decoder block

    @property
    def stride_product(self) -> int:
        return math.prod(self.strides)

    @property
    def embed_shape(self) -> tuple[int, int, int]:
        p = self.stride_product
        return (self.embed_channels, self.padded_height // p, self.padded_width // p)

    @property
    def diff_embed_shape(self) -> tuple[int, int, int]:
        p = math.prod(DIFF_ENCODER_STRIDES)
        return (self.diff_channels, self.padded_height // p, self.padded_width // p)

    def validate(self) -> None:
        """Raise ValueError unless the config describes a buildable, consistent network.

        Called on configs read from untrusted files before any layer is allocated."""
        n = len(self.strides)
        if not (1 <= n <= 8) or len(self.kernels) != n or len(self.channels) != n:
            raise ValueError("strides, kernels and channels must have the same length (1..8)")
        if any(s < 1 for s in self.strides) or any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError("strides must be >= 1 and kernels odd")
        if min(self.channels) < 1 or min(self.stem_channels, self.embed_channels,
                                         self.diff_channels) < 1:
            raise ValueError("channel counts must be >= 1")
        p = self.stride_product
        if self.padded_height % p or self.padded_width % p:
            raise ValueError(f"padded size {self.padded_width}x{self.padded_height} "
                             f"is not a multiple of the stride product {p}")
        if self.diff_stream:
            q = math.prod(DIFF_ENCODER_STRIDES)
            if self.padded_height % q or self.padded_width % q:
                raise ValueError("padded size is not a multiple of the diff encoder's 24")
            if not 0 <= self.ccu_block < n:
                raise ValueError("ccu_block out of range")
            reach = p // math.prod(self.strides[: self.ccu_block + 1])
            if reach != q // DIFF_UPSCALE:
                raise ValueError("the CCU block is not where the diff stream lands")

    def convolutions(self) -> list[Conv]:
        """Every convolution of the transmitted decoder, in the file's tensor order: the one
        statement of the decoder's shapes, from which models/dnerv.py builds the network and
        the parameter count and the decode budget are computed."""
        p = self.stride_product
        widths = (self.stem_channels,) + self.channels
        cells = 1 / (p * p)  # embedding cells per padded pixel
        convs = [Conv("stem", self.embed_channels, self.stem_channels, 1, cells)]
        for i, (s, k) in enumerate(zip(self.strides, self.kernels)):
            convs.append(Conv(f"blocks.{i}.conv", widths[i], widths[i + 1] * s * s, k, cells))
            cells *= s * s
        convs.append(Conv("head", widths[-1], 3, 3, 1.0))
        if self.diff_stream:
            c_before, c_ccu = widths[self.ccu_block], widths[self.ccu_block + 1]
            d_cells = 1 / math.prod(DIFF_ENCODER_STRIDES) ** 2
            ccu_cells = d_cells * DIFF_UPSCALE**2
            convs += [Conv("diff_stem", self.diff_channels, c_before, 1, d_cells),
                      Conv("diff_block.conv", c_before, c_ccu * DIFF_UPSCALE**2, 3, d_cells)]
            convs += [Conv(f"ccu.{name}", c_ccu, c_ccu, 3, ccu_cells) for name in CCU_CONVS]
        return convs

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every transmitted tensor, in file order."""
        out = []
        for c in self.convolutions():
            out += [(f"{c.name}.weight", (c.c_out, c.c_in, c.kernel, c.kernel)),
                    (f"{c.name}.bias", (c.c_out,))]
        return out

    def parameter_count(self) -> int:
        """Transmitted (decoder) parameters, computed without building the network."""
        return sum(c.c_in * c.c_out * c.kernel**2 + c.c_out for c in self.convolutions())

    # -- what rendering a frame costs: the layers as the budget prices them --------------------

    def cost_stages(self) -> list[Stage]:
        """Each convolution of one frame's render, with what else is alive beside it: the
        content map O stays alive throughout the diff branch and the CCU, where O, D, p and s
        are live at most."""
        convs = self.convolutions()
        o = 0.0
        if self.diff_stream:
            ccu = next(c for c in convs if c.name.startswith("ccu."))
            o = ccu.c_in * ccu.cells
        return [Stage(c.c_in, c.c_out, c.kernel, c.cells, c.cells,
                      o if c.name.startswith("diff_") else 4 * o if c.name.startswith("ccu.")
                      else 0.0)
                for c in convs]

    def band_unit(self) -> int:
        """Band edges fall on multiples of this many rows: whole content and diff embedding
        rows."""
        p = self.stride_product
        return math.lcm(p, DIFF_UNIT) if self.diff_stream else p

    def halo_rows(self) -> int:
        """Rows of margin a band needs on each side so that its kept rows equal the whole
        frame's: the receptive-field radius in pixels, rounded up to the band unit."""
        p = self.stride_product
        radius, scale = 0, 1  # scale: the upsampling reached at the input of each block
        for i, (s, k) in enumerate(zip(self.strides, self.kernels)):
            radius += (k // 2) * (p // scale)  # a k x k conv on rows p/scale pixels tall
            scale *= s
            if self.diff_stream and i == self.ccu_block:
                # The diff block's 3x3 on the diff embedding, then the CCU's 3x3s on both maps.
                radius = max(radius, DIFF_UNIT) + p // scale
        radius += 1  # the 3x3 head at full resolution
        unit = self.band_unit()
        return -(-radius // unit) * unit


@dataclass(frozen=True)
class Conv:
    """One transmitted convolution (padding kernel // 2, with a bias); `cells` is its input's
    positions per padded output pixel (the resolution it runs at)."""

    name: str
    c_in: int
    c_out: int
    kernel: int
    cells: float


@dataclass(frozen=True)
class Stage:
    """One convolution as the decode budget prices it: channels in and out, kernel, input and
    output positions per padded pixel, and the elements per pixel alive beside it."""

    c_in: int
    c_out: int
    kernel: int
    cells_in: float
    cells_out: float
    extra: float


CCU_CONVS = ("p_content", "p_diff", "s_content", "s_diff")


# ----------------------------------------------------------------------------- model families

FAMILIES: dict[str, type[ModelConfig]] = {"dnerv": ModelConfig}
"""Every model family this reader knows, by name: its torch-free config type. The networks
that realise them are registered beside them (models/registry.py, which adds to this table)."""


@dataclass(frozen=True)
class Model:
    """A model an encode can ask for by name: a family and whether it has a difference stream."""

    family: str
    diff_stream: bool
    title: str


MODELS: dict[str, Model] = {"dnerv": Model("dnerv", True, "DNeRV"),
                            "hnerv": Model("dnerv", False, "HNeRV")}
"""The models an encode can ask for, by name (`--model`); registered families add theirs."""


def model_name(config: ModelConfig) -> str:
    """The name an encode asks for `config`'s model by."""
    for name, model in MODELS.items():
        if model.family == config.family and model.diff_stream == config.diff_stream:
            return name
    raise ValueError(f"no model is named for family {config.family!r}")


def family_of(header: dict) -> type[ModelConfig]:
    """The config type of the family a header names, refused unless this reader knows it."""
    name = header.get("model", "dnerv")
    if name not in FAMILIES:
        raise BitstreamError(f"unsupported .dnv: model family '{name}' (this dnerv knows "
                             f"{', '.join(sorted(FAMILIES))})")
    return FAMILIES[name]


def decoder_channels(stem_channels: int, n_blocks: int) -> tuple[int, ...]:
    """Block widths as the official code computes them: floor(c / 1.2) per block, at least 1."""
    out, c = [], stem_channels
    for _ in range(n_blocks):
        c = max(1, int(c // CHANNEL_REDUCTION))
        out.append(c)
    return tuple(out)


def choose_strides(height: int, width: int) -> tuple[tuple[int, ...], int, int]:
    """Pick decoder strides for a frame size; return (strides, padded_height, padded_width).

    Candidates are a non-increasing prefix of 5/4/3/2 followed by the fixed (3, 2) tail. The
    padded size must be a multiple of both the stride product and the diff encoder's 24. We
    score little padding first and an embedding near one position per
    PIXELS_PER_EMBED_POSITION pixels second.
    """
    target_area = max(1.0, height * width / PIXELS_PER_EMBED_POSITION)
    best = None
    for prefix in STRIDE_PREFIXES:
        strides = prefix + STRIDE_TAIL
        p = math.prod(strides)
        unit = math.lcm(p, math.prod(DIFF_ENCODER_STRIDES))
        ph, pw = -(-height // unit) * unit, -(-width // unit) * unit
        area = (ph // p) * (pw // p)
        score = (PADDING_WEIGHT * math.log(ph * pw / (height * width))
                 + abs(math.log(area / target_area)))
        key = (score, len(strides))
        if best is None or key < best[0]:
            best = (key, strides, ph, pw)
    return best[1], best[2], best[3]


def make_config(height: int, width: int, stem_channels: int, diff_stream: bool = True,
                embed_channels: int = EMBED_CHANNELS,
                diff_channels: int = DIFF_EMBED_CHANNELS, arch: str = "auto",
                family: str = "dnerv") -> ModelConfig:
    """The architecture for a frame size, decoder width (c2) and embedding channels: strides
    chosen from the frame size ("auto"), or the paper's five stages ("paper", InputError
    where the frame does not fit them), in the config type of `family`."""
    if arch == "paper":
        strides, ph, pw = paper_strides(height, width)
        kernels = PAPER_KERNELS
    elif arch == "auto":
        strides, ph, pw = choose_strides(height, width)
        kernels = tuple(min(1 + 2 * i, 5) for i in range(len(strides)))  # the reference 1,3,5,5,5
    else:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHES)}")
    n = len(strides)
    config = FAMILIES[family](
        padded_height=ph, padded_width=pw, strides=strides, kernels=kernels,
        channels=decoder_channels(stem_channels, n), stem_channels=stem_channels,
        embed_channels=embed_channels, diff_stream=diff_stream, diff_channels=diff_channels,
        ccu_block=n - 1 - len(STRIDE_TAIL),
    )
    config.validate()
    return config


def paper_strides(height: int, width: int) -> tuple[tuple[int, ...], int, int]:
    """(PAPER_STRIDES, padded height, padded width), or InputError naming a size that fits."""
    unit = math.lcm(math.prod(PAPER_STRIDES), math.prod(DIFF_ENCODER_STRIDES))
    ph, pw = -(-height // unit) * unit, -(-width // unit) * unit
    if ph * pw > (1 + PAPER_MAX_PADDING) * height * width:
        raise InputError(
            f"--arch paper needs sides that are multiples of {unit} (as the paper's 1920x960): "
            f"{width}x{height} would be padded to {pw}x{ph}, "
            f"{ph * pw / (height * width) - 1:.0%} more pixels; use the default --arch auto")
    return PAPER_STRIDES, ph, pw


def with_width(config: ModelConfig, stem_channels: int) -> ModelConfig:
    return replace(config, stem_channels=stem_channels,
                   channels=decoder_channels(stem_channels, len(config.strides)))


# A decoder larger than this is refused before it is built: a hostile header could otherwise
# ask for gigabytes of convolution weights.
MAX_DECODER_PARAMS = 1 << 26


def header_fields(config: ModelConfig) -> dict:
    """The HEAD fields that describe the architecture (the inverse of config_from_header; the
    two stand together so that a field's name is spelt here and in container.HEADER_SPEC only),
    and the family's name where it is not DNeRV (a DNeRV file carries none, as before there
    were families)."""
    family = {} if config.family == "dnerv" else {"model": config.family}
    return {**family,
        "padded_width": config.padded_width, "padded_height": config.padded_height,
        "content_strides": tuple(config.strides), "kernels": tuple(config.kernels),
        "channels": tuple(config.channels), "embed_channels": config.embed_channels,
        "stem_channels": config.stem_channels, "diff_stream": int(config.diff_stream),
        "diff_channels": config.diff_channels if config.diff_stream else 0,
        "diff_upscale": DIFF_UPSCALE if config.diff_stream else 0,
        "ccu_block": config.ccu_block,
    }


def config_from_header(header: dict) -> ModelConfig:
    """The architecture a file describes, refused unless this decoder can build it safely."""
    config = family_of(header)(
        padded_height=header["padded_height"], padded_width=header["padded_width"],
        strides=tuple(header["content_strides"]), kernels=tuple(header["kernels"]),
        channels=tuple(header["channels"]), stem_channels=header["stem_channels"],
        embed_channels=header["embed_channels"], diff_stream=bool(header["diff_stream"]),
        diff_channels=header["diff_channels"] if header["diff_stream"] else DIFF_EMBED_CHANNELS,
        ccu_block=header["ccu_block"],
    )
    try:
        config.validate()
    except ValueError as e:
        raise BitstreamError(f"corrupt .dnv: impossible architecture ({e})") from None
    if config.diff_stream and header["diff_upscale"] != DIFF_UPSCALE:
        raise BitstreamError(f"unsupported .dnv: diff stream upscale other than x{DIFF_UPSCALE}")
    if header["width"] > config.padded_width or header["height"] > config.padded_height:
        raise BitstreamError("corrupt .dnv: frame larger than its padded size")
    if config.parameter_count() > MAX_DECODER_PARAMS:
        raise BitstreamError(f"corrupt .dnv: decoder of {config.parameter_count()} parameters "
                             f"exceeds the limit of {MAX_DECODER_PARAMS}")
    return config


def tensor_shapes(header: dict) -> dict[str, list[tuple[int, ...]]]:
    """The shape of every tensor a file with this header must hold, by group, in file order:
    the decoder's weights and biases, and one embedding tensor (frames first) per stream."""
    config = config_from_header(header)
    frames = header["frame_count"]
    shapes = {"decoder": [shape for _, shape in config.tensor_shapes()],
              "content": [(frames,) + config.embed_shape]}
    if config.diff_stream:
        shapes["diff"] = [(frames,) + config.diff_embed_shape]
    return shapes


def symbol_counts(header: dict) -> dict[str, int]:
    """How many quantized values each tensor section of a file with this header holds: the
    decoder's parameters, and one embedding per frame in each stream."""
    config = config_from_header(header)
    frames = header["frame_count"]
    counts = {"decoder": config.parameter_count(),
              "content": frames * math.prod(config.embed_shape)}
    if config.diff_stream:
        counts["diff"] = frames * math.prod(config.diff_embed_shape)
    return counts
