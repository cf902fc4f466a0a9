"""Speed and memory of DNeRV and its HNeRV ablation at a few decoder widths.

For each model and width (c2): training iterations/s and seconds per epoch (after one warm-up
epoch, so that kernel selection is not counted), decoding frames/s with the network alone
(frames rendered to uint8 RGB in memory) and end to end (the .dnv file on disk to an .mp4, as
`dnerv decode` does), and the peak resident memory of training and of decoding (and the peak
CUDA memory on a GPU). Each training and each decoding runs in a fresh interpreter, so that
its peak memory is its own and not what an earlier job left in the allocator. Writes
speed-<device>.json to --out and prints the table as markdown on stdout.

    python benchmarks/speed.py                    # CUDA when present, else CPU
    python benchmarks/speed.py --device cpu --widths 16 32 64
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

import benchlib
from dnerv_codec.decoding.video import RENDER_BATCH, DecodedVideo
from dnerv_codec.io import default_clip_path, open_writer
from dnerv_codec.models.dnerv import DNeRV, make_config
from dnerv_codec.device import pick_device
from dnerv_codec.training.loop import FrameSource, train
from dnerv_codec.training.recipe import CODEC

SCRIPT = "speed"
MODELS = {"DNeRV": True, "HNeRV": False}  # name -> diff_stream
WARMUP_EPOCHS = 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(default_clip_path()),
                   help="video (default: the embedded 320x180 Bunny clip)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64],
                   help="decoder widths c2 to measure")
    p.add_argument("--batch", type=int, default=1,
                   help="frames per training step (default 1; the result file is named "
                        "speed-<device>-batch<B> when it is more)")
    benchlib.add_common_args(p, epochs=3, lr=CODEC.lr)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    device = pick_device(args.device)
    clip = benchlib.load_clip(args.clip, args.frames)
    benchlib.log(SCRIPT, f"clip {clip.name}: {clip.description}; device {device.type}")
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for width in args.widths:
            for model, diff_stream in MODELS.items():
                dnv = Path(temp) / f"{model}-{width}.dnv"
                trained = in_fresh_process(train_job, args.clip, args.frames, diff_stream, width,
                                           args.epochs, args.lr, device.type, dnv, args.batch)
                decoded = in_fresh_process(decode_job, dnv, Path(temp) / "out.mp4", device.type)
                rows.append({"model": model, **trained, **decoded})
                benchlib.log(SCRIPT, f"{model} c2={width}: {trained['train-iters-per-s']:.1f} it/s, "
                                     f"decode {decoded['decode-fps-network']:.0f} fps (network), "
                                     f"{decoded['decode-fps-to-file']:.0f} fps (to .mp4)")
    v = benchlib.versions()
    name = f"speed-{device.type}" + (f"-batch{args.batch}" if args.batch > 1 else "")
    data = {"name": name, "description": description(clip, args, device, v),
            "command": benchlib.command_line(SCRIPT, argv),
            "clip": {"name": clip.name, "source": clip.description}, "device": device.type,
            "versions": v, "results": benchlib.columns(rows)}
    benchlib.publish(SCRIPT, args.out, name, data, speed_markdown(data))
    return data


def description(clip, args, device, v: dict) -> str:
    return (f"Speed on {device.type} ({v['machine']}): training with the codec's loop "
            f"({args.batch} frame(s) a step, bf16 autocast where supported) for {args.epochs} "
            f"timed epochs after "
            f"{WARMUP_EPOCHS} warm-up epoch at lr {args.lr:g}; decoding a .dnv of the trained "
            f"model (8-bit weights, 6-bit embeddings, unpruned). decode-fps-network: "
            f"embeddings to uint8 RGB frames in memory, after one warm-up batch, file parsing "
            f"and model building excluded; decode-fps-to-file: the .dnv on disk to an H.264 "
            f".mp4 (crf 12, as `dnerv decode`), parsing and building included. Peak memory: "
            f"each training and each decoding runs in a fresh process; peak-rss-*-mib is that "
            f"process's peak resident set (Python, torch and the clip included; "
            f"baseline-rss-mib is the peak before the model existed), peak-cuda-*-mib is "
            f"torch.cuda.max_memory_allocated. {benchlib.tool_text(v)}. "
            f"Clip {clip.name}: {clip.description}.")


def in_fresh_process(job, *args):
    """Run job(*args) in a new interpreter (spawned, not forked: no inherited allocator)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(job, *args).result()


