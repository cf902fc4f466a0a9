"""`dnerv encode` with the decoder's width fixed and the --time sizing off, for measuring what
the sizing chooses against (docs/training.md, "Sizing the decoder by the time it gets").

    python benchmarks/fixed_width.py WIDTH INPUT -o OUT.dnv [dnerv encode options]

WIDTH: a decoder width (c2) to train whatever the rate plans; -1: the width the rate plans,
never narrowed by --time; 0: the codec as it is.
"""

from __future__ import annotations

import sys

from dnerv_codec import cli
from dnerv_codec.coding import ratecontrol
from dnerv_codec.format.architecture import with_width
from dnerv_codec.training import timeplan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or not argv[0].lstrip("-").isdigit():
        raise SystemExit(__doc__)
    width, rest = int(argv[0]), argv[1:]
    if width:
        planned = ratecontrol.plan
        ratecontrol.plan = lambda *a, **k: (with_width(planned(*a, **k), width) if width > 0
                                            else planned(*a, **k))
        timeplan.SIZED_EPOCHS = 0  # no budget is short enough to narrow it
    return cli.main(["encode", *rest])


if __name__ == "__main__":
    sys.exit(main())
