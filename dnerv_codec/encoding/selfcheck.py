"""After packing: the encoder decodes the bytes it is about to hand over, exactly as `dnerv
decode` does, measures them, refuses a file no better than a flat colour, and says so when a
file does no better than the clip's mean frame."""

from __future__ import annotations

import time

from dnerv_codec.decoding.video import DecodedVideo
from dnerv_codec.errors import TrainingError
from dnerv_codec.format.budget import UNLIMITED
from dnerv_codec.format.chunks import DnvReader
from dnerv_codec.metrics import QualityReport
from dnerv_codec.scaling.chunkwork import ChunkJob
from dnerv_codec.training.loop import (
    COLLAPSE_DROP_DB,
    DEAD_CHECK_STEPS,
    DEAD_MARGIN_DB,
    steps_per_epoch,
)
from dnerv_codec.training.recipe import RECIPES


def self_check(chunk_data: list[bytes], video, bounds, device: str) -> tuple[dict, float]:
    """Decode each chunk's bytes about to be handed over, exactly as `dnerv decode` does, and
    measure them against the input a batch at a time (no copy of the decoded video is kept).
    Returns the quality figures (of the video and of each chunk) and the seconds spent
    decoding."""
    seconds, reports = 0.0, []
    for data, frames in zip(chunk_data, video.chunks(bounds)):
        t = time.perf_counter()
        decoded = DecodedVideo(data, device=device, limits=UNLIMITED)
        batches = decoded.batches(range(len(frames)))
        seconds += time.perf_counter() - t
        chunk, start = QualityReport(), 0
        while True:
            t = time.perf_counter()
            out = next(batches, None)  # rendering happens here: time only this
            seconds += time.perf_counter() - t
            if out is None:
                break
            chunk.add(frames[start:start + len(out)], out)
            start += len(out)
        reports.append(chunk)
    # each frame is measured once, not again for the whole video: at 1280x720 on 2 cores the
    # measures took 0.12 s a frame, two thirds of rendering it (docs/training.md)
    whole = QualityReport.merged(reports)
    return {"video": whole.result(), "chunks": [r.result() for r in reports]}, seconds


def refuse_a_dead_file(stats: dict, jobs: list[ChunkJob]) -> None:
    """A file whose decode is no better than one flat colour, from a run long enough for the
    trainer to judge its start (and restart it), is not written: TrainingError, one line."""
    floor = stats["baselines"]["flat_colour"] + DEAD_MARGIN_DB
    steps = min(j.epochs * steps_per_epoch(j.stop - j.start, RECIPES[j.recipe].batch)
                for j in jobs)
    if stats["psnr_rgb_total"] >= floor or steps < 2 * DEAD_CHECK_STEPS:
        return
    decoded = (f"the file decodes at {stats['psnr_rgb_total']:.2f} dB, about what one flat "
               f"colour scores ({stats['baselines']['flat_colour']:.2f} dB)")
    if stats["train_psnr"] >= floor + COLLAPSE_DROP_DB:
        # Training learned; what reached the file did not keep it.
        raise TrainingError(
            f"compression lost what training learned: {decoded}, though training reached "
            f"{stats['train_psnr']:.2f} dB; raise --bpp")
    raise TrainingError(
        f"training did not learn: {decoded}, after {stats['restarts']} restart(s) from fresh "
        f"weights; try another --seed or a lower --lr")


def under_the_mean_frame(stats: dict) -> str | None:
    """A note when the file decodes under the clip's mean frame (one still image of the whole
    clip would do better): the training was too short for the clip, or the rate too low for
    it. Such a file is written (it beats a flat colour, the run learned), but never silently."""
    mean = stats["baselines"]["mean_frame"]
    if stats["psnr_rgb_total"] >= mean:
        return None
    epochs = stats["epochs"]
    return (f"the file decodes at {stats['psnr_rgb_total']:.2f} dB, under the clip's mean frame "
            f"({mean:.2f} dB): {epochs} epoch(s) of training were too few for this clip, or the "
            f"rate too low; a longer --time or --preset, or a higher --bpp, would do better")


def check_packed(data: bytes, chunk_data: list[bytes]) -> None:
    """The file's index must lead to exactly the chunks that were decoded (a writer bug, not
    a user error, if not)."""
    reader = DnvReader(data)
    if [reader.chunk_bytes(k) for k in range(len(reader.chunks))] != chunk_data:
        raise AssertionError("the packed file does not hold the chunks that were checked")
