"""Training measured in seconds: the step time of a network, and the epochs a budget buys.

`dnerv encode --time 5m` must end on time with a properly annealed model, so the schedule is
planned, not cut: the encoder times a few real steps of the network it is about to train
(`measure_step`), then `plan_training` gives the epochs whose full schedule (warm-up, cosine)
fits the budget next to the work that follows training. That work (the rate searches on the
real file size, the fine-tune on the quantized weights, the self-check) is re-planned once the
first search has been timed: the fine-tune takes what is left (`plan_finetune`), so an
estimate's error lands in the fine-tune's length instead of in the finishing time. Where the
budget buys the decoder the rate pays for too few epochs, `size_for_time` times narrower ones
and picks the width to train.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from dnerv_codec.coding.ratecontrol import FINETUNE_FRACTION, finetune_epochs
from dnerv_codec.text import format_seconds
from dnerv_codec.models.base import EmbeddingGrid, VideoModel
from dnerv_codec.training.loop import FrameSource, RateTerm, _Run, decoder_only
from dnerv_codec.training.recipe import Recipe

# Steps timed one by one, after WARMUP_STEPS untimed ones (kernel selection, allocator growth);
# their median is the step time. Timing whole train() calls of 4 steps read 25-70 % high
# (their set-up and the first steps after it weigh on so few steps): 112 ms against 66-80 ms
# a step in the training that followed, on 176x144 frames at c2 = 9.
MEASURED_STEPS = 6
WARMUP_STEPS = 2
# Before anything after training has been timed, it is taken to cost this share of the budget
# (on the embedded clip at --bpp 0.1 the two searches and the self-check took 10.4 s of a
# 1-minute encode and 11.8 s of a 2-minute one: 10-17 %); the fine-tune then absorbs the rest.
AFTER_TRAINING_SHARE = 0.2
# The last search and the self-check after the fine-tune, in units of the first search's time
# (on the embedded clip at --time 1m: 6.0 s for the first search, 4.4 s for the rest).
AFTER_FINETUNE_SEARCHES = 0.75
# The self-check after the encode decodes every frame and measures it (PSNR, MS-SSIM, the
# baselines). Small frames make that a rounding error, large ones do not. At 1280x720 on 2
# cores, measure_check times the measures at 0.25 s on its one (cold) frame pair, where the
# self-check of a real clip spent 0.12 s a frame on them; rendering took 0.10-0.19 s a frame
# against RENDER_SHARE x 0.44 s = 0.11 s estimated (c2 = 24-30). The two errors about cancel
# (0.36 s a frame estimated, 0.31 spent; docs/training.md).
RENDER_SHARE = 0.25
MIN_TRAIN_EPOCHS = 1
# A rule of thumb for "long enough to learn more than the clip's mean frame", from the runs
# measured so far (docs/training.md): 20 epochs of a 60-epoch schedule on 20-frame clips left
# the embedded clip and carphone under their mean frames at every rate from 0.05 to 0.8 bpp;
# 40 epochs of 24 frames at 0.2 bpp beat it by 2.4-3.5 dB. A --time budget that buys fewer is
# said to be short, with the time that would buy this many.
USEFUL_EPOCHS = 40


def measure_step(model: VideoModel, frame_shape: tuple[int, int], padded: tuple[int, int],
                 device: torch.device, recipe: Recipe, rate: bool, finetune: bool = False) -> float:
    """Seconds per training step of `model` (a throwaway copy: its weights change) on frames
    of `frame_shape` (height, width), rate-aware when the encode is; with `finetune`, a step
    of the fine-tune (the encoders frozen: at 320x136 it costs half a training step)."""
    h, w = frame_shape
    rng = np.random.default_rng(0)

    def frames(steps: int) -> FrameSource:
        pixels = rng.integers(0, 256, (steps * recipe.batch, h, w, 3), dtype=np.uint8)
        return FrameSource(pixels, *padded, device)

    term = (RateTerm(MEASURED_STEPS * recipe.batch * h * w, 0.1,
                     mode="hard" if finetune else "noise") if rate else None)
    steps = WARMUP_STEPS + MEASURED_STEPS
    source = frames(steps)
    run = _Run(model, source, 1, "finetune" if finetune else "train", recipe, None, 0, None, term)
    seconds = []
    with decoder_only(model, _unit_grid(model)) if finetune else nullcontext():
        for i in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            run.step([(i * recipe.batch + k) % source.count for k in range(recipe.batch)])
            _sync(device)
            seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds[WARMUP_STEPS:]))


def _unit_grid(model: VideoModel) -> EmbeddingGrid:
    """A grid for timing the fine-tune: rounding costs the same whatever its steps."""
    c = model.config
    return EmbeddingGrid(torch.ones(c.embed_channels),
                         torch.ones(c.diff_channels) if c.diff_stream else None, 31)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class TrainingPlan:
    epochs: int
    expected_seconds: float  # the whole encode, as planned
    check: float = 0.0       # of which the self-check's


def measure_check(height: int, width: int) -> float:
    """Seconds the self-check's measures take for one frame of this size (timed here, on a
    pair of made-up frames: the measures' cost does not depend on the picture)."""
    from dnerv_codec.metrics import QualityReport
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    dist = ref ^ np.uint8(1)
    t0 = time.perf_counter()
    QualityReport().add(ref, dist)
    return time.perf_counter() - t0


