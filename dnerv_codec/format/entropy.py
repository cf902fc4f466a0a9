"""Entropy coding for .dnv files: integer arrays <-> ANS words, with the model stored in the file.

Each group of symbols is coded with one static histogram (a Categorical model) that travels in
the file, so decoding needs nothing but integers read from the file: the probabilities are
derived from those integers in float64, which is deterministic IEEE arithmetic on any machine.
The coder is constriction's ANS stack coder (constriction 0.5 wants int32 symbols and
`perfect=False` on both sides).

This module reads untrusted bytes, so it holds `ByteReader`, the bounds-checked little-endian
reader that the container (container.py) uses too. It never imports torch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np

from dnerv_codec.errors import BitstreamError

MAX_STORED_COUNT = 4095
"""Histogram counts are rescaled to at most this (12 bits, two varint bytes) to keep them small."""

MAX_ALPHABET = 1 << 17
"""Most symbols a histogram may span: q - zero_point for 16-bit tensors needs 2**17 - 1."""

_MAX_VARINT_BYTES = 5  # enough for any value < 2**32
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


class ByteReader:
    """Bounds-checked little-endian reads from untrusted bytes.

    Every read checks that its bytes exist before touching them, and every failure is a
    BitstreamError that names the place (`where`, absolute file offset), so a malformed file can
    neither raise IndexError/struct.error nor make us allocate more than it actually contains.
    """

    def __init__(self, data: bytes, start: int = 0, end: int | None = None, where: str = "file"):
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.where = where

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def error(self, what: str, offset: int | None = None) -> BitstreamError:
        """A BitstreamError for a problem at `offset` (default: the current position)."""
        at = self.pos if offset is None else offset
        return BitstreamError(f"corrupt .dnv: {self.where}, offset {at}: {what}")

    def need(self, size: int, what: str) -> None:
        """Refuse to go on unless `size` more bytes exist; call before allocating for them."""
        if size > self.remaining:
            raise self.error(f"{what} needs {size} bytes but {self.remaining} remain")

    def take(self, size: int, what: str) -> bytes:
        self.need(size, what)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        """struct.unpack of an explicit little-endian format ('<...')."""
        assert fmt.startswith("<"), "reads must be explicit little-endian"
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def u8(self, what: str) -> int:
        return self.unpack("<B", what)[0]

    def i8(self, what: str) -> int:
        return self.unpack("<b", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)[0]

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        """`count` items of little-endian `dtype` (e.g. '<f4') as a native-order array."""
        dt = np.dtype(dtype)
        raw = self.take(count * dt.itemsize, what)
        return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))

    def varint(self, what: str) -> int:
        """An unsigned LEB128 varint < 2**32 in canonical (shortest) form."""
        start, value = self.pos, 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise self.error(f"{what}: non-canonical varint", start)
                if value >= 1 << 32:
                    raise self.error(f"{what}: varint {value} does not fit 32 bits", start)
                return value
        raise self.error(f"{what}: varint longer than {_MAX_VARINT_BYTES} bytes", start)


def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low group first, high bit set on all but the last."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"varint value {value} outside 0..2**32-1")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def write_varints(values: np.ndarray) -> bytes:
    """write_varint of every value, joined; vectorised, because a histogram of a finely
    quantized tensor has thousands of counts and the rate search packs dozens of candidate
    files (at 1280x720, 10.6 million calls of write_varint took 4.6 s of 8.2 s of packing)."""
    v = np.asarray(values).astype(np.int64).ravel()
    if v.size and (v.min() < 0 or v.max() >= 1 << 32):
        raise ValueError("varint values outside 0..2**32-1")
    lengths = 1 + sum((v >= 1 << (7 * k)).astype(np.int64) for k in range(1, _MAX_VARINT_BYTES))
    starts = np.cumsum(lengths) - lengths
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    for k in range(_MAX_VARINT_BYTES):
        has = lengths > k
        more = (lengths[has] > k + 1).astype(np.int64) << 7
        out[starts[has] + k] = ((v[has] >> (7 * k)) & 0x7F) | more
    return out.tobytes()


def zigzag(value: int) -> int:
    """Signed -> unsigned so small magnitudes stay short: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    return value >> 1 if value % 2 == 0 else -(value >> 1) - 1


