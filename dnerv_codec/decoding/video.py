"""The decode side: a .dnv file's bytes to frames, and nothing of the encoder's.

`DecodedVideo` is one 1.x/2.x file (or one chunk of a 3.x file) turned back into its network:
unpack (format/, the only code that reads untrusted bytes; no torch there) -> price the decode
from the header (format/budget.py) -> dequantize the tensors into a decoder rebuilt from the
header -> render frames in batches (or row bands), cropped to the original size. `DecodedFile`
is a file of any version as frames, a chunk at a time. Neither imports training/, coding/ or
scaling/ (tests/test_layering.py): a decoder needs the file and the network, not the encoder.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np
import torch

from dnerv_codec.device import pick_device
from dnerv_codec.errors import BitstreamError, InputError
from dnerv_codec.format.architecture import (
    DIFF_UNIT,
    config_from_header,
    symbol_counts,
    tensor_shapes,
)
from dnerv_codec.format.budget import (
    MAX_INLINE_MACS,
    RENDER_THREAD,
    DecodeCost,
    FileCost,
    Limits,
    file_cost,
    header_cost,
    macs_per_pixel,
)
from dnerv_codec.format.budget import check as budget_check
from dnerv_codec.format.chunks import DnvReader
from dnerv_codec.format.container import DnvFile, QuantTensor, unpack
from dnerv_codec.format.meter import ReadingMeter
from dnerv_codec.format.tensorcode import StepTensor
from dnerv_codec.models.registry import build_decoder
from dnerv_codec.tasks import interpolate

RENDER_BATCH = 4  # frames per render call at most (budget.plan_render may take fewer)


class DecodedVideo:
    """A .dnv file turned back into a renderable decoder. Every check on the untrusted bytes
    happens here, before any network is built: the container's (container.unpack), the
    architecture's, and the decode budget's (format/budget.py), priced from the header alone before
    any tensor is entropy-decoded. `writer` (h264, y4m, png or None) is the kind of output the
    frames go to, whose buffers count towards the memory limit."""

    def __init__(self, data: bytes, device: str = "auto", limits: Limits = Limits(),
                 writer: str | None = None,
                 frame_range: Callable[[int], tuple[int, int]] | None = None,
                 check_header: Callable[[dict], None] | None = None,
                 meter: ReadingMeter | None = None):
        """`frame_range(frame_count) -> (start, stop)` says which frames will be rendered, so
        that their work is checked before anything is decoded (default: all of them).
        `check_header(header)` may refuse the header first (a chunk's must match its file).
        `meter` charges the entropy models the reader meets (format/meter.py); without one,
        they may take what the limit leaves after this file's priced work."""
        self.limits = limits
        self.cost: DecodeCost | None = None
        own_meter = meter is None
        meter = ReadingMeter() if own_meter else meter

        def counts_within_budget(header: dict) -> dict[str, int]:
            if check_header:
                check_header(header)
            self.cost = header_cost(header, len(data), limits, writer, max_batch=RENDER_BATCH)
            start, stop = frame_range(header["frame_count"]) if frame_range else (0, None)
            frames = header["frame_count"] if stop is None else stop - start
            self.check_work(frames)
            if own_meter:
                meter.allowance = limits.work - replace(self.cost, frames=frames).work
            return symbol_counts(header)

        dnv = unpack(data, counts_within_budget, tensor_shapes, meter)
        self.header = dnv.header
        self.config = config_from_header(dnv.header)
        self.plan = self.cost.plan
        self.width, self.height = dnv.header["width"], dnv.header["height"]
        self.frame_count = dnv.header["frame_count"]
        self.fps = Fraction(dnv.header["fps_num"], dnv.header["fps_den"])
        self.content = _embedding(dnv, "content")
        self.diff = _embedding(dnv, "diff") if self.config.diff_stream else None
        self.device = pick_device(device)
        self.decoder = build_decoder(self.config)
        try:
            load_decoder(self.decoder, dnv.groups["decoder"])
        except ValueError as e:
            raise BitstreamError(f"corrupt .dnv: {e}") from None
        self.decoder.to(self.device).eval()

    def check_work(self, frames: int) -> None:
        """BudgetError unless the memory and rendering `frames` frames fit the limits."""
        budget_check(replace(self.cost, frames=frames), self.limits)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """uint8 RGB frames start..stop-1 at the original size, rendered a few at a time.
        BudgetError first when rendering them would exceed the work limit."""
        stop = self.frame_count if stop is None else stop
        self.check_work(max(0, stop - start))
        for batch in self.batches(range(start, stop)):
            yield from batch

    def frames_at(self, positions, count: int | None = None) -> Iterator[np.ndarray]:
        """uint8 RGB frames at `positions` in the frame sequence, which may fall between
        stored frames (2.5: halfway between frames 2 and 3), rendered from embeddings
        interpolated between their neighbours' (tasks/interpolate.py). `positions` may be an
        iterator of `count` positions, read a batch at a time. BudgetError first when
        rendering them would exceed the work limit."""
        self.check_work(len(positions) if count is None else count)
        for batch in self._position_batches(positions):
            yield from self.render(batch)

    def _position_batches(self, positions) -> Iterator[np.ndarray]:
        for batch in self._batched(positions):
            batch = np.asarray(batch, dtype=np.float64)
            if batch.min() < 0 or batch.max() > self.frame_count - 1:
                raise ValueError(f"positions must lie in 0..{self.frame_count - 1}")
            yield batch

    def batches(self, indices) -> Iterator[np.ndarray]:
        """The frames at `indices` (or at fractional positions, see frames_at), rendered as
        the plan says (bounded memory: `indices` is read a batch at a time)."""
        for batch in self._batched(indices):
            yield self.render(batch)

    def _batched(self, items) -> Iterator[list]:
        items = iter(items)
        while batch := list(itertools.islice(items, self.plan.batch)):
            yield batch

    @torch.no_grad()
    def render(self, indices) -> np.ndarray:
        """The frames at `indices` as one uint8 array (N, H, W, 3); in row bands when the plan
        says so (each band's margin rendered and dropped, so its rows are the whole frame's).

        On the CPU each frame (or band) is rendered by one thread with torch's intra-op
        parallelism off, `plan.batch` of them at once: a frame's arithmetic is then the same
        at any thread count, so decoding is bit-identical on 1, 2 or 64 threads (oneDNN splits
        a convolution's reductions differently with more threads). Accelerators render the
        batch in one call."""
        idx = np.asarray(list(indices))
        idx = idx.astype(np.int64 if np.all(idx == np.round(idx)) else np.float64)
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        if self.device.type != "cpu":
            for lo, hi, keep_from, keep_to, y0 in self._bands():
                rows = (hi - lo) * self.config.padded_width * len(idx)
                render = (_interruptible if rows * macs_per_pixel(self.config) > MAX_INLINE_MACS
                          else _call)
                out[:, y0:y0 + keep_to - keep_from] = render(
                    self._render_rows, idx, lo, hi, keep_from, keep_to)
            return out

        def job(item) -> None:
            n, (lo, hi, keep_from, keep_to, y0) = item
            out[n:n + 1, y0:y0 + keep_to - keep_from] = self._render_rows(
                idx[n:n + 1], lo, hi, keep_from, keep_to)

        # As many workers as torch has threads (more only contend), never more frames in
        # flight than the plan's memory allows.
        _single_threaded_workers(job, [(n, band) for n in range(len(idx)) for band in self._bands()],
                                 min(self.plan.batch, torch.get_num_threads()))
        return out

    def _bands(self) -> Iterator[tuple[int, int, int, int, int]]:
        """(lo, hi, keep_from, keep_to, y0) for each band: padded rows lo..hi-1 are rendered and
        their rows keep_from..keep_to-1 land at output row y0."""
        height = self.config.padded_height
        if self.plan.band_rows >= height:
            yield 0, height, 0, self.height, 0
            return
        for y0, y1 in self.plan.bands(height):
            if y0 >= self.height:
                break  # only padding below: never shown
            lo = max(0, y0 - self.plan.halo_rows)
            hi = min(height, y1 + self.plan.halo_rows)
            yield lo, hi, y0 - lo, min(y1, self.height) - lo, y0

    def _render_rows(self, idx: np.ndarray, lo: int, hi: int, keep_from: int,
                     keep_to: int) -> np.ndarray:
        """Padded rows lo..hi-1 rendered from the embedding rows under them; returns rows
        keep_from..keep_to-1 of that, cropped to the original width, as uint8."""
        p = self.config.stride_product
        rows = interpolate.embedding_rows
        content = torch.from_numpy(rows(self.content, idx, lo // p, hi // p)).to(self.device)
        diff = None
        if self.diff is not None:
            q = DIFF_UNIT
            diff = torch.from_numpy(rows(self.diff, idx, lo // q, hi // q)).to(self.device)
        with torch.no_grad():
            out = self.decoder(content, diff)
        pixels = (out[..., keep_from:keep_to, : self.width] * 255).round().clamp(0, 255)
        return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class DecodedFile:
    """A .dnv file of any version as frames: the chunks that hold the frames asked for are
    read, built and rendered one after another (each a DecodedVideo), so memory holds one
    chunk at a time and a range touches only its chunks. What it costs is priced from the
    chunks' headers, and checked against `limits`, before any chunk is decoded.

    `fps_scale` K > 1 renders K - 1 in-between frames after every stored frame but the last
    (tasks/interpolate.py): (frames - 1) * K + 1 frames at K times the frame rate."""

    def __init__(self, reader: DnvReader, device: str = "auto", limits: Limits = Limits(),
                 writer: str | None = None, start: int = 0, stop: int | None = None,
                 fps_scale: int = 1):
        self.reader, self.device, self.limits, self.writer = reader, device, limits, writer
        video = reader.video
        self.width, self.height = video["width"], video["height"]
        self.frame_count = video["frame_count"]
        if not 1 <= fps_scale <= interpolate.MAX_FPS_SCALE:
            raise InputError(f"--fps-scale must be 1..{interpolate.MAX_FPS_SCALE}, got {fps_scale}")
        self.fps_scale = fps_scale
        self.fps = Fraction(video["fps_num"], video["fps_den"]) * fps_scale
        self.start, self.stop = start, self.frame_count if stop is None else stop
        self.output_frames = interpolate.output_count(self.stop - self.start, fps_scale)
        self.cost = interpolate.scaled_cost(
            self.cost_of(reader, limits, writer, self.start, self.stop), fps_scale)
        budget_check(self.cost, limits)

    @staticmethod
    def cost_of(reader: DnvReader, limits: Limits = Limits(), writer: str | None = None,
                start: int = 0, stop: int | None = None) -> DecodeCost | FileCost:
        """The cost of decoding frames start..stop-1 (all by default) of `reader`'s file."""
        return file_cost(reader, limits, writer, start, stop, max_batch=RENDER_BATCH)

    def frames(self) -> Iterator[np.ndarray]:
        """uint8 RGB frames start..stop-1 at the original size, a chunk at a time (with their
        in-betweens under fps_scale)."""
        k, last = self.fps_scale, None
        # the entropy models of all the chunks read share what the priced work leaves
        meter = ReadingMeter(self.limits.work - self.cost.work)
        for index in self.reader.chunks_for(self.start, self.stop):
            entry = self.reader.chunks[index]
            lo, hi = max(self.start, entry.first_frame), min(self.stop, entry.stop)
            f0 = entry.first_frame
            chunk = DecodedVideo(
                self.reader.chunk_bytes(index), device=self.device, limits=self.limits,
                writer=self.writer,
                frame_range=lambda count, lo=lo, hi=hi, f0=f0: (lo - f0, hi - f0),
                check_header=lambda header, index=index: self.reader.check_chunk_header(
                    index, header),
                meter=meter)
            if k == 1:
                yield from chunk.frames(lo - f0, hi - f0)
            else:
                for frame in chunk.frames_at(interpolate.positions(lo - f0, hi - f0, k),
                                             interpolate.output_count(hi - lo, k)):
                    if last is not None:
                        # In-betweens across a chunk boundary: the two frames come from
                        # different networks, whose embeddings do not mix; blend pixels.
                        yield from interpolate.blends(last, frame, k)
                        last = None
                    yield frame
                last = frame
            del chunk


def _call(fn, *args):
    return fn(*args)


def _single_threaded_workers(fn, items: list, workers: int) -> None:
    """fn(item) for every item, on up to `workers` daemon threads (named RENDER_THREAD) that
    each run torch single-threaded, while the main thread waits in 0.1 s steps: a Ctrl-C or
    SIGTERM then lands at once (Python runs signal handlers only in the main thread, between
    operations); the workers stop taking items and the one mid-layer finishes unseen."""
    pending = list(reversed(items))
    lock, failed, stop = threading.Lock(), [], threading.Event()

    def work() -> None:
        torch.set_num_threads(1)
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                item = pending.pop()
            try:
                fn(item)
            except BaseException as e:  # handed to the caller below
                failed.append(e)
                stop.set()

    saved = torch.get_num_threads()
    threads = [threading.Thread(target=work, name=RENDER_THREAD, daemon=True)
               for _ in range(max(1, min(workers, len(items))))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    finally:
        stop.set()
        torch.set_num_threads(saved)  # a worker's setting reaches the process-wide default
    if failed:
        raise failed[0]


def _interruptible(fn, *args):
    """fn(*args) under no_grad in a daemon worker thread, the main thread waiting in 0.1 s
    steps: Python runs signal handlers only in the main thread and only between operations, so
    a Ctrl-C or SIGTERM would otherwise wait for the whole call (tens of seconds for a huge
    layer). On a signal the main thread raises at once and unwinds (removing temporaries); the
    abandoned worker finishes its operation unseen, and does not keep the process alive."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    result, done = [], threading.Event()

    def work():
        try:
            with torch.no_grad():
                result.append((True, fn(*args)))
        except BaseException as e:  # handed to the caller below
            result.append((False, e))
        finally:
            done.set()

    threading.Thread(target=work, name=RENDER_THREAD, daemon=True).start()
    while not done.wait(0.1):
        pass
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _embedding(dnv: DnvFile, group: str) -> np.ndarray:
    """The group's one embedding tensor (unpack checked its shape against the header)."""
    return np.ascontiguousarray(dnv.groups[group][0].dequantize(), dtype=np.float32)


def load_decoder(decoder: torch.nn.Module,
                 tensors: list[QuantTensor] | list[StepTensor]) -> None:
    """Dequantize `tensors` into `decoder`, checking count and shapes against the architecture."""
    state = decoder.state_dict()
    if len(tensors) != len(state):
        raise ValueError(f"expected {len(state)} decoder tensors, got {len(tensors)}")
    new_state = {}
    for (name, current), qt in zip(state.items(), tensors):
        if tuple(current.shape) != tuple(qt.shape):
            raise ValueError(f"tensor {name}: shape {tuple(qt.shape)} does not match the "
                             f"architecture's {tuple(current.shape)}")
        new_state[name] = torch.from_numpy(qt.dequantize().astype(np.float32))
    decoder.load_state_dict(new_state)
