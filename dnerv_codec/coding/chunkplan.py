"""How a video is cut into chunks: one network per chunk, each decodable on its own.

The rule (docs/scaling.md gives the measurement behind it): one chunk for the whole video
whenever it can be, because a network shared by more frames spends its weights on all of them
(on the embedded clip, two 24-frame networks cost quality against one 48-frame network at the
same rate; benchmarks/chunks.py). A video is cut only when one network would not do:

- **memory**: a chunk's frames are held as uint8 on the training device (and once more while
  they are read), so a chunk holds at most CHUNK_MEMORY_BYTES of frames: about 170 frames of
  1080p, thousands at 320x180;
- **time**: at a fixed rate a chunk's decoder grows with its length, and so, once the decoder
  dominates a step, does each training step: a chunk then costs up to the square of its length
  to train. MAX_CHUNK_FRAMES caps it (and long videos then spread over workers);
- **rate**: a chunk must afford its embeddings and the smallest decoder, so it is never made
  shorter than the length at which the target rate does (`min_frames_for`).

The chunks are then as equal as the frame count allows (they differ by at most a frame), so
every chunk gets the same network and the same share of the budget. `--chunk N` forces a
length.
"""

from __future__ import annotations

import math

from dnerv_codec.coding.ratecontrol import RateRequest, floor_bpp

CHUNK_MEMORY_BYTES = 1 << 30
"""The most uint8 frame bytes a chunk may hold."""
MAX_CHUNK_FRAMES = 600
"""The longest chunk chosen by default: the paper fits one network to each 600-frame UVG
video (20 s at 30 fps)."""


def min_frames_for(request: RateRequest) -> int:
    """The fewest frames a chunk needs for the request's rate to pay for its smallest network
    (the floor falls with length, as the decoder's cost spreads over more frames); the
    request's frame count when even that many are not enough."""
    top = request.frames or 1 << 24
    if floor_bpp(request.for_frames(top)) > request.bpp:
        return top
    lo, hi = 1, top
    while lo < hi:
        mid = (lo + hi) // 2
        if floor_bpp(request.for_frames(mid)) <= request.bpp:
            hi = mid
        else:
            lo = mid + 1
    return lo


def chunk_length(request: RateRequest, forced: int | None = None) -> int:
    """The longest chunk length the rule allows for the request's video (`forced` when
    given), at most the video."""
    frame_count = request.frames
    if forced:
        return min(forced, frame_count)
    by_memory = max(1, CHUNK_MEMORY_BYTES // (3 * request.height * request.width))
    longest = min(frame_count, MAX_CHUNK_FRAMES, by_memory)
    return max(longest, min_frames_for(request))


def chunk_bounds(frame_count: int, length: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk: as few chunks as `length` allows, their lengths equal to
    within a frame (the longer ones first)."""
    count = math.ceil(frame_count / max(1, length))
    base, extra = divmod(frame_count, count)
    bounds, start = [], 0
    for k in range(count):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds
