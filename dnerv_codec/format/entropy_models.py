"""Entropy models of format 2.0: a few stored integers in, a canonical `entropy.Histogram` out.

Format 1.0 stored one histogram for all of a group's tensors. Format 2.0 codes every tensor (or
every slice of it, a "segment") with its own model, whichever makes it smallest:

- **histogram**: the counts themselves (`Histogram.to_bytes`), exact for any distribution;
- **geometric**: a two-sided geometric distribution centred on 0, the discrete form of a
  Laplace: weight(k) proportional to r^|k| on the symbols lo..lo+n-1, with r = ratio / 2^16
  stored as a u16. Three small integers instead of n counts: what pays for small segments and
  peaked ones (temporal residuals of embeddings, quantized weights).

Both become a canonical Histogram (the largest count 4095, every symbol in range at least 1, as
`entropy._rescale` makes them), so the ANS tables come from integers only and are bit-identical on every
machine, and the decoder's checks on ANS data (entropy.decode) hold unchanged. The geometric
weights are computed with integer arithmetic (a running product, floored at each step), never
with exp or log, for the same reason. Choosing a model uses floats (ideal code lengths); what is
stored, and so what is decoded, does not.

No torch here: this module is part of the reader of untrusted files.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from dnerv_codec.format.entropy import (
    MAX_STORED_COUNT,
    ByteReader,
    Histogram,
    unzigzag,
    write_varint,
    zigzag,
)

HISTOGRAM, GEOMETRIC = 0, 1
MODEL_NAMES = {HISTOGRAM: "histogram", GEOMETRIC: "geometric"}

RATIO_BITS = 16
_TOP = 1 << 40  # the weight of symbol 0 before rescaling: 40 bits keep 24 bits of tail precision
# Candidate ratios when fitting: 1 - r spaced geometrically from 2^-12 (almost flat) to 0.99.
_FIT_RATIOS = sorted({min((1 << RATIO_BITS) - 1, max(1, round((1 - 2 ** (-j / 4)) * (1 << RATIO_BITS))))
                      for j in range(1, 49)})
_FIT_LOG_RATIOS = np.array([math.log2(r / (1 << RATIO_BITS)) for r in _FIT_RATIOS])


MAX_GEOMETRIC_REACH = 4096
"""The geometric model covers symbols within +-4096 (writers need +-1022 at most: 10-bit steps,
temporal residuals): its table costs at most this many integer steps (under a millisecond),
computed once per ratio and cached."""
MAX_GEOMETRIC_MODELS = 4096
"""Geometric models in one section at most (tensorcode.read_section): with the reach above, a
hostile section can cost a few seconds of table building, never more. Writers use one per
tensor or per channel: tens to a few hundred."""


def geometric_counts(lo: int, n: int, ratio: int) -> np.ndarray:
    """The canonical counts of the geometric model on lo..lo+n-1 (uint32). Integer arithmetic
    only: w(0) = 2^40, w(k) = max(1, floor(w(k-1) * ratio / 2^16)), then rescaled."""
    if not (1 <= n and max(abs(lo), abs(lo + n - 1)) <= MAX_GEOMETRIC_REACH
            and 1 <= ratio < 1 << RATIO_BITS):
        raise ValueError(f"geometric model needs symbols within +-{MAX_GEOMETRIC_REACH} and "
                         f"1 <= ratio < 65536")
    ks = np.abs(np.arange(lo, lo + n, dtype=np.int64))
    return _rescale_exact(_geometric_weights(ratio)[ks])


@functools.lru_cache(maxsize=256)
def _geometric_weights(ratio: int) -> np.ndarray:
    """w(0..MAX_GEOMETRIC_REACH) for one ratio (read-only)."""
    weights, w = [], _TOP
    while len(weights) <= MAX_GEOMETRIC_REACH and w > 1:
        weights.append(w)
        w = max(1, (w * ratio) >> RATIO_BITS)
    weights += [1] * (MAX_GEOMETRIC_REACH + 1 - len(weights))  # 1 stays 1
    table = np.array(weights, dtype=np.uint64)
    table.flags.writeable = False
    return table


def _rescale_exact(weights: np.ndarray) -> np.ndarray:
    """entropy._rescale for uint64 weights above 2^32: scale to a largest of MAX_STORED_COUNT,
    every weight at least 1, in exact integer arithmetic."""
    top = int(weights.max())
    if top <= MAX_STORED_COUNT:
        return weights.astype(np.uint32)
    # (w * 4095 + top // 2) // top without overflow: w < 2^41 and 4095 < 2^12 fit in 64 bits.
    scaled = (weights * np.uint64(MAX_STORED_COUNT) + np.uint64(top // 2)) // np.uint64(top)
    return np.maximum(scaled, 1).astype(np.uint32)


@dataclass(frozen=True)
class Model:
    """One segment's entropy model as stored: `kind`, and either the histogram or (lo, n, ratio)."""

    kind: int
    hist: Histogram | None = None
    lo: int = 0
    n: int = 0
    ratio: int = 0

    def histogram(self) -> Histogram:
        if self.kind == HISTOGRAM:
            return self.hist
        return Histogram(self.lo, geometric_counts(self.lo, self.n, self.ratio))

    def to_bytes(self) -> bytes:
        if self.kind == HISTOGRAM:
            return bytes([HISTOGRAM]) + self.hist.to_bytes()
        return (bytes([GEOMETRIC]) + write_varint(zigzag(self.lo)) + write_varint(self.n)
                + self.ratio.to_bytes(2, "little"))

    @classmethod
    def from_reader(cls, r: ByteReader) -> Model:
        """Read and validate a model (its histogram is built only once the range is checked)."""
        start = r.pos
        kind = r.u8("entropy model kind")
        if kind == HISTOGRAM:
            return cls(HISTOGRAM, hist=Histogram.from_reader(r))
        if kind != GEOMETRIC:
            raise r.error(f"unknown entropy model {kind}", start)
        lo = unzigzag(r.varint("geometric lo"))
        n = r.varint("geometric size")
        ratio = int.from_bytes(r.take(2, "geometric ratio"), "little")
        if not 1 <= n <= 2 * MAX_GEOMETRIC_REACH + 1:
            raise r.error(f"geometric model over {n} symbols (allowed 1.."
                          f"{2 * MAX_GEOMETRIC_REACH + 1})", start)
        if max(abs(lo), abs(lo + n - 1)) > MAX_GEOMETRIC_REACH:
            raise r.error(f"geometric model symbols {lo}..{lo + n - 1} beyond "
                          f"+-{MAX_GEOMETRIC_REACH}", start)
        if not 1 <= ratio < 1 << RATIO_BITS:
            raise r.error(f"geometric ratio {ratio} outside 1..65535", start)
        return cls(GEOMETRIC, lo=lo, n=n, ratio=ratio)


