"""Which model an encode trains: DNeRV, its HNeRV ablation, or (`--model auto`) the one a
short trial of both finds ahead.

At the same rate the two are different networks: DNeRV spends part of the file on its
difference stream (the diff embeddings and the diff branch), so its decoder is narrower. On
the clips measured HNeRV ends better at most rates, so it is the default (docs/training.md,
"Choosing the model"). Under `--model auto` both train the first TRIAL_FRACTION of their
schedule, and the one whose training PSNR is ahead then goes on from where its trial stopped:
its file is the one `--model dnerv` or `--model hnerv` would write, and what the choice costs
is the other model's trial. Measured, the trial picked no better than HNeRV alone: training
PSNR early in a run does not rank the two as their files end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnerv_codec.format.architecture import MODELS

TRIAL_MODELS = ("dnerv", "hnerv")  # the models `--model auto` tries (keys of MODELS)
MODEL_CHOICES = ("hnerv", "dnerv", "auto")  # the default first, as --help lists them
# HNeRV: on every clip and rate measured at --preset fast it decodes above DNeRV (10 of 12
# points, by 0.4-1.6 dB) or at most 0.53 dB under it, and trains 1.1-1.8x faster; a trial does
# not tell the two apart better (docs/training.md, "Choosing the model").
DEFAULT_MODEL = "hnerv"

# The trial: this fraction of the schedule's epochs, rounded up, where the schedule has at least
# MIN_TRIAL_SCHEDULE epochs (a shorter one trains DEFAULT_MODEL: its trial would be a few epochs
# of warm-up, which say little). From benchmarks/model_trial.py on two clips at five rates
# (docs/training.md).
TRIAL_FRACTION = 0.25
MIN_TRIAL_SCHEDULE = 8


def title(name: str) -> str:
    """How messages name the model `name` (a key of architecture.MODELS): DNeRV, HNeRV."""
    return MODELS[name].title


def trial_epochs(epochs: int) -> int:
    """Epochs of each model's trial, for a schedule of `epochs`; 0: too short to try both."""
    return math.ceil(TRIAL_FRACTION * epochs) if epochs >= MIN_TRIAL_SCHEDULE else 0


# Under --time, the share of the epochs it was planned each model keeps: the trial of the model
# that is not kept takes about TRIAL_FRACTION of its training, which is most of the budget.
BUDGET_SHARE = 1 - TRIAL_FRACTION


@dataclass(frozen=True)
class Choice:
    """What the trial found, and which model the encode keeps."""

    chosen: str                  # a key of TRIAL_MODELS
    trial_epochs: int            # the chosen model's trial...
    epochs: int                  # ... and the schedule it is the start of (under --time the
                                 # two models' plans may differ)
    psnr: dict[str, float]       # each model's training PSNR at the trial's last epoch
    seconds: dict[str, float]    # each trial's time

    @property
    def lead_db(self) -> float:
        other = [p for m, p in self.psnr.items() if m != self.chosen]
        return self.psnr[self.chosen] - max(other) if other else 0.0

    def text(self) -> str:
        others = ", ".join(f"{title(m)} {p:.2f} dB" for m, p in self.psnr.items()
                           if m != self.chosen)
        return (f"--model auto: {title(self.chosen)} is ahead after {self.trial_epochs} "
                f"of {self.epochs} epochs ({self.psnr[self.chosen]:.2f} dB against {others}, "
                f"training PSNR): it trains on from there")

    def as_dict(self) -> dict:
        return {"mode": "auto", "chosen": self.chosen, "trial_epochs": self.trial_epochs,
                "lead_db": self.lead_db, "trial_psnr": dict(self.psnr),
                "trial_seconds": dict(self.seconds)}


def choose(psnr: dict[str, float], seconds: dict[str, float], trial: dict[str, int],
           epochs: dict[str, int]) -> Choice:
    """The model whose trial ended with the higher training PSNR (DEFAULT_MODEL on a tie); a
    trial that diverged (nan) loses. Each dict is by model: `trial` the epochs of its trial,
    `epochs` those of its schedule."""
    def score(name: str) -> float:
        value = psnr[name]
        return value if math.isfinite(value) else -math.inf
    chosen = max(psnr, key=lambda m: (score(m), m == DEFAULT_MODEL))
    return Choice(chosen, trial[chosen], epochs[chosen], dict(psnr), dict(seconds))
