"""The overfitting loop: fit a model (a models/base.VideoModel: DNeRV by default) to one video.

L2 loss, gradient clipping at norm 0.1; the optimizer (optimizers.py: Adam with betas
(0.5, 0.999) for the paper's recipe; Muon on the conv kernels and that Adam on the other
parameters for the codec's), the learning rate, its
schedule and the frames per step come from a `Recipe` (recipe.py: the codec's own, tuned for
short runs, or the paper's). Frames stay uint8 (padded once); each step converts only the
frames it needs.
Runs can collapse (PSNR falls off a cliff or the loss goes NaN): the trainer keeps the best
weights seen at an epoch boundary, restores them and halves the learning rate. An epoch's PSNR
is the mean over its steps, so the weights it ends on are first checked on a few of its frames:
weights that died in the epoch's last steps are a collapse, never the best. A run that never
starts learning (a dead start) is restarted from fresh weights.

Interrupts and checkpoints: Ctrl-C takes effect at the next step boundary, never inside an
optimizer step. Everything the loop carries (weights, the optimizer's state, the shuffling
generator, its counters and the best-so-far copy) is a `Snapshot`, which the caller may save every few
epochs and when interrupted; `train(resume=snapshot)` then takes exactly the steps the
uninterrupted run would have taken, so on the same machine it ends on the same bits.
"""

from __future__ import annotations

import copy
import functools
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dnerv_codec.coding.quantize import noisy, straight_through
from dnerv_codec.coding.rate import FlatTensors, flat_bits
from dnerv_codec.errors import Interrupted
from dnerv_codec.metrics import PEAK, psnr_from_mse, trivial_baselines
from dnerv_codec.models.base import EmbeddingGrid, VideoModel
from dnerv_codec.training import optimizers
from dnerv_codec.training.recipe import CODEC, Recipe

BETAS = (0.5, 0.999)
GRAD_CLIP = 0.1
# A drop this large below the best epoch PSNR is a collapse, not noise.
COLLAPSE_DROP_DB = 3.0
MAX_RECOVERIES = 5
# The weights an epoch ends on are checked on a few of its frames (evenly spaced, at most
# SAMPLE_FRAMES, one per SAMPLE_SPACING frames) before they may become the best: an epoch's PSNR
# is the mean over its steps, and a network that dies in an epoch's last steps still shows a
# good mean (the unseen 320x136 clip at 0.1 bpp, seed 3: 17.64 dB for its 4th epoch, 13.37
# for the weights it ended on, a flat colour's level). Kept as the best, those dead weights
# were what every recovery restored, five times over.
SAMPLE_FRAMES = 4
SAMPLE_SPACING = 8
# A dead start: a network that, after DEAD_CHECK_STEPS steps (or DEAD_CHECK_FRACTION of the
# run, the more), is still within DEAD_MARGIN_DB of one flat colour has not begun to learn, and
# rarely does (the unseen 320x136 clip at 0.2 bpp, seed 1, lr 4e-3: 12.6 dB at every epoch
# against a flat colour's 12.7, with or without the rate term; seeds 0 and 2, or lr 2e-3,
# were at 17-19 dB by then). It is restarted from fresh weights (another seed) at half the
# learning rate, up to MAX_RESTARTS times, the schedule going on where it was. Runs too short
# to spare the window twice are not judged.
# A start near the flat colour that is still rising is slow, not dead. The judgement compares
# the training PSNR of the last quarter window with that of the quarter before it: a start that
# rose DEAD_RISE_DB or more is looked at again a quarter window later (one rising only towards
# the flat colour stops rising there), for as long as a restart would still get a whole window.
# Muon's thinnest decoders (2-5k parameters at 0.05 bpp) start slowly: judged on the level
# alone, at 200 steps 8 of 60 runs of the census (docs/training.md) were still under the flat
# colour + 1 dB, most of them rising; restarted, they ended 10 epochs behind (12.9-17.7 dB at
# epoch 20, against 17.6 for the same width left alone). The dead starts rose 0.0-0.1 dB in
# their window's last quarter.
DEAD_CHECK_STEPS = 200
DEAD_CHECK_FRACTION = 0.1
DEAD_MARGIN_DB = 1.0
DEAD_RISE_DB = 0.1
MAX_RESTARTS = 2


