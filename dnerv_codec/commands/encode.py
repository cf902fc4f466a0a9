"""`dnerv encode`: the options, the checks before any work, and the summary line."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dnerv_codec.coding.ratecontrol import (  # torch-free, as --help must be
    DEFAULT_BPP,
    DEFAULT_PRESET,
    FINETUNE_FRACTION,
    MAX_PRUNE,
    MAX_USEFUL_BPP,
    PRESET_EPOCHS,
    QUALITY_PLAN_BPP,
)
from dnerv_codec.commands.params import (
    Duration,
    SectionedCommand,
    FiniteFloat,
    check_device,
    check_new_file,
    fps_text,
    parse_span,
    write_json,
)
from dnerv_codec.commands.progressbar import (
    LOGGER,
    SUMMARY,
    EncodeProgress,
    ProgressFile,
    set_verbosity,
)
from dnerv_codec.errors import InputError
from dnerv_codec.training.modelchoice import (  # torch-free
    DEFAULT_MODEL,
    MODEL_CHOICES,
    title,
)
from dnerv_codec.training.recipe import DEFAULT_RECIPE, RECIPES  # torch-free, as --help must be

MAX_SEED = 2**32 - 1
# One training step at c2 = 20 (what --bpp 0.2 gets on a 320x180 clip) on a 336x192 padded
# frame took 0.140 s on 2 cores: 4.3 core-seconds per megapixel (the c2 = 20 default row of
# `python benchmarks/throughput.py`, docs/training.md). Wider decoders take longer: c2 = 64
# took 2.6 times as long.
CORE_SECONDS_PER_MPX_STEP = 4.3
# What a newcomer can picture: a 10-second 1080p clip at 25 fps (250 frames) on 2 CPU cores.
EXAMPLE_CLIP_MPX_FRAMES = 1920 * 1080 / 1e6 * 250
EXAMPLE_CORES = 2


def preset_hours(epochs: int) -> float:
    """Hours a preset's training and fine-tune take on the example clip at c2 = 20."""
    core_seconds = epochs * (1 + FINETUNE_FRACTION) * CORE_SECONDS_PER_MPX_STEP
    return core_seconds * EXAMPLE_CLIP_MPX_FRAMES / EXAMPLE_CORES / 3600


PRESET_TIME_HELP = (
    "On 2 CPU cores a 10-second 1080p clip takes about " + ", ".join(
        f"{preset_hours(e):.0f}" for e in PRESET_EPOCHS.values())
    + " hours (a 320x180 clip of 48 frames: minutes; at c2 = 20, wider decoders take longer); "
      "the encoder measures a step and prints its own estimate before training. GPU figures: "
      "benchmarks/gpu_check.sh, not yet run.")


ENCODE_SECTIONS = {
    "Input and output": ["-o", "--frames", "--no-audio", "--mask"],
    "Rate or quality": ["--bpp", "--kbps", "--psnr"],
    "How long it trains": ["--preset", "--epochs", "--time"],
    "Model and training": ["--model", "--no-diff", "--recipe", "--lr", "--arch", "--embed-channels",
                           "--quantizer", "--min-prune", "--seed"],
    "Long videos and machines": ["--device", "--chunk", "--warm-start", "--workers", "--ray",
                                 "--threads"],
    "Stop and resume": ["--checkpoint", "--checkpoint-every", "--resume"],
    "What it says": ["--json", "--progress", "-v", "-q", "--help"],
}


@click.command(cls=SectionedCommand, sections=ENCODE_SECTIONS, epilog="""\b
Examples:
  dnerv encode in.mp4 -o out.dnv                  # 0.05 bpp, 60 epochs (--preset fast)
  dnerv encode in.mp4 -o out.dnv --preset medium --kbps 500
  dnerv encode in.mp4 -o out.dnv --psnr 30        # the smallest file at >= 30 dB
  dnerv encode in.mp4 -o out.dnv --time 5m        # the best file 5 minutes make
  ffmpeg -i in.mkv -f yuv4mpegpipe - | dnerv encode - -o out.dnv --bpp 0.1""")
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, metavar="OUT.dnv", help="The .dnv file to write.")
@click.option("--bpp", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Target rate in bits per pixel, measured on the file written (header included); "
                   f"above {MAX_USEFUL_BPP:g} (or what tiny frames need) it is capped, with a note. "
                   f"Default: {DEFAULT_BPP:g}, or, with a note, what a clip too small for it needs "
                   "(its per-frame embeddings alone can exceed it).")
@click.option("--kbps", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Target rate in kilobits per second of video (1000 bits), as x264's --bitrate: "
                   "the same target as --bpp, in the units a player shows. Give one of the two.")
@click.option("--psnr", type=FiniteFloat(min=0, min_open=True, max=100), default=None,
              metavar="DB",
              help="A quality target instead of a rate: the smallest file that decodes at DB "
                   "PSNR-RGB or more (of the whole video's MSE, `psnr_rgb_total` in --json). "
                   "The network is sized for the most the file may cost: --bpp or --kbps when "
                   f"given, else {QUALITY_PLAN_BPP:g} bpp (more where a small clip's embeddings "
                   "need it); the rate search then finds the fewest bytes that reach DB.")
