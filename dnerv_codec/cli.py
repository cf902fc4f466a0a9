"""`dnerv`: encode, decode and inspect .dnv files.

Habits of ffmpeg and x264: positional input, `-o` for the output, progress and the summary on
stderr, stdout kept clean for machine output (`info --json`, `--json -`). Every user error is
one line on stderr and exit status 2; no traceback (set DNERV_DEBUG=1 to see one for a bug).
This module parses options and prints; the maths lives in codec.py and below (the rate to
plan for: coding/ratecontrol.target_bpp).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

from dnerv_codec import __version__
from dnerv_codec.coding.ratecontrol import (  # torch-free, as --help must be
    DEFAULT_BPP,
    MAX_PRUNE,
    MAX_USEFUL_BPP,
    PRESET_EPOCHS,
)
from dnerv_codec.errors import DnervError, InputError, Interrupted
from dnerv_codec.tasks.interpolate import MAX_FPS_SCALE  # torch-free too
from dnerv_codec.training.modelchoice import (  # torch-free
    DEFAULT_MODEL,
    MODEL_CHOICES,
    title,
)
from dnerv_codec.training.recipe import DEFAULT_RECIPE, RECIPES  # torch-free, as --help must be

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
MAX_SEED = 2**32 - 1
MAX_TIME_BUDGET = 30 * 86400
# One training step at c2 = 20 (what --bpp 0.2 gets on a 320x180 clip) on a 336x192 padded
# frame took 0.140 s on 2 cores: 4.3 core-seconds per megapixel (the c2 = 20 default row of
# `python benchmarks/throughput.py`, docs/training.md). Wider decoders take longer: c2 = 64
# took 2.6 times as long.
CORE_SECONDS_PER_MPX_STEP = 4.3
PRESET_TIME_HELP = (
    "A CPU takes about " + ", ".join(
        f"{round(e * 1.15 * CORE_SECONDS_PER_MPX_STEP / 60)}" for e in PRESET_EPOCHS.values())
    + " core-minutes per megapixel-frame (at c2 = 20; wider decoders take longer); GPU "
      "figures: benchmarks/gpu_check.sh, not yet run.")


def _err(message: str) -> None:
    click.echo(message, err=True)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every comparison)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Quantity(click.ParamType):
    """A positive amount with an optional suffix: binary for bytes (4G = 4 GiB), decimal for
    counts (2e15, 2P). `unit` names it in messages."""

    _SUFFIXES = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

    def __init__(self, binary: bool, unit: str):
        self.binary, self.name = binary, unit

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgtpe]?)(?:i?b)?\s*",
                         str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not an amount such as 4G or 2e15.", param, ctx)
        base = 1024 if self.binary else 1000
        number = float(m.group(1)) * base ** self._SUFFIXES[m.group(2).lower()]
        if not (math.isfinite(number) and 1 <= number < 2**62):
            self.fail(f"{value!r} is out of range.", param, ctx)
        return int(number)


class Duration(click.ParamType):
    """A duration: seconds (90), or with units (90s, 5m, 2.5min, 1h30m)."""

    name = "DURATION"
    _UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = re.sub(r"\s+", "", str(value).lower())
        parts = re.findall(r"(\d+(?:\.\d+)?)(min|[smh]?)", text)
        seconds = sum(float(n) * self._UNITS[u] for n, u in parts)
        if not parts or "".join(n + u for n, u in parts) != text:
            self.fail(f"{value!r} is not a duration such as 90s, 5m or 1h30m.", param, ctx)
        if not (math.isfinite(seconds) and 1 <= seconds <= MAX_TIME_BUDGET):
            self.fail(f"{value!r} is out of range (1 s to {MAX_TIME_BUDGET // 86400} days).",
                      param, ctx)
        return seconds


class ProgressPrinter:
    """One status line per epoch on a terminal (rewritten in place), about ten lines per stage
    in a log file or a pipe."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, p) -> None:
        if self.quiet:
            return
        eta = time.strftime("%H:%M:%S", time.gmtime(p.eta_s))
        weights = f"  weights ~{p.weight_bpp:.3f} bpp" if p.weight_bpp is not None else ""
        line = (f"{p.stage:8s} epoch {p.epoch:>4}/{p.epochs}  PSNR {p.psnr:6.2f} dB{weights}  "
                f"{p.iters_per_s:6.1f} it/s  ETA {eta}" + ("  (collapse: restored best)" if p.recovered else "")
                + ("  (dead start: fresh weights, half the learning rate)"
                   if p.restarted else ""))
        if self.tty:
            end = "\n" if p.epoch == p.epochs else ""
            click.echo("\r" + line, err=True, nl=False)
            if end:
                click.echo("", err=True)
        elif (p.epoch == p.epochs or p.recovered or p.restarted
              or p.epoch % max(1, p.epochs // 10) == 0):
            _err(line)


def _check_new_file(path: str, *others: tuple[str, str | None]) -> None:
    """Fail before hours of training, not after: the folder must exist, and the file must not
    be one of `others`, (role, path) pairs such as ("input", INPUT)."""
    from dnerv_codec.io import check_output_folder
    check_output_folder(path)
    for role, other in others:
        if other is not None and Path(path).resolve() == Path(other).resolve():
            raise InputError(f"'{path}' is also the {role}; choose another name")


def _write_json(stats: dict, target: str) -> None:
    from dnerv_codec.io import atomic_write_bytes
    text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        atomic_write_bytes(target, text.encode())


def _fps_text(fps) -> str:
    return f"{float(fps):.6g}" if fps.denominator != 1 else str(fps.numerator)


def _version_text() -> str:
    """`dnerv --version`: the package and the .dnv formats it writes and reads."""
    from dnerv_codec.format.chunks import CHUNKED_VERSION
    from dnerv_codec.format.container import FORMAT_VERSION, READABLE_MAJORS

    readable = ", ".join(f"{m}.x" for m in (*READABLE_MAJORS, CHUNKED_VERSION[0]))
    return (f"dnerv {__version__}: writes .dnv format {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]} "
            f"(one chunk) and {CHUNKED_VERSION[0]}.{CHUNKED_VERSION[1]} (several chunks); reads "
            f"{readable}")


def _print_version(ctx, param, value) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Print the package version and the .dnv formats it writes and reads.")
def cli():
    """DNeRV neural video codec (Difference Neural Representation for Videos, CVPR 2023).

    Overfits a small network to one video, charging the rate of its weights as it learns,
    then quantizes and entropy-codes it into a self-describing .dnv file that `dnerv decode`
    turns back into frames.
    """


@cli.command()
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUT.dnv", help="The .dnv file to write.")
@click.option("--bpp", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Target rate in bits per pixel, measured on the file written (header included); "
                   f"above {MAX_USEFUL_BPP:g} (or what tiny frames need) it is capped, with a note. "
                   f"Default: {DEFAULT_BPP:g}, or, with a note, what a clip too small for it needs "
                   "(its per-frame embeddings alone can exceed it).")
@click.option("--preset", type=click.Choice(["fast", "medium", "slow"]), default="medium",
              show_default=True, help="Training budget: 60, 150 or 300 epochs (300 is the paper's). "
                                      + PRESET_TIME_HELP)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs; overrides --preset. The fine-tune on the quantized weights "
                   "adds 15%.")
@click.option("--time", "time_budget", type=Duration(), default=None, metavar="DURATION",
              help="Make the best file this long an encode allows (e.g. 90s, 5m, 1h30m): the "
                   "encoder times a few training steps, plans the epochs of the whole schedule "
                   "(warm-up and cosine) to fit, and gives the fine-tune what the rate search "
                   "leaves; where the decoder the rate pays for would get too few epochs, it "
                   "trains a narrower one (docs/training.md). Replaces --preset and --epochs.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=DEFAULT_RECIPE,
              show_default=True,
              help="; ".join(f"{r.name}: {r.text()}" for r in RECIPES.values()) + ".")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=1), default=None,
              help="Peak learning rate; overrides the recipe's.")
