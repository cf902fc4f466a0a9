"""BD-rate of one rd.py curve against another: the new code's against an older tree's.

rd.py compares codecs made in one run; this compares two runs of one codec, e.g. the curve a
`git worktree add ../base <commit>` checkout wrote against today's, on the same clip and
targets. Same method as rd.py (bjontegaard's PCHIP, the points no cheaper point beats), plus
the mean PSNR change at equal targets.

    python benchmarks/bd_between.py ../base-results/rd-dnerv-bunny_320x180.json \\
        rd-results/rd-dnerv-bunny_320x180.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from rd import BD_METRICS, bd_rate


def compare(reference: dict, test: dict) -> dict:
    ref, new = reference["results"], test["results"]
    common = sorted(set(ref["target-bpp"]) & set(new["target-bpp"]))
    gains = [new["psnr-rgb"][new["target-bpp"].index(t)]
             - ref["psnr-rgb"][ref["target-bpp"].index(t)]
             for t in common]
    return {"bd-rate": {m: bd_rate(ref, new, m) for m in BD_METRICS},
            "psnr-rgb-gain-db": dict(zip(map(str, common), np.round(gains, 2).tolist())),
            "mean-psnr-rgb-gain-db": round(float(np.mean(gains)), 2) if gains else None}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="the older curve (an rd-*.json)")
    p.add_argument("test", help="the newer curve, same clip and targets")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    with open(args.reference) as f, open(args.test) as g:
        out = compare(json.load(f), json.load(g))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
