"""The encoder's pipeline in order: `encode(video, options) -> bytes`.

encode: plan a width from the budget -> overfit -> fit a prune/bit-depth setting on the real
file size -> prune and fine-tune -> quantize + entropy-code -> pack -> decode the packed bytes
again (the self-check, through the decode side, decoding/video.py) and measure the real rate
and quality. `DecodedVideo` and `DecodedFile` live in decoding/video.py; they stay importable
from here.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from dnerv_codec.scaling.chunkwork import (
    ChunkJob,
    ChunkModel,
    Trial,
    chunk_checkpoint,
    finetune_chunk,
    step_seconds,
    train_chunk,
    trial_chunk,
)
from dnerv_codec.coding import chunkplan, ratecontrol
from dnerv_codec.coding.compress import (
    learned_step_quantize,
    prune_arrays,
    step_quantize_decoder,
    step_quantize_embeddings,
)
from dnerv_codec.coding.ratecontrol import RateRequest, Setting
from dnerv_codec.errors import (
    DnervError,
    InputError,
    Interrupted,
    RateError,
    TrainingError,
)

# MAX_DECODER_PARAMS and config_from_header live in format/architecture.py (torch-free, for the file
# readers); they stay importable from here.
from dnerv_codec.format.architecture import (  # noqa: F401
    MAX_DECODER_PARAMS,
    config_from_header,
    header_fields,
    model_name,
    symbol_counts,
    tensor_shapes,
    with_width,
)
from dnerv_codec.format.budget import (
    UNLIMITED,
)
from dnerv_codec.format.chunks import DnvReader, chunked_size, pack_chunked
from dnerv_codec.format.container import DnvFile, describe, pack
from dnerv_codec.io import Video
from dnerv_codec.decoding.video import DecodedFile, DecodedVideo
from dnerv_codec.device import pick_device
from dnerv_codec.metrics import QualityReport, psnr_rgb
from dnerv_codec.metrics import bpp as bits_per_pixel
from dnerv_codec.models.dnerv import (
    ModelConfig,
)
from dnerv_codec.scaling.runners import SerialRunner
from dnerv_codec.training import checkpoint, modelchoice
from dnerv_codec.training.modelchoice import DEFAULT_MODEL
from dnerv_codec.training import timeplan
from dnerv_codec.training.loop import (
    COLLAPSE_DROP_DB,
    DEAD_CHECK_STEPS,
    DEAD_MARGIN_DB,
    Progress,
    steps_per_epoch,
)
from dnerv_codec.training.recipe import DEFAULT_RECIPE, RECIPES

# The setting search compares decoded PSNR on this many evenly spaced frames.
QUALITY_SAMPLE_FRAMES = 8


@dataclass
class EncodeOptions:
    bpp: float = 0.05
    preset: str = "medium"
    epochs: int | None = None       # overrides the preset
    device: str = "auto"
    seed: int = 0
    model: str = DEFAULT_MODEL       # "dnerv", "hnerv" (the ablation: no difference stream)
                                     # or "auto" (a trial of both: training/modelchoice.py)
    lr: float | None = None          # peak learning rate; None: the recipe's
    recipe: str = DEFAULT_RECIPE     # training/recipe.py: "codec" (short runs) or "paper"
    min_prune: float = 0.0           # prune at least this fraction of decoder weights
    checkpoint: str | None = None    # save the training state here (the caller removes it
                                     # once the result is safely stored)
    checkpoint_every: int = 1        # epochs between checkpoint saves
    resume: bool = False             # continue from `checkpoint` instead of starting afresh
    learned_steps: bool = True       # rate-aware training with learned quantization steps;
                                     # False: plain training, bit-depth search and pruning
    embed_channels: int | None = None  # content embedding channels; None: rate control picks
    chunk: int | None = None         # frames a chunk at most; None: coding/chunkplan.py's rule
    arch: str = "auto"               # "auto": strides from the frame size; "paper": 5,4,4,3,2
    time_budget: float | None = None  # seconds the whole encode may take; replaces the epochs
    started: float | None = None     # time.perf_counter() when the user's command began (the
                                     # budget counts from there); None: when encode() is called
    threads: int | None = None       # torch threads a chunk trains with; None: torch's count
    warm_start: bool = False         # a chunk starts from the previous chunk's trained network

    def rate_request(self, video: Video) -> RateRequest:
        """What the rate is planned for: this video and the model `model` names."""
        return RateRequest(video.height, video.width, video.frame_count, self.bpp, self.model,
                           self.learned_steps, self.embed_channels, self.arch)


@dataclass
class EncodeResult:
    data: bytes
    stats: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- header <-> config


def video_fields(video: Video, frame_count: int | None = None) -> dict:
    """The video's own header fields (format/chunks.VIDEO_FIELDS and a frame count: the
    video's, or `frame_count` for a chunk of it): one place builds them for HEAD and VHDR."""
    return {"width": video.width, "height": video.height,
            "frame_count": video.frame_count if frame_count is None else frame_count,
            "fps_num": video.fps.numerator, "fps_den": video.fps.denominator}


