"""How figures are written for people: one home for the few formats that several rooms print
(torch-free, so that `dnerv info` can use it)."""

from __future__ import annotations

import math


def format_seconds(seconds: float) -> str:
    """A duration as the CLI prints it: 45 s, 3 min 05 s, 2 h 07 min."""
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def figure_up(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant figures as `:.3g` writes it, rounded up rather than to
    the nearest: a need the user copies into a limit (`--max-work 1.43e+15`) must be enough."""
    if not (math.isfinite(value) and value > 0):
        return f"{value:.{digits}g}"
    unit = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    # rounding first keeps an exact figure (1.23e+15) from climbing a step on float noise
    return f"{math.ceil(round(value / unit, 6)) * unit:.{digits}g}"


def bytes_text(n: float, up: bool = False) -> str:
    """A size as the CLI writes it (4.0 GiB, 512.3 MiB, 900 bytes). With `up`, a need rounded
    up to the tenth shown, so that passing it back as --max-memory is enough."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = math.ceil(round(n / scale * 10, 6)) / 10 if up else n / scale
            return f"{value:.1f} {unit}"
    return f"{math.ceil(n) if up else n} bytes"
