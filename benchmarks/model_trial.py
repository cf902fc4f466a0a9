"""Does a short trial tell which model will end better? The evidence behind `--model auto`.

For each --bpp target, DNeRV and its HNeRV ablation are planned as `dnerv encode --bpp B
--preset P` plans them (one chunk), and each trains the first --trial epochs of that schedule
(chunkwork.trial_chunk, what `--model auto` runs), recording the training PSNR of every
epoch. Given the published curves (--finals: rd.py's rd-dnerv-*.json and rd-hnerv-*.json of
the same clip, preset and seed), it then says, for a trial of K epochs, which model the trial
picks at each rate and how many dB of the final file that pick gives up against the better
model's file.

    python benchmarks/model_trial.py --trial 12 \\
        --finals benchmarks/results/rd-dnerv-bunny_320x180.json benchmarks/results/rd-hnerv-bunny_320x180.json
    python benchmarks/model_trial.py bikes --frames 40 --downscale 2 --trial 12 \\
        --finals benchmarks/results/rd-dnerv-bikes-40f-ds2.json benchmarks/results/rd-hnerv-bikes-40f-ds2.json

Writes model-trial-<clip>.json to --out and prints the table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import benchlib
from dnerv_codec.coding import ratecontrol
from dnerv_codec.io import default_clip_path
from dnerv_codec.scaling.chunkwork import ChunkJob, trial_chunk
from dnerv_codec.training.modelchoice import MODELS
from dnerv_codec.training.recipe import DEFAULT_RECIPE

SCRIPT = "model_trial"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=f"benchmarks/{SCRIPT}.py", description=__doc__.split("\n")[0])
    parser.add_argument("clip", nargs="?", default=None,
                        help="a video, or bikes/carphone/bigbuckbunny (default: the embedded clip)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--downscale", type=int, default=1)
    parser.add_argument("--bpp", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--preset", default="fast", choices=list(ratecontrol.PRESET_EPOCHS))
    parser.add_argument("--trial", type=int, default=12, help="epochs of each trial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finals", nargs=2, type=Path, metavar=("DNERV_JSON", "HNERV_JSON"),
                        help="rd.py's results of the same clip, preset and seed")
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS_DIR)
    args = parser.parse_args(argv)

    clip = benchlib.load_clip(benchlib.clip_path(args.clip) if args.clip else default_clip_path(),
                              args.frames, args.downscale)
    video = clip.video
    h, w, n = video.height, video.width, video.frame_count
    epochs = ratecontrol.epochs_for(args.preset, None)
    finals = _finals(args.finals) if args.finals else {}
    rows = []
    for bpp in args.bpp:
        row = {"target_bpp": bpp}
        for name, diff in MODELS.items():
            config = ratecontrol.plan(ratecontrol.RateRequest(h, w, n, bpp, "dnerv" if diff else "hnerv"))
            job = ChunkJob(index=0, chunks=1, start=0, stop=n, config=config, bpp=bpp,
                           epochs=epochs, lr=None, seed=args.seed, device="auto",
                           learned_steps=True, min_prune=0.0, threads=torch.get_num_threads(),
                           recipe=DEFAULT_RECIPE)
            t0 = time.perf_counter()
            trial = trial_chunk(job, video.frames, args.trial,
                                progress=benchlib.epoch_printer(SCRIPT, f"{name} {bpp:g} bpp"))
            row[name] = {"history": trial.history, "seconds": time.perf_counter() - t0,
                         "params": config.parameter_count(),
                         "final_psnr": finals.get(name, {}).get(bpp)}
        rows.append(row)
    picks = _picks(rows, args.trial) if finals else []
    data = {"name": f"model-trial-{clip.name}", "clip": {"name": clip.name, "source": clip.description},
            "command": benchlib.command_line(SCRIPT, argv), "versions": benchlib.versions(),
            "preset": args.preset, "epochs": epochs, "trial": args.trial, "seed": args.seed,
            "rows": rows, "picks": picks}
    benchlib.publish(SCRIPT, args.out, data["name"], data, _markdown(rows, picks))
    return 0


def _finals(paths: list[Path]) -> dict:
    """{model: {target bpp: the file's PSNR-RGB}} from rd.py's column-shaped results."""
    out = {}
    for name, path in zip(MODELS, paths):
        results = json.loads(path.read_text())["results"]
        out[name] = dict(zip(results["target-bpp"], results["psnr-rgb"]))
    return out


def _picks(rows: list[dict], trial: int) -> list[dict]:
    """For each trial length K: what picking the model ahead at epoch K gives up."""
    picks = []
    for k in range(1, trial + 1):
        lost = []
        for row in rows:
            ahead = max(MODELS, key=lambda m: row[m]["history"][k - 1])
            finals = {m: row[m]["final_psnr"] for m in MODELS}
            if None in finals.values():
                continue
            lost.append(max(finals.values()) - finals[ahead])
        picks.append({"epochs": k, "right": sum(x == 0 for x in lost), "of": len(lost),
                      "lost_db": lost, "worst_db": max(lost, default=0.0)})
    return picks


def _markdown(rows: list[dict], picks: list[dict]) -> str:
    lines = ["| bpp | DNeRV params | HNeRV params | DNeRV trial PSNR by epoch | HNeRV trial PSNR by "
             "epoch | DNeRV file | HNeRV file |", "|---|---:|---:|---|---|---:|---:|"]
    for row in rows:
        d, hn = row["dnerv"], row["hnerv"]
        fmt = lambda h: " ".join(f"{x:.1f}" for x in h)  # noqa: E731
        fin = lambda x: f"{x:.2f}" if x is not None else "-"  # noqa: E731
        lines.append(f"| {row['target_bpp']:g} | {d['params']:,} | {hn['params']:,} | "
                     f"{fmt(d['history'])} | {fmt(hn['history'])} | {fin(d['final_psnr'])} | "
                     f"{fin(hn['final_psnr'])} |")
    if picks:
        lines += ["", "| trial epochs | right picks | worst loss (dB) | mean loss (dB) |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {p['epochs']} | {p['right']}/{p['of']} | {p['worst_db']:.2f} | "
                  f"{sum(p['lost_db']) / max(1, len(p['lost_db'])):.2f} |" for p in picks]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
