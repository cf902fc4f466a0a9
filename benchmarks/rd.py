"""Rate-distortion of DNeRV against its HNeRV ablation, x264 and x265, with BD-rates and plots.

For each clip, in one go:

- dnerv (DNeRV, `--model dnerv`) and hnerv (its HNeRV ablation, `--model hnerv`, the default)
  at every --bpp target, with the same training budget (--epochs, --lr, --seed), through the
  library API;
- x264 and x265 through PyAV, presets medium and slow, tune psnr, yuv420p, threads pinned to
  one, at CRF 51, 51-step, ... until the anchor covers the neural points' bpp and PSNR ranges
  (BD-rate needs curves that overlap in quality, not only in rate).

Every point is measured the same way: bpp from the size of the file on disk, then that file is
decoded to uint8 RGB and scored by dnerv_codec.metrics.quality_report. Writes
rd-<codec>-<clip>.json, rd-<clip>.png and bdrate-<clip>.json to --out and prints the BD-rate
tables (Bjontegaard, PCHIP, from the bjontegaard package) as markdown on stdout.

    python benchmarks/rd.py                       # the embedded Bunny clip, default targets
    python benchmarks/rd.py clip.mp4 --frames 32 --downscale 2 --bpp 0.1 0.2 --codecs dnerv x264-medium

DNeRV and HNeRV train as `dnerv encode --preset P` does (the preset's epochs, the codec
recipe), so a point is the file `dnerv encode --bpp B --preset P` writes. Results go to
./rd-results by default; the published ones in benchmarks/results are written by
benchmarks/run_all.sh with --out benchmarks/results.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import bjontegaard
import matplotlib
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

import benchlib
from benchlib import Clip
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.coding.ratecontrol import PRESET_EPOCHS
from dnerv_codec.errors import RateError
from dnerv_codec.io import Video, default_clip_path, read_video
from dnerv_codec.metrics import bpp as bits_per_pixel, ms_ssim_db, quality_report
from dnerv_codec.training.recipe import DEFAULT_RECIPE, RECIPES

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

SCRIPT = "rd"
# Outside the published results: a user's run on their own clip must not overwrite them.
DEFAULT_OUT = Path("rd-results")
NEURAL = ("dnerv", "hnerv")  # each codec is what `dnerv encode --model` names
ANCHORS = {f"{name}-{preset}": (lib, preset)
           for name, lib in (("x264", "libx264"), ("x265", "libx265"))
           for preset in ("medium", "slow")}
LABELS = {"dnerv": "DNeRV (--model dnerv)", "hnerv": "HNeRV (--model hnerv, the default)",
          **{c: c.replace("-", " ") for c in ANCHORS}}
BD_REFERENCES = ("x264-medium", "hnerv")
BD_METRICS = ("psnr-rgb", "psnr-yuv", "ms-ssim-rgb-db")
BD_METHOD = "pchip"
MAX_CRF = 51
SSIM_TICKS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)  # raw MS-SSIM axis
EXTENSIONS = {"libx264": ".h264", "libx265": ".hevc"}
# x265 writes ~2.3 KB of encoder-info SEI per keyframe unless told not to; one frame thread
# and one pool thread make the sizes independent of the machine's core count.
X265_PARAMS = "info=0:log-level=error:frame-threads=1:pools=1"
# x264 cannot be told not to write its encoder-info SEI (user data, once, ~660-690 bytes), so
# this bitstream filter removes SEI NAL units (type 6); with closed GOPs and no intra refresh,
# as here, x264 writes no other SEI.
X264_SEI_FILTER = "filter_units=remove_types=6"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="*", default=[str(default_clip_path())],
                   help="videos (default: the embedded 320x180 Bunny clip)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames")
    p.add_argument("--downscale", type=int, default=1, help="box downscale factor")
    p.add_argument("--bpp", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.8],
                   help="DNeRV/HNeRV rate targets in bits per pixel (default: 0.1 0.2 0.4 0.8)")
    p.add_argument("--preset", choices=sorted(PRESET_EPOCHS), default="fast",
                   help="training budget of DNeRV/HNeRV, as `dnerv encode --preset`: "
                        + ", ".join(f"{k} {v} epochs" for k, v in PRESET_EPOCHS.items())
                        + " (default: fast)")
    p.add_argument("--recipe", choices=list(RECIPES), default=DEFAULT_RECIPE,
                   help=f"learning-rate schedule, as `dnerv encode --recipe` (default: "
                        f"{DEFAULT_RECIPE})")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--crf-step", type=int, default=3,
                   help="CRF spacing of the anchor sweeps (default: 3)")
    p.add_argument("--streams", type=Path, default=None,
                   help="keep the coded files here (default: a temporary folder)")
    p.add_argument("--codecs", nargs="+", default=[*NEURAL, *ANCHORS],
                   choices=[*NEURAL, *ANCHORS], metavar="CODEC",
                   help=f"which codecs to run (default: all of {', '.join([*NEURAL, *ANCHORS])})")
    p.add_argument("--reuse", nargs="+", default=[], choices=[*NEURAL, *ANCHORS], metavar="CODEC",
                   help="take these codecs' curves from the rd-<codec>-<clip>.json already in --out "
                        "instead of running them (to add a codec to an earlier run's tables)")
    p.add_argument("--quantizer", choices=["learned", "depth"], default="learned",
                   help="DNeRV/HNeRV quantizer, as `dnerv encode --quantizer` (default: learned)")
    benchlib.add_common_args(p, epochs=None, lr=None, out=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = PRESET_EPOCHS[args.preset]
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = benchlib.command_line(SCRIPT, argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for path in args.clips:
        clip = benchlib.load_clip(path, args.frames, args.downscale)
        benchlib.log(SCRIPT, f"clip {clip.name}: {clip.description}")
        with tempfile.TemporaryDirectory() as temp:
            streams = args.streams or Path(temp)
            streams.mkdir(parents=True, exist_ok=True)
            curves = run_clip(clip, args, streams, command)
        summary[clip.name] = write_clip_results(clip, curves, args.out, command)
    return summary


def run_clip(clip: Clip, args, streams: Path, command: str) -> dict[str, dict]:
    """Every codec's CompressAI-shaped result for one clip: the neural codecs first, since
    the anchors' sweeps must cover the range they span."""
    v = benchlib.versions()
    curves = {}
    for codec in args.reuse:  # measured by an earlier run: its own command stays in its file
        path = args.out / f"rd-{codec}-{clip.name}.json"
        if not path.exists():
            raise SystemExit(f"{SCRIPT}: --reuse {codec}: {path} does not exist")
        curves[codec] = json.loads(path.read_text())
    for codec in NEURAL:
        if codec not in args.codecs or codec in curves:
            continue
        rows, skipped = [], []
        for target in args.bpp:
            try:
                rows.append(neural_point(clip, codec, target, args, streams))
            except RateError as e:  # below this codec's floor: the other may still reach it
                benchlib.log(SCRIPT, f"{codec} at {target} bpp skipped: {e}")
                skipped.append({"target-bpp": target, "reason": str(e)})
        curves[codec] = result(codec, neural_description(codec, clip, args, v), rows, clip,
                               command, v, skipped=skipped)
    neural = [c["results"] for c in curves.values() if c["results"]]
    if not neural:
        raise SystemExit(f"{SCRIPT}: no DNeRV/HNeRV target could be reached on {clip.name}")
    bounds = {key: (min(min(r[key]) for r in neural), max(max(r[key]) for r in neural))
              for key in ("bpp", "psnr-rgb")}
    for codec, (lib, preset) in ANCHORS.items():
        if codec not in args.codecs or codec in curves:
            continue
        rows = anchor_sweep(clip, codec, lib, preset, bounds, args.crf_step, streams)
        curves[codec] = result(codec, anchor_description(lib, preset, clip, v), rows, clip,
                               command, v)
    return curves


