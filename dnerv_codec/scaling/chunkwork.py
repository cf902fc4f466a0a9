"""The work on one chunk of a video: train its network, then fine-tune it on the grid that rate
control chose for the whole video.

These two functions (and `trial_chunk`, the first epochs of a training that `--model auto`
may continue) are what runs in a Ray worker (runners.py), or in the encoding process
itself. Their inputs and outputs are plain data (dataclasses of numbers and numpy arrays), so
a chunk encodes to the same bits wherever it runs, given the same seed and torch thread count
(`ChunkJob.threads`). Each writes its own checkpoint when asked to, so an interrupted encode
redoes only the chunks that were in flight.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from dnerv_codec import __version__
from dnerv_codec.coding import ratecontrol
from dnerv_codec.coding.compress import decoder_arrays, embedding_steps, magnitude_masks
from dnerv_codec.coding.ratecontrol import Setting
from dnerv_codec.errors import InputError, Interrupted
from dnerv_codec.format.architecture import ModelConfig
from dnerv_codec.models.base import EmbeddingGrid, VideoModel
from dnerv_codec.models.registry import build
from dnerv_codec.training import checkpoint
from dnerv_codec.training.recipe import DEFAULT_RECIPE, RECIPES
from dnerv_codec.training.timeplan import measure_step
from dnerv_codec.training.loop import (
    FrameSource,
    Progress,
    RateTerm,
    Snapshot,
    compute_embeddings,
    decoder_only,
    train,
)
from dnerv_codec.device import pick_device


@dataclass(frozen=True, kw_only=True)
class ChunkJob:
    """Everything one chunk's work depends on (built by keyword: 20 fields)."""

    index: int
    chunks: int                 # in the whole video
    start: int                  # first frame in the video
    stop: int
    config: ModelConfig
    bpp: float
    epochs: int
    lr: float | None            # peak learning rate; None: the recipe's
    seed: int
    device: str
    learned_steps: bool
    min_prune: float
    threads: int                # torch threads while this chunk trains
    checkpoint: str | None = None  # this chunk's checkpoint file
    checkpoint_every: int = 1
    resume: bool = False
    embed_channels: int | None = None
    recipe: str = DEFAULT_RECIPE  # training/recipe.py
    finetune_epochs: int | None = None  # None: ratecontrol.finetune_epochs(epochs)
    warm_start: bool = False    # start from the previous chunk's trained network (same shapes)

    @property
    def label(self) -> str:
        return f"chunk {self.index + 1}/{self.chunks}" if self.chunks > 1 else ""


@dataclass
class ChunkModel:
    """A chunk's network after a stage: the weights to continue from and the tensors a file
    is built from."""

    index: int
    state: dict[str, np.ndarray]                # model.state_dict()
    arrays: list[tuple[str, np.ndarray]]        # the decoder's weights, file order
    steps: np.ndarray                           # learned step of each decoder tensor
    content: np.ndarray
    diff: np.ndarray | None
    train_stats: dict = field(default_factory=dict)
    setting: dict | None = None                 # after the fine-tune: the setting it trained for


def chunk_checkpoint(path: str | None, index: int, chunks: int) -> str | None:
    """Chunk `index`'s checkpoint file: `path` itself for a video of one chunk, else
    `path` with `.chunkNNNN` before its suffix (ck.safetensors -> ck.chunk0003.safetensors)."""
    if not path or chunks == 1:
        return path
    stem, dot, suffix = path.rpartition(".")
    if not dot or "/" in suffix:
        return f"{path}.chunk{index:04d}"
    return f"{stem}.chunk{index:04d}.{suffix}"