# The slope of the rate-distortion curve in log-log terms, -dln(MSE)/dln(rate), measured on
# the embedded clip's version-2 curve (about 1.1 dB per doubling of the rate): the rate
# weight lambda = RD_SLOPE * MSE / target rate balances the two terms where the curve does.
RD_SLOPE = 0.25


@dataclass(frozen=True)
class RateTerm:
    """Rate-aware training: loss = MSE + lambda * (estimated weight bits / video pixels).

    `mode` "noise" trains on weights with uniform quantization noise of their learned steps;
    "hard" on the quantized weights themselves (straight-through), steps fixed, for the final
    fine-tune.
    lambda follows the training MSE (RD_SLOPE * MSE / target_bpp), so that one rule serves
    every clip and target without a table."""

    video_pixels: int
    target_bpp: float
    mode: str = "noise"
    slope: float = RD_SLOPE


@dataclass
class Progress:
    """What the trainer reports after every epoch (the CLI prints it on stderr)."""

    stage: str
    epoch: int
    epochs: int
    psnr: float
    iters_per_s: float
    eta_s: float
    recovered: bool = False
    weight_bpp: float | None = None  # rate-aware training: the estimated rate of the weights
    restarted: bool = False          # a dead start: fresh weights from here on


@dataclass
class TrainStats:
    epochs: int = 0
    iterations: int = 0
    seconds: float = 0.0
    final_psnr: float = 0.0
    recoveries: int = 0
    restarts: int = 0
    history: list[float] = field(default_factory=list)


