"""Training measured in seconds: the step time of a network, and the epochs a budget buys.

`dnerv encode --time 5m` must end on time with a properly annealed model, so the schedule is
planned, not cut: the encoder times a few real steps of the network it is about to train
(`measure_step`), then `plan_training` gives the epochs whose full schedule (warm-up, cosine)
fits the budget next to the work that follows training. That work (the rate searches on the
real file size, the fine-tune on the quantized weights, the self-check) is re-planned once the
first search has been timed: the fine-tune takes what is left (`plan_finetune`), so an
estimate's error lands in the fine-tune's length instead of in the finishing time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from dnerv_codec.training.loop import FrameSource, RateTerm, _Run
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
MIN_TRAIN_EPOCHS = 1
# A rule of thumb for "long enough to learn more than the clip's mean frame", from the runs
# measured so far (docs/training.md): 20 epochs of a 60-epoch schedule on 20-frame clips left
# the embedded clip and carphone under their mean frames at every rate from 0.05 to 0.8 bpp;
# 40 epochs of 24 frames at 0.2 bpp beat it by 2.4-3.5 dB. A --time budget that buys fewer is
# said to be short, with the time that would buy this many.
USEFUL_EPOCHS = 40


def measure_step(model: torch.nn.Module, frame_shape: tuple[int, int], padded: tuple[int, int],
                 device: torch.device, recipe: Recipe, rate: bool) -> float:
    """Seconds per training step of `model` (a throwaway copy: its weights change) on frames
    of `frame_shape` (height, width), rate-aware when the encode is."""
    h, w = frame_shape
    rng = np.random.default_rng(0)

    def frames(steps: int) -> FrameSource:
        pixels = rng.integers(0, 256, (steps * recipe.batch, h, w, 3), dtype=np.uint8)
        return FrameSource(pixels, *padded, device)

    term = RateTerm(MEASURED_STEPS * recipe.batch * h * w, 0.1) if rate else None
    steps = WARMUP_STEPS + MEASURED_STEPS
    source = frames(steps)
    run = _Run(model, source, 1, "train", recipe, None, 0, None, term)
    seconds = []
    for i in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        run.step([(i * recipe.batch + k) % source.count for k in range(recipe.batch)])
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds[WARMUP_STEPS:]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class TrainingPlan:
    epochs: int
    expected_seconds: float  # the whole encode, as planned


def plan_training(budget: float, elapsed: float, step_seconds: float, steps_per_epoch: int,
                  finetune_fraction: float) -> TrainingPlan:
    """The epochs whose training and fine-tune fit `budget` seconds, `elapsed` of which are
    spent, with AFTER_TRAINING_SHARE kept for the searches and the self-check."""
    left = budget * (1 - AFTER_TRAINING_SHARE) - elapsed
    epoch = step_seconds * steps_per_epoch
    epochs = max(MIN_TRAIN_EPOCHS, int(left / (epoch * (1 + finetune_fraction))))
    expected = elapsed + epochs * epoch * (1 + finetune_fraction) + budget * AFTER_TRAINING_SHARE
    return TrainingPlan(epochs, expected)


def useful_seconds(elapsed: float, step_seconds: float, steps_per_epoch: int,
                   finetune_fraction: float) -> float:
    """The budget plan_training would turn into USEFUL_EPOCHS epochs."""
    work = USEFUL_EPOCHS * step_seconds * steps_per_epoch * (1 + finetune_fraction)
    return (elapsed + work) / (1 - AFTER_TRAINING_SHARE)


def budget_notes(budget: float, plan: TrainingPlan, elapsed: float, step_seconds: float,
                 steps_per_epoch: int, finetune_fraction: float) -> list[str]:
    """What the user should hear before a --time encode trains: that the budget cannot be kept
    (even the shortest run overruns it), or that it buys too few epochs to learn much."""
    notes = []
    if plan.expected_seconds > 1.1 * budget:
        notes.append(f"--time {format_seconds(budget)} cannot be kept: {plan.epochs} epoch(s) "
                     f"of this network and the work after them take about "
                     f"{format_seconds(plan.expected_seconds)} here")
    if plan.epochs < USEFUL_EPOCHS:
        useful = useful_seconds(elapsed, step_seconds, steps_per_epoch, finetune_fraction)
        notes.append(f"--time {format_seconds(budget)} buys {plan.epochs} epoch(s) of training; "
                     f"runs under {USEFUL_EPOCHS} epochs have decoded near or under the clip's "
                     f"average frame (docs/training.md): {USEFUL_EPOCHS} epochs would take "
                     f"about --time {format_seconds(useful)}")
    return notes


def plan_finetune(budget: float, elapsed: float, search_seconds: float, epoch_seconds: float,
                  most: int) -> int:
    """Fine-tune epochs that fill what is left of `budget` but the last search and the
    self-check (together about as long as the first search, `search_seconds`): at least 1,
    at most `most`."""
    left = budget - elapsed - AFTER_FINETUNE_SEARCHES * search_seconds
    # A fine-tune epoch costs a little less than a training one (no noise is drawn): rounding
    # to the nearest epoch rather than down keeps the run from ending early.
    return max(1, min(most, round(left / max(epoch_seconds, 1e-9))))


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
