"""Before training: each chunk's job for the model(s) an encode may train, the time plan
(a measured step; under --time the epochs and the width that fit the budget), and under
`--model auto` the trial that picks one."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from dnerv_codec.coding import chunkplan, ratecontrol
from dnerv_codec.encoding.options import EncodeOptions
from dnerv_codec.errors import InputError, RateError
from dnerv_codec.format.architecture import with_width
from dnerv_codec.scaling.chunkwork import (
    ChunkJob,
    Trial,
    chunk_checkpoint,
    step_seconds,
    trial_chunk,
)
from dnerv_codec.training import checkpoint, modelchoice, timeplan
from dnerv_codec.training.loop import steps_per_epoch
from dnerv_codec.training.modelchoice import DEFAULT_MODEL
from dnerv_codec.training.recipe import RECIPES


def say_plan(log, timing: Timing, said: set[str], model: str = "") -> None:
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


def model_jobs(video, options: EncodeOptions, epochs: int, threads: int,
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


def with_trial(planned: dict, options: EncodeOptions, log) -> dict:
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


def _shared_plan(jobs: list[ChunkJob], timing: Timing) -> tuple[list[ChunkJob], Timing]:
    """A --time plan with BUDGET_SHARE of its epochs."""
    epochs = max(1, math.floor(jobs[0].epochs * modelchoice.BUDGET_SHARE))
    jobs = [replace(j, epochs=epochs) for j in jobs]
    return jobs, Timing(jobs, timing.step_seconds, timing.steps_per_epoch, timing.budget,
                         timing.notes, timing.sizing, timing.check, timing.finetune_share)


def run_trial(runner, planned: dict, video, log) -> tuple[modelchoice.Choice, Trial]:
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


class Timing:
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
        self.jobs = jobs
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


def plan_time(jobs: list[ChunkJob], video, options: EncodeOptions, workers: int,
               t0: float) -> tuple[list[ChunkJob], Timing]:
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
            jobs = narrowed(jobs, planned.get("stem_channels"))
            jobs = [replace(j, epochs=planned["epochs"],
                            finetune_epochs=planned.get("finetune_epochs")) for j in jobs]
            return jobs, Timing(jobs, None, per_epoch, budget)
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
            return step_seconds(narrowed(jobs, width)[0], h, w)

        sizing = timeplan.size_for_time(jobs[0].config.stem_channels, step, measure, plan_for,
                                        budget)
        step, plan, check = sizing.step_seconds, sizing.plan, sizing.plan.check
        jobs = [replace(j, epochs=plan.epochs) for j in narrowed(jobs, sizing.width)]
        if sizing.width != sizing.rate_width:
            share = step_seconds(jobs[0], h, w, finetune=True) / step
        notes = timeplan.budget_notes(budget, plan, time.perf_counter() - t0, step, per_epoch,
                                      check, share)
    return jobs, Timing(jobs, step, per_epoch, budget, notes, sizing, check, share)


def narrowed(jobs: list[ChunkJob], width: int | None) -> list[ChunkJob]:
    """The jobs with decoders no wider than `width` (a --time budget's choice)."""
    if not width:
        return jobs
    return [replace(j, config=with_width(j.config, min(width, j.config.stem_channels)))
            for j in jobs]
