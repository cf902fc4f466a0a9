"""Where an encode's time goes: one `dnerv encode` under cProfile, its wall time, the share the
rate search takes (coding/ratecontrol.fit and fit_steps, cumulative: packing every candidate,
decoding the sampled frames) and the bytes it wrote (their SHA-256, so that two trees' files
can be compared).

    python benchmarks/encode_profile.py --preset fast --threads 2 --name after

To compare with older code, run this script against the other tree, which it imports from
the current directory (`cd ../base && python ../main/benchmarks/encode_profile.py --name
before --out ../main/benchmarks/results/...`): the same script, the same clip, both trees.
Run it alone (docs/benchmarks.md: two torch processes on 2 cores slow each other).
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import hashlib
import io
import json
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the tree being measured, not necessarily this one's

from dnerv_codec.cli import main as cli_main  # noqa: E402

SCRIPT = "encode_profile"
RATE_SEARCH = ("fit", "fit_steps")  # in coding/ratecontrol.py
TRAINING = ("train_chunk", "finetune_chunk")  # in scaling/chunkwork.py


def _cumulative(stats: pstats.Stats, module_end: str, names: tuple[str, ...]) -> float:
    """Seconds spent inside the named functions of the module whose path ends so (outermost
    calls only: a recursive or nested call is not counted twice)."""
    total = 0.0
    for (path, _line, name), (_cc, _nc, _tt, cumulative, callers) in stats.stats.items():
        if name in names and path.endswith(module_end):
            inner = any(c[2] in names and c[0].endswith(module_end) for c in callers)
            total += 0 if inner else cumulative
    return total


def _versions() -> dict:
    """The measured tree's commit (with +dirty for uncommitted changes), torch and Python."""
    import torch

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    commit = git("rev-parse", "--short=12", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit + ("+dirty" if dirty else ""), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="dnerv_codec/data/bunny_320x180.mp4")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--bpp", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="run", help="label of this tree in the results")
    parser.add_argument("--out", default=None, help="folder for the JSON result (none: stdout)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out, stats_path = Path(tmp) / "out.dnv", Path(tmp) / "stats.json"
        command = ["encode", args.clip, "-o", str(out), "--preset", args.preset,
                   "--bpp", str(args.bpp), "--threads", str(args.threads), "--seed", "0",
                   "--device", "cpu", "-q", "--json", str(stats_path)]
        if args.epochs:
            command += ["--epochs", str(args.epochs)]
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            code = profile.runcall(cli_main, command)
        wall = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"{SCRIPT}: the encode failed (status {code})")
        data, stats = out.read_bytes(), json.loads(stats_path.read_text())
    profiled = pstats.Stats(profile)
    rate = _cumulative(profiled, "ratecontrol.py", RATE_SEARCH)
    train = _cumulative(profiled, "chunkwork.py", TRAINING)
    result = {
        "name": f"encode-profile-{args.name}",
        "description": "one dnerv encode under cProfile: wall seconds, the rate search's and "
                       "training's cumulative seconds, and the file's SHA-256",
        "command": "python benchmarks/encode_profile.py " + " ".join(argv or sys.argv[1:]),
        "tree": str(Path.cwd()),
        "versions": _versions(),
        "results": {"wall-s": wall, "rate-search-s": rate, "rate-search-share": rate / wall,
                    "training-s": train, "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "psnr-rgb": stats["psnr_rgb"],
                    "epochs": stats["epochs"], "finetune-epochs": stats["finetune_epochs"]},
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"{result['name']}.json").write_text(text)
    print(text, end="")
    return result


if __name__ == "__main__":
    main()
