"""Inpainting in the encoder: `dnerv encode --mask MASK`.

A mask says which pixels of the input are unknown (white) and which are known (black): a
still image applies to every frame, a video of the input's frame count to each frame in turn.
Unknown pixels are left out of the training loss, so the file spends no bits on them, and the
decoder fills them from what the network learned around them in space and time (what a
logo, a timestamp or a scratch hides). The encoder hands the frames on with the mask as a
fourth channel, 255 where known and 0 where not (training/loop.FrameSource and metrics.py
read it), so that chunking, Ray workers and checkpoints carry it without a second stream.

Also here: the paper's inpainting masks (`disperse`, `central`), for benchmarks/tasks.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dnerv_codec.errors import InputError
from dnerv_codec.io import VideoStream

# A mask pixel is white (unknown) above this luma, black (known) at or below it.
THRESHOLD = 128
# Values this far from both black and white are "grey"; a mask with more grey pixels than
# GREY_FRACTION is not a binary mask (a photo, or the wrong file), and is refused. Anti-aliased
# edges and a lossy codec's ringing stay well under it.
GREY_MARGIN = 64
GREY_FRACTION = 0.01
MASK_READ_FRAMES = 64  # frames of a mask video decoded at a time


@dataclass(frozen=True)
class Mask:
    """unknown: bool (1 or T, H, W), True where the pixel is unknown."""

    unknown: np.ndarray

    def frame(self, i: int) -> np.ndarray:
        return self.unknown[0 if len(self.unknown) == 1 else i]

    @property
    def unknown_fraction(self) -> float:
        return float(self.unknown.mean())


def read_mask(path: str | os.PathLike, width: int, height: int, frame_count: int) -> Mask:
    """The mask in the image or video at `path`, checked against a video of this size and
    frame count; InputError, in one line, when it does not fit or is not a mask."""
    name = os.fspath(path)
    stream = VideoStream(name, max_frames=frame_count)
    if (stream.width, stream.height) != (width, height):
        raise InputError(f"mask '{name}' is {stream.width}x{stream.height} but the video is "
                         f"{width}x{height}")
    if stream.frame_count not in (1, frame_count):
        raise InputError(f"mask '{name}' has {stream.frame_count} frames; it needs 1 (a still "
                         f"image, for every frame) or one for each of the {frame_count} frames")
    count = stream.frame_count
    unknown = np.empty((count, height, width), bool)
    bounds = [(a, min(a + MASK_READ_FRAMES, count)) for a in range(0, count, MASK_READ_FRAMES)]
    grey = 0
    for (a, b), frames in zip(bounds, stream.chunks(bounds)):
        luma = frames.max(axis=3)  # any bright channel: a red or white logo shape alike
        grey += int(((luma > GREY_MARGIN) & (luma < 255 - GREY_MARGIN)).sum())
        unknown[a:b] = luma >= THRESHOLD
    if grey > GREY_FRACTION * unknown.size:
        raise InputError(f"mask '{name}' is not a black-and-white mask: "
                         f"{100 * grey / unknown.size:.1f} % of its pixels are grey")
    full = np.flatnonzero(unknown.reshape(count, -1).all(axis=1))
    if len(full):
        which = "the mask" if count == 1 else f"frame {full[0] + 1} of the mask"
        raise InputError(f"{which} '{name}' is white everywhere: nothing of the video would be "
                         f"known (white marks what to fill, black what to keep)")
    if not unknown.any():
        raise InputError(f"mask '{name}' is black everywhere: there is nothing to fill (white "
                         f"marks what to fill)")
    return Mask(unknown)


class MaskedVideo:
    """A video (io.Video or io.VideoStream) whose chunks carry the mask as a fourth channel
    (255 known, 0 unknown): what encode() trains on under --mask."""

    def __init__(self, video, mask: Mask):
        self.video, self.mask = video, mask
        self.height, self.width = video.height, video.width
        self.frame_count, self.fps = video.frame_count, video.fps
        self.notes = getattr(video, "notes", ())

    def chunks(self, bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
        for (start, stop), frames in zip(bounds, self.video.chunks(bounds)):
            out = np.empty(frames.shape[:3] + (4,), np.uint8)
            out[..., :3] = frames
            for i in range(stop - start):
                out[i, ..., 3] = np.where(self.mask.frame(start + i), 0, 255)
            yield out


def with_mask(frames: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """RGB frames (T, H, W, 3) with the fourth channel of `unknown` (H, W or T, H, W)."""
    known = np.broadcast_to(np.where(unknown, 0, 255).astype(np.uint8), frames.shape[:3])
    return np.concatenate([frames, known[..., None]], axis=3)


# ----------------------------------------------------------------------------- the paper's masks


def disperse(height: int, width: int) -> np.ndarray:
    """Five square holes spread over the frame (the paper's "disperse" masks, after HNeRV):
    one at the centre and one at the centre of each quadrant, each 50 pixels wide at the
    paper's 960-pixel height (scaled to this frame, at least 4)."""
    side = max(4, round(50 * height / 960))
    unknown = np.zeros((height, width), bool)
    for cy, cx in [(0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]:
        y, x = round(cy * height) - side // 2, round(cx * width) - side // 2
        unknown[y:y + side, x:x + side] = True
    return unknown


def central(height: int, width: int) -> np.ndarray:
    """One hole in the middle of the frame, a quarter of its height and of its width (the
    paper's "central" mask, after HNeRV)."""
    unknown = np.zeros((height, width), bool)
    h, w = height // 4, width // 4
    y, x = (height - h) // 2, (width - w) // 2
    unknown[y:y + h, x:x + w] = True
    return unknown
