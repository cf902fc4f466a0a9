"""How figures are written for people: one home for the few formats that several rooms print
(torch-free, so that `dnerv info` can use it)."""

from __future__ import annotations


def format_seconds(seconds: float) -> str:
    """A duration as the CLI prints it: 45 s, 3 min 05 s, 2 h 07 min."""
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
