"""`python -m dnerv_codec` is the `dnerv` command."""

from .cli import run

run()