@click.option("--preset", type=click.Choice(["fast", "medium", "slow"]), default=DEFAULT_PRESET,
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
@click.option("--frames", "frame_span", default=None, metavar="N|A:B",
              help="Encode only the first N frames, or frames A..B-1 (a half-open range, either "
                   "end may be left out), as decode --frames reads them; the audio kept is "
                   "theirs.")
@click.option("--no-audio", "-an", "no_audio", is_flag=True,
              help="Leave the input's audio out. By default its first audio track is kept as "
                   "it is (its packets, never re-encoded) and `dnerv decode` muxes it back into "
                   "MP4, MKV or MOV output; its bytes are reported apart from the rate.")
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
@click.option("--progress", "progress_path", default=None, metavar="PATH",
              help="Also write machine-readable progress to PATH ('-' for stdout), as ffmpeg's "
                   "-progress does: a block of key=value lines at every epoch (stage, epoch, "
                   "epochs, psnr, it_per_s, stage_eta_s) and at every stage's beginning and end "
                   "(stage: trial, train, search, finetune or check; state: begin or end), each "
                   "with overall (0..1: the share of the whole encode done) and eta_s (its "
                   "seconds left), ending 'progress=continue'; 'progress=end' once the file is "
                   "written.")
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
@click.option("-v", "--verbose", count=True,
              help="Say more: every epoch a line, besides the progress bar.")
@click.option("-q", "--quiet", count=True,
              help="Say less: -q notes and the summary line only (no progress), -qq errors only.")
def encode(input, verbose, quiet, **options):
    """Encode the video INPUT into a .dnv file.

    Any video FFmpeg reads works, at any size and frame rate: frames are padded for the
    network and cropped back, never resized. INPUT - reads the video from standard input
    (`ffmpeg -i in.mkv -f yuv4mpegpipe - | dnerv encode - -o out.dnv`), kept in a temporary
    file while the encoder reads it (it reads the video more than once) and removed however the
    encode ends. The encoder decodes its own file at the end and prints the real rate and
    quality. Ctrl-C stops cleanly (exit status 130; SIGTERM 143, SIGHUP 129), saving the
    checkpoint when there is one; no partial output is ever left. OUT.dnv is replaced if it
    exists, and only once the new file is complete.
    """
    set_verbosity(verbose, quiet)
    # --time counts from main(): reading the input is part of the budget
    started = (click.get_current_context().obj or {}).get("started", time.perf_counter())
    from dnerv_codec.io import STDIN, spooled_stdin

    if input != STDIN:
        return _encode(input, input, started=started, **options)
    with spooled_stdin() as source:
        try:
            return _encode(input, source, started=started, **options)
        except InputError as e:  # name the input as the user did, not the spool
            raise InputError(str(e).replace(source, input)) from None


def _encode(input, source, output, bpp, kbps, psnr, preset, epochs, time_budget, recipe, lr, arch,
            min_prune, quantizer, device, seed, frame_span, no_audio, model, no_diff, mask_path,
            embed_channels, chunk, warm_start, workers, ray_address, threads, json_path,
            progress_path, checkpoint, checkpoint_every, resume, started):
    """`dnerv encode` of the video at `source` (`input` as the user gave it)."""
    from dnerv_codec.codec import EncodeOptions
    from dnerv_codec.codec import encode as run_encode
    from dnerv_codec.coding.ratecontrol import RateRequest, bpp_for_kbps, target_bpp
    from dnerv_codec.scaling.chunkwork import chunk_checkpoint
    from dnerv_codec.io import VideoStream, atomic_write_bytes
    from dnerv_codec.training.checkpoint import remove

    check_new_file(output, ("input", input))
    for path in filter(None, (json_path if json_path != "-" else None, checkpoint)):
        check_new_file(path, ("input", input), ("output", output))
    if json_path and checkpoint and Path(json_path).resolve() == Path(checkpoint).resolve():
        raise InputError(f"'{json_path}' is both --json and --checkpoint; choose another name")
    if progress_path == "-" and json_path == "-":
        raise InputError("--progress - and --json - both want stdout: send one to a file")
    if progress_path and progress_path != "-":
        check_new_file(progress_path, ("input", input), ("output", output))
    if resume and not checkpoint:
        raise InputError("--resume needs --checkpoint PATH (the checkpoint to continue from)")
    if time_budget is not None and epochs is not None:
        raise InputError("--time plans the epochs itself: give --time or --epochs, not both")
    check_device(device)
    if workers > 1 and ray_address:
        raise InputError("--workers starts a local Ray instance and --ray joins a cluster: "
                         "give one of them")
    if bpp is not None and kbps is not None:
        raise InputError("give one rate: --bpp or --kbps, not both")
    first_frame, max_frames = parse_span(frame_span)
    video = VideoStream(source, max_frames=max_frames, first_frame=first_frame,
                        audio=not no_audio)
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
    if kbps is not None:
        bpp = bpp_for_kbps(kbps, video.width, video.height, float(video.fps))
    # under auto the floor is HNeRV's (it has no diff embeddings to pay for); a rate only it
    # fits leaves it alone, with a note
    request = RateRequest(video.height, video.width, video.frame_count, bpp,
                          "dnerv" if model == "dnerv" else "hnerv", learned, embed_channels, arch)
    bpp, rate_notes = target_bpp(request, for_quality=psnr is not None)
    notes += rate_notes
    LOGGER.info(f"{input}: {video.frame_count} frames, {video.width}x{video.height}, "
                f"{fps_text(video.fps)} fps; "
                + (f"target {psnr:g} dB, in at most {bpp:g} bpp" if psnr is not None else
                   f"target {bpp:g} bpp" + (f" ({kbps:g} kb/s)" if kbps is not None else "")))
    for note in notes:
        LOGGER.warning(f"note: {note}")
    options = EncodeOptions(bpp=bpp, preset=preset, epochs=epochs, lr=lr, recipe=recipe,
                            arch=arch, time_budget=time_budget, started=started,
                            min_prune=min_prune,
                            device=device, seed=seed, model=model,
                            checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                            resume=resume, learned_steps=learned,
                            embed_channels=embed_channels, chunk=chunk, threads=threads,
                            warm_start=warm_start, psnr=psnr)
    log = _say
    runner = _runner(workers, ray_address, threads, log)
    machine = ProgressFile(progress_path) if progress_path else None
    shown = EncodeProgress(machine)
    try:
        result = run_encode(video, options, progress=shown.epoch, log=log, runner=runner,
                            milestones=shown.milestone)
    except BaseException:
        if machine:
            machine.close()  # no progress=end: the encode did not finish
        raise
    finally:
        shown.close()
        if runner is not None:
            runner.close()
    atomic_write_bytes(output, result.data)
    chunks = len(result.stats["chunks"])
    for k in range(chunks if checkpoint else 0):
        remove(chunk_checkpoint(checkpoint, k, chunks))
    s = result.stats
    s.update(input=str(input), output=str(output))
    s["target"] = ({"kbps": kbps, "bpp": bpp} if kbps is not None
                   else {"psnr": psnr, "max_bpp": bpp} if psnr is not None else {"bpp": bpp})
    if mask_path is not None:
        s["mask"] = {"path": str(mask_path), "frames": len(video.mask.unknown),
                     "unknown_fraction": video.mask.unknown_fraction}
    audio = f" ({s['audio_bytes']} of them audio)" if s["audio_bytes"] else ""
    LOGGER.log(SUMMARY, f"{s['frames']} frames {s['width']}x{s['height']} -> {output}: {s['bytes']} bytes{audio}, "
         f"{s['bpp']:.4f} bpp ({_target_text(s, bpp, psnr)}), {s['kbps']:.1f} kb/s, "
         f"PSNR-RGB {s['psnr_rgb']:.2f} dB, PSNR-YUV {s['psnr_yuv']:.2f} dB"
         f"{' (known pixels)' if mask_path else ''}, encode {s['encode_seconds']:.1f} s, decode {s['decode_fps']:.1f} fps"
         + (f"; {chunks} chunks of {_range_text(s['chunks'], 'bpp', '.3f')} bpp, "
            f"{_range_text(s['chunks'], 'psnr_rgb', '.2f')} dB" if chunks > 1 else "")
         + _choice_text(s["model_choice"]))
    _note_decode_limits(s["decode_cost"])
    if json_path:
        write_json(s, json_path)
    if machine:
        machine.end()
        machine.close()


def _target_text(stats: dict, bpp: float, psnr: float | None) -> str:
    """What the summary says of the target: the rate's, or whether the quality's was met."""
    if psnr is None:
        return f"target {bpp:g}"
    total = stats["psnr_rgb_total"]
    return (f"target {psnr:g} dB: met, {total:.2f} dB total" if total >= psnr
            else f"target {psnr:g} dB: NOT met, {total:.2f} dB total at most {bpp:g} bpp")


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


def _say(message: str) -> None:
    """What the encoder decides and why: INFO, or a note (WARNING, kept by -q)."""
    if message.startswith("note: "):
        LOGGER.warning(message)
    else:
        LOGGER.info(message)


def _note_decode_limits(cost: dict) -> None:
    """A file that the default decode limits refuse is legal, but its user must know the flag."""
    from dnerv_codec.format.budget import DEFAULT_MAX_MEMORY, DEFAULT_MAX_WORK
    from dnerv_codec.text import bytes_text, figure_up
    if cost["peak_memory_bytes"] > DEFAULT_MAX_MEMORY:
        LOGGER.warning(f"note: decoding this file to .mp4 needs about "
             f"{bytes_text(cost['peak_memory_bytes'], up=True)}, more than the default limit: "
             f"decode it with --max-memory, or to .y4m or PNG")
    if cost["work_macs"] > DEFAULT_MAX_WORK:
        LOGGER.warning(f"note: decoding all of this file needs {figure_up(cost['work_macs'])} "
             f"multiply-accumulates, more than the default limit: decode it with "
             f"--max-work {figure_up(cost['work_macs'])}, or part of it with --frames")
