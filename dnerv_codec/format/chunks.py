"""Chunked .dnv files (format 3.0): a long video as a sequence of independently decodable chunks.

A video of one chunk is written as a format-2.0 file, byte for byte what it was before chunks
existed: it costs nothing more and every 2.x reader reads it. A video of several chunks is a
3.0 file:

    preamble   MAGIC, major 3, minor 0
    VHDR       the video: size, frame count, frame rate, chunk count (its CRC covers the preamble)
    CIDX       one record per chunk: first frame, frame count, offset and length of its CHNK
               section, and the PSNR the encoder measured on it
    CHNK ...   one per chunk, in frame order; the payload is a complete 2.x file of the chunk's
               frames (its own preamble, HEAD, network and embeddings)

The index sits before the chunks, so `DnvReader` reads the preamble, VHDR and CIDX, checks the
index against the file's size, and then reads a chunk's bytes only when asked for them (one
positioned read, its CRC checked): decoding frames A..B-1 of a long file reads the chunks that
hold them and nothing else. Everything is bounded before it is read or allocated; the chunk's
own bytes go through the 2.x reader (container.unpack), whose hardening they keep.

This module never imports torch.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from dnerv_codec.errors import BitstreamError, InputError
from dnerv_codec.format.container import (
    FRAME_OVERHEAD,
    MAGIC,
    MAX_FILE_BYTES,
    PREAMBLE_SIZE,
    READABLE_MAJORS,
    Field,
    open_regular,
    read_preamble,
    read_file,
    read_extras,
    read_head,
)
from dnerv_codec.format.extras import Extras

CHUNKED_VERSION = (3, 0)
"""The format of a file of several chunks; a file of one chunk stays 2.0."""
MAX_CHUNKS = 1 << 16
"""Most chunks a file may hold: the index of so many is 2.0 MiB, read before anything else."""
MAX_CHUNK_BYTES = MAX_FILE_BYTES
"""A chunk is a 2.x file and obeys its bound."""

VIDEO_SPEC = (
    Field("width", "u16", 1, (1 << 16) - 1, "Width in pixels; every chunk's HEAD repeats it."),
    Field("height", "u16", 1, (1 << 16) - 1, "Height in pixels; every chunk's HEAD repeats it."),
    Field("frame_count", "u32", 2, 10_000_000, "Frames of the whole video (the chunks' sum)."),
    Field("fps_num", "u32", 1, (1 << 32) - 1, "Frame rate numerator; every chunk's HEAD repeats it."),
    Field("fps_den", "u32", 1, (1 << 32) - 1, "Frame rate denominator."),
    Field("chunk_count", "u32", 2, MAX_CHUNKS,
          "Number of chunks (a video of one chunk is a 2.0 file instead)."),
)
_VHDR_FORMAT = "<HHIIII"
VHDR_SIZE = struct.calcsize(_VHDR_FORMAT)

INDEX_RECORD = (
    ("first_frame", "u32", "Index of the chunk's first frame in the video."),
    ("frame_count", "u32", "Frames in the chunk (its HEAD's frame_count)."),
    ("offset", "u64", "File offset of the chunk's CHNK section."),
    ("length", "u64", "Bytes of that section, framing included."),
    ("psnr_cdb", "u16", "PSNR-RGB the encoder measured on its own decode of the chunk, in "
                        "hundredths of a dB (0: not measured). Informative only."),
)
_RECORD_FORMAT = "<IIQQH"
RECORD_SIZE = struct.calcsize(_RECORD_FORMAT)
# The smallest CHNK section: framing, a 2.x preamble and an empty HEAD section.
MIN_CHUNK_BYTES = FRAME_OVERHEAD + PREAMBLE_SIZE + FRAME_OVERHEAD
HEAD_READ_BYTES = 256
"""Bytes read to find a chunk's HEAD: a 2.x preamble and the largest HEAD take under 100."""
VIDEO_FIELDS = ("width", "height", "fps_num", "fps_den")
"""HEAD fields every chunk must share with VHDR."""


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk as the index (or, for a 2.x file, the whole file) describes it."""

    first_frame: int
    frame_count: int
    offset: int  # of the CHNK section; 0 for a 2.x file
    length: int  # bytes of that section; the file size for a 2.x file
    psnr: float | None = None  # what the encoder measured, when it did

    @property
    def stop(self) -> int:
        return self.first_frame + self.frame_count


def pack_chunked(video: dict, chunks: list[tuple[bytes, float | None]]) -> bytes:
    """A 3.0 file from the video's fields (VIDEO_FIELDS and frame_count) and each chunk's 2.x
    bytes with its measured PSNR, in frame order. One chunk: its 2.x bytes as they are.
    Invalid input is a programming error (ValueError)."""
    if not chunks:
        raise ValueError("a file holds at least one chunk")
    if len(chunks) == 1:
        return chunks[0][0]
    try:
        heads = [read_head(data) for data, _ in chunks]
    except BitstreamError as e:
        raise ValueError(f"a chunk is not a 1.x or 2.x file: {e}") from None
    counts = [h["frame_count"] for h in heads]
    if sum(counts) != video["frame_count"]:
        raise ValueError(f"chunks hold {sum(counts)} frames, the video {video['frame_count']}")
    for k, h in enumerate(heads):
        if any(h[f] != video[f] for f in VIDEO_FIELDS):
            raise ValueError(f"chunk {k}'s HEAD does not match the video's size and rate")
    fields = {**{f: video[f] for f in VIDEO_FIELDS}, "frame_count": video["frame_count"],
              "chunk_count": len(chunks)}
    for f in VIDEO_SPEC:
        if not f.lo <= fields[f.name] <= f.hi:
            raise ValueError(f"{f.name} = {fields[f.name]} outside {f.lo}..{f.hi}")
    preamble = MAGIC + bytes(CHUNKED_VERSION)
    vhdr = _frame("VHDR", struct.pack(_VHDR_FORMAT, *(fields[f.name] for f in VIDEO_SPEC)),
                  preamble)
    offset = len(preamble) + len(vhdr) + FRAME_OVERHEAD + RECORD_SIZE * len(chunks)
    records, first = [], 0
    for (data, psnr), count in zip(chunks, counts):
        length = FRAME_OVERHEAD + len(data)
        cdb = 0 if psnr is None else max(1, min(65535, round(psnr * 100)))
        records.append(struct.pack(_RECORD_FORMAT, first, count, offset, length, cdb))
        first, offset = first + count, offset + length
    body = [preamble, vhdr, _frame("CIDX", b"".join(records))]
    body += [_frame("CHNK", data) for data, _ in chunks]
    return b"".join(body)


def chunked_size(chunk_lengths: list[int]) -> int:
    """The size of a 3.0 file of chunks of these lengths (what `pack_chunked` writes)."""
    return (PREAMBLE_SIZE + 2 * FRAME_OVERHEAD + VHDR_SIZE + RECORD_SIZE * len(chunk_lengths)
            + sum(FRAME_OVERHEAD + n for n in chunk_lengths))


def _frame(tag: str, payload: bytes, covered_prefix: bytes = b"") -> bytes:
    body = tag.encode("ascii") + struct.pack("<I", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body, zlib.crc32(covered_prefix)))


class DnvReader:
    """Random access to the chunks of a .dnv file of any readable version.

    `DnvReader.open(path)` reads a 3.x file's preamble and index only; `chunk_bytes(k)` then
    reads one chunk. A 1.x or 2.x file is one chunk: it is read whole (within `max_bytes`).
    `DnvReader(data)` does the same on bytes in memory."""

    def __init__(self, data: bytes | None = None, *, _file=None):
        self._data, self._file = data, _file
        self.file_bytes = len(data) if data is not None else _file.size
        head = self._read(0, min(self.file_bytes, PREAMBLE_SIZE))
        self.version = _version(head)
        if self.version.startswith("3."):
            self._read_index()
        else:
            whole = self._read(0, self.file_bytes)
            header = read_head(whole)
            self.video = {f: header[f] for f in (*VIDEO_FIELDS, "frame_count")}
            self.chunks = [ChunkEntry(0, header["frame_count"], 0, self.file_bytes)]
            self._whole = whole

    @classmethod
    def open(cls, path: str, max_bytes: int = MAX_FILE_BYTES,
             limit: str = "a .dnv file can be") -> DnvReader:
        """The file at `path`. A 2.x file is read whole, refused over `max_bytes` (`limit` says
        whose bound); a 3.x file is read a chunk at a time, each chunk refused over it."""
        source = _FileSource(path)
        try:
            head = source.read(0, min(source.size, PREAMBLE_SIZE))
            try:
                chunked = source.size >= PREAMBLE_SIZE and _version(head).startswith("3.")
            except BitstreamError:  # said once the file's size and type have been checked
                chunked = False
            if not chunked:
                return cls(read_file(path, max_bytes, limit))
            source.max_chunk, source.limit = max_bytes, limit
            return cls(_file=source)
        except BaseException:
            source.close()
            raise

    @property
    def chunked(self) -> bool:
        return self.version.startswith("3.")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> DnvReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def chunks_for(self, start: int, stop: int) -> list[int]:
        """Indexes of the chunks that hold frames start..stop-1."""
        return [k for k, c in enumerate(self.chunks) if c.first_frame < stop and c.stop > start]

    def chunk_bytes(self, k: int) -> bytes:
        """Chunk k as a complete 2.x file, its CHNK framing and CRC checked."""
        if not self.chunked:
            return self._whole
        entry = self.chunks[k]
        where = f"chunk {k} (CHNK at offset {entry.offset})"
        if self._file is not None and entry.length > self._file.max_chunk + FRAME_OVERHEAD:
            raise InputError(f"{where} is {entry.length} bytes, larger than "
                             f"{self._file.limit} ({self._file.max_chunk} bytes)")
        section = self._read(entry.offset, entry.length)
        tag, length = section[:4], struct.unpack_from("<I", section, 4)[0]
        if tag != b"CHNK":
            raise BitstreamError(f"corrupt .dnv: {where} starts with tag {tag!r}, not 'CHNK'")
        if length != entry.length - FRAME_OVERHEAD:
            raise BitstreamError(f"corrupt .dnv: {where} declares {length} bytes but the index "
                                 f"{entry.length - FRAME_OVERHEAD}")
        if zlib.crc32(section[:-4]) != struct.unpack_from("<I", section, len(section) - 4)[0]:
            raise BitstreamError(f"corrupt .dnv: CRC mismatch in {where}")
        payload = section[8:-4]
        if _version(payload[:PREAMBLE_SIZE]).split(".")[0] not in ("1", "2"):
            raise BitstreamError(f"corrupt .dnv: {where} is not a 1.x or 2.x file")
        return payload

    def chunk_head(self, k: int) -> dict:
        """Chunk k's HEAD, its own CRC checked, reading only the first bytes of the chunk: what
        prices a chunk's decode before the chunk is read."""
        if not self.chunked:
            return read_head(self._whole)
        entry = self.chunks[k]
        size = min(entry.length - FRAME_OVERHEAD, HEAD_READ_BYTES)
        header = read_head(self._read(entry.offset + 8, size))
        self.check_chunk_header(k, header)
        return header

    def extras(self) -> Extras:
        """What the file keeps of its source besides the pictures (colour tags, audio): the
        ancillary sections of its only, or first, chunk, their framing and CRCs checked."""
        return read_extras(self.chunk_bytes(0))

    @property
    def index_bytes(self) -> int:
        """Bytes the reader holds besides a chunk: the whole file for a 2.x one."""
        return self.file_bytes if not self.chunked else RECORD_SIZE * len(self.chunks)

    def check_chunk_header(self, k: int, header: dict) -> None:
        """BitstreamError unless chunk k's HEAD agrees with VHDR and the index (called on the
        HEAD before the chunk's tensors are decoded)."""
        for f in VIDEO_FIELDS:
            if header[f] != self.video[f]:
                raise BitstreamError(f"corrupt .dnv: chunk {k} has {f} = {header[f]}, the "
                                     f"video {self.video[f]}")
        if header["frame_count"] != self.chunks[k].frame_count:
            raise BitstreamError(f"corrupt .dnv: chunk {k} holds {header['frame_count']} "
                                 f"frames, the index says {self.chunks[k].frame_count}")

    # --- internals

    def _read(self, offset: int, size: int) -> bytes:
        if self._data is not None:
            return bytes(self._data[offset:offset + size])
        return self._file.read(offset, size)

    def _read_index(self) -> None:
        fixed = PREAMBLE_SIZE + FRAME_OVERHEAD + VHDR_SIZE
        if self.file_bytes < fixed + FRAME_OVERHEAD:
            raise BitstreamError(f"truncated .dnv: {self.file_bytes} bytes cannot hold the 3.x "
                                 f"video header and chunk index")
        vhdr = self._read(0, fixed)
        _check_frame(vhdr, PREAMBLE_SIZE, "VHDR", VHDR_SIZE, covered_from=0)
        values = struct.unpack_from(_VHDR_FORMAT, vhdr, PREAMBLE_SIZE + 8)
        fields = dict(zip((f.name for f in VIDEO_SPEC), values))
        for f in VIDEO_SPEC:
            if not f.lo <= fields[f.name] <= f.hi:
                raise BitstreamError(f"corrupt .dnv: field '{f.name}' = {fields[f.name]} outside "
                                     f"{f.lo}..{f.hi} (in section 'VHDR')")
        count = fields.pop("chunk_count")
        if count > fields["frame_count"]:
            raise BitstreamError(f"corrupt .dnv: {count} chunks for {fields['frame_count']} frames")
        index_bytes = RECORD_SIZE * count
        end_of_index = fixed + FRAME_OVERHEAD + index_bytes
        if end_of_index + count * MIN_CHUNK_BYTES > self.file_bytes:
            raise BitstreamError(f"truncated .dnv: {self.file_bytes} bytes cannot hold the index "
                                 f"and {count} chunks")
        cidx = self._read(fixed, FRAME_OVERHEAD + index_bytes)
        _check_frame(cidx, 0, "CIDX", index_bytes, covered_from=0, offset=fixed)
        chunks, first, offset = [], 0, end_of_index
        for k in range(count):
            f0, n, off, length, cdb = struct.unpack_from(_RECORD_FORMAT, cidx, 8 + k * RECORD_SIZE)
            problem = (
                f"starts at frame {f0}, expected {first}" if f0 != first
                else "holds no frames" if n == 0
                else f"ends at frame {f0 + n}, past the video's {fields['frame_count']}"
                if f0 + n > fields["frame_count"]
                else f"is at offset {off}, expected {offset}" if off != offset
                else f"has length {length}, less than the {MIN_CHUNK_BYTES} of any chunk"
                if length < MIN_CHUNK_BYTES
                else f"ends at offset {off + length}, past the file's {self.file_bytes} bytes"
                if off + length > self.file_bytes
                else None)
            if problem:
                raise BitstreamError(f"corrupt .dnv: chunk {k} in the index {problem}")
            chunks.append(ChunkEntry(f0, n, off, length, cdb / 100 if cdb else None))
            first, offset = f0 + n, off + length
        if first != fields["frame_count"]:
            raise BitstreamError(f"corrupt .dnv: the chunks hold {first} frames, the video "
                                 f"{fields['frame_count']}")
        if offset != self.file_bytes:
            raise BitstreamError(f"corrupt .dnv: {self.file_bytes - offset} bytes of trailing "
                                 f"garbage at offset {offset}")
        self.video, self.chunks = fields, chunks