def result(codec: str, description: str, rows: list[dict], clip: Clip, command: str,
           v: dict, **extra) -> dict:
    return {"name": codec, "description": description, "command": command,
            "clip": {"name": clip.name, "source": clip.description}, "versions": v,
            **extra, "results": benchlib.columns(rows)}


# ----------------------------------------------------------------------------- measuring


def measure(clip: Clip, path: Path, decode, encoding_time: float) -> dict:
    """One RD point: rate from the file on disk, quality of its decoded frames."""
    t0 = time.perf_counter()
    frames = decode(path)
    decoding_time = time.perf_counter() - t0
    q = quality_report(clip.video.frames, frames)
    video = clip.video
    size = path.stat().st_size
    return {
        "file": path.name, "bytes": size,
        "bpp": bits_per_pixel(size, video.width, video.height, video.frame_count),
        "kbps": size * 8 / 1000 / float(video.frame_count / video.fps),
        "psnr-rgb": q["psnr_rgb"], "psnr-rgb-total": q["psnr_rgb_total"],
        "psnr-y": q["psnr_y"], "psnr-u": q["psnr_u"], "psnr-v": q["psnr_v"],
        "psnr-yuv": q["psnr_yuv"],
        "ms-ssim-rgb": q["ms_ssim_rgb"], "ms-ssim-rgb-db": ms_ssim_db(q["ms_ssim_rgb"]),
        "encoding_time": encoding_time, "decoding_time": decoding_time,
    }


