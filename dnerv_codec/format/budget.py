"""What decoding a file will cost, from its header alone, before anything is allocated or run.

A .dnv header is a few hundred bytes that can describe any network and any frame size, so the
decoder prices the work first and plans how to render it:

- **memory**: the file's bytes, the entropy-decoding peak of its tensors (`UNPACK_BYTES_PER_VALUE`
  a value), then the decoder's float32 weights and every frame's float32 embeddings, plus the
  activations of one render call (a batch of frames, or a band of rows of one frame), plus what
  the video writer buffers. Activations follow the network layer by layer
  (`activation_elements_per_pixel`): each convolution's input and output, the channel-padded
  copies oneDNN makes of both (measured here: a 13-channel input is reordered to 16), the
  PixelShuffle and GELU copies, the CCU's six live maps, and the head's.
- **work**: multiply-accumulates (MACs) per frame times the frames asked for, plus what
  costs time without computing: writing each frame (`FRAME_MACS`, by output kind), building
  each chunk's decoder (`CHUNK_MACS`, `PARAMETER_MACS` a weight) and entropy-decoding each
  value (`VALUE_MACS`), each charged as the MACs this machine renders in the same time
  (benchmarks/decode_overhead.py measures them), so that the work limit bounds time. What the
  headers cannot count, the entropy models the values are split into, the reader meters as it
  meets them, against what the limit leaves (format/meter.py).

Frames whose activations do not fit the memory limit are rendered in **row bands**. The decoder
is convolutional, so a band of output rows needs only the embedding rows under it plus a margin
of the network's receptive field (`halo_rows`); the margin's rows are rendered and thrown
away, and the rows kept are the ones the whole frame would give (up to the last bit of float
rounding: oneDNN may pick other kernels for other sizes). The plan depends only on the header
and the memory limit, so a file renders the same way every time.

Everything here is arithmetic on the torch-free `ModelConfig`, whose family states its own layers
(`cost_stages`) and band geometry (`band_unit`, `halo_rows`): this module prices them and knows
no model. `dnerv info` prints the price and the reader of untrusted files uses it without
importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dnerv_codec.errors import BudgetError
from dnerv_codec.format.architecture import (
    ModelConfig,
    config_from_header,
    symbol_counts,
    tensor_shapes,
)
from dnerv_codec.format.container import FRAME_OVERHEAD
from dnerv_codec.format.meter import SEGMENT_MACS
from dnerv_codec.text import bytes_text, figure_up, format_seconds

GIB = 1 << 30
DEFAULT_MAX_MEMORY = 4 * GIB
"""Peak decode memory allowed by default: what a laptop can spare."""
DEFAULT_MAX_WORK = 10**15
"""MACs allowed by default for one decode: hours on a laptop's CPU (docs/robustness.md gives
the figures). Every file the demo and the benchmarks make needs less than a thousandth of it; a
long video at a high rate can need more, and the encoder says so when it writes one."""
MAX_INLINE_MACS = 2 * 10**9
"""On an accelerator, render calls of more MACs than this run in a worker thread (on the CPU
every frame is rendered by a worker) while the main thread waits in short steps, so that Ctrl-C and SIGTERM, which Python handles
only in the main thread between operations, take effect within about a second however large a
single layer is (decoding/video.DecodedVideo)."""
RENDER_THREAD = "dnerv-render"
"""The name of that worker thread: the CLI exits without waiting for one left running."""
DEFAULT_BATCH = 4
"""Frames per render call when they fit."""

# What a decode spends beyond its network's MACs, charged in MACs at RENDER_MACS_PER_SECOND.
# `python benchmarks/decode_overhead.py` on 2 cores (AMD EPYC, three runs on two machines):
# 2.4e10 to 3.5e10 MACs a second rendering 320x180 frames at c2 = 24; each overhead below is
# the largest of the runs' times-the-rate, rounded up (docs/robustness.md has the table), so
# that the charge holds on either machine; the seconds `info` prints use the faster rate. A file
# of ten million 2x2 frames prices 6e4 MACs a frame but writes fewer than a thousand a second.
RENDER_MACS_PER_SECOND = 35 * 10**9
FRAME_MACS = {"none": 4 * 10**7, "y4m": 6 * 10**7, "png": 6 * 10**7, "h264": 5 * 10**7}
"""A frame rendered and written, by output kind ("none": rendered in memory)."""
CHUNK_MACS = 2 * 10**8
"""A chunk's decoder built and its tensors read, beyond its weights and values."""
PARAMETER_MACS = 400
"""A decoder weight allocated, initialised and loaded."""
VALUE_MACS = 700
"""A coded value entropy-decoded (weights and embeddings)."""