def _check_frame(data: bytes, pos: int, tag: str, length: int, covered_from: int,
                 offset: int = 0) -> None:
    """The section at data[pos:] must be `tag` with a payload of `length` bytes and a good CRC
    (covering data[covered_from:]); `offset` is data's place in the file, for messages."""
    at = offset + pos
    found, declared = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
    if found != tag.encode():
        raise BitstreamError(f"corrupt .dnv: expected section '{tag}' at offset {at}, found "
                             f"{found!r}")
    if declared != length:
        raise BitstreamError(f"corrupt .dnv: section '{tag}' at offset {at} declares {declared} "
                             f"bytes, expected {length}")
    end = pos + 8 + length
    if zlib.crc32(data[covered_from:end]) != struct.unpack_from("<I", data, end)[0]:
        raise BitstreamError(f"corrupt .dnv: CRC mismatch in section '{tag}' at offset {at}")


def _version(head: bytes) -> str:
    """'major.minor' of a file starting with `head`; BitstreamError unless it is a .dnv of a
    version this reader reads (a single 1.x or 2.x file, or a chunked 3.x one)."""
    return read_preamble(head, READABLE_MAJORS + (CHUNKED_VERSION[0],))


class _FileSource:
    """Positioned reads from a regular file, refused when it is anything else."""

    def __init__(self, path: str):
        self.path = path
        self.fd, info = open_regular(path)
        self.size = info.st_size
        self.max_chunk, self.limit = MAX_CHUNK_BYTES, "a chunk can be"

    def read(self, offset: int, size: int) -> bytes:
        try:
            data = os.pread(self.fd, size, offset)
        except OSError as e:
            raise InputError(f"cannot read '{self.path}': {e.strerror}") from None
        if len(data) != size:
            raise InputError(f"cannot read '{self.path}': it changed while being read")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
