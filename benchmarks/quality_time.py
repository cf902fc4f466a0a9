"""Quality per minute: this trainer against an older checkout's, side by side in one run.

1. **throughput**: training frames per second on the embedded clip at each --widths (c2),
   plain and rate-aware, after one warm-up epoch, for this code and for --baseline.
2. **time**: the PSNR of the network (before compression: every frame rendered in eval mode)
   after --seconds of training at c2 = --time-width, for both. Each trainer gets the epochs
   that fit the time at its own measured epoch time and its own default recipe (the
   baseline's is what a user got: the paper's lr 5e-4); the epoch used to measure is not
   counted, and the seconds actually spent are reported.
3. **flag**: `dnerv encode --time` on the embedded clip, timed from outside: the wall time
   against the budget, and the file's size and PSNR as the encoder reports them.

Every measurement is a fresh interpreter (`--job`), run alone, with the code of the tree it
is pointed at (PYTHONPATH), alternating the two trees. Writes <--name>.json
(quality-time-bunny_320x180.json) to --out and prints the tables.

    git worktree add ../base <commit>
    python benchmarks/quality_time.py --baseline ../base
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "quality_time"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, default=None,
                   help="root of an older checkout to compare with (git worktree add ../base X)")
    p.add_argument("--parts", nargs="+", default=["throughput", "time", "flag"],
                   choices=["throughput", "time", "flag"])
    p.add_argument("--widths", type=int, nargs="+", default=[20, 64],
                   help="decoder widths c2 of the throughput part (default 20 64)")
    p.add_argument("--time-width", type=int, default=20,
                   help="c2 of the time part (default 20: what --bpp 0.2 gets on the clip)")
    p.add_argument("--seconds", type=float, nargs="+", default=[90, 300],
                   help="training times of the time part (default 90 300)")
    p.add_argument("--flag-time", default="2m", help="the --time of the flag part (default 2m)")
    p.add_argument("--flag-bpp", type=float, default=0.1, help="its --bpp (default 0.1)")
    p.add_argument("--name", default="quality-time-bunny_320x180",
                   help="the result's name and file name (default quality-time-bunny_320x180)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                   help="folder for the results (default: benchmarks/results)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- jobs
# A job runs in a fresh interpreter against whichever dnerv_codec PYTHONPATH gives, so it uses
# only what the version-2 trainer already had: DNeRV, make_config, FrameSource, train.


def job(spec: dict) -> dict:
    import torch

    from dnerv_codec.io import default_clip_path, read_video
    from dnerv_codec.models.dnerv import DNeRV, make_config
    from dnerv_codec.training import loop

    video = read_video(default_clip_path())
    config = make_config(video.height, video.width, spec["width"])
    torch.manual_seed(0)
    model = DNeRV(config)
    source = loop.FrameSource(video.frames, config.padded_height, config.padded_width,
                              torch.device("cpu"))
    # the baseline's trainer has no recipes: its default was the paper's lr 5e-4
    lr = {} if "recipe" in loop.train.__code__.co_varnames else {"lr": 5e-4}
    rate = (loop.RateTerm(video.frame_count * video.height * video.width, 0.2)
            if spec.get("rate") else None)
    t0 = time.perf_counter()
    loop.train(model, source, 1, rate=rate, **lr)
    warm = time.perf_counter() - t0
    if spec["kind"] == "throughput":
        stats = loop.train(model, source, spec.get("epochs", 2), rate=rate, **lr)
        return {"fps": video.frame_count * stats.epochs / stats.seconds}
    torch.manual_seed(0)
    model = DNeRV(config)
    epochs = max(1, round(spec["seconds"] / warm))
    t0 = time.perf_counter()
    loop.train(model, source, epochs, **lr)
    seconds = time.perf_counter() - t0
    return {"epochs": epochs, "seconds": seconds, "psnr": network_psnr(model, source)}


def network_psnr(model, source) -> float:
    import torch
    model.eval()
    mse = 0.0
    with torch.no_grad():
        for i in range(source.count):
            out = model(*source.triplet(i)).float()[..., : source.height, : source.width]
            mse += torch.mean((out * 255 - source.target(i) * 255) ** 2).item()
    return 10 * math.log10(255**2 / (mse / source.count))


def run_job(tree: Path, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, __file__, "--job", json.dumps(spec)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{SCRIPT}: job {spec} on {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parts


def trees(args) -> dict[str, Path]:
    found = {"this": ROOT}
    if args.baseline:
        found["baseline"] = args.baseline.resolve()
    return found


def throughput(args, log) -> list[dict]:
    rows = []
    for width in args.widths:
        for rate in (False, True):
            for name, tree in trees(args).items():
                r = run_job(tree, {"kind": "throughput", "width": width, "rate": rate})
                rows.append({"part": "throughput", "tree": name, "width": width,
                             "rate-aware": rate, "fps": r["fps"]})
                log(f"throughput {name} c2={width} rate={rate}: {r['fps']:.2f} frames/s")
    return rows


def time_part(args, log) -> list[dict]:
    rows = []
    for seconds in args.seconds:
        for name, tree in trees(args).items():
            r = run_job(tree, {"kind": "time", "width": args.time_width, "seconds": seconds})
            rows.append({"part": "time", "tree": name, "width": args.time_width,
                         "budget-s": seconds, **r})
            log(f"time {name} {seconds:g} s: {r['psnr']:.2f} dB after {r['epochs']} epochs "
                f"({r['seconds']:.0f} s)")
    return rows


def flag_part(args, log) -> list[dict]:
    from dnerv_codec.io import default_clip_path
    with tempfile.TemporaryDirectory() as temp:
        out, stats = Path(temp) / "t.dnv", Path(temp) / "t.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dnerv_codec", "encode", str(default_clip_path()),
                        "-o", str(out), "--bpp", str(args.flag_bpp), "--time", args.flag_time,
                        "--json", str(stats), "-q"], check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        s = json.loads(stats.read_text())
    row = {"part": "flag", "time": args.flag_time, "budget-s": s["time_budget"], "wall-s": wall,
           "encode-s": s["encode_seconds"], "epochs": s["epochs"],
           "finetune-epochs": s["finetune_epochs"], "bpp": s["bpp"], "psnr-rgb": s["psnr_rgb"],
           "step-s": s["step_seconds"]}
    log(f"--time {args.flag_time}: {wall:.1f} s wall ({wall / s['time_budget']:.1%} of the "
        f"budget), {s['epochs']} + {s['finetune_epochs']} epochs, {s['psnr_rgb']:.2f} dB")
    return [row]


def markdown(data: dict) -> str:
    columns, out = data["results"], []
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    r = {part: [x for x in rows if x["part"] == part] for part in ("throughput", "time", "flag")}
    if r.get("throughput"):
        out += ["| tree | c2 | rate-aware | frames/s |", "|---|---|---|---|"]
        out += [f"| {x['tree']} | {x['width']} | {'yes' if x['rate-aware'] else 'no'} | "
                f"{x['fps']:.2f} |" for x in r["throughput"]]
        out.append("")
    if r.get("time"):
        out += ["| tree | c2 | budget | epochs | seconds | PSNR (dB) |", "|---|---|---|---|---|---|"]
        out += [f"| {x['tree']} | {x['width']} | {x['budget-s']:g} s | {x['epochs']} | "
                f"{x['seconds']:.0f} | {x['psnr']:.2f} |" for x in r["time"]]
        out.append("")
    if r.get("flag"):
        out += ["| --time | wall (s) | of budget | epochs + fine-tune | bpp | PSNR (dB) |",
                "|---|---|---|---|---|---|"]
        out += [f"| {x['time']} | {x['wall-s']:.1f} | {x['wall-s'] / x['budget-s']:.1%} | "
                f"{x['epochs']} + {x['finetune-epochs']} | {x['bpp']:.4f} | {x['psnr-rgb']:.2f} |"
                for x in r["flag"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.job:
        print(json.dumps(job(json.loads(args.job))))
        return {}
    import benchlib
    log = lambda m: benchlib.log(SCRIPT, m)  # noqa: E731
    parts = {"throughput": throughput, "time": time_part, "flag": flag_part}
    rows = [row for name in args.parts for row in parts[name](args, log)]
    v = benchlib.versions()
    data = {"name": args.name,
            "description": ("This trainer" + (f" against the checkout in {args.baseline}"
                                               if args.baseline else "")
                            + f" on the embedded clip, each measurement a fresh process run "
                              f"alone; {benchlib.tool_text(v)}."),
            "command": benchlib.command_line(SCRIPT, argv), "versions": v,
            "results": benchlib.columns(rows)}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


if __name__ == "__main__":
    main()
