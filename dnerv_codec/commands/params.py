"""What the commands share: option types that refuse bad values in one line (finite numbers,
amounts with suffixes, durations), the decode limits' options, progress and summary printing
on stderr, and the checks made before any work starts."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import click

from dnerv_codec.errors import InputError

MAX_TIME_BUDGET = 30 * 86400


def err(message: str) -> None:
    click.echo(message, err=True)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every comparison)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Quantity(click.ParamType):
    """A positive amount with an optional suffix: binary for bytes (4G = 4 GiB), decimal for
    counts (2e15, 2P). `unit` names it in messages."""

    _SUFFIXES = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

    def __init__(self, binary: bool, unit: str):
        self.binary, self.name = binary, unit

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        # every form the tool prints reads back: 1e+15 and 1.42e+15 (--max-work in notes and
        # errors), 4.0 GiB and 123 bytes (memory in `info` and errors), 4G (--help)
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e\+?[0-9]+)?)\s*([kmgtpe]?)(?:i?b|bytes)?\s*",
                         str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not an amount such as 4G or 2e15.", param, ctx)
        base = 1024 if self.binary else 1000
        number = float(m.group(1)) * base ** self._SUFFIXES[m.group(2).lower()]
        if not (math.isfinite(number) and 1 <= number < 2**62):
            self.fail(f"{value!r} is out of range.", param, ctx)
        return int(number)


class Duration(click.ParamType):
    """A duration: seconds (90), or with units (90s, 5m, 2.5min, 1h30m)."""

    name = "DURATION"
    _UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = re.sub(r"\s+", "", str(value).lower())
        parts = re.findall(r"(\d+(?:\.\d+)?)(min|[smh]?)", text)
        seconds = sum(float(n) * self._UNITS[u] for n, u in parts)
        if not parts or "".join(n + u for n, u in parts) != text:
            self.fail(f"{value!r} is not a duration such as 90s, 5m or 1h30m.", param, ctx)
        if not (math.isfinite(seconds) and 1 <= seconds <= MAX_TIME_BUDGET):
            self.fail(f"{value!r} is out of range (1 s to {MAX_TIME_BUDGET // 86400} days).",
                      param, ctx)
        return seconds


def clock_text(seconds: float) -> str:
    """H:MM:SS, the hours unbounded (a day-long stage reads 26:40:00, not 02:40:00)."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:{secs:02d}"


class ProgressPrinter:
    """One status line per epoch on a terminal (rewritten in place), about ten lines per stage
    in a log file or a pipe."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, p) -> None:
        if self.quiet:
            return
        eta = clock_text(p.eta_s)
        weights = f"  weights ~{p.weight_bpp:.3f} bpp" if p.weight_bpp is not None else ""
        line = (f"{p.stage:8s} epoch {p.epoch:>4}/{p.epochs}  PSNR {p.psnr:6.2f} dB{weights}  "
                f"{p.iters_per_s:6.1f} it/s  ETA {eta}" + ("  (collapse: restored best)" if p.recovered else "")
                + ("  (dead start: fresh weights, half the learning rate)"
                   if p.restarted else ""))
        if self.tty:
            end = "\n" if p.epoch == p.epochs else ""
            click.echo("\r" + line, err=True, nl=False)
            if end:
                click.echo("", err=True)
        elif (p.epoch == p.epochs or p.recovered or p.restarted
              or p.epoch % max(1, p.epochs // 10) == 0):
            err(line)


class ProgressFile:
    """Progress for the tools that wrap dnerv, as ffmpeg's -progress writes it: a block of
    key=value lines an epoch, each ending `progress=continue`, and `progress=end` once the file
    is written. Lines are flushed as they are written; stdout with '-'."""

    def __init__(self, path: str):
        try:
            self.out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write '{path}': {e.strerror}") from None

    def __call__(self, p) -> None:
        self._write(f"stage={p.stage}", f"epoch={p.epoch}", f"epochs={p.epochs}",
                    f"psnr={p.psnr:.4f}", f"it_per_s={p.iters_per_s:.2f}",
                    f"stage_eta_s={p.eta_s:.1f}", "progress=continue")

    def end(self) -> None:
        self._write("progress=end")

    def close(self) -> None:
        if self.out is not sys.stdout and not self.out.closed:
            self.out.close()

    def _write(self, *lines: str) -> None:
        if not self.out.closed:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()


def check_new_file(path: str, *others: tuple[str, str | None]) -> None:
    """Fail before hours of training, not after: the folder must exist, and the file must not
    be one of `others`, (role, path) pairs such as ("input", INPUT)."""
    from dnerv_codec.io import check_output_folder
    check_output_folder(path)
    for role, other in others:
        if other is not None and Path(path).resolve() == Path(other).resolve():
            raise InputError(f"'{path}' is also the {role}; choose another name")


def write_json(stats: dict, target: str) -> None:
    from dnerv_codec.io import atomic_write_bytes
    text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        atomic_write_bytes(target, text.encode())


def fps_text(fps) -> str:
    return f"{float(fps):.6g}" if fps.denominator != 1 else str(fps.numerator)


def check_device(device: str) -> None:
    if device == "cuda":
        from dnerv_codec.device import pick_device
        if pick_device("auto").type != "cuda":
            raise InputError("--device cuda: no CUDA device is available to torch")


def limits_options(command):
    """--max-memory and --max-work, shared by decode and info."""
    from dnerv_codec.format.budget import DEFAULT_MAX_MEMORY, DEFAULT_MAX_WORK
    command = click.option(
        "--max-work", type=Quantity(binary=False, unit="MACS"), default=DEFAULT_MAX_WORK,
        show_default=f"{DEFAULT_MAX_WORK:.0e}", metavar="MACS",
        help="Refuse to decode when the frames asked for need more multiply-accumulates than "
             "this (e.g. 2e15 or 2P).")(command)
    return click.option(
        "--max-memory", type=Quantity(binary=True, unit="BYTES"), default=DEFAULT_MAX_MEMORY,
        show_default="4G", metavar="BYTES",
        help="Peak memory a decode may use (e.g. 512M, 16G): frames too large for it are "
             "rendered in row bands, and a file that cannot fit is refused.")(command)


def parse_range(text: str | None, count: int) -> tuple[int, int]:
    if text is None:
        return 0, count
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else count
    except ValueError:
        raise InputError(f"--frames '{text}': expected A:B (a half-open range such as 0:10)") from None
    if not 0 <= start < stop <= count:
        raise InputError(f"--frames {text}: the file has frames 0:{count}")
    return start, stop
