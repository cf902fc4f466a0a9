"""Each throughput idea, measured: seconds per training frame of the codec's loop and variants.

At each --widths (c2) on the embedded clip (or --clip), one fresh process per variant (run alone, one
after another), one warm-up epoch untimed, then --epochs timed epochs of plain training:

- default: the loop as it is (fused Adam where torch has it, channels_last, one frame a step);
- foreach-adam: the multi-tensor Adam that version 2 used;
- official-convnext: the encoders' ConvNeXt block as the official DNeRV code runs it (its
  LayerNorm and layer scale are built but never applied in forward);
- torch-depthwise: the encoders' depthwise 7x7 with torch's own backward instead of the
  codec's (models/dnerv.py, _DepthwiseConv);
- contiguous: the network and frames in NCHW instead of channels_last;
- batch-2, batch-4: several frames a step (per frame: does a step on B frames cost less than
  B steps on one?);
- compile: torch.compile of the model (its compile time reported apart; falls back when the
  machine has no compiler);
- passive: OpenMP threads that sleep at once when they run out of work
  (OMP_WAIT_POLICY=PASSIVE) instead of spinning for a while;
- two-processes, two-processes-passive: two encodes at once with torch's default threads, with
  OpenMP's default and with passive waiting; two-processes-1-thread: two at once, one torch
  thread each (`--threads 1`).

Writes <--name>.json (throughput-cpu.json) to --out and prints the table.

    python benchmarks/throughput.py --widths 20 64
    python benchmarks/throughput.py --clip bigbuckbunny --frames 12 --widths 12 24 64 \
        --variants default torch-depthwise --name throughput-depthwise-720p
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = "throughput"
VARIANTS = ("default", "passive", "foreach-adam", "official-convnext", "torch-depthwise",
            "contiguous", "batch-2", "batch-4",
            "compile", "two-processes", "two-processes-passive", "two-processes-1-thread")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[20, 64], help="decoder widths c2")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs (default 1)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames")
    p.add_argument("--clip", default=None,
                   help="a video, or bikes / carphone / bigbuckbunny (default: the embedded clip)")
    p.add_argument("--name", default="throughput-cpu",
                   help="the result's name and file name (default throughput-cpu)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="folder for the results (default: benchmarks/results)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def job(spec: dict) -> dict:
    """One variant in this (fresh) process: seconds per frame of the timed epochs."""
    from dataclasses import replace

    import torch
    import torch.nn.functional as F

    from dnerv_codec.io import default_clip_path, read_video
    from dnerv_codec.models import dnerv
    from dnerv_codec.training import loop, optimizers
    from dnerv_codec.training.recipe import CODEC

    variant = spec["variant"]
    if variant == "official-convnext":
        dnerv.ConvNeXtBlock.forward = lambda self, x: x + self.pwconv2(
            F.gelu(self.pwconv1(self.dwconv(x))))
    if variant == "torch-depthwise":
        dnerv.depthwise_conv = lambda conv, x: conv(x)
    if variant == "foreach-adam":
        optimizers.OPTIMIZERS["adam"] = lambda model, lr, betas: torch.optim.Adam(
            model.parameters(), lr=lr, betas=betas, foreach=True)
    if variant == "contiguous":
        original = loop.FrameSource._frame
        loop.FrameSource._frame = lambda self, i: original(self, i).contiguous()
        torch.nn.Module.to_ = torch.nn.Module.to
        torch.nn.Module.to = lambda self, *a, **k: (
            self if k.get("memory_format") is torch.channels_last else self.to_(*a, **k))
    video = read_video(spec.get("clip") or default_clip_path(), max_frames=spec.get("frames"))
    config = dnerv.make_config(video.height, video.width, spec["width"])
    torch.manual_seed(0)
    model = dnerv.DNeRV(config)
    compile_seconds = None
    if variant == "compile":
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(model)
            x = torch.rand(1, 3, config.padded_height, config.padded_width)
            compiled(x, x, x).mean().backward()
            # plain training calls functional_call(model, {}, frames): the compiled module's
            loop.functional_call = lambda module, weights, args: compiled(*args)
        except Exception as e:  # no compiler, unsupported platform: report and measure eager
            print(f"{SCRIPT}: compile failed ({type(e).__name__}); eager", file=sys.stderr)
        compile_seconds = time.perf_counter() - t0
    source = loop.FrameSource(video.frames, config.padded_height, config.padded_width,
                              torch.device("cpu"))
    recipe = replace(CODEC, batch=int(variant.split("-")[1]) if variant.startswith("batch") else 1)
    loop.train(model, source, 1, recipe=recipe)
    stats = loop.train(model, source, spec["epochs"], recipe=recipe)
    return {"seconds-per-frame": stats.seconds / (spec["epochs"] * video.frame_count),
            "compile-seconds": compile_seconds}


def run_job(spec: dict, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--job", json.dumps(spec)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"{SCRIPT}: a job failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def measure(variant: str, spec: dict) -> dict:
    if variant.startswith("two-processes"):
        env = ({"OMP_WAIT_POLICY": "PASSIVE"} if variant.endswith("passive") else
               {"OMP_NUM_THREADS": "1"} if variant.endswith("1-thread") else {})
        pair = [run_job({**spec, "variant": "default"}, env) for _ in range(2)]
        times = [result(p)["seconds-per-frame"] for p in pair]
        # two frames are trained in about max(times) seconds: per frame of the pair
        return {"seconds-per-frame": max(times) / 2, "compile-seconds": None,
                "per-process-seconds-per-frame": max(times)}
    env = {"OMP_WAIT_POLICY": "PASSIVE"} if variant == "passive" else {}
    return result(run_job({**spec, "variant": variant}, env))


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.job:
        print(json.dumps(job(json.loads(args.job))))
        return {}
    import benchlib
    rows = []
    clip = str(benchlib.clip_path(args.clip)) if args.clip else None
    for width in args.widths:
        base = None
        for variant in args.variants:
            r = measure(variant, {"width": width, "epochs": args.epochs, "frames": args.frames,
                                  "clip": clip})
            base = base or r["seconds-per-frame"]
            rows.append({"width": width, "variant": variant, **r,
                         "frames-per-second": 1 / r["seconds-per-frame"],
                         "speed-up": base / r["seconds-per-frame"]})
            benchlib.log(SCRIPT, f"c2={width} {variant}: {1000 * r['seconds-per-frame']:.0f} ms "
                                 f"a frame ({base / r['seconds-per-frame']:.2f}x)")
    v = benchlib.versions()
    data = {"name": args.name,
            "description": (f"Training throughput of the codec's loop and its variants on "
                            f"{Path(clip).name if clip else 'the embedded clip'} (plain "
                            f"training, {args.epochs} timed epoch(s) after "
                            f"one warm-up epoch, each in a fresh process run alone; the "
                            f"two-processes rows run two at once and count the pair's frames). "
                            f"speed-up is against the default row of the same c2. "
                            f"{benchlib.tool_text(v)}."),
            "command": benchlib.command_line(SCRIPT, argv), "versions": v,
            "results": benchlib.columns(rows)}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


TABLE = [("c2", "---", lambda r: str(r["width"])), ("variant", "---", lambda r: r["variant"]),
         ("ms a frame", "---", lambda r: f"{1000 * r['seconds-per-frame']:.0f}"),
         ("frames/s", "---", lambda r: f"{r['frames-per-second']:.2f}"),
         ("speed-up", "---", lambda r: f"{r['speed-up']:.2f}x"),
         ("compile (s)", "---",
          lambda r: "" if r["compile-seconds"] is None else f"{r['compile-seconds']:.0f}")]


def markdown(data: dict) -> str:
    import benchlib  # here, not at the top: a --job process imports only the package
    return "\n".join(benchlib.markdown_table(TABLE, data["results"])) + "\n"


if __name__ == "__main__":
    main()