@dataclass(eq=False)
class Histogram:
    """The stored entropy model: counts for the symbols lo .. lo + len(counts) - 1.

    A count of 0 is allowed for a symbol that does not occur; every symbol that occurs has a
    count >= 1 (and constriction gives every symbol in range a nonzero probability anyway).
    """

    lo: int
    counts: np.ndarray  # uint32

    @property
    def n(self) -> int:
        return len(self.counts)

    @classmethod
    def from_symbols(cls, symbols: np.ndarray) -> Histogram:
        """Count `symbols`, rescaled so the largest count is <= MAX_STORED_COUNT."""
        symbols = _as_int_array(symbols)
        if symbols.size == 0:
            return cls(0, np.zeros(0, np.uint32))
        lo, hi = int(symbols.min()), int(symbols.max())
        if hi - lo + 1 > MAX_ALPHABET or lo < _INT32_MIN or hi > _INT32_MAX:
            raise ValueError(f"symbols {lo}..{hi} span more than {MAX_ALPHABET} values or leave int32")
        counts = np.bincount((symbols - lo).astype(np.int64), minlength=hi - lo + 1)
        return cls(lo, _rescale(counts))

    def to_bytes(self) -> bytes:
        """zig-zag varint lo, varint n, then n varint counts."""
        return write_varint(zigzag(self.lo)) + write_varint(self.n) + write_varints(self.counts)

    @classmethod
    def from_reader(cls, reader: ByteReader) -> Histogram:
        """Read a histogram, checking n and the symbol range before allocating the counts."""
        start = reader.pos
        lo = unzigzag(reader.varint("histogram lo"))
        n = reader.varint("histogram size")
        if n > MAX_ALPHABET:
            raise reader.error(f"histogram has {n} symbols (limit {MAX_ALPHABET})", start)
        if lo < _INT32_MIN or lo + max(n - 1, 0) > _INT32_MAX:
            raise reader.error(f"histogram symbols {lo}..{lo + n - 1} are not int32", start)
        reader.need(n, f"{n} histogram counts")  # each varint is at least one byte
        counts = np.array([reader.varint("histogram count") for _ in range(n)], dtype=np.uint32)
        problem = _canonical_problem(counts)
        if problem:
            raise reader.error(f"histogram {problem}", start)
        return cls(lo, counts)

    def model(self) -> constriction.stream.model.Categorical:
        """The constriction model; float64 from integers, so identical on every machine."""
        return constriction.stream.model.Categorical(self.counts.astype(np.float64), perfect=False)


def _canonical_problem(counts: np.ndarray) -> str | None:
    """Why `counts` is not what `from_symbols` writes (or None): its range lo..lo+n-1 is tight
    (both ends occur) and no count exceeds MAX_STORED_COUNT.

    Besides refusing files no encoder wrote, this bounds the most probable symbol of any
    histogram with two or more symbols to 4095/4096, so each coded symbol costs at least
    log2(4096/4095) bits: what `decode` relies on to spot ANS data that has run out."""
    if counts.size and (counts[0] == 0 or counts[-1] == 0):
        return "does not start and end with a symbol that occurs"
    if counts.size and counts.max() > MAX_STORED_COUNT:
        return f"count {int(counts.max())} exceeds {MAX_STORED_COUNT}"
    return None


def _as_int_array(symbols: np.ndarray) -> np.ndarray:
    symbols = np.asarray(symbols)
    if symbols.size and not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {symbols.dtype}")
    return symbols.reshape(-1).astype(np.int64)


