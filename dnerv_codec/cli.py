"""`dnerv`: encode, decode and inspect .dnv files.

Habits of ffmpeg and x264: positional input, `-o` for the output, progress and the summary on
stderr, stdout kept clean for machine output (`info --json`, `--json -`). Every user error is
one line on stderr and exit status 2; no traceback (set DNERV_DEBUG=1 to see one for a bug).
The commands live in commands/ (encode.py; decode.py: decode and info; params.py: the option
types and printing they share): they parse options and print, and the maths lives in codec.py
and below (the rate to plan for: coding/ratecontrol.target_bpp). This module is the group,
`main(argv)` and how errors and signals become exit statuses.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager

import click

from dnerv_codec import __version__
from dnerv_codec.commands.decode import decode, info
from dnerv_codec.commands.encode import (  # noqa: F401  (read by the docs and the tests)
    CORE_SECONDS_PER_MPX_STEP,
    PRESET_TIME_HELP,
    encode,
)
from dnerv_codec.commands.params import Duration, err  # noqa: F401  (Duration: tests)
from dnerv_codec.errors import DnervError, Interrupted

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


def _version_text() -> str:
    """`dnerv --version`: the package and the .dnv formats it writes and reads."""
    from dnerv_codec.format.chunks import CHUNKED_VERSION
    from dnerv_codec.format.container import FORMAT_VERSION, READABLE_MAJORS

    readable = ", ".join(f"{m}.x" for m in (*READABLE_MAJORS, CHUNKED_VERSION[0]))
    return (f"dnerv {__version__}: writes .dnv format {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]} "
            f"(one chunk) and {CHUNKED_VERSION[0]}.{CHUNKED_VERSION[1]} (several chunks); reads "
            f"{readable}")


def _print_version(ctx, param, value) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Print the package version and the .dnv formats it writes and reads.")
def cli():
    """DNeRV neural video codec (Difference Neural Representation for Videos, CVPR 2023).

    Overfits a small network to one video, charging the rate of its weights as it learns,
    then quantizes and entropy-codes it into a self-describing .dnv file that `dnerv decode`
    turns back into frames.
    """


for command in (encode, decode, info):
    cli.add_command(command)


def _interrupted(exc: BaseException | None, signame: str) -> str:
    """The line for Ctrl-C or SIGTERM: how far an encode got and where its checkpoint is."""
    what = "interrupted" if signame == "SIGINT" else f"stopped by {signame}"
    if not isinstance(exc, Interrupted):
        return f"dnerv: {what}"
    if not exc.checkpoint:
        return f"dnerv: {what} {exc.where}"
    return f"dnerv: {what} {exc.where}; checkpoint saved to {exc.checkpoint} (resume with --resume)"


# SIGTERM is what kill, timeout and docker stop send; SIGHUP comes when the terminal closes.
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _stop_signals_as_ctrl_c():
    """While the CLI runs, SIGTERM and SIGHUP do what Ctrl-C does (whatever SIGINT's handler is
    at that moment: training stops at the next step and saves its checkpoint; elsewhere a
    KeyboardInterrupt unwinds and every temporary file is removed). Yields a list that holds
    the last such signal's name, so that the exit status can say which signal it was."""
    received = ["SIGINT"]
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def as_ctrl_c(signum, frame):
        received[0] = signal.Signals(signum).name
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, as_ctrl_c) for sig in _STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 internal error, 2 user error, 130 Ctrl-C,
    128 + N for signal N: 143 for SIGTERM, 129 for SIGHUP)."""
    with _stop_signals_as_ctrl_c() as received, warnings.catch_warnings():
        if not os.environ.get("DNERV_DEBUG"):
            warnings.simplefilter("ignore")  # library warnings are not for users; errors are ours
        try:
            cli.main(args=argv, prog_name="dnerv", standalone_mode=False,
                     obj={"started": time.perf_counter()})
            return 0
        except DnervError as e:
            err(f"dnerv: error: {e}")
            return e.exit_code
        except click.exceptions.Abort as e:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
            return _stopped(e.__cause__, received[0])
        except KeyboardInterrupt as e:
            return _stopped(e, received[0])
        except click.ClickException as e:
            e.show()
            return e.exit_code
        except click.exceptions.Exit as e:
            return e.exit_code
        except Exception as e:  # a bug: one line unless asked for the traceback
            if os.environ.get("DNERV_DEBUG"):
                traceback.print_exc()
            err(f"dnerv: internal error: {type(e).__name__}: {e} (set DNERV_DEBUG=1 for a traceback)")
            return EXIT_INTERNAL_ERROR


def _stopped(exc: BaseException | None, signame: str) -> int:
    err(_interrupted(exc, signame))
    return EXIT_INTERRUPTED if signame == "SIGINT" else 128 + signal.Signals[signame].value


def run() -> None:
    """The `dnerv` command: main(), then exit. A render worker abandoned by Ctrl-C or SIGTERM
    (decoding/video._single_threaded_workers, _interruptible) may still be inside a native
    operation, or just leaving one, which interpreter shutdown would abort (`terminate
    called`, status 134, seen even after the thread reported itself finished): after an
    interrupt, or while a worker is alive, the process leaves at once instead, its outputs
    already cleaned up and its streams flushed."""
    status = main()
    from dnerv_codec.format.budget import RENDER_THREAD
    interrupted = status == EXIT_INTERRUPTED or status > 128
    if interrupted or any(t.name == RENDER_THREAD and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
