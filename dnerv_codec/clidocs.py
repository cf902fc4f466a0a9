"""docs/cli.md is generated from the CLI's own --help text, so the docs cannot drift from it.

    python -m dnerv_codec.clidocs > docs/cli.md
"""

from __future__ import annotations

import click

from dnerv_codec.cli import cli

INTRO = """# `dnerv` command-line reference

Generated from the CLI's own help by `python -m dnerv_codec.clidocs > docs/cli.md`;
a test fails when this file and the help text differ.

Conventions: progress and the one-line summary go to stderr; stdout carries only machine output
(`--json -` of every command, `decode -o -`, `encode --progress -`). Errors are one line on
stderr with exit status 2 (1 for an internal error, 130 when interrupted). How much is said:
`-v` every epoch a line; by default what the encoder decides and one progress bar for the whole
encode (on a terminal; a line at every tenth of the way in a log); `-q` notes and the summary
line only; `-qq` errors only. The same option means the same in every command: `--json PATH`
(`-` for stdout), `--frames N` (the first N) or `A:B` (frames A..B-1).
"""


def _help(command: click.Command, name: str, parent: click.Context | None) -> str:
    # The same help options as a real run (click adds -h lazily, from the group's settings).
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=100,
                        max_content_width=100, **cli.context_settings)
    return command.get_help(ctx)


def markdown() -> str:
    root = click.Context(cli, info_name="dnerv", terminal_width=100, max_content_width=100,
                         **cli.context_settings)
    parts = [INTRO, "## dnerv\n", "```", _help(cli, "dnerv", None), "```\n"]
    for name in ("encode", "decode", "info"):
        parts += [f"## dnerv {name}\n", "```", _help(cli.commands[name], name, root), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
