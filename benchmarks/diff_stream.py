"""Can DNeRV's difference stream earn its bits? Variants of it against HNeRV, whole encodes.

Each point is the file `dnerv encode --bpp B --preset P --model dnerv` writes (the library's
encode, one chunk, seed 0), with one thing about the difference stream changed:

    dnerv             as shipped: 2 diff channels, the diff branch at the recipe's rate
    dnerv-diff1       1 diff channel (cheaper diff embeddings, so a wider decoder)
    dnerv-diff4       4 diff channels
    dnerv-difflr3     the diff branch (diff encoder, diff decoder block, CCU) at 3x the rate
    dnerv-difflr0.3   ... at 0.3x
    hnerv             the ablation, no difference stream (the default model)

    python benchmarks/diff_stream.py --bpp 0.05 0.2 --variants dnerv dnerv-diff1 dnerv-difflr3 hnerv

Writes diff-stream-<clip>.json (CompressAI-shaped columns per variant) to --out and prints a
table of PSNR-RGB by variant and rate on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import benchlib
from dnerv_codec.codec import EncodeOptions, encode
from dnerv_codec.coding import ratecontrol
from dnerv_codec.io import default_clip_path
from dnerv_codec.training import optimizers

SCRIPT = "diff_stream"
VARIANTS = {"dnerv": {}, "dnerv-diff1": {"diff_channels": 1},
            "dnerv-diff4": {"diff_channels": 4}, "dnerv-difflr3": {"lr_share": 3.0},
            "dnerv-difflr0.3": {"lr_share": 0.3}, "hnerv": {}}
DIFF_BRANCH = ("diff_encoder.", "diff_stem.", "diff_block.", "ccu.")


@contextlib.contextmanager
def variant(diff_channels: int | None = None, lr_share: float | None = None):
    """The encoder with one change to the difference stream, undone on exit."""
    saved_choices, saved_optimizers = ratecontrol.EMBED_CHANNEL_CHOICES, dict(optimizers.OPTIMIZERS)
    try:
        if diff_channels is not None:
            ratecontrol.EMBED_CHANNEL_CHOICES = tuple((d, diff_channels)
                                                      for d, _ in saved_choices)
        if lr_share is not None:
            for name, make in saved_optimizers.items():
                optimizers.OPTIMIZERS[name] = _with_share(make, lr_share)
        yield
    finally:
        ratecontrol.EMBED_CHANNEL_CHOICES = saved_choices
        optimizers.OPTIMIZERS.clear()
        optimizers.OPTIMIZERS.update(saved_optimizers)


def _with_share(make, share: float):
    """`make`, its optimizer's parameters split in two groups: the diff branch at `share` of
    the learning rate (training/loop.py reads a group's lr_share), the rest at all of it."""
    def grouped(model, lr, betas):
        optimizer = make(model, lr, betas)
        diff = {id(p) for n, p in model.named_parameters() if n.startswith(DIFF_BRANCH)}
        params = optimizer.param_groups[0]["params"]
        rest = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        optimizer.param_groups = [
            {**rest, "params": [p for p in params if id(p) not in diff]},
            {**rest, "params": [p for p in params if id(p) in diff], "lr_share": share}]
        return optimizer
    return grouped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=f"benchmarks/{SCRIPT}.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("clip", nargs="?", default=None,
                        help="a video, or bikes/carphone/bigbuckbunny (default: the embedded clip)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--downscale", type=int, default=1)
    parser.add_argument("--bpp", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--preset", default="fast", choices=list(ratecontrol.PRESET_EPOCHS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS_DIR)
    args = parser.parse_args(argv)

    clip = benchlib.load_clip(benchlib.clip_path(args.clip) if args.clip else default_clip_path(),
                              args.frames, args.downscale)
    results = {}
    for name in args.variants:
        rows = []
        for bpp in args.bpp:
            options = EncodeOptions(bpp=bpp, preset=args.preset, seed=args.seed,
                                    model="hnerv" if name == "hnerv" else "dnerv")
            t0 = time.perf_counter()
            with variant(**VARIANTS[name]):
                stats = encode(clip.video, options,
                               progress=benchlib.epoch_printer(SCRIPT, f"{name} {bpp:g}")).stats
            rows.append({"target-bpp": bpp, "bpp": stats["bpp"], "psnr-rgb": stats["psnr_rgb"],
                         "psnr-rgb-total": stats["psnr_rgb_total"],
                         "decoder-params": stats["model"]["decoder_params"],
                         "diff-channels": stats["model"]["diff_channels"],
                         "train-psnr": stats["train_psnr"],
                         "encoding-time": time.perf_counter() - t0})
            benchlib.log(SCRIPT, f"{name} {bpp:g} bpp: {stats['psnr_rgb']:.2f} dB at "
                                 f"{stats['bpp']:.4f} bpp, {rows[-1]['encoding-time']:.0f} s")
        results[name] = benchlib.columns(rows)
    data = {"name": f"diff-stream-{clip.name}", "clip": {"name": clip.name,
                                                        "source": clip.description},
            "command": benchlib.command_line(SCRIPT, argv), "versions": benchlib.versions(),
            "preset": args.preset, "seed": args.seed, "results": results}
    benchlib.publish(SCRIPT, args.out, data["name"], data, _markdown(results, args.bpp))
    return 0


def _markdown(results: dict, rates: list[float]) -> str:
    lines = ["| variant | " + " | ".join(f"{b:g} bpp" for b in rates) + " | decoder params |",
             "|---|" + "---:|" * (len(rates) + 1)]
    for name, r in results.items():
        cells = [f"{p:.2f}" for p in r["psnr-rgb"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " | "
                     + " / ".join(f"{n:,}" for n in r["decoder-params"]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
