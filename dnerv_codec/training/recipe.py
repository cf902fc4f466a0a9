"""Training recipes: the peak learning rate, the shape of its schedule and the frames per step.

A recipe is everything about *how* a network is trained that is not the number of epochs:
`codec` (the default) is tuned for the short runs a codec user waits for, `paper` is the
DNeRV/HNeRV recipe, kept for reproduction. The schedule is a linear warm-up from
`warmup_start` x peak over the first `warmup_fraction` of the steps, then half a cosine from
the peak down to `floor` x peak. A fine-tune starts from trained weights and only anneals
(FINETUNE_LR_FRACTION), the same for every recipe.

Why the codec recipe is what it is: docs/training.md, from the sweeps of
`benchmarks/schedule.py` (the schedule) and `benchmarks/optimizer_sweep.py` (Muon and its peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A fine-tune starts from trained weights: it only anneals, from this fraction of the peak
# learning rate, with no warm-up. Re-running the warm-up to the full peak threw the quantized
# model off its minimum (measured on the embedded clip at 60 epochs, lr 2e-3: the fine-tunes at
# 0.2, 0.4 and 0.8 bpp all collapsed in their second epoch, 27.3 -> 19.3 dB at 0.4 bpp).
FINETUNE_LR_FRACTION = 0.1


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float                 # peak learning rate
    warmup_fraction: float    # of the training steps
    warmup_start: float       # the first step's learning rate, as a fraction of the peak
    floor: float = 0.0        # the last step's learning rate, as a fraction of the peak
    batch: int = 1            # frames per optimizer step
    optimizer: str = "adam"   # a name of training/optimizers.py
    purpose: str = ""

    def text(self) -> str:
        """What --help says about the recipe."""
        floor = f"cosine to {self.floor:g} x peak" if self.floor else "cosine to 0"
        mantissa, exponent = f"{self.lr:.1e}".split("e")
        lr = f"{float(mantissa):g}e{int(exponent)}"
        optimizer = OPTIMIZER_TEXT[self.optimizer]
        return (f"{self.purpose} ({optimizer}, peak lr {lr}, {self.warmup_fraction:.0%} "
                f"warm-up from {self.warmup_start:g} x peak, {floor}, {self.batch} frame(s) "
                f"a step)")

    def factor(self, iteration: int, total: int, stage: str = "train") -> float:
        """The learning rate at `iteration` of `total` steps, as a fraction of the peak."""
        if stage != "train":
            return FINETUNE_LR_FRACTION * _cosine(iteration / max(1, total))
        warm = max(1, int(self.warmup_fraction * total))
        if iteration < warm:
            return self.warmup_start + (1 - self.warmup_start) * iteration / warm
        return self.floor + (1 - self.floor) * _cosine((iteration - warm) / max(1, total - warm))

    def step_lr(self, batch: int | None = None) -> float:
        """The peak learning rate for `batch` frames a step: Adam's steps are scaled by the
        square root of the batch, so that a step on B frames moves the weights about as far
        as the B steps on one frame it replaces would in expectation of their noise."""
        return self.lr * math.sqrt(batch or self.batch)


OPTIMIZER_TEXT = {"adam": "Adam", "muon": "Muon on the conv kernels, Adam on the rest"}


def _cosine(t: float) -> float:
    """1 at t = 0, falling along half a cosine to 0 at t = 1."""
    return 0.5 * (1 + math.cos(math.pi * t))


# The DNeRV paper's training recipe: Adam lr 5e-4, 20 % linear warm-up from 0.1 x lr,
# cosine to 0, one frame a step.
PAPER = Recipe("paper", lr=5e-4, warmup_fraction=0.2, warmup_start=0.1, floor=0.0,
               purpose="the DNeRV paper's, for reproduction")
# The best of `benchmarks/schedule.py`'s sweep on two clips (docs/training.md): the paper's
# warm-up (a 5 % one collapsed at 4e-3 on the embedded clip), and a cosine that stops at a
# tenth of the peak instead of 0 (+0.2 / +0.1 dB). The optimizer and its peak, from
# `benchmarks/optimizer_sweep.py` at equal training time (60 s, 0.1 bpp): Muon at 8e-3 beat Adam at
# its best peak (4e-3, itself +2.5 / +6.1 dB over the paper's 5e-4 after 10 epochs) by 1.5 dB on
# the embedded clip and 4.0 dB on bikes; 4e-3 and 1.6e-2 were worse on both.
CODEC = Recipe("codec", lr=8e-3, warmup_fraction=0.2, warmup_start=0.1, floor=0.1,
               optimizer="muon", purpose="tuned for short runs on two clips (docs/training.md)")
RECIPES = {r.name: r for r in (CODEC, PAPER)}
DEFAULT_RECIPE = CODEC.name
