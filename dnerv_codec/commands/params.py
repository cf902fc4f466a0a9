"""What the commands share: option types that refuse bad values in one line (finite numbers,
amounts with suffixes, durations), the decode limits' options, progress and summary printing
on stderr, and the checks made before any work starts."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import click

from dnerv_codec.errors import InputError

MAX_TIME_BUDGET = 30 * 86400


class SectionedCommand(click.Command):
    """A command whose --help lists its options under headings, in the order `sections` gives:
    {heading: [an option name of each, ...]}; an option not named goes under "Other options"."""

    def __init__(self, *args, sections: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sections = sections or {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        heading_of = {name: heading for heading, names in self.sections.items()
                      for name in names}
        rows: dict[str, list[tuple[str, str]]] = {h: [] for h in self.sections}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is None:
                continue
            heading = next((heading_of[o] for o in param.opts if o in heading_of),
                           "Other options")
            rows.setdefault(heading, []).append(record)
        for heading, records in rows.items():
            if records:
                with formatter.section(heading):
                    formatter.write_dl(records)


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


def parse_span(text: str | None) -> tuple[int, int | None]:
    """encode --frames: N (the first N) or A:B (frames A..B-1, either end optional), before the
    video's length is known: (first frame, frame count or None for all the rest)."""
    if text is None:
        return 0, None
    parts = text.split(":") if ":" in text else ["", text]
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else None
    except ValueError:
        raise InputError(f"--frames '{text}': expected N (the first N frames) or A:B (a "
                         f"half-open range such as 0:10)") from None
    if start < 0 or (stop is not None and stop <= start):
        raise InputError(f"--frames {text}: expected 0 <= A < B")
    return start, None if stop is None else stop - start


def parse_range(text: str | None, count: int) -> tuple[int, int]:
    """decode --frames, read as encode's (parse_span), within a file of `count` frames:
    (start, stop)."""
    start, frames = parse_span(text)
    stop = count if frames is None else start + frames
    if not start < stop <= count:
        raise InputError(f"--frames {text}: the file has frames 0:{count}")
    return start, stop