def best_model(symbols: np.ndarray) -> tuple[Model, float]:
    """The model that codes `symbols` (a non-empty int array) in the fewest bits, counting its
    own stored bytes; returns it with that estimated size in bits."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    hist = Histogram.from_symbols(symbols)
    options = [(Model(HISTOGRAM, hist=hist), hist)]
    reach = max(abs(hist.lo), abs(hist.lo + hist.n - 1))
    if hist.n > 1 and reach <= MAX_GEOMETRIC_REACH:
        ratio = _fit_ratio(symbols, hist.lo, hist.n)
        geo = Model(GEOMETRIC, lo=hist.lo, n=hist.n, ratio=ratio)
        options.append((geo, geo.histogram()))
    best = None
    for model, h in options:
        bits = ideal_bits(symbols, h) + 8 * len(model.to_bytes())
        if best is None or bits < best[1]:
            best = (model, bits)
    return best


def ideal_bits(symbols: np.ndarray, hist: Histogram) -> float:
    """The ideal code length of `symbols` under `hist` (ANS lands within a word or so of it)."""
    if hist.n <= 1:
        return 0.0
    counts = hist.counts.astype(np.float64)
    p = counts / counts.sum()
    seen = np.bincount(np.asarray(symbols, np.int64) - hist.lo, minlength=hist.n)
    used = seen > 0
    return float(-(seen[used] * np.log2(p[used])).sum())


_FIT_AT_ONCE = 512
"""Up to this many symbols, every candidate ratio is scored in one array operation (a row
each): 0.03-0.16 ms against 0.3-0.4 ms for a loop over the 48, whose per-ratio overhead made
_fit_ratio a third of a small encode's rate search. Wider ranges are scored a ratio at a time,
which is faster there (the rows no longer fit the caches). Both give the same ratio."""


def _fit_ratio(symbols: np.ndarray, lo: int, n: int) -> int:
    """The candidate ratio whose (float) geometric law gives `symbols` the shortest code."""
    mags = np.abs(symbols)
    ks = np.abs(np.arange(lo, lo + n, dtype=np.float64))
    total_mag, count = float(mags.sum()), mags.size
    if n <= _FIT_AT_ONCE:
        exponents = _FIT_LOG_RATIOS[:, None] * ks  # log2 of each symbol's weight, a row a ratio
        top = exponents.max(axis=1)  # summed relative to each row's largest: no underflow
        log_z = top + np.log2(np.exp2(exponents - top[:, None]).sum(axis=1))
        bits = count * log_z - total_mag * _FIT_LOG_RATIOS
        return _FIT_RATIOS[int(np.argmin(bits))]  # the first of equals, as the loop takes
    best = None
    for ratio, log_r in zip(_FIT_RATIOS, _FIT_LOG_RATIOS.tolist()):
        exponents = ks * log_r  # log2 of each symbol's weight; sum them without underflow
        top = float(exponents.max())
        log_z = top + math.log2(float(np.exp2(exponents - top).sum()))
        bits = count * log_z - total_mag * log_r
        if best is None or bits < best[0]:
            best = (bits, ratio)
    return best[1]