def neural_point(clip: Clip, codec: str, target: float, args, streams: Path) -> dict:
    benchlib.log(SCRIPT, f"{codec} at {target} bpp")
    options = encode_options(args, target, codec)
    label = f"{codec} {target} bpp"
    encoded = encode(clip.video, options, progress=benchlib.epoch_printer(SCRIPT, label),
                     log=lambda m: benchlib.log(SCRIPT, f"{label}: {m}"))
    path = streams / f"{clip.name}-{codec}-{target:g}bpp.dnv"
    path.write_bytes(encoded.data)
    s = encoded.stats
    decode = functools.partial(decode_dnv, device=args.device)
    return {"target-bpp": target, **measure(clip, path, decode, s["encode_seconds"]),
            "decoder-params": s["model"]["decoder_params"],
            "embed-channels": s["model"]["embed_channels"],
            "prune": s["compression"]["prune"], "weight-bits": s["compression"]["weight_bits"],
            "step-scale": s["compression"]["step_scale"],
            "embed-bits": s["compression"]["embed_bits"], "device": s["device"]}


def encode_options(args, target: float, model: str) -> EncodeOptions:
    """What `dnerv encode --bpp target --preset P` (with --recipe, --lr, --epochs when given)
    asks of the encoder: the benchmark trains exactly as the command does."""
    return EncodeOptions(bpp=target, preset=args.preset, epochs=args.epochs, lr=args.lr,
                         recipe=args.recipe, device=args.device, seed=args.seed,
                         model=model, learned_steps=args.quantizer == "learned")


def decode_dnv(path: Path, device: str) -> np.ndarray:
    """What `dnerv decode` does, to frames in memory instead of a video file."""
    return np.stack(list(DecodedVideo(path.read_bytes(), device=device).frames()))


def anchor_sweep(clip: Clip, codec: str, lib: str, preset: str, bounds: dict, step: int,
                 streams: Path) -> list[dict]:
    """CRF 51, 51-step, ... down to the first point at or above both the highest neural bpp
    and PSNR; kept from the last point at or below both lowest ones (the curve brackets the
    neural range wherever the encoder can reach it)."""
    rows = []
    for crf in range(MAX_CRF, -1, -step):
        rows.append(anchor_point(clip, codec, lib, preset, crf, streams))
        if rows[-1]["bpp"] >= bounds["bpp"][1] and rows[-1]["psnr-rgb"] >= bounds["psnr-rgb"][1]:
            break
    below = [i for i, r in enumerate(rows)
             if r["bpp"] <= bounds["bpp"][0] and r["psnr-rgb"] <= bounds["psnr-rgb"][0]]
    return rows[below[-1] if below else 0:]


