"""The encoder's pipeline in order: `encode(video, options) -> EncodeResult`.

encode: plan a width from the budget -> overfit -> fit a prune/bit-depth setting on the real
file size -> prune and fine-tune -> quantize + entropy-code -> pack -> decode the packed bytes
again (the self-check, through the decode side) and measure the real rate and quality. The
steps live in their rooms (encoding/: the options, the plan, the candidate files, the
self-check; decoding/: DecodedVideo and DecodedFile); this module strings them together, and
what callers import from it stays importable here.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace
from functools import partial
from typing import Callable

import numpy as np
import torch

from dnerv_codec.coding import ratecontrol
from dnerv_codec.coding.ratecontrol import Setting
from dnerv_codec.decoding.video import DecodedFile, DecodedVideo
from dnerv_codec.device import pick_device
from dnerv_codec.encoding.milestones import Milestone, plan_seconds
from dnerv_codec.encoding.filebuild import (  # noqa: F401  (build_file, header_for: public)
    Candidates,
    Sample,
    build_file,
    header_for,
    video_fields,
)
from dnerv_codec.encoding.options import EncodeOptions, EncodeResult
from dnerv_codec.encoding.planning import model_jobs, plan_time, run_trial, say_plan, with_trial
from dnerv_codec.encoding.selfcheck import (
    check_packed,
    refuse_a_dead_file,
    self_check,
    under_the_mean_frame,
)
from dnerv_codec.errors import DnervError, InputError, Interrupted
from dnerv_codec.format.architecture import ModelConfig, model_name
from dnerv_codec.format.chunks import DnvReader, pack_chunked
from dnerv_codec.format import extras as source_extras
from dnerv_codec.format.container import describe
from dnerv_codec.metrics import bpp as bits_per_pixel
from dnerv_codec.scaling.chunkwork import (
    ChunkJob,
    ChunkModel,
    Trial,
    finetune_chunk,
    train_chunk,
)
from dnerv_codec.scaling.runners import SerialRunner
from dnerv_codec.training import checkpoint, modelchoice
from dnerv_codec.training.loop import Progress


def encode(video, options: EncodeOptions,
           progress: Callable[[Progress], None] | None = None,
           log: Callable[[str], None] = lambda _: None, runner=None,
           milestones: Callable[[Milestone], None] = lambda _: None) -> EncodeResult:
    """Fit, compress and pack `video` (an io.Video, or an io.VideoStream read a chunk at a
    time); decode the result and report real rate and quality. `progress` hears every epoch,
    `milestones` where each stage begins and ends and what the stages to come should take
    (encoding/milestones.py: one bar for the whole encode).

    The video is cut into chunks (coding/chunkplan.py; `options.chunk` forces their length),
    each trained on its own by `runner` (runners.py; default: one after another here); rate
    control then picks one setting for all of them that lands the whole file on the target.
    Ctrl-C raises errors.Interrupted, after saving the checkpoints when they were asked for."""
    t0 = time.perf_counter()
    h, w, n = video.height, video.width, video.frame_count
    learned = options.learned_steps
    target = options.rate_request(video).target_bytes
    device = pick_device(options.device)
    epochs = ratecontrol.epochs_for(options.preset, options.epochs)
    # The runner decides (Ray workers split the cores between them); the same count gives the
    # same bytes wherever a chunk runs.
    threads = getattr(runner, "threads", None) or options.threads or torch.get_num_threads()
    candidates = model_jobs(video, options, epochs, threads, log)
    own_runner = runner is None
    runner = runner or SerialRunner(progress, log)
    begun = options.started if options.started is not None else t0
    planned = {m: plan_time(jobs, video, options, runner.workers, begun)
               for m, jobs in candidates.items()}
    said: set[str] = set()  # what the plans say is said once, before any training
    choice, trial = None, None
    if len(planned) > 1:
        planned = with_trial(planned, options, log)
    if len(planned) > 1:
        for m, (_, timing) in planned.items():
            say_plan(log, timing, said, f"{modelchoice.title(m)}: ")
        trial_epochs = {m: modelchoice.trial_epochs(j[0].epochs) for m, (j, _) in planned.items()}
        first = next(iter(planned.values()))
        milestones(Milestone("trial", units=sum(trial_epochs.values()), plan=_stage_plan(
            *first, trial_seconds=sum(_epoch_seconds(t, j[:1]) * trial_epochs[m]
                                      for m, (j, t) in planned.items()))))
        try:
            choice, trial = run_trial(runner, planned, video, log)
        except KeyboardInterrupt as e:  # nothing is saved yet: a resume starts afresh
            where = f", {e.where}" if isinstance(e, Interrupted) else ""
            raise Interrupted(f"in --model auto's trial{where}", None) from None
        milestones(Milestone("trial", done=True))
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
    say_plan(log, timing, said)
    sample = Sample(n, bounds)
    fit = ratecontrol.fit_steps if learned else ratecontrol.fit
    try:
        try:
            chosen = _resumed_fit(jobs, log) if options.resume else None
            if chosen is None:
                training = time.perf_counter()
                done_in_trial = modelchoice.trial_epochs(epochs) if trial else 0
                milestones(Milestone("train", units=len(jobs) * epochs - done_in_trial,
                                     plan=_stage_plan(jobs, timing)))
                trained = _train(runner, jobs, sample.tap(video.chunks(bounds)), trial)
                milestones(Milestone("train", done=True))
                searched = time.perf_counter()
                milestones(Milestone("search"))
                candidates = Candidates(video, jobs, trained, sample, options.device)
                if options.psnr is not None:
                    target = _target_for_quality(fit, candidates, target, options, log)
                chosen, _ = fit(candidates.size_of, target, candidates.quality_of,
                                min_prune=options.min_prune)
                milestones(Milestone("search", done=True))
                now = time.perf_counter()
                finetune = timing.finetune_epochs(now - begun, now - searched,
                                                  (searched - training) / epochs)
                tune_jobs = [replace(j, resume=False, finetune_epochs=finetune) for j in jobs]
                extra = [(m, chosen) for m in trained]
            else:
                tune_jobs, extra = jobs, [(None, chosen)] * len(jobs)
            planned_tune = tune_jobs[0].finetune_epochs or timing.planned_finetune
            milestones(Milestone("finetune", units=len(jobs) * planned_tune,
                                 plan=_stage_plan(jobs, timing, finetune=planned_tune,
                                                  only=("finetune", "check"))))
            tuned = runner.map(finetune_chunk, tune_jobs, sample.tap(video.chunks(bounds)), extra)
            candidates = Candidates(video, jobs, tuned, sample, options.device)
            finetune = tuned[0].train_stats.get("finetune_epochs", 0)
            setting = Setting(**tuned[0].setting)
            if finetune:
                if options.psnr is not None:  # the fine-tune gained: fewer bytes may do
                    target = _target_for_quality(partial(fit, start=setting), candidates,
                                                 target, options, log, "after the fine-tune")
                setting, _ = fit(candidates.size_of, target,
                                 candidates.quality_of if learned else None, start=setting)
            milestones(Milestone("finetune", done=True))
        except KeyboardInterrupt as e:
            where = e.where if isinstance(e, Interrupted) else "after training"
            saved = [j.checkpoint for j in jobs if j.checkpoint and os.path.exists(j.checkpoint)]
            raise Interrupted(where, _checkpoint_text(options.checkpoint, saved, len(jobs))) from None
    finally:
        if own_runner:
            runner.close()
    chunk_data = candidates.chunk_bytes(setting)
    # colour tags and audio ride in the first chunk, after its tensors: the self-check reads them
    extras = getattr(video, "extras", source_extras.NONE)
    chunk_data[0] = source_extras.attach(chunk_data[0], extras)
    audio_bytes = source_extras.audio_bytes(extras)
    encode_seconds = time.perf_counter() - t0
    milestones(Milestone("check"))
    reports, decode_seconds = self_check(chunk_data, video, bounds, options.device)
    data = pack_chunked(video_fields(video),
                        [(c, r["psnr_rgb"]) for c, r in zip(chunk_data, reports["chunks"])])
    check_packed(data, chunk_data)
    milestones(Milestone("check", done=True))
    rate_bytes = len(data) - audio_bytes  # the audio's bytes are reported apart from the rate
    stats = {
        "frames": n, "width": w, "height": h, "fps": f"{video.fps.numerator}/{video.fps.denominator}",
        "target_bpp": options.bpp, "bytes": len(data), "audio_bytes": audio_bytes,
        "bpp": bits_per_pixel(rate_bytes, w, h, n),
        "kbps": rate_bytes * 8 / 1000 / (n / video.fps),
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
        **source_extras.describe(extras),
        # what `dnerv decode -o x.mp4` of the whole file costs under the default limits
        "decode_cost": DecodedFile.cost_of(DnvReader(data), writer="h264").as_dict(),
        "chunks": [{"index": j.index, "frames": [j.start, j.stop], "bytes": len(c),
                    "bpp": bits_per_pixel(len(c) - (audio_bytes if j.index == 0 else 0), w, h,
                                          j.stop - j.start),
                    "psnr_rgb": r["psnr_rgb"], "train_psnr": m.train_stats.get("train_psnr"),
                    "model": _model_stats(j.config)}
                   for j, c, r, m in zip(jobs, chunk_data, reports["chunks"], tuned)],
    }
    if options.psnr is not None:
        stats["psnr_target"] = {"psnr_rgb_total": options.psnr, "target_bytes": target,
                                "met": stats["psnr_rgb_total"] >= options.psnr}
    if len(jobs) > 1:
        stats["train_seconds"] = sum(m.train_stats["train_seconds"] for m in tuned)
        stats["train_psnr"] = float(np.mean([m.train_stats["train_psnr"] for m in tuned]))
        stats["recoveries"] = sum(m.train_stats["recoveries"] for m in tuned)
        stats["restarts"] = sum(m.train_stats.get("restarts", 0) for m in tuned)
    refuse_a_dead_file(stats, jobs)
    said = [ratecontrol.shortfall(rate_bytes, target, setting), under_the_mean_frame(stats)]
    stats["notes"] = timing.notes + [n for n in said if n]
    for note in filter(None, said):
        log(f"note: {note}")
    return EncodeResult(data, stats)


def _epoch_seconds(timing, jobs: list[ChunkJob]) -> float | None:
    """Expected wall seconds of one epoch of `jobs` (None for a resumed --time plan)."""
    if not timing.step_seconds:
        return None
    share = sum(j.stop - j.start for j in jobs) / sum(j.stop - j.start for j in timing.jobs)
    return timing.step_seconds * timing.steps_per_epoch * share


def _stage_plan(jobs: list[ChunkJob], timing, finetune: int | None = None,
                trial_seconds: float = 0.0, only: tuple[str, ...] = ()) -> dict[str, float]:
    """The expected seconds of the stages to come (`only` those, when given)."""
    plan = plan_seconds(_epoch_seconds(timing, jobs), timing.epochs,
                        finetune or timing.planned_finetune, timing.finetune_share,
                        timing.check, trial_seconds)
    return {s: v for s, v in plan.items() if not only or s in only}


def _target_for_quality(fit, candidates: Candidates, ceiling: int, options: EncodeOptions,
                        log, stage: str = "before the fine-tune") -> int:
    """The byte target of a quality target (--psnr): the fewest bytes, up to the planned
    rate's, whose setting decodes the sampled frames at options.psnr dB (the ceiling, with a
    note, when even it falls short)."""
    target, reached = ratecontrol.bytes_for_quality(fit, candidates.size_of,
                                                    candidates.quality_of, ceiling,
                                                    options.psnr, options.min_prune)
    if reached < options.psnr:
        log(f"note: --psnr {options.psnr:g}: this network reaches {reached:.2f} dB at most "
            f"in {ceiling} bytes ({stage}; it was sized for {options.bpp:g} bpp); writing that "
            f"file")
    else:
        log(f"--psnr {options.psnr:g}: {target} bytes reach {reached:.2f} dB on the sampled "
            f"frames ({stage})")
    return target


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


__all__ = ["EncodeOptions", "EncodeResult", "encode", "DecodedVideo", "DecodedFile",
           "DnervError"]
