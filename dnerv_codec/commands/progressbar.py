"""What the CLI says while it works: log levels, one progress bar, and --progress for wrappers.

Everything goes to stderr through the `dnerv` logger (stdout stays clean for --json - and
decode -o -), at the level -v/-q pick:

    -v     DEBUG    every epoch, a line each, besides the bar
    (none) INFO     what the encoder decides (model, plan, stages), and the bar
    -q     SUMMARY  notes and the summary line only
    -qq    ERROR    nothing but errors

The bar (tqdm) is the whole encode's, from the encoder's milestones (encoding/milestones.py):
every stage, the rate searches and the self-check included, with one ETA. On a terminal it is
redrawn in place; in a log file or a pipe it is a line at every tenth of the way instead.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

from dnerv_codec.encoding.milestones import Milestone, Overall
from dnerv_codec.errors import InputError

LOGGER = logging.getLogger("dnerv")
SUMMARY = 25
"""Between INFO and WARNING: the summary line, which -q keeps and -qq drops."""
logging.addLevelName(SUMMARY, "SUMMARY")


def set_verbosity(verbose: int, quiet: int) -> None:
    """Point the `dnerv` logger at stderr at the level -v/-q ask for."""
    level = {1: logging.DEBUG, 0: logging.INFO, -1: SUMMARY}.get(
        max(-2, min(1, verbose - quiet)), logging.ERROR)
    LOGGER.handlers[:] = [_BarSafeHandler()]
    LOGGER.setLevel(level)
    LOGGER.propagate = False


class _BarSafeHandler(logging.Handler):
    """Lines on stderr, "dnerv: " first, written around any bar being drawn (tqdm.write)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(f"dnerv: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 (a closed stderr must not end the encode)
            self.handleError(record)


def clock_text(seconds: float) -> str:
    """H:MM:SS, the hours unbounded (a day-long stage reads 26:40:00, not 02:40:00)."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:{secs:02d}"


class EncodeProgress:
    """The encode's progress: the bar on a terminal (lines elsewhere), epoch lines under -v,
    and the machine-readable stream when --progress asks for one. Feed it the encoder's
    `progress` (epochs) and `milestones` (stages)."""

    def __init__(self, machine: ProgressFile | None = None):
        self.overall = Overall()
        self.machine = machine
        self.shown = LOGGER.isEnabledFor(logging.INFO)
        self.tty = sys.stderr.isatty()
        self.bar: tqdm | None = None
        self.tenth = 0  # off a terminal: the last tenth of the way said
        self.last = ""

    def milestone(self, m: Milestone) -> None:
        self.overall.milestone(m)
        if not m.done:
            self.last = m.stage
        self._update()
        if self.machine:
            self.machine.milestone(m, self.overall)

    def epoch(self, p) -> None:
        self.overall.epoch()
        self.last = (f"{p.stage} epoch {p.epoch}/{p.epochs}, PSNR {p.psnr:.2f} dB"
                     + (f", weights ~{p.weight_bpp:.3f} bpp" if p.weight_bpp is not None else ""))
        if p.recovered:
            LOGGER.info(f"{p.stage} epoch {p.epoch}: collapse, the best weights restored")
        if p.restarted:
            LOGGER.info(f"{p.stage} epoch {p.epoch}: dead start, fresh weights at half the "
                        f"learning rate")
        LOGGER.debug(f"{self.last}, {p.iters_per_s:.1f} it/s, stage ETA {clock_text(p.eta_s)}")
        self._update()
        if self.machine:
            self.machine.epoch(p, self.overall)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _update(self) -> None:
        if not self.shown:
            return
        fraction, eta = self.overall.fraction(), self.overall.eta_seconds()
        eta_text = "ETA " + (clock_text(eta) if eta is not None else "--:--:--")
        if not self.tty:
            tenth = int(fraction * 10)
            if tenth > self.tenth:
                self.tenth = tenth
                LOGGER.info(f"{100 * fraction:3.0f} % ({self.last}), {eta_text}")
            return
        if self.bar is None:
            self.bar = tqdm(total=1000, file=sys.stderr, leave=False, dynamic_ncols=True,
                            bar_format="dnerv: {percentage:3.0f}%|{bar:24}| {elapsed} elapsed"
                                       "{postfix}")
        self.bar.n = round(1000 * fraction)
        self.bar.set_postfix_str(f"{eta_text}; {self.last}", refresh=True)


def frame_bar(frames: int) -> tqdm:
    """A bar of frames written (decode), on a terminal at INFO; a no-op bar elsewhere."""
    shown = LOGGER.isEnabledFor(logging.INFO) and sys.stderr.isatty()
    return tqdm(total=frames, file=sys.stderr, disable=not shown, leave=False, unit="frame",
                dynamic_ncols=True, bar_format="dnerv: {percentage:3.0f}%|{bar:24}| "
                                               "{n_fmt}/{total_fmt} frames, {elapsed} elapsed, "
                                               "ETA {remaining}, {rate_fmt}")


class ProgressFile:
    """Progress for the tools that wrap dnerv, as ffmpeg's -progress writes it: a block of
    key=value lines at every epoch and at every stage's beginning and end, each block ending
    `progress=continue`, and `progress=end` once the file is written. Every block says how far
    the whole encode is (`overall`, 0..1) and the seconds it still needs (`eta_s`, once known).
    Lines are flushed as they are written; stdout with '-'."""

    def __init__(self, path: str):
        try:
            self.out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write '{path}': {e.strerror}") from None

    def epoch(self, p, overall: Overall) -> None:
        self._write(f"stage={p.stage}", f"epoch={p.epoch}", f"epochs={p.epochs}",
                    f"psnr={p.psnr:.4f}", f"it_per_s={p.iters_per_s:.2f}",
                    f"stage_eta_s={p.eta_s:.1f}", *self._overall(overall), "progress=continue")

    def milestone(self, m: Milestone, overall: Overall) -> None:
        self._write(f"stage={m.stage}", f"state={'end' if m.done else 'begin'}",
                    *self._overall(overall), "progress=continue")

    def end(self) -> None:
        self._write("overall=1.0000", "eta_s=0.0", "progress=end")

    def close(self) -> None:
        if self.out is not sys.stdout and not self.out.closed:
            self.out.close()

    @staticmethod
    def _overall(overall: Overall) -> list[str]:
        eta = overall.eta_seconds()
        return [f"overall={overall.fraction():.4f}"] + ([f"eta_s={eta:.1f}"] if eta is not None
                                                        else [])

    def _write(self, *lines: str) -> None:
        if not self.out.closed:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