@click.option("--arch", type=click.Choice(["auto", "paper"]), default="auto", show_default=True,
              help="auto: decoder strides chosen from the frame size; paper: the paper's five "
                   "stages (strides 5,4,4,3,2), for frames whose sides are multiples of 480 "
                   "(as 1920x960).")
@click.option("--min-prune", type=FiniteFloat(0, MAX_PRUNE), default=0.0,
              show_default=True, metavar="FRACTION",
              help="Prune at least this fraction of the decoder weights (then fine-tune). With "
                   "--quantizer depth, rate control may prune more to meet --bpp.")
@click.option("--quantizer", type=click.Choice(["learned", "depth"]), default="learned",
              show_default=True,
              help="learned: rate-aware training learns a quantization step per tensor and rate "
                   "control scales them; depth: plain training, then a search over bit depths "
                   "and pruning (the format-2.0 ablation).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train; auto takes CUDA when present.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Random seed.")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), default=None, metavar="N",
              help="Encode only the first N frames.")
@click.option("--model", type=click.Choice(MODEL_CHOICES), default=None,
              help="hnerv: DNeRV's HNeRV ablation (content stream only, no difference "
                   "stream, no CCU: a wider decoder at the same rate); dnerv: DNeRV, the "
                   "paper's model; auto: both train the first quarter of the schedule, then the "
                   "one ahead goes on (to the file naming it writes; the other's trial is the "
                   f"cost). Default: {DEFAULT_MODEL}, which measured ahead of DNeRV or at most "
                   "0.53 dB behind it on every clip and rate tried, where a trial picked no "
                   "better (docs/training.md).")