def anchor_point(clip: Clip, codec: str, lib: str, preset: str, crf: int, streams: Path) -> dict:
    path = streams / f"{clip.name}-{codec}-crf{crf}{EXTENSIONS[lib]}"
    t0 = time.perf_counter()
    data, sei_bytes = encode_anchor(clip, lib, preset, crf)
    encoding_time = time.perf_counter() - t0
    path.write_bytes(data)
    point = {"crf": crf, **measure(clip, path, lambda p: read_video(p).frames, encoding_time),
             "sei-bytes-stripped": sei_bytes}
    benchlib.log(SCRIPT, f"{codec} crf {crf}: {point['bpp']:.4f} bpp, "
                         f"PSNR-RGB {point['psnr-rgb']:.2f} dB")
    return point


def encode_anchor(clip: Clip, lib: str, preset: str, crf: int) -> tuple[bytes, int]:
    """A raw elementary stream (Annex B: no container, so the rate counts the stream alone)
    and the number of SEI bytes stripped from it."""
    if lib == "libx265":
        return b"".join(encode_raw(clip.video, lib, preset, crf, {"x265-params": X265_PARAMS})), 0
    raw = encode_raw(clip.video, lib, preset, crf, {"threads": "1"})
    stripped = strip_sei(raw)
    return stripped, sum(map(len, raw)) - len(stripped)


def encode_raw(video: Video, lib: str, preset: str, crf: int, options: dict) -> list[bytes]:
    """The encoder's packets. RGB goes to 4:2:0 with the BT.709 matrix at limited range and
    the stream is tagged so, as dnerv_codec.io writes H.264; read_video converts back by the
    tag, so both directions use the same matrix."""
    ctx = av.CodecContext.create(lib, "w")
    ctx.width, ctx.height, ctx.pix_fmt = video.width, video.height, "yuv420p"
    ctx.time_base, ctx.framerate = 1 / video.fps, video.fps
    ctx.colorspace, ctx.color_range = Colorspace.ITU709, ColorRange.MPEG
    ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
    ctx.options = {"preset": preset, "tune": "psnr", "crf": str(crf), **options}
    ctx.open()
    packets = []
    for i, rgb in enumerate(video.frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]  # the encoder's delayed frames
    return packets


def strip_sei(packets: list[bytes]) -> bytes:
    sei_filter = av.bitstream.BitStreamFilterContext(X264_SEI_FILTER, "h264")
    out = [q for data in packets for q in sei_filter.filter(av.Packet(data))]
    out += sei_filter.filter(None)
    return b"".join(bytes(q) for q in out)


@functools.cache
def encoder_version(lib: str) -> str:
    """The encoder library's version, read from the info SEI it writes into a one-frame
    stream (PyAV does not expose it otherwise)."""
    grey = Video(np.full((1, 64, 64, 3), 128, np.uint8), Fraction(25))
    options = {"x265-params": "log-level=error"} if lib == "libx265" else {}
    data = b"".join(encode_raw(grey, lib, "medium", 30, options))
    pattern = {"libx264": rb"x264 - (core \d+[^-]*)", "libx265": rb"x265 \(build \d+\) - ([^:]+)"}[lib]
    match = re.search(pattern, data)
    return match.group(1).decode(errors="replace").strip() if match else "unknown version"


# ----------------------------------------------------------------------------- descriptions


def neural_description(codec: str, clip: Clip, args, v: dict) -> str:
    return (f"{LABELS[codec]} through dnerv_codec.codec.encode: targets {args.bpp} bpp, "
            f"{args.epochs} epochs (+15% fine-tuning from a tenth of the peak lr: on the "
            f"quantized weights with the learned quantizer, after pruning with the depth one) "
            f"with the {args.recipe} recipe at peak lr "
            f"{args.lr or RECIPES[args.recipe].lr:g}, quantizer {args.quantizer}, seed {args.seed}, device {args.device} "
            f"(the one used is in results 'device'); {benchlib.tool_text(v)}. Clip {clip.name}: {clip.description}. "
            f"Rate: 8 * size of the .dnv file on disk / (width * height * frames), header "
            f"included. encoding_time: training, rate control and packing; decoding_time: "
            f".dnv file on disk to uint8 RGB frames in memory. {benchlib.PER_FRAME_NOTE}.")


