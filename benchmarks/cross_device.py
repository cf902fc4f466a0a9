"""A file encoded on one device decodes on the CPU: the largest frame difference.

Encodes the embedded clip (or --clip) with `dnerv_codec.codec.encode` on --device, decodes the
file there and on the CPU, and reports the largest absolute difference between the two
decodes (in 8-bit levels), the number of differing pixels, each decode's PSNR and the encode
time. Decoding is integer-exact only within one device; this measures how far apart two
devices land. Writes cross-device-<device>.json to --out and prints the table.

On a CPU-only machine the two decodes would be one configuration twice, so --device cpu needs
--other-threads N: the CPU decode then runs with N torch threads against --threads for the
encode and the first decode (gpu_check.sh --dry-run). The CPU decode is meant to give the same
bytes at any thread count, so there the difference is 0 unless that broke.

    python benchmarks/cross_device.py --device cuda
    python benchmarks/cross_device.py --device cpu --threads 2 --other-threads 1
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

import numpy as np
import torch

import benchlib
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.io import default_clip_path
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.device import pick_device

SCRIPT = "cross_device"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(default_clip_path()), help="video (default: embedded)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames")
    p.add_argument("--bpp", type=float, default=0.2, help="target rate (default 0.2)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads for the encode and the first decode (default: torch's)")
    p.add_argument("--other-threads", type=int, default=None, metavar="N",
                   help="torch threads for the CPU decode (default: as --threads)")
    benchlib.add_common_args(p, epochs=20, lr=None)
    args = p.parse_args(argv)
    for flag in ("threads", "other_threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args, p


@contextmanager
def torch_threads(count: int | None):
    """torch runs `count` threads meanwhile (None: as it is); the process-wide setting is
    restored after, as main() also runs inside the test process."""
    saved = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)


def configuration(device: str, threads: int) -> str:
    """How a decode ran, as the table and the JSON name it (threads matter on the CPU only)."""
    return f"cpu, {threads} thread{'s' if threads != 1 else ''}" if device == "cpu" else device


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, parser = parse_args(argv)
    device = pick_device(args.device).type
    with torch_threads(args.threads) as threads:
        other_threads = args.other_threads or threads
        if device == "cpu" and other_threads == threads:
            parser.error(f"both decodes would run on {configuration('cpu', threads)}, one "
                         "configuration twice: give --other-threads N, another count")
        clip = benchlib.load_clip(args.clip, args.frames)
        result = encode(clip.video, EncodeOptions(bpp=args.bpp, epochs=args.epochs, lr=args.lr,
                                                  device=device),
                        log=lambda m: benchlib.log(SCRIPT, m))
        here = np.stack(list(DecodedVideo(result.data, device=device).frames()))
    with torch_threads(other_threads):
        cpu = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    first, second = configuration(device, threads), configuration("cpu", other_threads)
    diff = np.abs(here.astype(np.int16) - cpu.astype(np.int16))
    row = {"device": device, "decoded-on": first, "compared-with": second,
           "bytes": len(result.data), "bpp": result.stats["bpp"],
           "encode-seconds": result.stats["encode_seconds"],
           "max-abs-diff": int(diff.max()), "differing-values": int((diff > 0).sum()),
           "values": int(diff.size), "psnr-rgb-device": psnr_rgb(clip.video.frames, here)["mean"],
           "psnr-rgb-cpu": psnr_rgb(clip.video.frames, cpu)["mean"]}
    benchlib.log(SCRIPT, f"encoded on {device}: largest difference between the decodes on "
                         f"{first} and on {second}: {row['max-abs-diff']} levels")
    v = benchlib.versions()
    data = {"name": f"cross-device-{device}",
            "description": (f"Encoded on {device} ({args.epochs} epochs, --bpp {args.bpp:g}); "
                            f"decoded on {first} and on {second}. {benchlib.tool_text(v)}. "
                            f"Clip {clip.name}: {clip.description}."),
            "command": benchlib.command_line(SCRIPT, argv), "versions": v,
            "results": benchlib.columns([row])}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


TABLE = [("encoded on", "---", lambda r: r["device"]),
         ("decoded on", "---", lambda r: r["decoded-on"]),
         ("compared with", "---", lambda r: r["compared-with"]),
         ("bytes", "---", lambda r: str(r["bytes"])), ("bpp", "---", lambda r: f"{r['bpp']:.4f}"),
         ("max abs diff (levels)", "---", lambda r: str(r["max-abs-diff"])),
         ("differing values", "---", lambda r: f"{r['differing-values']} of {r['values']}"),
         ("PSNR decoded there", "---", lambda r: f"{r['psnr-rgb-device']:.2f}"),
         ("PSNR compared decode", "---", lambda r: f"{r['psnr-rgb-cpu']:.2f}")]


def markdown(data: dict) -> str:
    return "\n".join(benchlib.markdown_table(TABLE, data["results"])) + "\n"


if __name__ == "__main__":
    main()