def header_for(video: Video, config: ModelConfig) -> dict:
    """The HEAD fields of a file: the video's own, then the architecture's
    (architecture.header_fields, the inverse of config_from_header)."""
    return {**video_fields(video), **header_fields(config)}


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


class _Candidates:
    """Every chunk's trained tensors, packed on demand under any compression Setting: what
    the rate search measures for the whole video (real file sizes, decoded PSNR on sampled
    frames). One setting for every chunk: the same scale on the steps each chunk learned
    under the same rate weight, so that busy chunks keep more bits and static ones fewer."""

    def __init__(self, video, jobs: list[ChunkJob], models: list[ChunkModel], sample, device):
        self.jobs, self.models, self.sample, self.device = jobs, models, sample, device
        self.headers = [chunk_header(video, job) for job in jobs]
        self._built: dict[Setting, list[bytes]] = {}

    def chunk_bytes(self, setting: Setting) -> list[bytes]:
        """Every chunk packed under `setting`; the last few are kept, because the search
        measures the size of a setting and then, for the candidates, its quality."""
        if setting not in self._built:
            if len(self._built) >= 8:
                self._built.pop(next(iter(self._built)))
            self._built[setting] = [build_file(h, m.arrays, m.content, m.diff, setting, m.steps)
                                    for h, m in zip(self.headers, self.models)]
        return self._built[setting]

    def size_of(self, setting: Setting) -> int:
        chunks = self.chunk_bytes(setting)
        return len(chunks[0]) if len(chunks) == 1 else chunked_size([len(c) for c in chunks])

    def quality_of(self, setting: Setting) -> float:
        refs, decoded = [], []
        for job, data in zip(self.jobs, self.chunk_bytes(setting)):
            local = [i - job.start for i in self.sample.indices if job.start <= i < job.stop]
            if local:
                video = DecodedVideo(data, device=self.device, limits=UNLIMITED)
                decoded += list(video.batches(local))
                refs += [self.sample.frames[job.start + i] for i in local]
        return psnr_rgb(np.stack(refs), np.concatenate(decoded))["total"]


