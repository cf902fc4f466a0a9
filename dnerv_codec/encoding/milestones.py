"""The encode's stages as a progress stream: where each begins and ends, and what each should take.

The trainer reports every epoch (training/loop.Progress); between and after the epochs the
encoder does work no epoch reports: the rate search, the fine-tune's second search, the
self-check. `Milestone`s mark those stages, and the first one of a plan carries the seconds each
stage still to come is expected to take, so that a progress display can show one bar and one ETA
for the whole encode (commands/progressbar.py) and a wrapper can read the same from --progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STAGES = ("trial", "train", "search", "finetune", "check")
"""In order: --model auto's trial of both models, training, the rate search, the fine-tune on
the quantized weights (and the search after it), and the encoder's decode of its own file."""

SEARCH_SHARE = 0.04
CHECK_SHARE = 0.04
"""Until they are timed, the rate search and the self-check are priced at this share of the
training's seconds each (on the embedded clip: 0.94 s of search and about 1 s of self-check for
a 30-second fast encode); the display's rate corrects the estimate as the encode goes."""


@dataclass(frozen=True)
class Milestone:
    """A stage begins (`done` False) or ends (`done` True).

    `units` is how many epoch reports the stage will make (0 for a stage without epochs);
    `plan`, on a beginning, the expected seconds of every stage still to come, this one
    included: a later plan replaces an earlier one (the trial's winner has its own)."""

    stage: str
    done: bool = False
    units: int = 0
    plan: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r} (one of {', '.join(STAGES)})")


def plan_seconds(epoch_seconds: float | None, epochs: int, finetune_epochs: int,
                 finetune_share: float = 1.0, check_seconds: float = 0.0,
                 trial_seconds: float = 0.0) -> dict[str, float]:
    """The expected seconds of each stage from the planner's figures: one epoch of every chunk
    (`epoch_seconds`, None when not measured: each epoch then counts one second), the epochs
    of training and of the fine-tune, what a fine-tuning step costs against a training one,
    and the self-check's measured estimate (0: not measured)."""
    epoch = epoch_seconds if epoch_seconds else 1.0
    train = epoch * epochs
    plan = {"train": train, "search": SEARCH_SHARE * train,
            "finetune": epoch * finetune_share * finetune_epochs,
            "check": check_seconds or CHECK_SHARE * train}
    if trial_seconds:
        plan = {"trial": trial_seconds, **plan}
    return plan


class Overall:
    """The whole encode's progress from its milestones and epoch reports: the share of the
    expected seconds done, and the time left at the pace so far. What the bar and --progress
    show; no display here."""

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self.plan: dict[str, float] = {}
        self.finished: list[str] = []
        self.stage: str | None = None
        self.units = self.seen = 0
        self.started: float | None = None

    def milestone(self, m: Milestone) -> None:
        if self.started is None:
            self.started = self._clock()
        if m.plan:  # a new plan prices what is still to come; what is done keeps its price
            self.plan = {s: v for s, v in self.plan.items() if s in self.finished}
            self.plan.update({s: v for s, v in m.plan.items() if s not in self.finished})
        if m.done:
            if m.stage not in self.finished:
                self.finished.append(m.stage)
            if self.stage == m.stage:
                self.stage, self.units, self.seen = None, 0, 0
        else:
            self.stage, self.units, self.seen = m.stage, m.units, 0

    def epoch(self) -> None:
        """One epoch reported by the trainer, in the current stage."""
        if self.stage is not None and self.units:
            self.seen = min(self.units, self.seen + 1)

    def fraction(self) -> float:
        """The share of the expected seconds done, 0..1."""
        total = sum(self.plan.values())
        if total <= 0:
            return 0.0
        done = sum(self.plan.get(s, 0.0) for s in self.finished)
        if self.stage is not None and self.units:
            done += self.plan.get(self.stage, 0.0) * self.seen / self.units
        return min(1.0, done / total)

    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far (None until 1 % is done)."""
        f = self.fraction()
        if self.started is None or f < 0.01:
            return None
        return (self._clock() - self.started) * (1 - f) / f
