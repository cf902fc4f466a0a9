"""The project's error types.

Every failure a user can cause (bad input, a corrupt .dnv, an impossible target) raises a
DnervError whose message is one line; the CLI prints it and exits with status 2. A handled
Ctrl-C is an Interrupted (exit status 130).
"""


class DnervError(Exception):
    """A user-facing failure with a one-line message."""

    exit_code = 2


class InputError(DnervError):
    """The input video (or an output path) cannot be used."""


class BitstreamError(DnervError):
    """A .dnv file is corrupt, truncated, of an unknown version or otherwise untrustworthy."""


class RateError(DnervError):
    """The requested rate cannot be reached for this video."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, handled: the run stopped cleanly. `where` says how far it got ("at epoch 3/30"),
    `checkpoint` names the checkpoint it leaves behind (None when there is none). A subclass of
    KeyboardInterrupt, so code that catches that still does."""

    def __init__(self, where: str, checkpoint: str | None = None):
        super().__init__(where)
        self.where, self.checkpoint = where, checkpoint


class TrainingError(DnervError):
    """Training did not learn the video, and restarting it did not help: no file is written."""


class BudgetError(DnervError):
    """Decoding a file would cost more memory or work than the limits allow."""
