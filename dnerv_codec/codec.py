"""The pipeline in order: `encode(video, options) -> bytes` and `DecodedVideo(bytes)`.

encode: plan a width from the budget -> overfit -> fit a prune/bit-depth setting on the real
file size -> prune and fine-tune -> quantize + entropy-code -> pack -> decode the packed bytes
again (the self-check) and measure the real rate and quality.
decode: unpack (the only code that reads untrusted bytes; no torch there) -> validate the
architecture -> rebuild the decoder -> render frames in batches, cropped to the original size.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np
import torch

from dnerv_codec import __version__
from dnerv_codec.coding import ratecontrol
from dnerv_codec.coding.compress import (
    decoder_arrays,
    learned_step_quantize,
    load_decoder,
    magnitude_masks,
    prune_arrays,
    step_quantize_decoder,
    step_quantize_embeddings,
)
from dnerv_codec.coding.ratecontrol import Setting
from dnerv_codec.errors import BitstreamError, DnervError, InputError, Interrupted

# MAX_DECODER_PARAMS and config_from_header live in format/architecture.py (torch-free, for the file
# readers); they stay importable from here.
from dnerv_codec.format.architecture import (  # noqa: F401
    MAX_DECODER_PARAMS,
    config_from_header,
    header_fields,
    symbol_counts,
)
from dnerv_codec.format.budget import (
    DIFF_UNIT,
    MAX_INLINE_MACS,
    RENDER_THREAD,
    UNLIMITED,
    DecodeCost,
    Limits,
    header_cost,
    macs_per_pixel,
)
from dnerv_codec.format.budget import check as budget_check
from dnerv_codec.format.container import DnvFile, describe, pack, unpack
from dnerv_codec.io import Video
from dnerv_codec.metrics import QualityReport, psnr_rgb
from dnerv_codec.metrics import bpp as bits_per_pixel
from dnerv_codec.models.dnerv import (
    Decoder,
    DNeRV,
    ModelConfig,
)
from dnerv_codec.training import checkpoint
from dnerv_codec.training.loop import (
    LEARNING_RATE,
    FrameSource,
    Progress,
    RateTerm,
    compute_embeddings,
    pick_device,
    train,
)

# The setting search compares decoded PSNR on this many evenly spaced frames.
QUALITY_SAMPLE_FRAMES = 8
RENDER_BATCH = 4  # frames per render call at most (budget.plan_render may take fewer)


@dataclass
class EncodeOptions:
    bpp: float = 0.05
    preset: str = "medium"
    epochs: int | None = None       # overrides the preset
    device: str = "auto"
    seed: int = 0
    diff_stream: bool = True         # False: the HNeRV ablation
    lr: float = LEARNING_RATE        # the paper's 5e-4; short runs converge faster with more
    min_prune: float = 0.0           # prune at least this fraction of decoder weights
    checkpoint: str | None = None    # save the training state here (the caller removes it
                                     # once the result is safely stored)
    checkpoint_every: int = 1        # epochs between checkpoint saves
    resume: bool = False             # continue from `checkpoint` instead of starting afresh
    learned_steps: bool = True       # rate-aware training with learned quantization steps;
                                     # False: plain training, bit-depth search and pruning
    embed_channels: int | None = None  # content embedding channels; None: rate control picks


@dataclass
class EncodeResult:
    data: bytes
    stats: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- header <-> config


def header_for(video: Video, config: ModelConfig) -> dict:
    """The HEAD fields of a file: the video's own, then the architecture's
    (architecture.header_fields, the inverse of config_from_header)."""
    return {"width": video.width, "height": video.height, "frame_count": video.frame_count,
            "fps_num": video.fps.numerator, "fps_den": video.fps.denominator,
            **header_fields(config)}


# ----------------------------------------------------------------------------- encode


def build_file(header, arrays, content, diff, setting: Setting, steps=None) -> bytes:
    """A .dnv file of a trained model's tensors under one compression setting (public: the
    benchmarks pack models at fixed settings with it). `steps`: the learned step of each
    decoder tensor, used (times setting.step_scale) when the setting has a step scale."""
    pruned = prune_arrays(arrays, setting.prune)
    if setting.step_scale > 0:
        decoder = learned_step_quantize(pruned, steps, setting.step_scale)
    else:
        decoder = step_quantize_decoder(pruned, setting.weight_bits)
    groups = {
        "decoder": decoder,
        "content": [step_quantize_embeddings(content, setting.embed_bits)],
    }
    if diff is not None:
        groups["diff"] = [step_quantize_embeddings(diff, setting.embed_bits)]
    return pack(DnvFile(header=header, groups=groups))


class _Candidate:
    """The trained model's tensors, packed on demand under any compression Setting: what the
    rate search measures (real file sizes, decoded PSNR on sampled frames)."""

    def __init__(self, video: Video, config: ModelConfig, device: str):
        self.video, self.device = video, device
        self.header = header_for(video, config)
        n = video.frame_count
        spread = np.linspace(0, n - 1, min(n, QUALITY_SAMPLE_FRAMES)).round().astype(int)
        self.sample = np.unique(spread)
        self.arrays, self.content, self.diff, self.steps = None, None, None, None

    def update(self, model: DNeRV, source: FrameSource) -> None:
        self.arrays = decoder_arrays(model.decoder)
        self.steps = model.steps().detach().cpu().numpy()
        self.content, self.diff = compute_embeddings(model, source)

    def build(self, setting: Setting) -> bytes:
        return build_file(self.header, self.arrays, self.content, self.diff, setting, self.steps)

    def size_of(self, setting: Setting) -> int:
        return len(self.build(setting))

    def quality_of(self, setting: Setting) -> float:
        decoded = DecodedVideo(self.build(setting), device=self.device, limits=UNLIMITED)
        frames = np.concatenate(list(decoded.batches(self.sample)))
        return psnr_rgb(self.video.frames[self.sample], frames)["total"]


class _Checkpoints:
    """The run's checkpoint file, when one was asked for: builds the `save` callbacks that
    train() calls, and remembers whether a usable checkpoint exists for the message on Ctrl-C."""

    def __init__(self, options: EncodeOptions, fingerprint: dict):
        self.path, self.fingerprint = options.checkpoint, fingerprint
        self.exists = options.resume  # a resumed run's checkpoint is usable until replaced

    def saver(self, stage: str, **extra) -> Callable | None:
        if not self.path:
            return None

        def save(snapshot) -> None:
            checkpoint.save(self.path, checkpoint.Checkpoint(
                self.fingerprint, stage, snapshot, environment=checkpoint.environment(), **extra))
            self.exists = True
        return save


def _fingerprint(video: Video, options: EncodeOptions, epochs: int, device: torch.device) -> dict:
    """Everything a checkpoint's training state depends on: the frames themselves and every
    option that changes the steps taken."""
    return {"input": hashlib.sha256(video.frames.data).hexdigest(),
            "size": f"{video.width}x{video.height}x{video.frame_count}", "fps": str(video.fps),
            "bpp": options.bpp, "epochs": epochs, "lr": options.lr, "min_prune": options.min_prune,
            "seed": options.seed, "diff_stream": options.diff_stream, "device": device.type,
            "learned_steps": options.learned_steps, "embed_channels": options.embed_channels,
            "dnerv": __version__}


def encode(video: Video, options: EncodeOptions,
           progress: Callable[[Progress], None] | None = None,
           log: Callable[[str], None] = lambda _: None) -> EncodeResult:
    """Fit, compress and pack `video`; decode the result and report real rate and quality.

    Ctrl-C raises errors.Interrupted, after saving a checkpoint when one was asked for."""
    t0 = time.perf_counter()
    h, w, n = video.height, video.width, video.frame_count
    target = ratecontrol.target_bytes(options.bpp, w, h, n)
    config = ratecontrol.plan(h, w, n, options.bpp, options.diff_stream, options.learned_steps,
                              options.embed_channels)
    device = pick_device(options.device)
    epochs = ratecontrol.epochs_for(options.preset, options.epochs)
    log(f"model: {'DNeRV' if config.diff_stream else 'HNeRV (no diff stream)'}, "
        f"c2={config.stem_channels}, {_embedding_text(config)}, "
        f"strides {'x'.join(map(str, config.strides))}, "
        f"{config.parameter_count() / 1e6:.3f}M decoder params, padded "
        f"{config.padded_width}x{config.padded_height}; {epochs} epochs on {device.type}")

    torch.manual_seed(options.seed)
    model = DNeRV(config)
    checkpoints = _Checkpoints(options, _fingerprint(video, options, epochs, device))
    resumed = _resume(options, checkpoints.fingerprint, model, log) if options.resume else None
    source = FrameSource(video.frames, config.padded_height, config.padded_width, device)
    candidate = _Candidate(video, config, options.device)
    try:
        setting, train_stats, finetune = _train_and_fit(
            model, source, candidate, epochs, target, options, checkpoints, resumed, progress, log)
    except KeyboardInterrupt as e:
        where = e.where if isinstance(e, Interrupted) else "after training"
        raise Interrupted(where, options.checkpoint if checkpoints.exists else None) from None
    data = candidate.build(setting)
    encode_seconds = time.perf_counter() - t0
    quality, decode_seconds = _self_check(data, video, options.device)
    stats = {
        "frames": n, "width": w, "height": h, "fps": f"{video.fps.numerator}/{video.fps.denominator}",
        "target_bpp": options.bpp, "bytes": len(data),
        "bpp": bits_per_pixel(len(data), w, h, n),
        "kbps": len(data) * 8 / 1000 / (n / video.fps),
        **quality,
        "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
        "decode_fps": n / decode_seconds if decode_seconds > 0 else math.inf,
        "device": device.type, "epochs": epochs, "finetune_epochs": finetune,
        **train_stats,
        "model": {"name": "DNeRV" if config.diff_stream else "HNeRV",
                  "decoder_params": config.parameter_count(),
                  "stem_channels": config.stem_channels, "strides": list(config.strides),
                  "embed_channels": config.embed_channels,
                  "diff_channels": config.diff_channels if config.diff_stream else 0,
                  "padded_size": [config.padded_width, config.padded_height]},
        "compression": asdict(setting),
        "sections": {s["tag"]: s["length"] for s in describe(data)["sections"]},
        # what `dnerv decode -o x.mp4` of the whole file costs under the default limits
        "decode_cost": header_cost(candidate.header, len(data), writer="h264").as_dict(),
    }
    return EncodeResult(data, stats)


def _embedding_text(config: ModelConfig) -> str:
    if config.diff_stream:
        return f"embeddings of {config.embed_channels} + {config.diff_channels} channels"
    return f"{config.embed_channels}-channel embeddings"


def _resume(options: EncodeOptions, fingerprint: dict, model: DNeRV, log) -> checkpoint.Checkpoint:
    if not options.checkpoint:
        raise InputError("resuming needs the path of a checkpoint")
    ck = checkpoint.load(options.checkpoint)
    checkpoint.check_resumable(options.checkpoint, ck, fingerprint, model)
    now = checkpoint.environment()
    if ck.environment != now:
        log(f"note: the checkpoint was made with {ck.environment}, this run has {now}: the "
            f"result may differ in its last bits from an uninterrupted run")
    label = "epoch" if ck.stage == "train" else "fine-tuning epoch"
    log(f"resuming from {options.checkpoint} at {label} {ck.snapshot.loop.epoch}")
    return ck


def _train_and_fit(model, source, candidate: _Candidate, epochs: int, target: int,
                   options: EncodeOptions, checkpoints: _Checkpoints,
                   resumed: checkpoint.Checkpoint | None, progress, log):
    """Train, find the setting that meets the target, fine-tune for it; each training stage
    starts from `resumed` when that checkpoint was made in it.
    Returns (setting, train stats for the report, fine-tuning epochs).

    With learned steps (the default) training is rate-aware, the setting is a scale on the
    learned steps, and the fine-tune trains on the quantized weights themselves. Without, the
    setting is a prune fraction and bit depths, and only a pruned model is fine-tuned."""
    learned = options.learned_steps
    fit = ratecontrol.fit_steps if learned else ratecontrol.fit
    h, w, n = source.height, source.width, source.count
    rate = RateTerm(n * h * w, options.bpp) if learned else None
    common = dict(lr=options.lr, progress=progress, save_every=options.checkpoint_every)
    if resumed is None or resumed.stage == "train":
        stats = train(model, source, epochs, seed=options.seed, save=checkpoints.saver("train"),
                      resume=resumed.snapshot if resumed else None, rate=rate, **common)
        train_stats = {"train_seconds": stats.seconds, "train_psnr": stats.final_psnr,
                       "recoveries": stats.recoveries}
        candidate.update(model, source)
        setting, _ = fit(candidate.size_of, target, candidate.quality_of,
                         min_prune=options.min_prune)
        if not learned and setting.prune == 0:
            return setting, train_stats, 0
        masks = {name: torch.from_numpy(m.astype(np.float32))
                 for name, m in magnitude_masks(candidate.arrays, setting.prune).items()}
        if learned:  # the fine-tune trains on the grid the search chose
            with torch.no_grad():
                model.log_steps += math.log(setting.step_scale)
            setting = replace(setting, step_scale=1.0)
        snapshot = None
    else:
        setting, masks = Setting(**resumed.setting), resumed.masks
        train_stats, snapshot = resumed.train_stats, resumed.snapshot
    finetune = ratecontrol.finetune_epochs(epochs)
    if learned:
        log(f"quantized weights ({setting.prune:.1%} pruned, {setting.embed_bits}-bit "
            f"embeddings): fine-tuning {finetune} epochs on them")
    else:
        log(f"pruning {setting.prune:.1%} of the decoder weights ({setting.weight_bits}-bit "
            f"weights, {setting.embed_bits}-bit embeddings), fine-tuning {finetune} epochs")
    save = checkpoints.saver("finetune", setting=asdict(setting), masks=masks,
                             train_stats=train_stats)
    train(model, source, finetune, stage="finetune", seed=options.seed + 1, save=save,
          masks={k: m.to(source.device) for k, m in masks.items()}, resume=snapshot,
          rate=replace(rate, mode="hard") if rate else None, **common)
    candidate.update(model, source)
    setting, _ = fit(candidate.size_of, target, candidate.quality_of if learned else None,
                     start=setting)
    return setting, train_stats, finetune


def _self_check(data: bytes, video: Video, device: str) -> tuple[dict, float]:
    """Decode the bytes about to be handed over, exactly as `dnerv decode` does, and measure
    them against the input a batch at a time (no copy of the decoded video is kept).
    Returns the quality figures and the seconds spent decoding."""
    t = time.perf_counter()
    decoded = DecodedVideo(data, device=device, limits=UNLIMITED)
    batches = decoded.batches(range(video.frame_count))
    seconds, quality, start = time.perf_counter() - t, QualityReport(), 0
    while True:
        t = time.perf_counter()
        frames = next(batches, None)  # rendering happens here: time only this
        seconds += time.perf_counter() - t
        if frames is None:
            return quality.result(), seconds
        quality.add(video.frames[start:start + len(frames)], frames)
        start += len(frames)


# ----------------------------------------------------------------------------- decode


class DecodedVideo:
    """A .dnv file turned back into a renderable decoder. Every check on the untrusted bytes
    happens here, before any network is built: the container's (container.unpack), the
    architecture's, and the decode budget's (format/budget.py), priced from the header alone before
    any tensor is entropy-decoded. `writer` (h264, y4m, png or None) is the kind of output the
    frames go to, whose buffers count towards the memory limit."""

    def __init__(self, data: bytes, device: str = "auto", limits: Limits = Limits(),
                 writer: str | None = None,
                 frame_range: Callable[[int], tuple[int, int]] | None = None):
        """`frame_range(frame_count) -> (start, stop)` says which frames will be rendered, so
        that their work is checked before anything is decoded (default: all of them)."""
        self.limits = limits
        self.cost: DecodeCost | None = None

        def counts_within_budget(header: dict) -> dict[str, int]:
            self.cost = header_cost(header, len(data), limits, writer, max_batch=RENDER_BATCH)
            start, stop = frame_range(header["frame_count"]) if frame_range else (0, None)
            self.check_work(header["frame_count"] if stop is None else stop - start)
            return symbol_counts(header)

        dnv = unpack(data, counts_within_budget)
        self.header = dnv.header
        self.config = config_from_header(dnv.header)
        self.plan = self.cost.plan
        self.width, self.height = dnv.header["width"], dnv.header["height"]
        self.frame_count = dnv.header["frame_count"]
        self.fps = Fraction(dnv.header["fps_num"], dnv.header["fps_den"])
        self.content = _embedding(dnv, "content", (self.frame_count,) + self.config.embed_shape)
        self.diff = (_embedding(dnv, "diff", (self.frame_count,) + self.config.diff_embed_shape)
                     if self.config.diff_stream else None)
        self.device = pick_device(device)
        self.decoder = Decoder(self.config)
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

    def batches(self, indices) -> Iterator[np.ndarray]:
        """The frames at `indices`, rendered as the plan says (bounded memory)."""
        indices = list(indices)
        for i in range(0, len(indices), self.plan.batch):
            yield self.render(indices[i:i + self.plan.batch])

    @torch.no_grad()
    def render(self, indices) -> np.ndarray:
        """The frames at `indices` as one uint8 array (N, H, W, 3); in row bands when the plan
        says so (each band's margin rendered and dropped, so its rows are the whole frame's).

        On the CPU each frame (or band) is rendered by one thread with torch's intra-op
        parallelism off, `plan.batch` of them at once: a frame's arithmetic is then the same
        at any thread count, so decoding is bit-identical on 1, 2 or 64 threads (oneDNN splits
        a convolution's reductions differently with more threads). Accelerators render the
        batch in one call."""
        idx = np.asarray(list(indices), dtype=np.int64)
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
        content = torch.from_numpy(self.content[idx, :, lo // p: hi // p]).to(self.device)
        diff = None
        if self.diff is not None:
            q = DIFF_UNIT
            diff = torch.from_numpy(self.diff[idx, :, lo // q: hi // q]).to(self.device)
        with torch.no_grad():
            out = self.decoder(content, diff)
        pixels = (out[..., keep_from:keep_to, : self.width] * 255).round().clamp(0, 255)
        return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


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


def _embedding(dnv: DnvFile, group: str, shape: tuple[int, ...]) -> np.ndarray:
    tensors = dnv.groups.get(group, [])
    if len(tensors) != 1 or tuple(tensors[0].shape) != shape:
        raise BitstreamError(f"corrupt .dnv: the {group} embeddings do not have shape {shape}")
    return np.ascontiguousarray(tensors[0].dequantize(), dtype=np.float32)


__all__ = ["EncodeOptions", "EncodeResult", "encode", "DecodedVideo", "DnervError"]