def check_seconds(frames: int, measure_seconds: float, step_seconds: float) -> float:
    """The self-check's expected time: every frame rendered and measured."""
    return frames * (measure_seconds + RENDER_SHARE * step_seconds)


def plan_training(budget: float, elapsed: float, step_seconds: float, steps_per_epoch: int,
                  check: float = 0.0, finetune_share: float = 1.0) -> TrainingPlan:
    """The epochs whose training and fine-tune fit `budget` seconds, `elapsed` of which are
    spent, with AFTER_TRAINING_SHARE kept for the searches and `check` seconds for the
    self-check; a fine-tuning epoch costs `finetune_share` of a training one."""
    left = budget * (1 - AFTER_TRAINING_SHARE) - elapsed - check
    epoch = step_seconds * steps_per_epoch
    room = left / epoch  # training epochs' worth of training and fine-tune together
    epochs = max(MIN_TRAIN_EPOCHS, int(room / (1 + FINETUNE_FRACTION * finetune_share)))
    # the fine-tune is at least one epoch: a short plan that forgets it overruns (1280x720 at
    # --time 5m: 2 epochs of training planned, 1 of fine-tune run, 27 % over)
    while epochs > MIN_TRAIN_EPOCHS and epochs + finetune_share * finetune_epochs(epochs) > room:
        epochs -= 1
    expected = (elapsed + (epochs + finetune_share * finetune_epochs(epochs)) * epoch
                + budget * AFTER_TRAINING_SHARE + check)
    return TrainingPlan(epochs, expected, check)


# Sizing the network by the time it gets. The rate alone sizes the decoder as if it would
# converge; a --time budget that buys that decoder fewer than SIZED_EPOCHS epochs of training
# times narrower ones (each NARROWING times the width before, not under MIN_SIZED_WIDTH nor
# NARROWEST_SHARE of the rate's width) until one gets SIZED_EPOCHS, and trains the widest of
# those that get the most epochs, widened where a width between it and the next one timed
# keeps them. The walk used to end where a width saved under 15 % of its predecessor's step:
# one 6-step timing on a shared machine can read 2x slow (1280x720, c2 = 58: 453-793 ms in
# three runs, 830 and 1,203 ms after c2 = 83 at 907 and 1,299 in two others), and those two
# ended there and trained c2 = 58 for one epoch, 2 dB under the runs whose walk went on. The
# floor bounds the walk to four narrowings. Measured in docs/training.md ("Sizing the decoder
# by the time it gets").
SIZED_EPOCHS = 8
NARROWING = 0.7
MIN_SIZED_WIDTH = 12
# Epochs are not all: at 1280x720 under --time 5m (the rate's width 83 for HNeRV, 64 for DNeRV),
# HNeRV at c2 = 13 (6 + 2 epochs) decoded at 24.06 dB and at c2 = 28 (4 + 2) at 25.87; DNeRV
# at c2 = 12 (3 + 2) at 23.48 and at c2 = 24 (3 + 1) at 25.10. The narrow files also left much
# of the rate unspent (57 % under it at c2 = 13).
NARROWEST_SHARE = 1 / 3


@dataclass(frozen=True)
class Sizing:
    """The decoder width a --time budget trains, and the widths timed to choose it."""
    width: int
    step_seconds: float
    plan: TrainingPlan
    tried: tuple[tuple[int, float, int], ...]  # (width, seconds a step, epochs), widest first

    @property
    def rate_width(self) -> int:
        return self.tried[0][0]

    def text(self) -> str:
        if self.width == self.rate_width:
            return ""
        timed = ", ".join(f"c2={w}: {s * 1000:.0f} ms a step, {e} epochs" for w, s, e in self.tried)
        return (f"sized by the time: the rate fits a decoder of width {self.rate_width}, but it "
                f"would get {self.tried[0][2]} epoch(s) in the budget; training width "
                f"{self.width} instead ({timed})")

    def as_dict(self) -> dict:
        return {"rate_width": self.rate_width, "width": self.width,
                "tried": [{"width": w, "step_seconds": s, "epochs": e}
                          for w, s, e in self.tried]}