@click.option("--no-diff", is_flag=True, help="The same as --model hnerv (kept for scripts).")
@click.option("--mask", "mask_path", default=None, metavar="MASK",
              help="A black-and-white image (every frame) or video (frame by frame) of the "
                   "input's size: white pixels are unknown, left out of training and filled by "
                   "the decoder from their surroundings (a logo removed); they cost no bits, and "
                   "the quality figures leave them out (docs/tasks.md).")
@click.option("--embed-channels", type=click.IntRange(1, 64), default=None, metavar="D",
              help="Channels of the per-frame content embedding. By default the paper's 16, or "
                   "8, 4, 2, 1 where --bpp leaves no room for a decoder beside them (and then "
                   "1 diff channel instead of 2).")
@click.option("--chunk", type=click.IntRange(min=1), default=None, metavar="N",
              help="Frames a chunk at most (each chunk is its own network, decodable on its "
                   "own). By default one chunk, cut only where memory, training time or the "
                   "rate need it (docs/scaling.md).")
@click.option("--warm-start", is_flag=True,
              help="Start each chunk's training from the previous chunk's trained network "
                   "(where the two have the same shapes): the chunks then train one after "
                   "another, even with --workers. Measured on the embedded clip in two chunks: "
                   "+0.05 dB at 0.2 bpp, +0.3 dB at 0.05 (docs/scaling.md).")
