"""Peak memory of `dnerv encode` and `dnerv decode` on a short clip and on one 10x longer.

Both clips have the same frame size (the embedded 320x180 Bunny clip; the long one plays its
frames forwards and backwards until it is long enough) and the same network: the long clip's
--bpp is lowered until the rate control plans the short clip's decoder width (at equal bpp a
10x longer clip gets a 10x larger budget, so a wider network, and would measure that instead).
So the difference between the two peaks is what length costs. Encoding holds the frames as
uint8 (the input and its padded copy on the training device) and no float copy of the video;
decoding streams frames into the writer a few at a time, so its peak should not grow with the
length beyond the per-frame embeddings.

Each measurement is a fresh interpreter running the CLI in-process (`--child`), which reports
its own peak resident set (VmHWM from /proc/self/status; ru_maxrss where there is no /proc), so
no measurement inherits another's allocations; a child that only imports the codec gives the
baseline (Python, torch and the libraries). Prints a table; --json PATH also writes the figures
(CompressAI-like: {"name", "description", "command", "results": {...}}).

    OMP_NUM_THREADS=1 python benchmarks/memory.py --frames 24 --epochs 1 --json memory.json

With `--chunk N` both clips are encoded in chunks of N frames at the same rate: each chunk is
read, trained and decoded on its own, so the peaks should not grow with the length at all.

    OMP_NUM_THREADS=1 python benchmarks/memory.py --frames 48 --chunk 48 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPT = "memory"
LENGTH_FACTOR = 10


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24, help="frames of the short clip")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of each encode")
    p.add_argument("--bpp", type=float, default=0.2, help="target rate of each encode")
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="encode both clips in chunks of N frames at the same --bpp (every "
                        "chunk then has the same network, and the long clip 10x the chunks): "
                        "what streaming the chunks saves")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(cli_args: list[str]) -> None:
    """Run `dnerv CLI_ARGS` here (none: just import the codec) and print the peak as JSON."""
    import dnerv_codec.codec  # noqa: F401  (torch and everything the CLI loads)
    from dnerv_codec.cli import main
    code = main(cli_args) if cli_args else 0
    print(json.dumps({"code": code, "peak_mib": peak_rss_mib()}))


def measure(cli_args: list[str]) -> float:
    """Peak RSS in MiB of a fresh interpreter running `dnerv CLI_ARGS`."""
    done = subprocess.run([sys.executable, __file__, "--child", *cli_args],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{SCRIPT}: dnerv {shlex.join(cli_args)} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"{SCRIPT}: dnerv {shlex.join(cli_args)} exited {result['code']}:\n"
                         f"{done.stderr}")
    return result["peak_mib"]


def write_clip(path: Path, frame_count: int) -> tuple[int, int]:
    """The embedded clip played forwards and backwards to `frame_count` frames, as raw Y4M;
    returns (width, height)."""
    from dnerv_codec.io import default_clip_path, open_writer, read_video
    video = read_video(default_clip_path())
    cycle = np.concatenate([np.arange(video.frame_count), np.arange(video.frame_count)[::-1]])
    order = np.resize(cycle, frame_count)
    with open_writer(path, video.width, video.height, video.fps) as writer:
        for i in order:
            writer.write(video.frames[i])
    return video.width, video.height


def planned_width(size: tuple[int, int], frames: int, bpp: float) -> int:
    from dnerv_codec.coding import ratecontrol
    return ratecontrol.plan(ratecontrol.RateRequest(size[1], size[0], frames, bpp)).stem_channels


def same_width_bpp(size: tuple[int, int], frames: int, width: int, high: float) -> float:
    """The lowest --bpp (by bisection, below `high`) at which the plan for `frames` frames has
    decoder width `width`: the planned width grows with the rate."""
    from dnerv_codec.errors import RateError
    low = 0.0
    for _ in range(40):
        middle = (low + high) / 2
        try:
            fits = planned_width(size, frames, middle) >= width
        except RateError:  # below what the embeddings alone cost
            fits = False
        low, high = (low, middle) if fits else (middle, high)
    return high


def log(message: str) -> None:
    print(f"{SCRIPT}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child is not None:
        child(args.child)
        return {}
    rows = {"frames": [], "bpp": [], "stem_channels": [], "raw_video_mib": [],
            "encode_peak_mib": [], "decode_peak_mib": [], "encode_seconds": []}
    baseline = measure([])
    with tempfile.TemporaryDirectory() as temp:
        width = None
        for frames in (args.frames, LENGTH_FACTOR * args.frames):
            clip, dnv = Path(temp) / f"clip{frames}.y4m", Path(temp) / f"clip{frames}.dnv"
            size = write_clip(clip, frames)
            if args.chunk:
                bpp, width = args.bpp, planned_width(size, args.chunk, args.bpp)
                chunking = ["--chunk", str(args.chunk)]
            else:
                bpp = args.bpp if width is None else same_width_bpp(size, frames, width, args.bpp)
                width, chunking = planned_width(size, frames, bpp), []
            t = time.perf_counter()
            encode = measure(["encode", str(clip), "-o", str(dnv), "--epochs", str(args.epochs),
                              "--bpp", f"{bpp:.6g}", "--device", "cpu", "-q", *chunking])
            seconds = time.perf_counter() - t
            decode = measure(["decode", str(dnv), "-o", str(Path(temp) / "out.y4m"), "-q"])
            raw = frames * size[0] * size[1] * 3 / 2**20
            for key, value in (("frames", frames), ("bpp", float(f"{bpp:.6g}")),
                               ("stem_channels", width), ("raw_video_mib", round(raw, 1)),
                               ("encode_peak_mib", round(encode, 1)),
                               ("decode_peak_mib", round(decode, 1)),
                               ("encode_seconds", round(seconds, 1))):
                rows[key].append(value)
            log(f"{frames} frames {size[0]}x{size[1]}, c2={width}: encode peak {encode:.0f} MiB, "
                f"decode peak {decode:.0f} MiB (baseline {baseline:.0f} MiB)")
    result = {"name": SCRIPT,
              "description": f"peak RSS of dnerv encode/decode (CPU), a {args.frames}-frame clip "
                             f"and one {LENGTH_FACTOR}x longer; baseline = importing the codec",
              "command": shlex.join(["python", "benchmarks/memory.py", *argv]),
              "baseline_mib": round(baseline, 1), "results": rows,
              "encode_peak_ratio": round(rows["encode_peak_mib"][1] / rows["encode_peak_mib"][0], 3),
              "decode_peak_ratio": round(rows["decode_peak_mib"][1] / rows["decode_peak_mib"][0], 3)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return result


def table(result: dict) -> str:
    r = result["results"]
    lines = ["| frames | --bpp | c2 | raw video | encode peak RSS | decode peak RSS |",
             "|---|---|---|---|---|---|"]
    for i, frames in enumerate(r["frames"]):
        lines.append(f"| {frames} | {r['bpp'][i]:g} | {r['stem_channels'][i]} | "
                     f"{r['raw_video_mib'][i]} MiB | {r['encode_peak_mib'][i]} MiB | "
                     f"{r['decode_peak_mib'][i]} MiB |")
    return "\n".join(lines + [f"\nbaseline (import only): {result['baseline_mib']} MiB; "
                               f"{LENGTH_FACTOR}x longer / short: encode "
                               f"{result['encode_peak_ratio']}x, decode "
                               f"{result['decode_peak_ratio']}x"])


if __name__ == "__main__":
    main()