def fingerprint(job: ChunkJob, frames: np.ndarray) -> dict:
    """What a chunk's checkpoint must match to be continued: its frames and every option that
    changes the steps taken."""
    return {"input": hashlib.sha256(np.ascontiguousarray(frames).data).hexdigest(),
            "frames": f"{job.start}:{job.stop} of chunk {job.index + 1}/{job.chunks}",
            "size": f"{frames.shape[2]}x{frames.shape[1]}x{frames.shape[0]}", "bpp": job.bpp,
            "epochs": job.epochs, "lr": job.lr, "recipe": job.recipe,
            "optimizer": RECIPES[job.recipe].optimizer, "warm_start": job.warm_start,
            "finetune_epochs": job.finetune_epochs, "min_prune": job.min_prune, "seed": job.seed,
            "diff_stream": job.config.diff_stream, "device": _device(job).type,
            "learned_steps": job.learned_steps, "embed_channels": job.embed_channels,
            "stem_channels": job.config.stem_channels, "dnerv": __version__}


@dataclass
class Trial:
    """The first epochs of a chunk's training, stopped where `train_chunk` can go on from."""

    epochs: int                 # trained, of the job's schedule
    psnr: float                 # the training PSNR of the last of them
    seconds: float
    history: list[float]        # the training PSNR of each
    snapshot: Snapshot          # the whole training state after them


def trial_chunk(job: ChunkJob, frames: np.ndarray, epochs: int,
                progress: Callable[[Progress], None] | None = None,
                log: Callable[[str], None] = lambda _: None) -> Trial:
    """The first `epochs` epochs of `train_chunk(job, frames)` (from fresh seeded weights,
    on the job's whole schedule), handed back to be continued or dropped. Nothing is saved to
    the job's checkpoint: the run it belongs to has not been chosen yet."""
    with _threads(job.threads):
        model, source, _ = _start(replace(job, resume=False), frames, log)
        kept = []
        stats = train(model, source, job.epochs, seed=job.seed, save=kept.append, until=epochs,
                      rate=_rate(job, source), recipe=RECIPES[job.recipe], lr=job.lr,
                      progress=progress, save_every=epochs)
        return Trial(min(epochs, job.epochs), stats.final_psnr, stats.seconds, stats.history,
                     kept[-1])


def train_chunk(job: ChunkJob, frames: np.ndarray, warm: ChunkModel | None = None,
                trial: Trial | None = None,
                progress: Callable[[Progress], None] | None = None,
                log: Callable[[str], None] = lambda _: None) -> ChunkModel:
    """Train chunk `job` on its `frames` (continuing its checkpoint when resuming, or
    `trial`, its first epochs, when given), from the weights of `warm` (the previous chunk's
    trained network) when the job asks for a warm start and their shapes are this chunk's;
    from fresh seeded weights otherwise."""
    with _threads(job.threads):
        model, source, ck = _start(job, frames, log)
        if ck is not None and ck.stage != "train":
            raise InputError(f"cannot resume from '{job.checkpoint}': it is past training")
        if ck is None and job.warm_start and warm is not None and _fits(warm, model):
            model.load_state_dict({k: torch.from_numpy(v) for k, v in warm.state.items()})
            log(f"{job.label}: starts from chunk {warm.index + 1}'s trained network")
        resume = ck.snapshot if ck else trial.snapshot if trial else None
        stats = train(model, source, job.epochs, seed=job.seed, save=_saver(job, frames, "train"),
                      resume=resume, rate=_rate(job, source),
                      recipe=RECIPES[job.recipe], lr=job.lr,
                      progress=progress, save_every=job.checkpoint_every)
        if stats.restarts:
            log(f"note: {job.label + ': ' if job.label else ''}training did not start learning "
                f"(still at one flat colour's PSNR after the first steps): restarted "
                f"{stats.restarts} time(s) from fresh weights at half the learning rate")
        return _result(job, model, source, {"train_seconds": stats.seconds,
                                            "train_psnr": stats.final_psnr,
                                            "recoveries": stats.recoveries,
                                            "restarts": stats.restarts})


