"""Forged .dnv files (format 2.0): CRC-valid, legal headers, every tensor a constant.

A constant tensor needs no ANS data (its one symbol is certain), so a file of a few hundred
bytes can describe any frame size, decoder and frame count the format allows: exactly what a
hostile file does to make a decoder spend memory and time. The tensor records are written by
hand (no array of the declared size is ever made), with the shapes a real decoder of that
architecture has (taken from a network built on torch's meta device: no memory).
"""

from __future__ import annotations

import struct

import torch

from dnerv_codec.format.architecture import ModelConfig, make_config, with_width
from dnerv_codec.format.container import FORMAT_VERSION, MAGIC, _frame, _pack_head, read_head
from dnerv_codec.codec import header_for
from dnerv_codec.format import entropy
from dnerv_codec.format.chunks import pack_chunked
from dnerv_codec.format.entropy import Histogram
from dnerv_codec.format.entropy_models import GEOMETRIC, HISTOGRAM, MAX_GEOMETRIC_REACH, Model
from dnerv_codec.format.tensorcode import PREDICT_TEMPORAL
from dnerv_codec.models.dnerv import Decoder

import numpy as np


class _Shape:
    """Stands in for io.Video in codec.header_for: only the size and the rate are read."""

    def __init__(self, width, height, frames, fps):
        from fractions import Fraction
        self.width, self.height, self.frame_count, self.fps = width, height, frames, Fraction(fps)


def random_file(config, frames=3, seed=0, gain: float = 1.0) -> bytes:
    """A .dnv of a randomly initialised decoder of `config`'s family (its weights times `gain`:
    a narrow random decoder renders almost one grey) and random embeddings (8-bit everything)."""
    from dnerv_codec.codec import build_file
    from dnerv_codec.coding.compress import decoder_arrays
    from dnerv_codec.coding.ratecontrol import Setting
    from dnerv_codec.models.registry import build_decoder
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    video = _Shape(config.padded_width - 5, config.padded_height - 7, frames, 25)
    content = rng.normal(0, 2, (frames,) + config.embed_shape).astype(np.float32)
    diff = (rng.normal(0, 2, (frames,) + config.diff_embed_shape).astype(np.float32)
            if config.diff_stream else None)
    decoder = build_decoder(config)
    with torch.no_grad():
        for p in decoder.parameters():
            p.mul_(gain)
    return build_file(header_for(video, config), decoder_arrays(decoder), content, diff,
                      Setting(prune=0.0, weight_bits=8, embed_bits=8))


def forged(config: ModelConfig, width: int, height: int, frames: int, fps=25,
           ancillary: int = 0, temporal: bool = False,
           diff_shape: tuple[int, ...] | None = None, content: bytes | None = None) -> bytes:
    """A valid .dnv whose decoder weights and embeddings are all zero (a grey video), followed
    by `ancillary` empty ancillary sections; with `temporal`, the embeddings are coded with
    temporal prediction (the reader then sums them along the frames). `diff_shape` splices in
    a diff embedding of another shape (the same number of values: a file only decode's shape
    check can refuse); `content` is an ECON payload to use instead of the constant one."""
    header = header_for(_Shape(width, height, frames, fps), config)
    with torch.device("meta"):
        decoder_shapes = [tuple(t.shape) for t in Decoder(config).state_dict().values()]
    groups = [("WDEC", decoder_shapes), ("ECON", [(frames,) + config.embed_shape])]
    if config.diff_stream:
        groups.append(("EDIF", [diff_shape or (frames,) + config.diff_embed_shape]))
    preamble = MAGIC + bytes(FORMAT_VERSION)
    out = [preamble, _frame("HEAD", _pack_head(header), covered_prefix=preamble)]
    out += [_frame(tag, content if tag == "ECON" and content is not None
                   else _constant_group(shapes, temporal and tag != "WDEC"))
            for tag, shapes in groups]
    out += [_frame("anCL", b"")] * ancillary
    return b"".join(out)


def _constant_group(shapes, temporal: bool = False) -> bytes:
    """A format 2.0 section of all-zero tensors: each a record (one step, temporal prediction
    or none, one segment) and a one-symbol histogram, which needs no ANS words."""
    model = bytes([HISTOGRAM]) + Histogram(lo=0, counts=np.array([1], np.uint32)).to_bytes()
    predict = PREDICT_TEMPORAL if temporal else 0
    records = b"".join(struct.pack(f"<B{len(s)}Ib", len(s), *s, -1) + struct.pack("<f", 1.0)
                       + struct.pack("<Bb", predict, -1) + model + struct.pack("<I", 0)
                       for s in shapes)
    return struct.pack("<I", len(shapes)) + records


def model_flood(frames: int, chunks: int = 1) -> bytes:
    """A video of `chunks` chunks of `frames` 2x2 frames whose content embeddings are coded one
    segment per frame, each under its own geometric model over +-4,096 (a ratio no other
    segment uses, so no table is cached): a few bytes a segment, each costing its reader a
    table of 8,193 entries. Priced from the headers, it is cheap; the reader's meter
    (format/meter.py) is what bounds it."""
    config = make_config(2, 2, 4, diff_stream=False)
    per_frame = int(np.prod(config.embed_shape))
    segments = []
    for f in range(frames):
        model = Model(GEOMETRIC, lo=-MAX_GEOMETRIC_REACH, n=2 * MAX_GEOMETRIC_REACH + 1,
                      ratio=60000 - f)
        words = entropy.encode_with(np.zeros(per_frame, np.int32), model.histogram())
        segments.append(model.to_bytes() + struct.pack("<I", len(words) // 4) + words)
    shape = (frames,) + tuple(config.embed_shape)
    econ = (struct.pack("<I", 1) + struct.pack(f"<B{len(shape)}Ib", len(shape), *shape, -1)
            + struct.pack("<f", 1.0) + struct.pack("<Bb", 0, 0) + b"".join(segments))
    one = forged(config, 2, 2, frames, content=econ)
    if chunks == 1:
        return one
    return pack_chunked(dict(read_head(one), frame_count=frames * chunks), [(one, None)] * chunks)


def huge_frame(side: int = 8192) -> bytes:
    """side x side frames, the narrowest decoder: memory from the header."""
    return forged(make_config(side, side, 4), side, side, 1)


def huge_decoder(side: int = 256, frames: int = 1, width: int = 450) -> bytes:
    """A decoder of 50 million parameters on small frames: work from the header."""
    config = with_width(make_config(side, side, 4), width)
    return forged(config, side, side, frames)
