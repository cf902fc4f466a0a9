"""A file encoded on one device decodes on the CPU: the largest frame difference.

Encodes the embedded clip (or --clip) with `dnerv_codec.codec.encode` on --device, decodes the
file there and on the CPU, and reports the largest absolute difference between the two
decodes (in 8-bit levels), the number of differing pixels, each decode's PSNR and the encode
time. Decoding is integer-exact only within one device; this measures how far apart two
devices land. Writes cross-device-<device>.json to --out and prints the table.

    python benchmarks/cross_device.py --device cuda
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import benchlib
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.io import default_clip_path
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.training.loop import pick_device

SCRIPT = "cross_device"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(default_clip_path()), help="video (default: embedded)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames")
    p.add_argument("--bpp", type=float, default=0.2, help="target rate (default 0.2)")
    benchlib.add_common_args(p, epochs=20, lr=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    device = pick_device(args.device).type
    clip = benchlib.load_clip(args.clip, args.frames)
    result = encode(clip.video, EncodeOptions(bpp=args.bpp, epochs=args.epochs, lr=args.lr,
                                              device=device),
                    log=lambda m: benchlib.log(SCRIPT, m))
    here = np.stack(list(DecodedVideo(result.data, device=device).frames()))
    cpu = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    diff = np.abs(here.astype(np.int16) - cpu.astype(np.int16))
    row = {"device": device, "bytes": len(result.data), "bpp": result.stats["bpp"],
           "encode-seconds": result.stats["encode_seconds"],
           "max-abs-diff": int(diff.max()), "differing-values": int((diff > 0).sum()),
           "values": int(diff.size), "psnr-rgb-device": psnr_rgb(clip.video.frames, here)["mean"],
           "psnr-rgb-cpu": psnr_rgb(clip.video.frames, cpu)["mean"]}
    benchlib.log(SCRIPT, f"encoded on {device}: largest difference between the {device} and CPU "
                         f"decodes {row['max-abs-diff']} levels")
    v = benchlib.versions()
    data = {"name": f"cross-device-{device}",
            "description": (f"Encoded on {device} ({args.epochs} epochs, --bpp {args.bpp:g}); "
                            f"decoded on {device} and on the CPU. {benchlib.tool_text(v)}. "
                            f"Clip {clip.name}: {clip.description}."),
            "command": benchlib.command_line(SCRIPT, argv), "versions": v,
            "results": benchlib.columns([row])}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


TABLE = [("encoded on", "---", lambda r: r["device"]),
         ("bytes", "---", lambda r: str(r["bytes"])), ("bpp", "---", lambda r: f"{r['bpp']:.4f}"),
         ("max abs diff (levels)", "---", lambda r: str(r["max-abs-diff"])),
         ("differing values", "---", lambda r: f"{r['differing-values']} of {r['values']}"),
         ("PSNR decoded there", "---", lambda r: f"{r['psnr-rgb-device']:.2f}"),
         ("PSNR decoded on CPU", "---", lambda r: f"{r['psnr-rgb-cpu']:.2f}")]


def markdown(data: dict) -> str:
    return "\n".join(benchlib.markdown_table(TABLE, data["results"])) + "\n"


if __name__ == "__main__":
    main()
