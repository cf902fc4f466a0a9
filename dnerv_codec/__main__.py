"""`python -m dnerv_codec` is the `dnerv` command."""

from dnerv_codec.cli import run

run()