UNPACK_BYTES_PER_VALUE = 16
"""Bytes per coded value charged for unpacking a file. The reader holds int32 symbols, and
sums temporal prediction a block of frames at a time into an int32 copy; the decoder then
dequantizes the embeddings to float32: 8.4 bytes a value measured at the peak (tracemalloc,
a 4.7-million-value file with temporal prediction; tests/test_budget.py holds the peak under
this figure), so the charge keeps room for the interpreter's own copies."""
F32 = 4
CHANNEL_BLOCK = 16  # oneDNN pads channels to this (AVX-512 blocked layouts)


def _padded(c: int) -> int:
    return -(-c // CHANNEL_BLOCK) * CHANNEL_BLOCK


@dataclass(frozen=True)
class Limits:
    """What a decode may cost: peak bytes and total MACs."""

    memory: int = DEFAULT_MAX_MEMORY
    work: int = DEFAULT_MAX_WORK


UNLIMITED = Limits(memory=1 << 62, work=1 << 62)
"""For the encoder's self-check: it decodes a file it has just made itself."""


@dataclass(frozen=True)
class RenderPlan:
    """How frames are rendered: `batch` frames a call, each in bands of `band_rows` padded rows
    (the whole padded height when unbanded) with `halo_rows` of margin either side."""

    batch: int
    band_rows: int
    halo_rows: int

    def bands(self, padded_height: int):
        """(first row, end row) of each band, top to bottom."""
        for y0 in range(0, padded_height, self.band_rows):
            yield y0, min(padded_height, y0 + self.band_rows)


@dataclass(frozen=True)
class DecodeCost:
    """The figures `dnerv info` prints and the decoder checks against `Limits`."""

    file_bytes: int
    coded_values: int            # decoder parameters + all embedding values
    weights_bytes: int
    embedding_bytes: int
    activation_bytes: int        # one render call under `plan`
    writer_bytes: int
    macs_per_frame: int
    frames: int                  # frames to render
    plan: RenderPlan
    frame_overhead: int = 0      # MACs' worth of time a frame costs beyond them (FRAME_MACS)
    fixed_overhead: int = 0      # the same for building the decoder and reading the tensors
    tensors: int = 0             # tensors in the file, each priced one entropy model

    @property
    def unpack_bytes(self) -> int:
        return self.file_bytes + UNPACK_BYTES_PER_VALUE * self.coded_values

    @property
    def render_bytes(self) -> int:
        return (self.file_bytes + self.weights_bytes + self.embedding_bytes
                + self.activation_bytes + self.writer_bytes)

    @property
    def peak_bytes(self) -> int:
        return max(self.unpack_bytes, self.render_bytes)

    @property
    def work(self) -> int:
        """The MACs of rendering the frames, plus the time the rest takes, in MACs."""
        return (self.macs_per_frame + self.frame_overhead) * self.frames + self.fixed_overhead

    @property
    def overhead(self) -> int:
        return self.frame_overhead * self.frames + self.fixed_overhead

    @property
    def reading_work(self) -> int:
        """What reading the tensors costs (`dnerv info`: entropy decoding and checking, no
        rendering), in MACs' worth of time: an upper bound, as a constant tensor needs no ANS."""
        return reading_macs(self.coded_values, self.tensors)

    def as_dict(self) -> dict:
        return {"peak_memory_bytes": self.peak_bytes, "unpack_bytes": self.unpack_bytes,
                "reading_work_macs": self.reading_work,
                "reading_seconds_estimate": self.reading_work / RENDER_MACS_PER_SECOND,
                "render_bytes": self.render_bytes, "weights_bytes": self.weights_bytes,
                "embedding_bytes": self.embedding_bytes,
                "activation_bytes": self.activation_bytes, "writer_bytes": self.writer_bytes,
                "macs_per_frame": self.macs_per_frame, "frames": self.frames, "work_macs": self.work,
                "overhead_macs": self.overhead,
                "seconds_estimate": self.work / RENDER_MACS_PER_SECOND,
                "render_batch": self.plan.batch, "band_rows": self.plan.band_rows,
                "halo_rows": self.plan.halo_rows}


# ----------------------------------------------------------------------------- the network's cost


def macs_per_pixel(config: ModelConfig) -> float:
    """Multiply-accumulates per padded pixel of one frame."""
    return sum(st.c_in * st.c_out * st.kernel**2 * st.cells_in for st in config.cost_stages())


def activation_elements_per_pixel(config: ModelConfig) -> float:
    """Peak live float32 elements per padded pixel while one frame is rendered: the largest of
    any convolution's (input, output, oneDNN's channel-padded copies of both, what else is
    alive beside it) and any block's (input, PixelShuffle output, GELU output)."""
    peak = 0.0
    for st in config.cost_stages():
        conv = (st.c_in * st.cells_in + st.c_out * st.cells_out + _padded(st.c_in) * st.cells_in
                + _padded(st.c_out) * st.cells_out + st.extra)
        shuffle_gelu = st.c_in * st.cells_in + 2 * st.c_out * st.cells_out + st.extra
        peak = max(peak, conv, shuffle_gelu)
    # After the head: the float frame, its scaled copy, and the uint8 result.
    return max(peak, 3 * 2 + 1)


# ----------------------------------------------------------------------------- writers


X264_BYTES_PER_PIXEL = 160
"""libx264's buffers at preset medium (lookahead, references, frame threads): measured with
random 1920x1080 frames on 2 cores, 315 MiB over 70 frames, 159 bytes a pixel. More cores give
it more threads and more buffers."""


def writer_bytes(kind: str, width: int, height: int) -> int:
    """What a video writer holds besides the frame it is given: libx264 its lookahead and
    reference frames, Y4M and PNG one frame in their own formats."""
    pixels = width * height
    if kind == "h264":
        return X264_BYTES_PER_PIXEL * pixels
    if kind in ("y4m", "png"):
        return 10 * pixels  # the RGB frame, PyAV's copy of it, its YUV 4:2:0 or PNG form
    return 0


# ----------------------------------------------------------------------------- planning


def plan_render(config: ModelConfig, limits: Limits, fixed_bytes: int, frames: int,
                max_batch: int = DEFAULT_BATCH) -> RenderPlan:
    """The largest batch (up to `max_batch`) of whole frames whose activations fit the memory
    left after `fixed_bytes`; else one frame in the tallest bands that do (the smallest band
    when none does: the caller's check then refuses the file)."""
    h, w = config.padded_height, config.padded_width
    act = activation_elements_per_pixel(config) * F32
    room = limits.memory - fixed_bytes
    for batch in range(min(max_batch, max(frames, 1)), 0, -1):
        if batch * h * w * act <= room:
            return RenderPlan(batch, h, 0)
    unit, halo = config.band_unit(), config.halo_rows()
    rows = h
    while rows > unit and min(h, rows + 2 * halo) * w * act > room:
        rows = max(unit, (rows // 2) // unit * unit)
    return RenderPlan(1, rows, halo if rows < h else 0)


def reading_macs(coded_values: int, tensors: int) -> int:
    """A chunk read: its fixed cost, each value entropy-decoded and one entropy model a tensor
    (what `info` does; a decode builds the decoder's weights on top). Every writer codes a tensor
    under one model; more than one a tensor the reader meters as it meets them
    (format/meter.py)."""
    return CHUNK_MACS + VALUE_MACS * coded_values + SEGMENT_MACS * tensors


def decode_cost(config: ModelConfig, header: dict, file_bytes: int, coded_values: int,
                limits: Limits = Limits(), frames: int | None = None,
                writer: str | None = None, max_batch: int = DEFAULT_BATCH) -> DecodeCost:
    """Price decoding `frames` frames (all by default) of a file with this header and config,
    rendered to a writer of kind `writer` (h264, y4m, png; None: no writer). The render plan
    depends on the header and the memory limit only, never on `frames`' count beyond the batch,
    so that the same file renders the same way for every range asked for."""
    frames = header["frame_count"] if frames is None else frames
    embed_values = coded_values - config.parameter_count()
    weights = F32 * config.parameter_count()
    embeddings = F32 * embed_values
    writes = writer_bytes(writer, header["width"], header["height"]) if writer else 0
    fixed = file_bytes + weights + embeddings + writes
    plan = plan_render(config, limits, fixed, frames, max_batch)
    rendered_rows = min(config.padded_height, plan.band_rows + 2 * plan.halo_rows)
    activations = math.ceil(activation_elements_per_pixel(config) * F32 * plan.batch
                            * rendered_rows * config.padded_width)
    macs = math.ceil(macs_per_pixel(config) * config.padded_height * config.padded_width)
    if plan.halo_rows:  # the margins are rendered too
        bands = -(-config.padded_height // plan.band_rows)
        macs += math.ceil(macs_per_pixel(config) * bands * 2 * plan.halo_rows * config.padded_width)
    tensors = sum(len(shapes) for shapes in tensor_shapes(header).values())
    fixed = reading_macs(coded_values, tensors) + PARAMETER_MACS * config.parameter_count()
    return DecodeCost(file_bytes, coded_values, weights, embeddings, activations, writes, macs,
                      frames, plan, FRAME_MACS[writer or "none"], fixed, tensors)


def header_cost(header: dict, file_bytes: int, limits: Limits = Limits(),
                writer: str | None = None, max_batch: int = DEFAULT_BATCH) -> DecodeCost:
    """decode_cost() of all the frames of a file with this (validated) header."""
    return decode_cost(config_from_header(header), header, file_bytes,
                       sum(symbol_counts(header).values()), limits, writer=writer,
                       max_batch=max_batch)


@dataclass(frozen=True)
class FileCost:
    """What decoding frames of a chunked file costs: its chunks are built and rendered one
    after another, so the peak is the largest chunk's (plus the index, held throughout) and
    the work is the sum. `as_dict` has DecodeCost's keys, the memory figures being those of
    the chunk with the highest peak."""

    chunks: tuple[DecodeCost, ...]  # the chunks the frames asked for are in
    index_bytes: int

    @property
    def _largest(self) -> DecodeCost:
        return max(self.chunks, key=lambda c: c.peak_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.index_bytes + self._largest.peak_bytes

    @property
    def work(self) -> int:
        return sum(c.work for c in self.chunks)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.chunks)

    @property
    def overhead(self) -> int:
        return sum(c.overhead for c in self.chunks)

    @property
    def macs_per_frame(self) -> int:
        return max(c.macs_per_frame for c in self.chunks)

    @property
    def plan(self) -> RenderPlan:
        return self._largest.plan

    @property
    def unpack_bytes(self) -> int:
        """Reading the tensors of the chunk that holds most, with the index held."""
        return self.index_bytes + max(c.unpack_bytes for c in self.chunks)

    @property
    def reading_work(self) -> int:
        """Reading every chunk's tensors, one after another."""
        return sum(c.reading_work for c in self.chunks)

    def as_dict(self) -> dict:
        return {**self._largest.as_dict(), "peak_memory_bytes": self.peak_bytes,
                "reading_work_macs": self.reading_work,
                "reading_seconds_estimate": self.reading_work / RENDER_MACS_PER_SECOND,
                "frames": self.frames, "work_macs": self.work,
                "overhead_macs": self.overhead,
                "seconds_estimate": self.work / RENDER_MACS_PER_SECOND,
                "macs_per_frame": self.macs_per_frame, "chunks": len(self.chunks)}


def file_cost(reader, limits: Limits = Limits(), writer: str | None = None, start: int = 0,
              stop: int | None = None, max_batch: int = DEFAULT_BATCH) -> DecodeCost | FileCost:
    """The cost of decoding frames start..stop-1 (all by default) of the file a
    chunks.DnvReader reads, priced from the HEADs of the chunks that hold them (read alone,
    before any chunk is): a DecodeCost for a 2.x file, a FileCost for a chunked one."""
    stop = reader.video["frame_count"] if stop is None else stop
    costs = []
    for k in reader.chunks_for(start, stop):
        entry, header = reader.chunks[k], reader.chunk_head(k)
        frames = min(stop, entry.stop) - max(start, entry.first_frame)
        size = entry.length - (FRAME_OVERHEAD if reader.chunked else 0)
        cost = header_cost(header, size, limits, writer, max_batch=max_batch)
        costs.append(replace(cost, frames=frames))
    if not reader.chunked:
        return costs[0]
    return FileCost(tuple(costs), reader.index_bytes)


def check(cost: DecodeCost | FileCost, limits: Limits) -> None:
    """BudgetError, naming the figure and the limit, unless `cost` fits `limits`."""
    if cost.peak_bytes > limits.memory:
        raise BudgetError(
            f"decoding needs about {bytes_text(cost.peak_bytes, up=True)} of memory (limit {bytes_text(limits.memory)}; "
            f"raise it with --max-memory)")
    if cost.work > limits.work:
        raise BudgetError(
            f"decoding {cost.frames} frames needs {figure_up(cost.work)} multiply-accumulates "
            f"({cost.macs_per_frame:.3g} a frame{_overhead_text(cost)}; limit {limits.work:.3g}; "
            f"raise it with --max-work)")


def _overhead_text(cost: DecodeCost | FileCost) -> str:
    """The share of the work that is not the network's MACs, where it counts."""
    if cost.overhead <= 0.1 * cost.work:
        return ""
    return f", and the time of writing frames and reading tensors: {cost.overhead:.3g}"


def check_reading(cost: DecodeCost | FileCost, limits: Limits) -> None:
    """BudgetError unless reading the file's tensors (what `dnerv info` does, without rendering
    anything) fits the memory limit and the work limit."""
    if cost.unpack_bytes > limits.memory:
        raise BudgetError(
            f"reading the file's tensors needs about {bytes_text(cost.unpack_bytes, up=True)} of memory "
            f"(limit {bytes_text(limits.memory)}; raise it with --max-memory)")
    if cost.reading_work > limits.work:
        raise BudgetError(
            f"reading the file's tensors needs {figure_up(cost.reading_work)} multiply-accumulates' "
            f"worth of time (about {format_seconds(cost.reading_work / RENDER_MACS_PER_SECOND)}"
            f" here; limit {limits.work:.3g}; raise it with --max-work)")