class _Sample:
    """The frames the rate search decodes, spread evenly over the video (at least one a
    chunk), kept as the chunks stream past."""

    def __init__(self, frame_count: int, bounds: list[tuple[int, int]]):
        count = min(frame_count, max(QUALITY_SAMPLE_FRAMES, len(bounds)))
        spread = np.linspace(0, frame_count - 1, count).round().astype(int)
        middles = [(a + b - 1) // 2 for a, b in bounds] if len(bounds) > QUALITY_SAMPLE_FRAMES else []
        self.indices = sorted(set(spread.tolist()) | set(middles))
        self.frames: dict[int, np.ndarray] = {}
        self.bounds = bounds

    def tap(self, chunks):
        """`chunks` (the video's frames a chunk at a time) unchanged, keeping the sample."""
        for (start, stop), frames in zip(self.bounds, chunks):
            for i in self.indices:
                if start <= i < stop and i not in self.frames:
                    self.frames[i] = np.array(frames[i - start])
            yield frames


def chunk_header(video, job: ChunkJob) -> dict:
    """The HEAD of one chunk: the video's size and rate, the chunk's frames and network."""
    return {**video_fields(video, job.stop - job.start), **header_fields(job.config)}


def encode(video, options: EncodeOptions,
           progress: Callable[[Progress], None] | None = None,
           log: Callable[[str], None] = lambda _: None, runner=None) -> EncodeResult:
    """Fit, compress and pack `video` (an io.Video, or an io.VideoStream read a chunk at a
    time); decode the result and report real rate and quality.

    The video is cut into chunks (coding/chunkplan.py; `options.chunk` forces their length),
    each trained on its own by `runner` (runners.py; default: one after another here); rate
    control then picks one setting for all of them that lands the whole file on the target.
    Ctrl-C raises errors.Interrupted, after saving the checkpoints when they were asked for."""
    t0 = time.perf_counter()
    h, w, n = video.height, video.width, video.frame_count
    learned = options.learned_steps
    target = ratecontrol.target_bytes(options.bpp, w, h, n)
    device = pick_device(options.device)
    epochs = ratecontrol.epochs_for(options.preset, options.epochs)
    # The runner decides (Ray workers split the cores between them); the same count gives the
    # same bytes wherever a chunk runs.
    threads = getattr(runner, "threads", None) or options.threads or torch.get_num_threads()
    candidates = _model_jobs(video, options, epochs, threads, log)
    own_runner = runner is None
    runner = runner or SerialRunner(progress, log)
    begun = options.started if options.started is not None else t0
    planned = {m: _plan_time(jobs, video, options, runner.workers, begun)
               for m, jobs in candidates.items()}
    said: set[str] = set()  # what the plans say is said once, before any training
    choice, trial = None, None
    if len(planned) > 1:
        planned = _with_trial(planned, options, log)
    if len(planned) > 1:
        for m, (_, timing) in planned.items():
            _say_plan(log, timing, said, f"{modelchoice.title(m)}: ")
        try:
            choice, trial = _trial(runner, planned, video, log)
        except KeyboardInterrupt as e:  # nothing is saved yet: a resume starts afresh
            where = f", {e.where}" if isinstance(e, Interrupted) else ""
            raise Interrupted(f"in --model auto's trial{where}", None) from None
    jobs, timing = planned[choice.chosen if choice else next(iter(planned))]
    bounds = [(j.start, j.stop) for j in jobs]
    config, epochs = jobs[0].config, jobs[0].epochs
    chunks_text = (f"{len(bounds)} chunks of {bounds[-1][1] - bounds[-1][0]}-"
                   f"{bounds[0][1] - bounds[0][0]} frames, each " if len(bounds) > 1 else "")
    name = model_name(config)
    title = modelchoice.title(name) + (" (no diff stream)" if name == "hnerv" else "")
    log(f"model: {chunks_text}{title}, "
        f"stem_channels={config.stem_channels}, {_embedding_text(config)}, "
        f"strides {'x'.join(map(str, config.strides))}, "
        f"{config.parameter_count() / 1e6:.3f}M decoder params, padded "
        f"{config.padded_width}x{config.padded_height}; {epochs} epochs on {device.type}")
    log(timing.text)
    _say_plan(log, timing, said)
    sample = _Sample(n, bounds)
    fit = ratecontrol.fit_steps if learned else ratecontrol.fit
    try:
        try:
            chosen = _resumed_fit(jobs, log) if options.resume else None
            if chosen is None:
                training = time.perf_counter()
                trained = _train(runner, jobs, sample.tap(video.chunks(bounds)), trial)
                searched = time.perf_counter()
                candidates = _Candidates(video, jobs, trained, sample, options.device)
                chosen, _ = fit(candidates.size_of, target, candidates.quality_of,
                                min_prune=options.min_prune)
                now = time.perf_counter()
                finetune = timing.finetune_epochs(now - begun, now - searched,
                                                  (searched - training) / epochs)
                tune_jobs = [replace(j, resume=False, finetune_epochs=finetune) for j in jobs]
                extra = [(m, chosen) for m in trained]
            else:
                tune_jobs, extra = jobs, [(None, chosen)] * len(jobs)
            tuned = runner.map(finetune_chunk, tune_jobs, sample.tap(video.chunks(bounds)), extra)
            candidates = _Candidates(video, jobs, tuned, sample, options.device)
            finetune = tuned[0].train_stats.get("finetune_epochs", 0)
            setting = Setting(**tuned[0].setting)
            if finetune:
                setting, _ = fit(candidates.size_of, target,
                                 candidates.quality_of if learned else None, start=setting)
        except KeyboardInterrupt as e:
            where = e.where if isinstance(e, Interrupted) else "after training"
            saved = [j.checkpoint for j in jobs if j.checkpoint and os.path.exists(j.checkpoint)]
            raise Interrupted(where, _checkpoint_text(options.checkpoint, saved, len(jobs))) from None
    finally:
        if own_runner:
            runner.close()
    chunk_data = candidates.chunk_bytes(setting)
    encode_seconds = time.perf_counter() - t0
    reports, decode_seconds = _self_check(chunk_data, video, bounds, options.device)
    data = pack_chunked(video_fields(video),
                        [(c, r["psnr_rgb"]) for c, r in zip(chunk_data, reports["chunks"])])
    _check_packed(data, chunk_data)
    stats = {
        "frames": n, "width": w, "height": h, "fps": f"{video.fps.numerator}/{video.fps.denominator}",
        "target_bpp": options.bpp, "bytes": len(data),
        "bpp": bits_per_pixel(len(data), w, h, n),
        "kbps": len(data) * 8 / 1000 / (n / video.fps),
        **reports["video"],
        "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
        "decode_fps": n / decode_seconds if decode_seconds > 0 else math.inf,
        "device": device.type, "epochs": epochs, "finetune_epochs": finetune,
        "recipe": options.recipe, "time_budget": options.time_budget,
        "step_seconds": timing.step_seconds,
        "sizing": timing.sizing.as_dict() if timing.sizing else None,
        "threads": threads, "workers": runner.workers, "warm_start": jobs[0].warm_start,
        **{k: tuned[0].train_stats[k] for k in ("train_seconds", "train_psnr", "recoveries")},
        "restarts": tuned[0].train_stats.get("restarts", 0),
        "model": _model_stats(config),
        "model_choice": choice.as_dict() if choice else {
            "mode": options.model, "chosen": model_name(config),
            "trial_epochs": 0},
        "compression": asdict(setting),
        "sections": {s["tag"]: s["length"] for s in describe(chunk_data[0])["sections"]},
        # what `dnerv decode -o x.mp4` of the whole file costs under the default limits
        "decode_cost": DecodedFile.cost_of(DnvReader(data), writer="h264").as_dict(),
        "chunks": [{"index": j.index, "frames": [j.start, j.stop], "bytes": len(c),
                    "bpp": bits_per_pixel(len(c), w, h, j.stop - j.start),
                    "psnr_rgb": r["psnr_rgb"], "train_psnr": m.train_stats.get("train_psnr"),
                    "model": _model_stats(j.config)}
                   for j, c, r, m in zip(jobs, chunk_data, reports["chunks"], tuned)],
    }
    missed = ratecontrol.shortfall(len(data), target, setting)
    stats["notes"] = timing.notes + ([missed] if missed else [])
    if missed:
        log(f"note: {missed}")
    if len(jobs) > 1:
        stats["train_seconds"] = sum(m.train_stats["train_seconds"] for m in tuned)
        stats["train_psnr"] = float(np.mean([m.train_stats["train_psnr"] for m in tuned]))
        stats["recoveries"] = sum(m.train_stats["recoveries"] for m in tuned)
        stats["restarts"] = sum(m.train_stats.get("restarts", 0) for m in tuned)
    _refuse_a_dead_file(stats, jobs)
    return EncodeResult(data, stats)


def _say_plan(log, timing: _Timing, said: set[str], model: str = "") -> None:
    """Log how the budget sized the decoder (of `model`, named when there are two) and the
    budget's notes, each once."""
    sizing = timing.sizing.text() if timing.sizing else ""
    if sizing and sizing not in said:
        log(model + sizing)
        said.add(sizing)
    for text in (f"note: {n}" for n in timing.notes):
        if text not in said:
            log(text)
            said.add(text)


def _train(runner, jobs: list[ChunkJob], chunks, trial: Trial | None = None) -> list[ChunkModel]:
    """Train every chunk: all at once as the runner can, or, with warm starts, each after the
    one before it, from its trained network (a chunk then waits for its predecessor, so
    --workers trains one chunk at a time; the fine-tunes still run side by side). The first
    chunk goes on from `trial`, its first epochs (--model auto), when given."""
    if not jobs[0].warm_start:
        return runner.map(train_chunk, jobs, chunks,
                          [(None, trial)] + [(None, None)] * (len(jobs) - 1))
    trained: list[ChunkModel] = []
    for job, frames in zip(jobs, chunks):
        warm = trained[-1] if trained else None
        trained += runner.map(train_chunk, [job], [frames], [(warm, None if trained else trial)])
    return trained


def _model_jobs(video, options: EncodeOptions, epochs: int, threads: int,
                log) -> dict[str, list[ChunkJob]]:
    """The chunks' jobs of each model the encode may train: the one `options.model` names, or
    under "auto" both (those the rate leaves room for; a resumed encode: the one its
    checkpoints are of)."""
    names = list(modelchoice.TRIAL_MODELS) if options.model == "auto" else [options.model]
    found, errors = {}, []
    for name in names:
        try:
            found[name] = _jobs(video, replace(options, model=name), epochs, threads)
        except RateError as e:
            errors.append(e)
    if not found:
        raise errors[0]
    if len(found) < len(names):
        log(f"--model auto: only {modelchoice.title(next(iter(found)))} fits "
            f"{options.bpp:g} bpp here; no trial")
    if options.resume and len(found) > 1:
        begun = [m for m, jobs in found.items() if _checkpoint_model(jobs) == m]
        if not begun:  # refused now, not after a trial
            raise InputError(f"cannot resume: no checkpoint at '{options.checkpoint}'")
        found = {begun[0]: found[begun[0]]}
    return found


def _checkpoint_model(jobs: list[ChunkJob]) -> str | None:
    """The model the first existing checkpoint of `jobs` was trained with."""
    for job in jobs:
        peeked = checkpoint.peek(job.checkpoint) if job.checkpoint else None
        if peeked and peeked.get("diff_stream") is not None:
            return "dnerv" if peeked["diff_stream"] else "hnerv"  # auto tries these two
    return None


def _jobs(video, options: EncodeOptions, epochs: int, threads: int) -> list[ChunkJob]:
    """The chunks of `video` and each one's job, for the model `options.model` names."""
    request = options.rate_request(video)
    bounds = chunkplan.chunk_bounds(request.frames, chunkplan.chunk_length(request, options.chunk))
    plans = {}
    for a, b in bounds:
        try:
            plans[b - a] = ratecontrol.plan(request.for_frames(b - a))
        except RateError as e:
            if len(bounds) == 1:
                raise
            shortest = chunkplan.min_frames_for(request)
            raise RateError(f"{e} (chunks of {b - a} frames are too short for this rate: use "
                            f"--chunk {shortest} or more, or raise --bpp)") from None
    return [ChunkJob(index=k, chunks=len(bounds), start=a, stop=b, config=plans[b - a],
                     bpp=options.bpp, epochs=epochs, lr=options.lr, seed=options.seed,
                     device=options.device, learned_steps=options.learned_steps, min_prune=options.min_prune,
                     threads=threads,
                     checkpoint=chunk_checkpoint(options.checkpoint, k, len(bounds)),
                     checkpoint_every=options.checkpoint_every, resume=options.resume,
                     embed_channels=options.embed_channels, recipe=options.recipe,
                     warm_start=options.warm_start and len(bounds) > 1)
            for k, (a, b) in enumerate(bounds)]


def _with_trial(planned: dict, options: EncodeOptions, log) -> dict:
    """Both models' plans, for a trial of both; under --time each gets BUDGET_SHARE of the
    epochs it was planned (the other's trial takes the rest). Only the default model's plan,
    as it was, when a schedule is too short for a trial."""
    shared = planned
    if options.time_budget:
        shared = {m: _shared_plan(jobs, timing) for m, (jobs, timing) in planned.items()}
    if all(modelchoice.trial_epochs(jobs[0].epochs) for jobs, _ in shared.values()):
        return shared
    fewest = min(jobs[0].epochs for jobs, _ in shared.values())
    log(f"--model auto: {fewest} epochs are too few to try both models (a trial needs a "
        f"schedule of {modelchoice.MIN_TRIAL_SCHEDULE}); training "
        f"{modelchoice.title(DEFAULT_MODEL)}")
    return {DEFAULT_MODEL: planned[DEFAULT_MODEL]}


def _shared_plan(jobs: list[ChunkJob], timing: _Timing) -> tuple[list[ChunkJob], _Timing]:
    """A --time plan with BUDGET_SHARE of its epochs."""
    epochs = max(1, math.floor(jobs[0].epochs * modelchoice.BUDGET_SHARE))
    jobs = [replace(j, epochs=epochs) for j in jobs]
    return jobs, _Timing(jobs, timing.step_seconds, timing.steps_per_epoch, timing.budget,
                         timing.notes, timing.sizing, timing.check, timing.finetune_share)


def _trial(runner, planned: dict, video, log) -> tuple[modelchoice.Choice, Trial]:
    """Train each model's first chunk for the start of its schedule and keep the one ahead:
    the choice, and the winner's trial to go on from."""
    jobs = {m: p[0][0] for m, p in planned.items()}
    length = {m: modelchoice.trial_epochs(j.epochs) for m, j in jobs.items()}
    log("--model auto: trying " + " and ".join(
        f"{modelchoice.title(m)} ({j.config.parameter_count() / 1e6:.3f}M decoder "
        f"params, {length[m]} of {j.epochs} epochs)" for m, j in jobs.items()))
    read = {}
    for job in jobs.values():  # each model's first chunk (mostly the same one)
        if job.stop not in read:
            read[job.stop] = next(iter(video.chunks([(0, job.stop)])))
    # side by side where the runner has the workers (Ray), with each chunk's own threads
    done = runner.map(trial_chunk, list(jobs.values()), [read[j.stop] for j in jobs.values()],
                      [(length[m],) for m in jobs])
    trials = dict(zip(jobs, done))
    choice = modelchoice.choose({m: t.psnr for m, t in trials.items()},
                                {m: t.seconds for m, t in trials.items()},
                                length, {m: j.epochs for m, j in jobs.items()})
    log(choice.text())
    return choice, trials[choice.chosen]


class _Timing:
    """The encode's time plan: the measured step time, and under --time the epochs of training
    and of the fine-tune that fit the budget (training/timeplan.py)."""

    def __init__(self, jobs: list[ChunkJob], step: float | None, steps_per_epoch: int,
                 budget: float | None, notes: list[str] = (),
                 sizing: timeplan.Sizing | None = None, check: float = 0.0,
                 finetune_share: float = 1.0):
        """`step` is None for a resumed --time encode: it keeps its checkpoint's plan. `notes`
        are said before training (timeplan.budget_notes); `sizing` is how the budget chose
        the decoder's width, `check` the self-check's expected seconds, `finetune_share` what
        a fine-tuning step costs against a training one (measured under --time)."""
        self.step_seconds, self.steps_per_epoch, self.budget = step, steps_per_epoch, budget
        self.sizing, self.check, self.finetune_share = sizing, check, finetune_share
        self.epochs, self.resumed = jobs[0].epochs, step is None
        self.notes = list(notes)
        self.planned_finetune = jobs[0].finetune_epochs or ratecontrol.finetune_epochs(self.epochs)
        if self.resumed:
            self.text = (f"--time: the interrupted run's plan continues ({self.epochs} epochs, "
                         f"{self.planned_finetune} fine-tuning)")
        elif budget:
            self.text = (f"--time {timeplan.format_seconds(budget)}: {self.epochs} epochs of "
                         f"training ({step * 1000:.0f} ms a step, measured); the fine-tune "
                         f"gets what the first rate search leaves")
        else:
            work = step * steps_per_epoch * (self.epochs + self.planned_finetune)
            self.text = (f"estimate: {step * 1000:.0f} ms a step (measured), so about "
                         f"{timeplan.format_seconds(work)} of training and fine-tuning, plus "
                         f"the rate searches")

    def finetune_epochs(self, elapsed: float, search: float, epoch: float) -> int | None:
        """Under --time, the fine-tune's epochs once training (`epoch` seconds an epoch, as it
        ran) and the first search (`search` seconds) have been timed."""
        if not self.budget or self.resumed:
            return None
        return timeplan.plan_finetune(self.budget, elapsed, search, epoch * self.finetune_share,
                                      self.epochs, self.check)


def _plan_time(jobs: list[ChunkJob], video, options: EncodeOptions, workers: int,
               t0: float) -> tuple[list[ChunkJob], _Timing]:
    """Measure a training step, and under --time set the epochs that fit the budget (a resumed
    --time encode keeps the epochs its checkpoint was planned with)."""
    batch = RECIPES[options.recipe].batch
    # warm-started chunks train one after another, whatever the workers
    side_by_side = 1 if jobs[0].warm_start else workers
    per_epoch = math.ceil(sum(steps_per_epoch(j.stop - j.start, batch) for j in jobs)
                          / side_by_side)
    budget = options.time_budget
    if budget and options.resume and jobs[0].checkpoint:
        planned = checkpoint.peek(jobs[0].checkpoint)
        if planned and planned.get("epochs"):
            jobs = _narrowed(jobs, planned.get("stem_channels"))
            jobs = [replace(j, epochs=planned["epochs"],
                            finetune_epochs=planned.get("finetune_epochs")) for j in jobs]
            return jobs, _Timing(jobs, None, per_epoch, budget)
    h, w = video.height, video.width
    step = step_seconds(jobs[0], h, w)
    notes, sizing, check, share = [], None, 0.0, 1.0
    if budget:
        measures = timeplan.measure_check(h, w)
        # A fine-tuning step trains the decoder alone (the encoders are frozen): half a
        # training step at 320x136. Its share, timed at the rate's width, prices the fine-tune
        # in the plan; once the width is chosen it is timed again there.
        share = step_seconds(jobs[0], h, w, finetune=True) / step

        def plan_for(seconds: float) -> timeplan.TrainingPlan:
            check = timeplan.check_seconds(video.frame_count, measures, seconds)
            return timeplan.plan_training(budget, time.perf_counter() - t0, seconds, per_epoch,
                                          check, share)

        def measure(width: int) -> float:
            return step_seconds(_narrowed(jobs, width)[0], h, w)

        sizing = timeplan.size_for_time(jobs[0].config.stem_channels, step, measure, plan_for,
                                        budget)
        step, plan, check = sizing.step_seconds, sizing.plan, sizing.plan.check
        jobs = [replace(j, epochs=plan.epochs) for j in _narrowed(jobs, sizing.width)]
        if sizing.width != sizing.rate_width:
            share = step_seconds(jobs[0], h, w, finetune=True) / step
        notes = timeplan.budget_notes(budget, plan, time.perf_counter() - t0, step, per_epoch,
                                      check, share)
    return jobs, _Timing(jobs, step, per_epoch, budget, notes, sizing, check, share)


def _narrowed(jobs: list[ChunkJob], width: int | None) -> list[ChunkJob]:
    """The jobs with decoders no wider than `width` (a --time budget's choice)."""
    if not width:
        return jobs
    return [replace(j, config=with_width(j.config, min(width, j.config.stem_channels)))
            for j in jobs]


def _model_stats(config: ModelConfig) -> dict:
    return {"name": modelchoice.title(model_name(config)),
            "decoder_params": config.parameter_count(),
            "stem_channels": config.stem_channels, "strides": list(config.strides),
            "embed_channels": config.embed_channels,
            "diff_channels": config.diff_channels if config.diff_stream else 0,
            "padded_size": [config.padded_width, config.padded_height]}


def _checkpoint_text(path: str | None, saved: list[str], chunks: int) -> str | None:
    """What the interrupt message names: the checkpoint, or the chunks' checkpoints."""
    if not saved:
        return None
    if chunks == 1 or len(saved) == 1:
        return saved[0]
    more = f" and {len(saved) - 2} more" if len(saved) > 2 else ""
    return f"{saved[0]}, {saved[1]}{more}"


def _resumed_fit(jobs: list[ChunkJob], log) -> Setting | None:
    """The setting rate control chose before the interrupt, when fine-tuning had begun (it is
    kept in the fine-tune checkpoints); None when training was still under way."""
    if not jobs[0].checkpoint:
        raise InputError("resuming needs the path of a checkpoint")
    peeks = [checkpoint.peek(j.checkpoint) for j in jobs]
    if all(p is None for p in peeks):
        raise InputError(f"cannot resume: no checkpoint at '{jobs[0].checkpoint}'")
    fits = [p["fit"] for p in peeks if p and p["stage"] == "finetune" and p["fit"]]
    return Setting(**fits[0]) if fits else None


def _embedding_text(config: ModelConfig) -> str:
    if config.diff_stream:
        return f"embeddings of {config.embed_channels} + {config.diff_channels} channels"
    return f"{config.embed_channels}-channel embeddings"


def _self_check(chunk_data: list[bytes], video, bounds, device: str) -> tuple[dict, float]:
    """Decode each chunk's bytes about to be handed over, exactly as `dnerv decode` does, and
    measure them against the input a batch at a time (no copy of the decoded video is kept).
    Returns the quality figures (of the video and of each chunk) and the seconds spent
    decoding."""
    seconds, reports = 0.0, []
    for data, frames in zip(chunk_data, video.chunks(bounds)):
        t = time.perf_counter()
        decoded = DecodedVideo(data, device=device, limits=UNLIMITED)
        batches = decoded.batches(range(len(frames)))
        seconds += time.perf_counter() - t
        chunk, start = QualityReport(), 0
        while True:
            t = time.perf_counter()
            out = next(batches, None)  # rendering happens here: time only this
            seconds += time.perf_counter() - t
            if out is None:
                break
            chunk.add(frames[start:start + len(out)], out)
            start += len(out)
        reports.append(chunk)
    # each frame is measured once, not again for the whole video: at 1280x720 on 2 cores the
    # measures took 0.12 s a frame, two thirds of rendering it (docs/training.md)
    whole = QualityReport.merged(reports)
    return {"video": whole.result(), "chunks": [r.result() for r in reports]}, seconds


def _refuse_a_dead_file(stats: dict, jobs: list[ChunkJob]) -> None:
    """A file whose decode is no better than one flat colour, from a run long enough for the
    trainer to judge its start (and restart it), is not written: TrainingError, one line."""
    floor = stats["baselines"]["flat_colour"] + DEAD_MARGIN_DB
    steps = min(j.epochs * steps_per_epoch(j.stop - j.start, RECIPES[j.recipe].batch)
                for j in jobs)
    if stats["psnr_rgb_total"] >= floor or steps < 2 * DEAD_CHECK_STEPS:
        return
    decoded = (f"the file decodes at {stats['psnr_rgb_total']:.2f} dB, about what one flat "
               f"colour scores ({stats['baselines']['flat_colour']:.2f} dB)")
    if stats["train_psnr"] >= floor + COLLAPSE_DROP_DB:
        # Training learned; what reached the file did not keep it.
        raise TrainingError(
            f"compression lost what training learned: {decoded}, though training reached "
            f"{stats['train_psnr']:.2f} dB; raise --bpp")
    raise TrainingError(
        f"training did not learn: {decoded}, after {stats['restarts']} restart(s) from fresh "
        f"weights; try another --seed or a lower --lr")


def _check_packed(data: bytes, chunk_data: list[bytes]) -> None:
    """The file's index must lead to exactly the chunks that were decoded (a writer bug, not
    a user error, if not)."""
    reader = DnvReader(data)
    if [reader.chunk_bytes(k) for k in range(len(reader.chunks))] != chunk_data:
        raise AssertionError("the packed file does not hold the chunks that were checked")


__all__ = ["EncodeOptions", "EncodeResult", "encode", "DecodedVideo", "DecodedFile",
           "DnervError"]