def size_for_time(width: int, step_seconds: float, measure: Callable[[int], float],
                  plan_for: Callable[[float], TrainingPlan], budget: float | None = None) -> Sizing:
    """The width to train under a time budget, from the rate's `width` (whose step,
    `step_seconds`, is already measured): narrower widths are timed with `measure(width)` and
    planned with `plan_for(step_seconds)` while the plan buys fewer than SIZED_EPOCHS epochs.
    Where no width timed plans to end within `budget` seconds, the one that overruns least."""
    plan = plan_for(step_seconds)
    walked = [Sizing(width, step_seconds, plan, ((width, step_seconds, plan.epochs),))]
    narrowest = max(MIN_SIZED_WIDTH, int(width * NARROWEST_SHARE))
    while walked[-1].plan.epochs < SIZED_EPOCHS:
        last = walked[-1]
        narrower = max(narrowest, int(last.width * NARROWING))
        if narrower >= last.width:
            break
        step = measure(narrower)
        plan = plan_for(step)
        walked.append(Sizing(narrower, step, plan, last.tried + ((narrower, step, plan.epochs),)))
    # the widest of the widths that get the most epochs (at equal epochs, wider is better),
    # among those whose plan ends within the budget; where none does, the one that overruns
    # least (a busy machine timed 1280x720 at c2 = 64 and 44 alike, one epoch each, and the
    # widest, 8 min 21 s planned for 5 min, was trained)
    most = max(s.plan.epochs for s in walked)
    candidates = [s for s in walked if s.plan.epochs == most]
    fitting = [s for s in candidates if budget is None or s.plan.expected_seconds <= budget]
    best = fitting[0] if fitting else min(candidates, key=lambda s: s.plan.expected_seconds)
    chosen = replace(best, tried=walked[-1].tried)
    if not fitting:
        return chosen
    return _widest_with_as_many_epochs(chosen, measure, plan_for)


def _widest_with_as_many_epochs(chosen: Sizing, measure: Callable[[int], float],
                                plan_for: Callable[[float], TrainingPlan]) -> Sizing:
    """The walk narrows in coarse steps; at equal epochs a wider decoder decodes better
    (1280x720, 2 + 1 epochs: c2 = 40 gave 25.29 dB, c2 = 30 24.17). So the widest width between
    the chosen one and the next wider one timed whose plan gets as many epochs is taken: its
    step predicted from those two (a + b c2^2 through both: the decoder convolutions' cost
    grows with the square of the width, over a floor the encoders set), then timed once to
    make sure."""
    wider = [(w, s) for w, s, _ in chosen.tried if w > chosen.width]
    if not wider:
        return chosen
    top, top_step = min(wider)
    if top - chosen.width < 2 or top_step <= chosen.step_seconds:  # nothing between, or noise
        return chosen
    b = (top_step - chosen.step_seconds) / (top * top - chosen.width * chosen.width)
    a = chosen.step_seconds - b * chosen.width * chosen.width
    candidates = [w for w in range(top - 1, chosen.width, -1)
                  if plan_for(a + b * w * w).epochs >= chosen.plan.epochs]
    if not candidates:
        return chosen
    width = candidates[0]
    step = measure(width)
    plan = plan_for(step)
    tried = chosen.tried + ((width, step, plan.epochs),)
    if plan.epochs >= chosen.plan.epochs:
        return Sizing(width, step, plan, tried)
    return replace(chosen, tried=tried)


def useful_seconds(elapsed: float, step_seconds: float, steps_per_epoch: int,
                   check: float = 0.0, finetune_share: float = 1.0) -> float:
    """The budget plan_training would turn into USEFUL_EPOCHS epochs."""
    epochs = USEFUL_EPOCHS + finetune_share * finetune_epochs(USEFUL_EPOCHS)
    work = epochs * step_seconds * steps_per_epoch
    return (elapsed + work + check) / (1 - AFTER_TRAINING_SHARE)


def budget_notes(budget: float, plan: TrainingPlan, elapsed: float, step_seconds: float,
                 steps_per_epoch: int, check: float = 0.0,
                 finetune_share: float = 1.0) -> list[str]:
    """What the user should hear before a --time encode trains: that the budget cannot be kept
    (even the shortest run overruns it), or that it buys too few epochs to learn much."""
    notes = []
    if plan.expected_seconds > 1.1 * budget:
        notes.append(f"--time {format_seconds(budget)} cannot be kept: {plan.epochs} epoch(s) "
                     f"of this network and the work after them take about "
                     f"{format_seconds(plan.expected_seconds)} here")
    if plan.epochs < USEFUL_EPOCHS:
        useful = useful_seconds(elapsed, step_seconds, steps_per_epoch, check, finetune_share)
        notes.append(f"--time {format_seconds(budget)} buys {plan.epochs} epoch(s) of training; "
                     f"quality still rises steeply up to {USEFUL_EPOCHS} epochs and beyond "
                     f"(docs/training.md): {USEFUL_EPOCHS} epochs would take about --time "
                     f"{format_seconds(useful)}")
    return notes


def plan_finetune(budget: float, elapsed: float, search_seconds: float, epoch_seconds: float,
                  most: int, check: float = 0.0) -> int:
    """Fine-tune epochs of `epoch_seconds` each that fill what is left of `budget` but the last
    search (with what else follows it, together about as long as the first search,
    `search_seconds`) and the self-check's `check` seconds: at least 1, at most `most`."""
    left = budget - elapsed - AFTER_FINETUNE_SEARCHES * search_seconds - check
    # rounding to the nearest epoch rather than down keeps the run from ending early
    return max(1, min(most, round(left / max(epoch_seconds, 1e-9))))