def anchor_description(lib: str, preset: str, clip: Clip, v: dict) -> str:
    name = lib.removeprefix("lib")
    if lib == "libx264":
        sei = (f"threads=1; x264 cannot omit its encoder-info SEI, so it is stripped with "
               f"FFmpeg's '{X264_SEI_FILTER}' bitstream filter and not counted (bytes removed "
               f"per point in results 'sei-bytes-stripped')")
    else:
        sei = f"x265-params {X265_PARAMS} (info=0: no encoder-info SEI is written)"
    return (f"{name} ({encoder_version(lib)}) through PyAV, preset {preset}, tune psnr, CRF "
            f"sweep (results 'crf'), yuv420p, BT.709 limited range; {sei}. Stored as a raw "
            f"{EXTENSIONS[lib]} elementary stream (Annex B, no container: the rate counts the "
            f"stream alone). encoding_time: RGB frames in memory to the stream, conversion to "
            f"YUV included; decoding_time: the stream on disk to RGB frames through "
            f"dnerv_codec.io.read_video (FFmpeg's conversion by the stream's BT.709 tag); "
            f"{benchlib.tool_text(v)}. Clip {clip.name}: {clip.description}. "
            f"{benchlib.PER_FRAME_NOTE}.")


# ----------------------------------------------------------------------------- outputs


def write_clip_results(clip: Clip, curves: dict[str, dict], out: Path, command: str) -> dict:
    for codec, data in curves.items():
        benchlib.write_json(out / f"rd-{codec}-{clip.name}.json", data)
    plot_path = out / f"rd-{clip.name}.png"
    plot(clip, curves, plot_path)
    bd = bd_report(clip, curves, command)
    benchlib.write_json(out / f"bdrate-{clip.name}.json", bd)
    print(f"## {clip.name}\n\n{bd_markdown(bd)}")
    benchlib.log(SCRIPT, f"wrote {len(curves)} rd-*-{clip.name}.json, {plot_path.name}, "
                         f"bdrate-{clip.name}.json to {out}")
    return {"curves": curves, "bdrate": bd, "plot": plot_path}