def _rescale(counts: np.ndarray) -> np.ndarray:
    """Scale counts down so the largest is MAX_STORED_COUNT, keeping occurring symbols >= 1."""
    top = int(counts.max())
    if top > MAX_STORED_COUNT:
        scaled = (counts * MAX_STORED_COUNT + top // 2) // top
        counts = np.where(counts > 0, np.maximum(scaled, 1), 0)
    return counts.astype(np.uint32)


def encode(symbols: np.ndarray) -> tuple[Histogram, bytes]:
    """Entropy-code integer `symbols` (any shape, flattened in C order).

    Returns the histogram to store and the payload: the ANS words as little-endian uint32.
    The payload is empty when there is nothing to code: no symbols, or a single-symbol
    histogram (that symbol is certain and costs no bits; constriction cannot model n == 1).
    """
    symbols = _as_int_array(symbols)
    hist = Histogram.from_symbols(symbols)
    return hist, encode_with(symbols, hist)


def encode_with(symbols: np.ndarray, hist: Histogram) -> bytes:
    """The ANS words of `symbols` under a given canonical histogram (format 2.0's parametric
    models); every symbol must lie in its range. Empty when the histogram has one symbol."""
    symbols = _as_int_array(symbols)
    if hist.n <= 1:
        return b""
    if symbols.size and (symbols.min() < hist.lo or symbols.max() >= hist.lo + hist.n):
        raise ValueError("symbols outside the histogram's range")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse((symbols - hist.lo).astype(np.int32), hist.model())
    return coder.get_compressed().astype("<u4").tobytes()


def decode(hist: Histogram, payload: bytes, count: int, *, max_count: int) -> np.ndarray:
    """Decode `count` symbols (int32) coded by `encode`; refuses counts above `max_count`.

    Any inconsistency between histogram, payload and count (including garbage that constriction
    rejects, words left over after `count` symbols, or words that run out long before them)
    raises BitstreamError. `hist` must be canonical (as `from_symbols` and `from_reader` make).
    """
    if not 0 <= count <= max_count:
        raise BitstreamError(f"corrupt .dnv: {count} symbols to decode (limit {max_count})")
    if len(payload) % 4:
        raise BitstreamError(f"corrupt .dnv: ANS payload, {len(payload)} bytes, is not whole words")
    if count and not hist.counts.any():
        raise BitstreamError(f"corrupt .dnv: empty histogram for {count} symbols")
    if count == 0 or hist.n == 1:
        if payload:
            raise BitstreamError(f"corrupt .dnv: {len(payload)} ANS bytes where none are needed")
        return np.full(count, hist.lo, dtype=np.int32)
    if not payload:  # both ends of a canonical histogram occur, so some symbol cost bits
        raise BitstreamError(f"corrupt .dnv: no ANS words for {count} symbols of {hist.n} kinds")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = _decode_chunks(coder, hist.model(), count)
        leftover = not coder.is_empty()
    except BitstreamError:
        raise
    except Exception as exc:  # constriction signals bad data with assorted exception types
        reason = " ".join(str(exc).split())  # keep the message on one line
        raise BitstreamError(f"corrupt .dnv: ANS data cannot be decoded ({reason})") from exc
    if leftover:
        raise BitstreamError("corrupt .dnv: ANS words left over after the last symbol")
    symbols += np.int32(hist.lo)
    return symbols


DECODE_CHUNK = 1 << 16
"""Symbols per call into constriction; `_decode_chunks` checks the coder between calls."""


def _decode_chunks(coder, model, count: int) -> np.ndarray:
    """`count` symbol indices (int32), a chunk at a time, stopping early on exhausted data.

    constriction does not notice reading past the end of its words: an exhausted coder keeps
    producing symbols, so a few bytes could ask for 2**27 of them (seconds, and a GiB). Between
    chunks, with integer bookkeeping only:
    - an empty coder (state 0, no words) decodes index 0 forever, at no cost: the encoder
      writes a final run of index-0 symbols that way, so the rest is filled in at once;
    - a chunk of nothing but index 0 that consumed no bit means the coder is stuck in a state
      no encoder produces (it would decode index 0 forever without ever emptying): refused.
      Real data cannot do that: under a canonical histogram every symbol costs at least
      log2(4096/4095) bits, so DECODE_CHUNK of them consume more than 23 bits.
    """
    out = np.empty(count, np.int32)
    done = 0
    while done < count:
        if coder.is_empty():
            out[done:] = 0
            break
        n = min(DECODE_CHUNK, count - done)
        bits = coder.num_valid_bits()
        chunk = out[done : done + n]
        chunk[:] = coder.decode(model, n)
        if coder.num_valid_bits() == bits and not chunk.any():
            raise BitstreamError("corrupt .dnv: ANS data runs out before the last symbol")
        done += n
    return out