def train_job(clip_path: str, frames: int | None, diff_stream: bool, width: int, epochs: int,
              lr: float, device_name: str, dnv: Path, batch: int = 1) -> dict:
    """Train one model, time its epochs, and leave it as a .dnv file for decode_job."""
    device = torch.device(device_name)
    clip = benchlib.load_clip(clip_path, frames)
    v = clip.video
    baseline = peak_rss_mib()
    config = make_config(v.height, v.width, width, diff_stream)
    torch.manual_seed(0)
    model = DNeRV(config)
    source = FrameSource(v.frames, config.padded_height, config.padded_width, device)
    recipe = replace(CODEC, batch=batch)
    train(model, source, WARMUP_EPOCHS, recipe=recipe, lr=lr)
    stats = train(model, source, epochs, recipe=recipe, lr=lr)
    dnv.write_bytes(benchlib.pack_model(v, model, source))
    return {"stem-channels": width, "decoder-params": config.parameter_count(),
            "train-iters-per-s": stats.iterations / stats.seconds,
            "train-frames-per-s": v.frame_count * epochs / stats.seconds, "batch": batch,
            "seconds-per-epoch": stats.seconds / epochs,
            "baseline-rss-mib": baseline, "peak-rss-train-mib": peak_rss_mib(),
            "peak-cuda-train-mib": peak_cuda_mib(device)}


def decode_job(dnv: Path, mp4: Path, device_name: str) -> dict:
    device = torch.device(device_name)
    decoded = DecodedVideo(dnv.read_bytes(), device=device_name)
    n = decoded.frame_count
    decoded.render(range(min(RENDER_BATCH, n)))  # warm-up: kernel selection, caches
    t0 = time.perf_counter()
    for _ in decoded.frames():
        pass
    network = n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    decoded = DecodedVideo(dnv.read_bytes(), device=device_name)
    with open_writer(mp4, decoded.width, decoded.height, decoded.fps) as writer:
        for frame in decoded.frames():
            writer.write(frame)
    to_file = n / (time.perf_counter() - t0)
    return {"decode-fps-network": network, "decode-fps-to-file": to_file,
            "peak-rss-decode-mib": peak_rss_mib(), "peak-cuda-decode-mib": peak_cuda_mib(device)}


def peak_rss_mib() -> float:
    """This process's peak resident set so far (KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_cuda_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


COLUMNS = (("model", "model", "{}"), ("stem-channels", "c2", "{}"),
           ("decoder-params", "decoder params", "{:,}"),
           ("train-iters-per-s", "train it/s", "{:.1f}"),
           ("train-frames-per-s", "train frames/s", "{:.1f}"), ("seconds-per-epoch", "s/epoch", "{:.2f}"),
           ("decode-fps-network", "decode fps (network)", "{:.0f}"),
           ("decode-fps-to-file", "decode fps (to .mp4)", "{:.0f}"),
           ("peak-rss-train-mib", "peak RSS train (MiB)", "{:.0f}"),
           ("peak-rss-decode-mib", "peak RSS decode (MiB)", "{:.0f}"),
           ("peak-cuda-train-mib", "peak CUDA train (MiB)", "{:.0f}"),
           ("peak-cuda-decode-mib", "peak CUDA decode (MiB)", "{:.0f}"))


def speed_markdown(data: dict) -> str:
    """The rows of a speed-<device>.json as a markdown table (CUDA columns only on a GPU)."""
    r = data["results"]
    cols = [c for c in COLUMNS if any(x is not None for x in r.get(c[0], []))]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for i in range(len(r["model"])):
        lines.append("| " + " | ".join(fmt.format(r[key][i]) for key, _, fmt in cols) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