def autocast_dtype(device: torch.device):
    """bf16 autocast where the hardware runs it natively (a CPU with AVX512-BF16, a GPU with
    bf16), which about halves a CPU step; otherwise plain fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


class FrameSource:
    """The video as one padded uint8 tensor on the training device (no float copy of it).

    Frames of four channels carry a mask (tasks/masks.py): the fourth says which pixels are
    known (255) and which are not (0). Unknown pixels are left out of the loss, so the network
    spends nothing on them and fills them from what it learns around them; the encoders see
    them as the frame's mean colour over its known pixels, so that what was under the mask
    cannot reach the embeddings either."""

    def __init__(self, frames: np.ndarray, padded_height: int, padded_width: int, device):
        t, h, w, channels = frames.shape
        self.count, self.height, self.width = t, h, w
        # Edge padding: the padded border repeats real content instead of inventing an edge.
        # Filled one frame at a time into one allocation: no float copy, no second uint8 copy.
        pad = ((0, padded_height - h), (0, padded_width - w), (0, 0))
        self.frames = torch.empty((t, 3, padded_height, padded_width), dtype=torch.uint8,
                                  device=device)
        self._input = frames  # for flat_colour_psnr, computed only if a run is judged
        self.known = (torch.empty((t, 1, h, w), dtype=torch.bool, device=device)
                      if channels == 4 else None)
        for i in range(t):
            rgb = frames[i, ..., :3]
            if self.known is not None:
                known = frames[i, ..., 3] >= 128
                rgb = _fill_unknown(rgb, known)
                self.known[i, 0] = torch.from_numpy(known)
            self.frames[i] = torch.from_numpy(np.pad(rgb, pad, mode="edge")).permute(2, 0, 1)
        self.device = device

    @functools.cached_property
    def flat_colour_psnr(self) -> float:
        """What a network that learned nothing scores: the dead-start check's reference."""
        return trivial_baselines(self._input)["flat_colour"]

    def _frame(self, i: int):
        x = self.frames[i : i + 1].float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    def triplet(self, i: int):
        """(previous, current, next) frames in [0, 1]; the missing neighbour at either end is
        the frame itself, so that difference is zero."""
        prev = self._frame(max(i - 1, 0))
        cur = self._frame(i)
        nxt = self._frame(min(i + 1, self.count - 1))
        return prev, cur, nxt

    def target(self, i: int):
        return self._frame(i)[..., : self.height, : self.width]

    def triplets(self, frames: list[int]):
        """triplet() of several frames, stacked along the batch axis."""
        if len(frames) == 1:
            return self.triplet(frames[0])
        parts = [self.triplet(i) for i in frames]
        return tuple(torch.cat([p[k] for p in parts]).contiguous(memory_format=torch.channels_last)
                     for k in range(3))

    def targets(self, frames: list[int]):
        return torch.cat([self.target(i) for i in frames]) if len(frames) > 1 else self.target(frames[0])

    def mse(self, out: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """The loss: mean squared error of `out` (padded frames, N x 3 x Hp x Wp) against the
        frames over their known pixels (all of them without a mask)."""
        out = out.float()[..., : self.height, : self.width]
        if self.known is None:
            return F.mse_loss(out, self.targets(frames))
        known = self.known[frames]
        error = (out - self.targets(frames)).square() * known
        return error.sum() / (known.sum() * 3)


def _fill_unknown(rgb: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`rgb` with its unknown pixels set to the mean colour of its known ones."""
    if known.all():
        return rgb
    mean = rgb[known].mean(axis=0).round().astype(np.uint8)
    return np.where(known[..., None], rgb, mean)


def apply_masks(model: VideoModel, masks: dict[str, torch.Tensor] | None) -> None:
    """Keep pruned decoder weights at exactly zero."""
    if not masks:
        return
    params = dict(model.decoder.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


@dataclass
class LoopState:
    """The loop's own variables at a step boundary (the epoch in progress is 1-based; it is
    epochs + 1 once the run is over)."""

    epoch: int = 1
    order: list[int] = field(default_factory=list)  # this epoch's frames; [] until drawn
    position: int = 0  # steps of this epoch done
    mse_sum: float = 0.0  # their summed loss
    last_mse: float = 0.0  # the previous epoch's mean MSE (sets the rate weight)
    bits: float = 0.0  # the latest estimate of the weights' bits (rate-aware training)
    iteration: int = 0
    lr_scale: float = 1.0
    best_psnr: float = -math.inf
    recoveries: int = 0
    restarts: int = 0  # dead starts thrown away
    born: int = 0  # the iteration the current weights started from
    judged: bool = False  # whether the current weights passed the dead-start check
    next_look: int = 0  # the iteration of the next look at a rising start (0: born + window)
    quarter_sum: float = 0.0  # training MSE summed over the steps of the quarter window...
    quarter_steps: int = 0  # ... since the last quarter boundary or look
    rise_from: float = 0.0  # the training PSNR of the quarter before (0: none yet)
    sample_mse: float = 0.0  # this epoch's training MSE summed over the sample frames
    history: list[float] = field(default_factory=list)


@dataclass
class Snapshot:
    """The whole state of a training run at a step boundary: what a checkpoint stores."""

    loop: LoopState
    model: dict[str, torch.Tensor]  # model.state_dict()
    optimizer: dict[int, dict[str, torch.Tensor]]  # the optimizer's per-parameter state
    rng: torch.Tensor  # the shuffling generator's state
    best: tuple[dict, dict] | None  # (model, optimizer) state of the best epoch so far


def train(
    model: VideoModel,
    source: FrameSource,
    epochs: int,
    *,
    stage: str = "train",
    recipe: Recipe = CODEC,
    lr: float | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
    save: Callable[[Snapshot], None] | None = None,
    save_every: int = 1,
    resume: Snapshot | None = None,
    rate: RateTerm | None = None,
    until: int | None = None,
) -> TrainStats:
    """Overfit `model` to `source` for `epochs` passes (shuffled, `recipe.batch` frames a
    step), in place, under `recipe`'s schedule; `lr` replaces the recipe's peak.

    `save(snapshot)` is called every `save_every` epochs, after the last epoch, and when Ctrl-C
    stops the run, which then raises errors.Interrupted. `resume` continues from a snapshot
    taken by an earlier call with the same arguments. `rate` makes the run rate-aware.
    `until` stops the run after that epoch of the `epochs`-long schedule, as a Ctrl-C would
    there: the stats cover the epochs run, `save` gets the state, and a later call resuming
    from it ends on what one uninterrupted call would (a trial, codec.py's --model auto).
    """
    if save_every < 1:
        raise ValueError(f"save_every must be at least 1, got {save_every}")
    if lr is not None:
        recipe = replace(recipe, lr=lr)
    run = _Run(model, source, epochs, stage, recipe, masks, seed, progress, rate)
    if resume is not None:
        run.restore(resume)
    stop = min(epochs, until) if until is not None else epochs
    with _deferred_interrupt() as interrupted:
        try:
            while run.loop.epoch <= stop:
                if not run.run_epoch(interrupted):
                    if save:
                        save(run.snapshot())
                    raise Interrupted(run.where())
                done = run.loop.epoch - 1
                if save and (done % save_every == 0 or done == stop):
                    save(run.snapshot())
            if stop < epochs:  # a trial: the state stays as it is, to be resumed
                return run.stats(run.loop.history[-1] if run.loop.history else 0.0)
            if interrupted():  # Ctrl-C after the last step: the stage is complete (and saved)
                raise Interrupted(f"after {'training' if stage == 'train' else 'fine-tuning'}")
        except Interrupted:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, mid-step: nothing consistent to save
            raise Interrupted(run.where()) from None
    return run.finish()


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C takes effect at the next step boundary: inside an optimizer step it would leave
    the weights and Adam's state half updated, and a checkpoint of them useless. A second
    Ctrl-C interrupts at once. Yields a function that says whether Ctrl-C came. Nothing changes
    off the main thread or where SIGINT does not raise KeyboardInterrupt (e.g. ignored)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Run:
    """One call of `train`: the model, its optimizer and the loop state, advanced in place."""

    def __init__(self, model, source, epochs, stage, recipe, masks, seed, progress, rate):
        self.seed = seed
        self.model, self.source, self.epochs, self.stage = model, source, epochs, stage
        self.recipe, self.masks, self.progress, self.rate = recipe, masks, progress, rate
        self.batch = max(1, min(recipe.batch, source.count))
        self.lr = recipe.step_lr(self.batch)
        device = source.device
        model.to(device).to(memory_format=torch.channels_last).train()
        self.optimizer = optimizers.make(recipe.optimizer, model, self.lr, BETAS)
        self.amp = autocast_dtype(device)
        self.gen = torch.Generator().manual_seed(seed)
        self.total = epochs * steps_per_epoch(source.count, self.batch)
        count = max(1, min(SAMPLE_FRAMES, source.count // SAMPLE_SPACING))
        self.sample = sorted({round(i * (source.count - 1) / max(1, count - 1))
                              for i in range(count)})
        self.loop, self.best = LoopState(), None
        # the transmitted tensors as one vector, for the rate term
        self.flat = FlatTensors([w.shape for _, w in model.transmitted()], device) if rate else None
        self.start = (time.perf_counter(), 0)  # time and iteration, for the speed shown
        apply_masks(model, masks)

    def where(self) -> str:
        label = "epoch" if self.stage == "train" else "fine-tuning epoch"
        return f"at {label} {self.loop.epoch}/{self.epochs}"

    def snapshot(self) -> Snapshot:
        """The current state (tensors by reference: save it before training goes on)."""
        return Snapshot(copy.deepcopy(self.loop), self.model.state_dict(),
                        self.optimizer.state_dict()["state"], self.gen.get_state(), self.best)

    def restore(self, snap: Snapshot) -> None:
        self.model.load_state_dict(snap.model)
        _load_optimizer_state(self.optimizer, snap.optimizer)
        self.gen.set_state(snap.rng)
        self.loop, self.best = copy.deepcopy(snap.loop), snap.best
        self.start = (time.perf_counter(), self.loop.iteration)

    def run_epoch(self, interrupted: Callable[[], bool]) -> bool:
        """Finish the epoch in progress; False when Ctrl-C stopped it at a step boundary."""
        loop = self.loop
        if not loop.order:
            loop.order = torch.randperm(self.source.count, generator=self.gen).tolist()
        diverged = False
        while loop.position < len(loop.order) and not diverged:
            if interrupted():
                return False
            diverged = not self.step(loop.order[loop.position : loop.position + self.batch])
        self.end_epoch(diverged)
        return True

    def step(self, frames: list[int]) -> bool:
        """One optimizer step on `frames`; False, and no step, when the loss is not finite."""
        loop, source = self.loop, self.source
        factor = self.recipe.factor(loop.iteration, self.total, self.stage)
        for group in self.optimizer.param_groups:  # a group may ask for a share of it
            group["lr"] = self.lr * loop.lr_scale * factor * group.get("lr_share", 1.0)
        prev, cur, nxt = source.triplets(frames)
        weights, bits = self.quantized_weights() if self.rate else ({}, None)
        device = source.device
        with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            out = functional_call(self.model, weights, (prev, cur, nxt))
        mse = source.mse(out, frames)
        loss = mse
        if bits is not None:
            distortion = loop.last_mse or mse.item()
            lam = self.rate.slope * distortion / self.rate.target_bpp
            if not self.restarting():
                loss = mse + lam * bits / self.rate.video_pixels
            loop.bits = bits.item()
        if not torch.isfinite(loss):
            return False
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP, foreach=True)
        self.optimizer.step()
        apply_masks(self.model, self.masks)
        value = mse.item()  # one read of the loss (a device sync on a GPU)
        loop.mse_sum += value * len(frames)
        loop.sample_mse += value * sum(f in self.sample for f in frames)
        loop.iteration += 1
        loop.position += len(frames)
        if self.stage == "train" and not loop.judged:
            self.watch_start(value)
        return True

    def watch_start(self, mse: float) -> None:
        """Sums the training loss over the last two quarters of the dead-start window (and
        over the quarters of each later look): dead() compares their PSNRs."""
        loop, quarter = self.loop, self.window // 4
        since = loop.iteration - loop.born
        if since > 2 * quarter:
            loop.quarter_sum += mse
            loop.quarter_steps += 1
        if since == 3 * quarter:
            loop.rise_from = self.quarter_psnr()

    def quantized_weights(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The transmitted weights as the file will (noise) or does (hard) hold them, by name
        for functional_call, and their estimated bits. All tensors are handled as one flat
        vector (coding/rate.py's FlatTensors); the noise is drawn in the same order as one
        draw per tensor would take it."""
        named = self.model.transmitted()
        hard = self.rate.mode == "hard"
        # Hard: the grid stays where rate control put it (the file's size is on target now and
        # the fine-tune only adapts the weights to it).
        steps = self.model.steps().detach() if hard else self.model.steps()
        w = self.flat.flatten([w for _, w in named])
        step = self.flat.spread(steps)
        y = straight_through(w, step) if hard else noisy(w, step, self.gen)
        bits = flat_bits(self.flat, w, y, steps)
        pieces = self.flat.split(y * step)
        return {f"decoder.{name}": piece for (name, _), piece in zip(named, pieces)}, bits

    def end_epoch(self, diverged: bool) -> None:
        """Collapse check, best-weights bookkeeping and progress; then on to the next epoch."""
        loop = self.loop
        psnr = -math.inf if diverged else psnr_from_mse(loop.mse_sum / self.source.count * PEAK**2)
        held = not diverged and self.weights_hold()
        collapsed = not held or psnr < loop.best_psnr - COLLAPSE_DROP_DB
        recovered = collapsed and self.best is not None and loop.recoveries < MAX_RECOVERIES
        restarted = not recovered and self.dead(max(psnr if held else -math.inf, loop.best_psnr))
        if restarted:
            self.restart()
        elif recovered:
            self.model.load_state_dict(self.best[0])
            _load_optimizer_state(self.optimizer, _cloned(self.best[1]))
            loop.lr_scale *= 0.5
            loop.recoveries += 1
        elif held and psnr > loop.best_psnr:
            loop.best_psnr = psnr
            self.best = (_cloned(self.model.state_dict()),
                         _cloned(self.optimizer.state_dict()["state"]))
        loop.history.append(psnr)
        if not diverged and not restarted:
            loop.last_mse = loop.mse_sum / self.source.count
        self.report(psnr, recovered, restarted)
        loop.epoch, loop.order, loop.position, loop.mse_sum = loop.epoch + 1, [], 0, 0.0
        loop.sample_mse = 0.0

    def weights_hold(self) -> bool:
        """Whether the weights the epoch ended on still score, on the sample frames, within
        COLLAPSE_DROP_DB of what the epoch's steps scored on them (a forward pass on the plain
        weights, no random numbers drawn: a resumed run judges alike)."""
        trained = self.loop.sample_mse / len(self.sample)
        source, amp = self.source, self.amp
        with torch.no_grad(), torch.autocast(source.device.type, dtype=amp or torch.float32,
                                             enabled=amp is not None):
            now = sum(source.mse(self.model(*source.triplet(i)), [i]).item()
                      for i in self.sample) / len(self.sample)
        return psnr_from_mse(now * PEAK**2) >= psnr_from_mse(trained * PEAK**2) - COLLAPSE_DROP_DB

    @property
    def window(self) -> int:
        """Steps from fresh weights to their dead-start judgement."""
        return max(DEAD_CHECK_STEPS, int(DEAD_CHECK_FRACTION * self.total))

    def quarter_psnr(self) -> float:
        """The training PSNR of the steps summed since the last quarter boundary (or look);
        starts the next sum."""
        loop = self.loop
        psnr = psnr_from_mse(loop.quarter_sum / max(1, loop.quarter_steps) * PEAK**2)
        loop.quarter_sum, loop.quarter_steps = 0.0, 0
        return psnr

    def dead(self, best: float) -> bool:
        """Judge the current weights DEAD_CHECK_STEPS (or DEAD_CHECK_FRACTION of the run) after
        they started: True when they are still at a flat colour's level and no longer rising;
        a rising start at that level is looked at again a quarter window later."""
        loop, window = self.loop, self.window
        if (self.stage != "train" or loop.judged or loop.restarts >= MAX_RESTARTS
                or self.total - loop.born < 2 * window
                or loop.iteration < max(loop.born + window, loop.next_look)):
            return False
        if best >= self.source.flat_colour_psnr + DEAD_MARGIN_DB:
            loop.judged = True
            return False
        now = self.quarter_psnr()
        if now < loop.rise_from + DEAD_RISE_DB:
            loop.judged = True
            return True
        loop.rise_from, loop.next_look = now, loop.iteration + window // 4
        if self.total - loop.next_look < window:  # too late for a restart to pay: let it rise
            loop.judged = True
        return False

    def restarting(self) -> bool:
        """After a dead start, the fresh weights learn without the rate term until an epoch
        clears the flat colour: at 2 threads the unseen clip's restarted networks died again
        under it (12.4-12.7 dB through epoch 14 of 60)."""
        loop = self.loop
        return loop.restarts > 0 and loop.best_psnr < self.source.flat_colour_psnr + DEAD_MARGIN_DB

    def restart(self) -> None:
        """Fresh weights from another seed, a fresh optimizer at half the learning rate; the
        schedule goes on where it is. torch's global random numbers are left as they were."""
        loop = self.loop
        loop.restarts += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919 * loop.restarts)
            fresh = type(self.model)(self.model.config)
        self.model.load_state_dict(fresh.state_dict())
        apply_masks(self.model, self.masks)
        self.optimizer = optimizers.make(self.recipe.optimizer, self.model, self.lr, BETAS)
        loop.lr_scale *= 0.5
        loop.born, loop.judged, loop.next_look = loop.iteration, False, 0
        loop.quarter_sum, loop.quarter_steps, loop.rise_from = 0.0, 0, 0.0
        loop.best_psnr, self.best, loop.last_mse = -math.inf, None, 0.0

    def report(self, psnr: float, recovered: bool, restarted: bool = False) -> None:
        if not self.progress:
            return
        elapsed, steps = time.perf_counter() - self.start[0], self.loop.iteration - self.start[1]
        rate = steps / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.loop.iteration) / rate if rate > 0 else 0.0
        weight_bpp = self.loop.bits / self.rate.video_pixels if self.rate else None
        self.progress(Progress(self.stage, self.loop.epoch, self.epochs, psnr, rate, eta, recovered,
                               weight_bpp, restarted))

    def finish(self) -> TrainStats:
        """A run that ended below its best (a late collapse) hands back the best weights."""
        loop = self.loop
        final = loop.history[-1] if loop.history else 0.0
        if self.best is not None and final < loop.best_psnr - 0.5:
            self.model.load_state_dict(self.best[0])
            final = loop.best_psnr
        return self.stats(final)

    def stats(self, final: float) -> TrainStats:
        loop = self.loop
        return TrainStats(epochs=self.epochs, iterations=loop.iteration,
                          seconds=time.perf_counter() - self.start[0], final_psnr=final,
                          recoveries=loop.recoveries, restarts=loop.restarts,
                          history=list(loop.history))