def plot(clip: Clip, curves: dict[str, dict], path: Path) -> None:
    """PSNR-RGB and MS-SSIM (dB, with the raw value on the right axis) against bpp."""
    fig, (ax_psnr, ax_ssim) = plt.subplots(1, 2, figsize=(12, 4.8))
    for codec, data in curves.items():
        r = data["results"]
        if not r:
            continue
        order = np.argsort(r["bpp"])
        style = "-o" if codec in NEURAL else "--."
        for ax, key in ((ax_psnr, "psnr-rgb"), (ax_ssim, "ms-ssim-rgb-db")):
            ax.plot(np.array(r["bpp"])[order], np.array(r[key])[order], style, label=LABELS[codec])
    v = clip.video
    for ax in (ax_psnr, ax_ssim):
        ax.set_xlabel("bpp (file size)")
        ax.grid(True, alpha=0.3)
    ax_psnr.set_ylabel("PSNR-RGB (dB, mean of per-frame)")
    ax_ssim.set_ylabel("MS-SSIM RGB (dB) = -10 log10(1 - MS-SSIM)")
    raw = ax_ssim.secondary_yaxis("right", functions=(_ssim_raw, _ssim_db))
    raw.set_ylabel("MS-SSIM RGB")
    raw.set_yticks(SSIM_TICKS)
    ax_psnr.legend(fontsize=8)
    fig.suptitle(f"{clip.name}: {v.frame_count} frames {v.width}x{v.height}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ssim_raw(db):
    return 1 - np.power(10.0, -np.asarray(db, dtype=float) / 10)


def _ssim_db(raw):
    return -10 * np.log10(np.clip(1 - np.asarray(raw, dtype=float), 1e-10, None))


# ----------------------------------------------------------------------------- BD-rate


def bd_report(clip: Clip, curves: dict[str, dict], command: str) -> dict:
    """BD-rate of every codec against each reference that has points."""
    results = {ref: {codec: {m: bd_rate(curves[ref]["results"], data["results"], m)
                             for m in BD_METRICS}
                     for codec, data in curves.items() if codec != ref}
               for ref in BD_REFERENCES if ref in curves and curves[ref]["results"]}
    return {
        "name": "bd-rate",
        "description": (
            f"Bjontegaard delta rate in percent (negative: fewer bits than the reference for "
            f"the same quality), {BD_METHOD} interpolation, from the bjontegaard package "
            f"{bjontegaard.__version__} (bd_rate, method='{BD_METHOD}'), integrated over the "
            f"quality range both curves cover. Rate: bpp; quality: {', '.join(BD_METRICS)}. "
            f"Only the points that no cheaper point of the same curve beats are used (PCHIP "
            f"needs quality rising with rate); 'points' counts them (reference, codec). "
            f"'overlap': the share of the union of the two quality ranges that both cover "
            f"(the package warns below 0.75); null: no overlap or fewer than 2 points. "
            f"{benchlib.PER_FRAME_NOTE}."),
        "command": command, "clip": {"name": clip.name, "source": clip.description},
        "method": BD_METHOD, "versions": {**benchlib.versions(),
                                          "bjontegaard": bjontegaard.__version__},
        "results": results,
    }


def bd_rate(anchor: dict, test: dict, metric: str) -> dict:
    a_rate, a_quality = pareto(anchor.get("bpp", []), anchor.get(metric, []))
    t_rate, t_quality = pareto(test.get("bpp", []), test.get(metric, []))
    entry = {"points": [len(a_rate), len(t_rate)], "overlap": overlap(a_quality, t_quality)}
    if min(entry["points"]) < 2 or entry["overlap"] == 0:
        return {"bd-rate": None, **entry}
    value = bjontegaard.bd_rate(a_rate, a_quality, t_rate, t_quality, method=BD_METHOD,
                                require_matching_points=False, min_overlap=0)
    return {"bd-rate": float(value), **entry}


def pareto(rates, qualities) -> tuple[list[float], list[float]]:
    """The points that no cheaper point beats, by increasing rate."""
    kept = []
    for rate, quality in sorted(zip(rates, qualities)):
        if not kept or quality > kept[-1][1]:
            kept.append((rate, quality))
    return [r for r, _ in kept], [q for _, q in kept]


def overlap(a: list[float], b: list[float]) -> float:
    """Share of the union of two quality ranges covered by both (the package's measure)."""
    if not a or not b:
        return 0.0
    union = max(max(a), max(b)) - min(min(a), min(b))
    common = min(max(a), max(b)) - max(min(a), min(b))
    return max(common, 0.0) / union if union > 0 else 0.0


METRIC_HEADINGS = {"psnr-rgb": "PSNR-RGB", "psnr-yuv": "PSNR-YUV", "ms-ssim-rgb-db": "MS-SSIM (dB)"}


def bd_markdown(bd: dict) -> str:
    """The BD-rate tables of one bdrate-<clip>.json, as markdown."""
    lines = []
    for ref, tests in bd["results"].items():
        lines += [f"BD-rate against **{ref}** (Bjontegaard, {bd['method']}; negative = fewer "
                  f"bits for the same quality):", "",
                  "| codec | " + " | ".join(METRIC_HEADINGS[m] for m in BD_METRICS) + " |",
                  "|---|" + "---:|" * len(BD_METRICS)]
        lines += [f"| {codec} | " + " | ".join(_bd_cell(entry[m]) for m in BD_METRICS) + " |"
                  for codec, entry in tests.items()]
        lines.append("")
    return "\n".join(lines)


def _bd_cell(entry: dict) -> str:
    if entry["bd-rate"] is None:
        return "n/a (no overlap)" if min(entry["points"]) >= 2 else "n/a (< 2 points)"
    text = f"{entry['bd-rate']:+.1f} %"
    return text if entry["overlap"] >= 0.75 else f"{text} (overlap {entry['overlap']:.0%})"


if __name__ == "__main__":
    main()