@click.option("--workers", type=click.IntRange(1, 1024), default=1, show_default=True,
              metavar="K", help="Train K chunks at once, on a local Ray instance (pip install "
                                "'dnerv-codec[ray]'); the file is the same as with 1.")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Train the chunks on a running Ray cluster, one chunk a task (one GPU a "
                   "task where it has GPUs).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="torch threads a chunk trains with (default: all cores, split between "
                   "--workers; 1 a task with --ray). The same seed and threads give the same file.")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Also write the final stats as JSON ('-' for stdout).")
@click.option("--checkpoint", default=None, metavar="PATH",
              help="Save the training state to PATH (safetensors), periodically and on Ctrl-C; "
                   "removed once OUT.dnv is written. With several chunks each has its own file "
                   "(PATH with .chunkNNNN before its suffix); a resume redoes only the chunks "
                   "in flight.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="EPOCHS", help="Epochs between checkpoint saves.")
@click.option("--resume", is_flag=True,
              help="Continue from --checkpoint PATH (same input and options) instead of "
                   "starting afresh; ends on the same file as an uninterrupted run.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines; the summary only.")
def encode(input, output, bpp, preset, epochs, time_budget, recipe, lr, arch, min_prune, quantizer,
           device, seed, max_frames, model, no_diff, mask_path, embed_channels, chunk, warm_start,
           workers, ray_address, threads, json_path, checkpoint, checkpoint_every, resume, quiet):
    """Encode the video INPUT into a .dnv file.

    Any video FFmpeg reads works, at any size and frame rate: frames are padded for the
    network and cropped back, never resized. The encoder decodes its own file at the end and
    prints the real rate and quality. Ctrl-C stops cleanly (exit status 130; SIGTERM 143,
    SIGHUP 129), saving the checkpoint when there is one; no partial output is ever left.
    OUT.dnv is replaced if it exists, and only once the new file is complete.
    """
    # --time counts from main(): reading the input is part of the budget
    started = (click.get_current_context().obj or {}).get("started", time.perf_counter())
    from dnerv_codec.codec import EncodeOptions
    from dnerv_codec.codec import encode as run_encode
    from dnerv_codec.coding.ratecontrol import RateRequest, target_bpp
    from dnerv_codec.scaling.chunkwork import chunk_checkpoint
    from dnerv_codec.io import VideoStream, atomic_write_bytes
    from dnerv_codec.training.checkpoint import remove

    _check_new_file(output, ("input", input))
    for path in filter(None, (json_path if json_path != "-" else None, checkpoint)):
        _check_new_file(path, ("input", input), ("output", output))
    if json_path and checkpoint and Path(json_path).resolve() == Path(checkpoint).resolve():
        raise InputError(f"'{json_path}' is both --json and --checkpoint; choose another name")
    if resume and not checkpoint:
        raise InputError("--resume needs --checkpoint PATH (the checkpoint to continue from)")
    if time_budget is not None and epochs is not None:
        raise InputError("--time plans the epochs itself: give --time or --epochs, not both")
    _check_device(device)
    if workers > 1 and ray_address:
        raise InputError("--workers starts a local Ray instance and --ray joins a cluster: "
                         "give one of them")
    video = VideoStream(input, max_frames=max_frames)
    notes = list(video.notes)
    if mask_path is not None:
        from dnerv_codec.tasks.masks import MaskedVideo, read_mask

        video = MaskedVideo(video, read_mask(mask_path, video.width, video.height,
                                             video.frame_count))
        notes.append(f"--mask: {100 * video.mask.unknown_fraction:.2f} % of the pixels are "
                     f"unknown; they are filled, and the quality figures leave them out")
    learned = quantizer == "learned"
    if no_diff and model not in (None, "hnerv"):
        raise InputError(f"--no-diff is --model hnerv: it cannot go with --model {model}")
    model = "hnerv" if no_diff else model or DEFAULT_MODEL
    # under auto the floor is HNeRV's (it has no diff embeddings to pay for); a rate only it
    # fits leaves it alone, with a note
    bpp, rate_notes = target_bpp(RateRequest(
        video.height, video.width, video.frame_count, bpp, "dnerv" if model == "dnerv" else "hnerv",
        learned, embed_channels, arch))
    notes += rate_notes
    if not quiet:
        _err(f"dnerv: {input}: {video.frame_count} frames, {video.width}x{video.height}, "
             f"{_fps_text(video.fps)} fps; target {bpp:g} bpp")
        for note in notes:
            _err(f"dnerv: note: {note}")
    options = EncodeOptions(bpp=bpp, preset=preset, epochs=epochs, lr=lr, recipe=recipe,
                            arch=arch, time_budget=time_budget, started=started,
                            min_prune=min_prune,
                            device=device, seed=seed, model=model,
                            checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                            resume=resume, learned_steps=learned,
                            embed_channels=embed_channels, chunk=chunk, threads=threads,
                            warm_start=warm_start)
    log = (lambda _m: None) if quiet else (lambda m: _err(f"dnerv: {m}"))
    runner = _runner(workers, ray_address, threads, log)
    try:
        result = run_encode(video, options, progress=ProgressPrinter(quiet), log=log,
                            runner=runner)
    finally:
        if runner is not None:
            runner.close()
    atomic_write_bytes(output, result.data)
    chunks = len(result.stats["chunks"])
    for k in range(chunks if checkpoint else 0):
        remove(chunk_checkpoint(checkpoint, k, chunks))
    s = result.stats
    s.update(input=str(input), output=str(output))
    if mask_path is not None:
        s["mask"] = {"path": str(mask_path), "frames": len(video.mask.unknown),
                     "unknown_fraction": video.mask.unknown_fraction}
    _err(f"dnerv: {s['frames']} frames {s['width']}x{s['height']} -> {output}: {s['bytes']} bytes, "
         f"{s['bpp']:.4f} bpp (target {bpp:g}), {s['kbps']:.1f} kb/s, "
         f"PSNR-RGB {s['psnr_rgb']:.2f} dB, PSNR-YUV {s['psnr_yuv']:.2f} dB"
         f"{' (known pixels)' if mask_path else ''}, encode {s['encode_seconds']:.1f} s, decode {s['decode_fps']:.1f} fps"
         + (f"; {chunks} chunks of {_range_text(s['chunks'], 'bpp', '.3f')} bpp, "
            f"{_range_text(s['chunks'], 'psnr_rgb', '.2f')} dB" if chunks > 1 else "")
         + _choice_text(s["model_choice"]))
    _note_decode_limits(s["decode_cost"], quiet)
    if json_path:
        _write_json(s, json_path)


def _range_text(items: list[dict], key: str, fmt: str) -> str:
    """'lo-hi' of items[key] (one value when they agree at this precision)."""
    lo, hi = (format(f(i[key] for i in items), fmt) for f in (min, max))
    return lo if lo == hi else f"{lo}-{hi}"


def _runner(workers: int, ray_address: str | None, threads: int | None, log):
    """The Ray runner that --workers K (K > 1) or --ray asks for; None: chunks run here."""
    if workers == 1 and not ray_address:
        return None
    from dnerv_codec.scaling.runners import RayRunner, available_cores
    if ray_address:
        return RayRunner(None, ray_address, threads or 1, log)
    return RayRunner(workers, None, threads or max(1, available_cores() // workers), log)


def _choice_text(choice: dict) -> str:
    """What the summary says of --model auto's trial (nothing without one)."""
    if not choice.get("trial_epochs"):
        return ""
    return (f"; --model auto: {title(choice['chosen'])}, {choice['lead_db']:+.2f} dB "
            f"after the {choice['trial_epochs']}-epoch trial")


def _note_decode_limits(cost: dict, quiet: bool) -> None:
    """A file that the default decode limits refuse is legal, but its user must know the flag."""
    from dnerv_codec.format.budget import DEFAULT_MAX_MEMORY, DEFAULT_MAX_WORK
    if quiet:
        return
    if cost["peak_memory_bytes"] > DEFAULT_MAX_MEMORY:
        _err(f"dnerv: note: decoding this file to .mp4 needs about "
             f"{cost['peak_memory_bytes'] / 2**30:.1f} GiB, more than the default limit: "
             f"decode it with --max-memory, or to .y4m or PNG")
    if cost["work_macs"] > DEFAULT_MAX_WORK:
        _err(f"dnerv: note: decoding all of this file needs {cost['work_macs']:.3g} "
             f"multiply-accumulates, more than the default limit: decode it with "
             f"--max-work {cost['work_macs']:.3g}, or part of it with --frames")


def _check_device(device: str) -> None:
    if device == "cuda":
        from dnerv_codec.device import pick_device
        if pick_device("auto").type != "cuda":
            raise InputError("--device cuda: no CUDA device is available to torch")


def _limits_options(command):
    """--max-memory and --max-work, shared by decode and info."""
    from dnerv_codec.format.budget import DEFAULT_MAX_MEMORY, DEFAULT_MAX_WORK
    command = click.option(
        "--max-work", type=Quantity(binary=False, unit="MACS"), default=DEFAULT_MAX_WORK,
        show_default=f"{DEFAULT_MAX_WORK:.0e}", metavar="MACS",
        help="Refuse to decode when the frames asked for need more multiply-accumulates than "
             "this (e.g. 2e15 or 2P).")(command)
    return click.option(
        "--max-memory", type=Quantity(binary=True, unit="BYTES"), default=DEFAULT_MAX_MEMORY,
        show_default="4G", metavar="BYTES",
        help="Peak memory a decode may use (e.g. 512M, 16G): frames too large for it are "
             "rendered in row bands, and a file that cannot fit is refused.")(command)


def _parse_range(text: str | None, count: int) -> tuple[int, int]:
    if text is None:
        return 0, count
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else count
    except ValueError:
        raise InputError(f"--frames '{text}': expected A:B (a half-open range such as 0:10)") from None
    if not 0 <= start < stop <= count:
        raise InputError(f"--frames {text}: the file has frames 0:{count}")
    return start, stop


@cli.command()
@click.argument("input", metavar="INPUT.dnv")
@click.option("-o", "--output", required=True, metavar="OUT",
              help="out.mp4/.mkv (H.264), out.y4m (raw), or a pattern like frames/%05d.png "
                   "(lossless; a missing folder is created).")
@click.option("--frames", "frame_range", default=None, metavar="A:B",
              help="Decode only frames A..B-1 (a half-open range; either end may be left out).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to run the decoder network.")
@click.option("--fps-scale", type=click.IntRange(1, MAX_FPS_SCALE), default=1, show_default=True,
              metavar="K",
              help="Render K-1 in-between frames after each frame, interpolated from the stored "
                   "embeddings: K times the frame rate, the stored frames at their own times "
                   "(docs/tasks.md).")
@_limits_options
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def decode(input, output, frame_range, fps_scale, device, max_memory, max_work, quiet):
    """Decode INPUT.dnv back to video at its original size and frame rate.

    What decoding costs is priced from the file's header before anything is allocated (see
    `dnerv info`); OUT is replaced if it exists, and only once it is complete (a PNG
    pattern's frames are moved into place one by one, each once it is complete).
    """
    from dnerv_codec.io import check_output_path

    if Path(output).resolve() == Path(input).resolve():
        raise InputError(f"output '{output}' is the input file; choose another name")
    _check_device(device)
    with _pattern_folder(output):
        check_output_path(output)
        _decode(input, output, frame_range, fps_scale, device, max_memory, max_work, quiet)


@contextmanager
def _pattern_folder(output: str):
    """A frame pattern's folder (png/ of png/%05d.png) is created when missing: the user asked
    for a folder of frames. Removed again if the decode fails before writing into it."""
    from dnerv_codec.io import output_kind

    folder = Path(output).parent
    made = []  # the folders created, innermost first
    if output_kind(output) == "png" and not folder.exists():
        made = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise InputError(f"cannot write '{output}': cannot create folder '{folder}' "
                             f"({e.strerror})") from None
    try:
        yield
    except BaseException:
        for path in made:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def _decode(input, output, frame_range, fps_scale, device, max_memory, max_work, quiet) -> None:
    from dnerv_codec.codec import DecodedFile
    from dnerv_codec.format.budget import Limits
    from dnerv_codec.io import open_writer, output_kind

    t0 = time.perf_counter()
    limits = Limits(memory=max_memory, work=max_work)
    with _open_dnv(input, max_memory) as reader:
        start, stop = _parse_range(frame_range, reader.video["frame_count"])
        decoded = DecodedFile(reader, device=device, limits=limits, writer=output_kind(output),
                              start=start, stop=stop, fps_scale=fps_scale)
        with open_writer(output, decoded.width, decoded.height, decoded.fps) as writer:
            for frame in decoded.frames():
                writer.write(frame)
    seconds = time.perf_counter() - t0
    if not quiet:
        n = decoded.output_frames
        made = (f" ({stop - start} stored + {n - (stop - start)} interpolated)"
                if fps_scale > 1 else "")
        _err(f"dnerv: decoded {n} frames{made} {decoded.width}x{decoded.height} @ "
             f"{_fps_text(decoded.fps)} fps -> {output} in {seconds:.2f} s ({n / seconds:.1f} fps)")


def _open_dnv(path: str, max_memory: int):
    """A reader of the file (a 2.x file read whole, a chunked one a chunk at a time), each
    read refused unless it fits the format's bound and the memory limit."""
    from dnerv_codec.format.chunks import DnvReader
    from dnerv_codec.format.container import MAX_FILE_BYTES
    if max_memory < MAX_FILE_BYTES:
        return DnvReader.open(path, max_memory, "--max-memory allows")
    return DnvReader.open(path)


@cli.command()
@click.argument("input", metavar="INPUT.dnv")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON on stdout.")
@click.option("--chunk", "chunk", type=click.IntRange(min=0), default=None, metavar="K",
              help="Of a chunked file, describe chunk K (from 0) as a single-chunk file is "
                   "described: its header and every tensor's coding. Every chunk is still read "
                   "and checked.")
@_limits_options
def info(input, as_json, chunk, max_memory, max_work):
    """Print the header, the architecture, the size of each section of INPUT.dnv, and what
    decoding it costs (peak memory, multiply-accumulates, how frames are rendered)."""
    from dnerv_codec.decoding.describe import describe_file, format_info
    from dnerv_codec.format.budget import Limits

    with _open_dnv(input, max_memory) as reader:
        desc = describe_file(reader, Limits(memory=max_memory, work=max_work), chunk, input)
    click.echo(json.dumps(desc, indent=2, sort_keys=True) if as_json else format_info(input, desc))


def _interrupted(exc: BaseException | None, signame: str) -> str:
    """The line for Ctrl-C or SIGTERM: how far an encode got and where its checkpoint is."""
    what = "interrupted" if signame == "SIGINT" else f"stopped by {signame}"
    if not isinstance(exc, Interrupted):
        return f"dnerv: {what}"
    if not exc.checkpoint:
        return f"dnerv: {what} {exc.where}"
    return f"dnerv: {what} {exc.where}; checkpoint saved to {exc.checkpoint} (resume with --resume)"


# SIGTERM is what kill, timeout and docker stop send; SIGHUP comes when the terminal closes.
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _stop_signals_as_ctrl_c():
    """While the CLI runs, SIGTERM and SIGHUP do what Ctrl-C does (whatever SIGINT's handler is
    at that moment: training stops at the next step and saves its checkpoint; elsewhere a
    KeyboardInterrupt unwinds and every temporary file is removed). Yields a list that holds
    the last such signal's name, so that the exit status can say which signal it was."""
    received = ["SIGINT"]
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def as_ctrl_c(signum, frame):
        received[0] = signal.Signals(signum).name
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, as_ctrl_c) for sig in _STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 internal error, 2 user error, 130 Ctrl-C,
    128 + N for signal N: 143 for SIGTERM, 129 for SIGHUP)."""
    with _stop_signals_as_ctrl_c() as received, warnings.catch_warnings():
        if not os.environ.get("DNERV_DEBUG"):
            warnings.simplefilter("ignore")  # library warnings are not for users; errors are ours
        try:
            cli.main(args=argv, prog_name="dnerv", standalone_mode=False,
                     obj={"started": time.perf_counter()})
            return 0
        except DnervError as e:
            _err(f"dnerv: error: {e}")
            return e.exit_code
        except click.exceptions.Abort as e:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
            return _stopped(e.__cause__, received[0])
        except KeyboardInterrupt as e:
            return _stopped(e, received[0])
        except click.ClickException as e:
            e.show()
            return e.exit_code
        except click.exceptions.Exit as e:
            return e.exit_code
        except Exception as e:  # a bug: one line unless asked for the traceback
            if os.environ.get("DNERV_DEBUG"):
                traceback.print_exc()
            _err(f"dnerv: internal error: {type(e).__name__}: {e} (set DNERV_DEBUG=1 for a traceback)")
            return EXIT_INTERNAL_ERROR


def _stopped(exc: BaseException | None, signame: str) -> int:
    _err(_interrupted(exc, signame))
    return EXIT_INTERRUPTED if signame == "SIGINT" else 128 + signal.Signals[signame].value


def run() -> None:
    """The `dnerv` command: main(), then exit. A render worker abandoned by Ctrl-C or SIGTERM
    (decoding/video._single_threaded_workers, _interruptible) may still be inside a native
    operation, or just leaving one, which interpreter shutdown would abort (`terminate
    called`, status 134, seen even after the thread reported itself finished): after an
    interrupt, or while a worker is alive, the process leaves at once instead, its outputs
    already cleaned up and its streams flushed."""
    status = main()
    from dnerv_codec.format.budget import RENDER_THREAD
    interrupted = status == EXIT_INTERRUPTED or status > 128
    if interrupted or any(t.name == RENDER_THREAD and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