def _cloned(state):
    """A copy of a (nested) dict of tensors: each tensor cloned, its layout kept. What
    copy.deepcopy gives, without its per-object bookkeeping, which cost more than the training
    steps of a short clip's epoch (3.2 of 13.8 s encoding a one-frame clip at 150 epochs)."""
    if isinstance(state, dict):
        return {k: _cloned(v) for k, v in state.items()}
    return state.detach().clone() if isinstance(state, torch.Tensor) else copy.deepcopy(state)


def steps_per_epoch(frames: int, batch: int) -> int:
    return -(-frames // max(1, min(batch, frames)))


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Put per-parameter `state` back; the hyper-parameters stay this optimizer's own. Adam's
    moments take their parameter's memory layout again (a checkpoint stores them contiguous,
    channels_last weights are not): the fused kernel walks them in the parameter's order, and
    a resumed run must take the very steps the uninterrupted one took."""
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
    for group in optimizer.param_groups:
        for param in group["params"]:
            entries = optimizer.state.get(param, {})
            for key, value in entries.items():
                if value.shape == param.shape and value.stride() != param.stride():
                    entries[key] = torch.empty_like(param).copy_(value)


@contextmanager
def decoder_only(model: VideoModel, grid: EmbeddingGrid):
    """How the fine-tune trains (scaling/chunkwork.py): the encoders frozen, so that no step
    computes or applies their gradients, and their outputs rounded to `grid`, the file's."""
    kept = {id(p) for p in model.decoder.parameters()} | {id(model.log_steps)}
    encoders = [p for p in model.parameters() if id(p) not in kept]
    for p in encoders:
        p.requires_grad_(False)
    model.embedding_grid = grid
    try:
        yield
    finally:
        model.embedding_grid = None
        for p in encoders:
            p.requires_grad_(True)


@torch.no_grad()
def compute_embeddings(model: VideoModel, source: FrameSource) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-frame embeddings, returned in fp32: content (T, d, h, w) and diff (T, 2, h', w') or
    None. The encoders run under the autocast they were trained under: the decoder learnt
    from those embeddings, and at 1280x720 an fp32 pass took 176 ms a frame against 91 under
    bf16 (it runs after training and again after the fine-tune; docs/training.md)."""
    model.eval()
    content, diff = [], []
    amp = autocast_dtype(source.device)
    for i in range(source.count):
        with torch.autocast(source.device.type, dtype=amp or torch.float32,
                            enabled=amp is not None):
            c, d = model.embed(*source.triplet(i))
        content.append(c.float().cpu())
        if d is not None:
            diff.append(d.float().cpu())
    model.train()
    c_all = torch.cat(content).contiguous().numpy()
    d_all = torch.cat(diff).contiguous().numpy() if diff else None
    return c_all, d_all
