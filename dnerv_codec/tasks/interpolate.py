"""Frame interpolation in the decoder: `dnerv decode --fps-scale K`.

A .dnv file stores one content embedding (and one diff embedding) per frame. The frame at a
position between two stored frames, t + j/K, is rendered from the embeddings interpolated
linearly between frame t's and frame t+1's: the decoder maps nearby embeddings to nearby
frames, so this moves content along the way the network learned it, where blending pixels
would show both frames at once. It needs nothing but the file, so it works on any .dnv.

Timing: K - 1 in-betweens follow every stored frame but the last, so N stored frames give
(N - 1) * K + 1 frames at K times the (rational) frame rate; stored frame t lands at exactly
the time it had (t / fps), and the video ends on its last stored frame. In-betweens across a
chunk boundary (a long video's file holds one network per chunk, whose embeddings do not mix)
are linear blends of the two frames' pixels.

Torch-free: the arithmetic is on the dequantized numpy embeddings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import numpy as np

MAX_FPS_SCALE = 16  # a factor beyond this is a slide show of in-betweens, not a frame rate


def output_count(frames: int, k: int) -> int:
    """Frames that `frames` stored frames become under --fps-scale k."""
    return (frames - 1) * k + 1 if frames > 0 else 0


def positions(start: int, stop: int, k: int) -> Iterator[float]:
    """Positions of the frames rendered for stored frames start..stop-1: each stored frame,
    then k - 1 evenly spaced in-betweens up to the next one (none after the last). Yielded
    one at a time: a file may declare millions of frames, and the list of their positions
    would cost memory the decode budget does not price."""
    for t in range(start, stop - 1):
        for j in range(k):
            yield t + j / k
    if stop > start:
        yield float(stop - 1)


def embedding_rows(embeddings: np.ndarray, positions: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi-1 of the embeddings (T, C, H, W) at `positions`: integer positions give
    the stored values exactly; fractional ones interpolate linearly between the two
    neighbouring frames."""
    if positions.dtype.kind in "iu":
        return embeddings[positions, :, lo:hi]
    base = np.floor(positions).astype(np.int64)
    frac = (positions - base).astype(np.float32)
    upper = np.minimum(base + 1, len(embeddings) - 1)
    a, b = embeddings[base, :, lo:hi], embeddings[upper, :, lo:hi]
    out = a + (b - a) * frac[:, None, None, None]
    exact = frac == 0
    out[exact] = a[exact]  # bit-exact stored frames, whatever b holds
    return np.ascontiguousarray(out, dtype=np.float32)


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """uint8 frames (..., 3) blended linearly: (1 - t) a + t b, rounded."""
    return np.round(a * (1.0 - t) + b.astype(np.float64) * t).astype(np.uint8)


def blends(a: np.ndarray, b: np.ndarray, k: int) -> Iterator[np.ndarray]:
    """The k - 1 pixel blends between frames a and b."""
    for j in range(1, k):
        yield blend(a, b, j / k)


def repeated(stored: np.ndarray, k: int) -> np.ndarray:
    """Baseline: each in-between repeats the stored frame before it ((N - 1) k + 1 frames)."""
    idx = [int(p) for p in positions(0, len(stored), k)]
    return stored[idx]


def blended(stored: np.ndarray, k: int) -> np.ndarray:
    """Baseline: each in-between blends the stored frames either side of it linearly."""
    out = []
    for p in positions(0, len(stored), k):
        t, frac = int(p), p - int(p)
        out.append(stored[t] if frac == 0 else blend(stored[t], stored[t + 1], frac))
    return np.stack(out)


def scaled_cost(cost, k: int):
    """A decode cost (format/budget.py's DecodeCost or FileCost) with each chunk's frames to
    render replaced by the frames --fps-scale k renders for them."""
    if k == 1:
        return cost
    if hasattr(cost, "chunks"):
        return replace(cost, chunks=tuple(replace(c, frames=output_count(c.frames, k))
                                          for c in cost.chunks))
    return replace(cost, frames=output_count(cost.frames, k))