def finetune_chunk(job: ChunkJob, frames: np.ndarray, trained: ChunkModel | None, fit: Setting,
                   progress: Callable[[Progress], None] | None = None,
                   log: Callable[[str], None] = lambda _: None) -> ChunkModel:
    """Fine-tune chunk `job` on the grid of `fit` (the setting rate control chose for the
    whole video after training), starting from `trained`, or from the chunk's checkpoint when
    `trained` is None (a resumed encode: the checkpoint is at the end of training or in the
    fine-tune). Without learned steps and with nothing pruned there is nothing to fine-tune."""
    with _threads(job.threads):
        model, source, ck = _start(job, frames, log)
        snapshot, setting = None, fit
        if trained is not None:
            model.load_state_dict({k: torch.from_numpy(v) for k, v in trained.state.items()})
            train_stats = trained.train_stats
        elif ck is None:
            raise InputError(f"cannot resume: no checkpoint at '{job.checkpoint}' for "
                             f"{job.label or 'the video'}")
        elif ck.stage == "train":  # complete: the trainer hands back the model it ended on
            if ck.snapshot.loop.epoch <= job.epochs:
                raise InputError(f"cannot resume from '{job.checkpoint}': its training is not "
                                 f"finished but other chunks are fine-tuning")
            stats = train(model, source, job.epochs, seed=job.seed, resume=ck.snapshot,
                          rate=_rate(job, source), recipe=RECIPES[job.recipe], lr=job.lr)
            train_stats = {"train_seconds": stats.seconds, "train_psnr": stats.final_psnr,
                           "recoveries": stats.recoveries, "restarts": stats.restarts}
        else:
            setting, snapshot = Setting(**ck.setting), ck.snapshot
            train_stats = ck.train_stats
        if snapshot is None and not job.learned_steps and fit.prune == 0:
            return _result(job, model, source, train_stats, setting=fit)
        finetune = job.finetune_epochs or ratecontrol.finetune_epochs(job.epochs)
        if snapshot is None:
            arrays = decoder_arrays(model.decoder)
            masks = {name: torch.from_numpy(m.astype(np.float32))
                     for name, m in magnitude_masks(arrays, setting.prune).items()}
            if job.learned_steps:  # the fine-tune trains on the grid the search chose
                with torch.no_grad():
                    model.log_steps += math.log(setting.step_scale)
                setting = replace(setting, step_scale=1.0)
        else:
            masks = ck.masks
        log(f"{job.label + ': ' if job.label else ''}" + (
            f"quantized weights ({setting.prune:.1%} pruned, {setting.embed_bits}-bit "
            f"embeddings): fine-tuning {finetune} epochs on them" if job.learned_steps else
            f"pruning {setting.prune:.1%} of the decoder weights ({setting.weight_bits}-bit "
            f"weights, {setting.embed_bits}-bit embeddings), fine-tuning {finetune} epochs"))
        save = _saver(job, frames, "finetune", setting=asdict(setting), masks=masks,
                      train_stats=train_stats, fit=asdict(fit))
        rate = _rate(job, source)
        embedded = (trained.content, trained.diff) if trained is not None else None
        with _on_the_files_embeddings(model, source, setting.embed_bits, snapshot, embedded):
            train(model, source, finetune, stage="finetune", seed=job.seed + 1, save=save,
                  masks={k: m.to(source.device) for k, m in masks.items()}, resume=snapshot,
                  rate=replace(rate, mode="hard") if rate else None,
                  recipe=RECIPES[job.recipe], lr=job.lr, progress=progress,
                  save_every=job.checkpoint_every)
        result = _result(job, model, source, train_stats, setting=setting)
        result.train_stats = {**train_stats, "finetune_epochs": finetune}
        return result


def step_seconds(job: ChunkJob, height: int, width: int, finetune: bool = False) -> float:
    """Seconds a training step (or with `finetune`, a fine-tuning step) of this chunk's network
    takes here (timeplan.measure_step, on a throwaway model with the chunk's threads and
    device)."""
    with _threads(job.threads):
        generator_state = torch.random.get_rng_state()
        try:
            model = build(job.config)
            return measure_step(model, (height, width),
                                (job.config.padded_height, job.config.padded_width),
                                _device(job), RECIPES[job.recipe], job.learned_steps, finetune)
        finally:  # the throwaway model must not move the seeded runs' random numbers
            torch.random.set_rng_state(generator_state)


# --- internals


@contextmanager
def _on_the_files_embeddings(model: VideoModel, source: FrameSource, bits: int,
                             snapshot: Snapshot | None,
                             embedded: tuple[np.ndarray, np.ndarray | None] | None):
    """The fine-tune trains the decoder on the embeddings the file will hold: the encoders
    frozen, their outputs rounded to the per-channel grid the writer puts them on
    (compress.embedding_steps at the setting's depth, as the writer's). It used to train the encoders
    too and leave the embeddings unrounded: their grid then cost what the fine-tune could not
    see, and the longer the fine-tune, the more (bikes at 0.1 bpp, 60 epochs of training: 9
    epochs of fine-tune gave 32.61 dB, the 28 a --time budget gave 29.62; docs/training.md).
    `embedded` are the encoders' embeddings when already computed; a resumed fine-tune's
    encoders are its `snapshot`'s, the ones it started from."""
    if embedded is None:
        if snapshot is not None:
            model.load_state_dict(snapshot.model)
        embedded = compute_embeddings(model, source)
    steps = [None if e is None else torch.from_numpy(embedding_steps(e, bits)) for e in embedded]
    with decoder_only(model, EmbeddingGrid(steps[0], steps[1], (1 << (bits - 1)) - 1)):
        yield


@contextmanager
def _threads(count: int):
    """torch runs `count` threads meanwhile (the thread count decides a CPU run's last bits)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _device(job: ChunkJob) -> torch.device:
    return pick_device(job.device)


def _start(job: ChunkJob, frames: np.ndarray, log):
    """A freshly initialised model (seeded), the frames on the device, and the chunk's
    checkpoint when resuming from one (checked against this chunk)."""
    torch.manual_seed(job.seed)
    model = build(job.config)
    device = _device(job)
    source = FrameSource(frames, job.config.padded_height, job.config.padded_width, device)
    ck = None
    if job.resume and job.checkpoint and os.path.exists(job.checkpoint):  # else not begun
        ck = checkpoint.load(job.checkpoint)
        checkpoint.check_resumable(job.checkpoint, ck, fingerprint(job, frames), model)
        now = checkpoint.environment()
        if ck.environment != now:
            log(f"note: the checkpoint was made with {ck.environment}, this run has {now}: the "
                f"result may differ in its last bits from an uninterrupted run")
        label = "epoch" if ck.stage == "train" else "fine-tuning epoch"
        log(f"resuming {job.label + ' ' if job.label else ''}from {job.checkpoint} at {label} "
            f"{ck.snapshot.loop.epoch}")
    return model, source, ck


def _saver(job: ChunkJob, frames: np.ndarray, stage: str, **extra) -> Callable | None:
    if not job.checkpoint:
        return None
    print_ = fingerprint(job, frames)

    def save(snapshot) -> None:
        checkpoint.save(job.checkpoint, checkpoint.Checkpoint(
            print_, stage, snapshot, environment=checkpoint.environment(), **extra))
    return save


def _fits(warm: ChunkModel, model: VideoModel) -> bool:
    """Whether `warm`'s weights have `model`'s names and shapes (a shorter last chunk may have
    been planned another width)."""
    own = model.state_dict()
    return own.keys() == warm.state.keys() and all(
        tuple(own[k].shape) == warm.state[k].shape for k in own)


def _rate(job: ChunkJob, source: FrameSource) -> RateTerm | None:
    if not job.learned_steps:
        return None
    return RateTerm(source.count * source.height * source.width, job.bpp)


def _result(job: ChunkJob, model: VideoModel, source: FrameSource, train_stats: dict,
            setting: Setting | None = None) -> ChunkModel:
    content, diff = compute_embeddings(model, source)
    state = {k: v.detach().cpu().contiguous().numpy().copy() for k, v in model.state_dict().items()}
    return ChunkModel(job.index, state, decoder_arrays(model.decoder),
                      model.steps().detach().cpu().numpy(), content, diff, dict(train_stats),
                      asdict(setting) if setting else None)


__all__ = ["ChunkJob", "ChunkModel", "Trial", "chunk_checkpoint", "trial_chunk", "train_chunk",
           "finetune_chunk", "step_seconds", "Interrupted"]
