"""What a .dnv keeps of its source besides the pictures: colour tags and the audio track.

Both are ancillary sections (a lower-case tag) after the tensor groups of the file's only, or
first, 2.x file (in a chunked file: chunk 0's), so a reader that predates them skips them and
still decodes the video:

    colr   the source's colour tags: primaries, transfer and matrix, u8 each, as ISO/IEC 23091-2
           (and FFmpeg) number them. Written only when they say something the decoder's BT.709
           default would not: a reader without it tags the output BT.709.
    audi   the source's first audio track, its packets as they were (never re-encoded), in a NUT
           stream (FFmpeg's own container: exact time bases, any codec, ~10 bytes a packet),
           after a small record of what it holds and where its zero lies on the video's clock.

The video's rate (bpp, the rate target) counts the file without `audi`; the audio's bytes are
reported apart. This module never imports torch or PyAV: it frames and bounds the bytes; the
NUT stream is read by FFmpeg's demuxer (the one that reads the user's videos) in passthrough.py.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from dnerv_codec.format.entropy import ByteReader

COLOUR_TAG = "colr"
AUDIO_TAG = "audi"
KNOWN_TAGS = (COLOUR_TAG, AUDIO_TAG)

# The code points ISO/IEC 23091-2 defines (FFmpeg's AVColorPrimaries, AVColorTransfer-
# Characteristic, AVColorSpace); a value outside them is a corrupt section.
COLOUR_FIELDS = (
    ("primaries", 0, 22, "colour primaries (1 BT.709, 9 BT.2020, 12 SMPTE 432 / P3-D65, ...)"),
    ("transfer", 0, 18, "transfer characteristics (1 BT.709, 16 SMPTE 2084 / PQ, 18 HLG, ...)"),
    ("matrix", 0, 14, "matrix coefficients (1 BT.709, 5/6 BT.601, 9 BT.2020 NCL, ...)"),
)
COLOUR_BYTES = len(COLOUR_FIELDS)

MAX_CODEC_NAME = 32
MAX_AUDIO_BYTES = 1 << 30
"""Most bytes of an `audi` section (hours of any common audio). Checked before its NUT stream is
handed to FFmpeg; the section is already in memory, inside the file's own bound."""
AUDIO_RECORD = (
    ("codec", "u8 length + ASCII", "FFmpeg's name of the audio codec (informative: the NUT "
                                   "stream's own header is what a decoder uses)"),
    ("packets", "u32", "packets in the stream (informative)"),
    ("start", "i64", "the time of the stream's zero on the video's clock (the first frame at 0), "
                     "in ticks of start_num / start_den seconds"),
    ("start_num", "u32", "tick numerator (>= 1)"),
    ("start_den", "u32", "tick denominator (>= 1)"),
    ("stream", "the rest", "the NUT stream: the packets, byte for byte as the source held them"),
)


@dataclass(frozen=True)
class ColourTags:
    """Colour tags as ISO/IEC 23091-2 numbers them (FFmpeg's enums share the numbers)."""

    primaries: int
    transfer: int
    matrix: int

    def __post_init__(self):
        for (name, lo, hi, _), value in zip(COLOUR_FIELDS, self.values()):
            if not (isinstance(value, int) and lo <= value <= hi):
                raise ValueError(f"colour {name} = {value!r} outside {lo}..{hi}")

    def values(self) -> tuple[int, int, int]:
        return (self.primaries, self.transfer, self.matrix)


@dataclass(frozen=True)
class AudioTrack:
    """One audio track's packets, as FFmpeg demuxed them, in a NUT stream."""

    codec: str
    packets: int
    nut: bytes  # the NUT stream's bytes
    start: int = 0  # ticks of start_tick seconds: where the stream's zero lies on the video's clock
    start_tick: tuple[int, int] = (1, 1_000_000)

    def __post_init__(self):
        raw = self.codec.encode("ascii", "replace")
        if not 1 <= len(raw) <= MAX_CODEC_NAME or not raw.isascii():
            raise ValueError(f"codec name {self.codec!r} is not 1..{MAX_CODEC_NAME} ASCII bytes")
        if not 0 <= self.packets < 1 << 32 or not -(1 << 63) <= self.start < 1 << 63:
            raise ValueError("packet count or start out of range")
        if min(self.start_tick) < 1 or max(self.start_tick) >= 1 << 32:
            raise ValueError(f"start tick {self.start_tick} is not two u32 terms >= 1")
        if not 0 < len(self.nut) <= MAX_AUDIO_BYTES - self.record_bytes:
            raise ValueError(f"an audio stream of {len(self.nut)} bytes (limit {MAX_AUDIO_BYTES})")

    @property
    def record_bytes(self) -> int:
        return 1 + len(self.codec) + 4 + 8 + 4 + 4

    @property
    def start_seconds(self) -> float:
        return self.start * self.start_tick[0] / self.start_tick[1]


@dataclass(frozen=True)
class Extras:
    """What the file keeps of its source besides the pictures; both optional."""

    colour: ColourTags | None = None
    audio: AudioTrack | None = None

    def __bool__(self) -> bool:
        return self.colour is not None or self.audio is not None


NONE = Extras()


def sections(extras: Extras) -> bytes:
    """The framed ancillary sections that carry `extras` (b"" for none)."""
    out = []
    if extras.colour is not None:
        out.append(_frame(COLOUR_TAG, bytes(extras.colour.values())))
    if extras.audio is not None:
        a = extras.audio
        name = a.codec.encode("ascii")
        record = struct.pack(f"<B{len(name)}sIqII", len(name), name, a.packets, a.start,
                             *a.start_tick)
        out.append(_frame(AUDIO_TAG, record + a.nut))
    return b"".join(out)


def attach(data: bytes, extras: Extras) -> bytes:
    """A 2.x file's bytes with `extras`' sections appended after its last section (no other
    section's bytes or CRC change)."""
    return bytes(data) + sections(extras)


def audio_bytes(extras: Extras) -> int:
    """Bytes the audio costs in the file, framing included (0 without audio)."""
    return len(_frame(AUDIO_TAG, b"")) + extras.audio.record_bytes + len(extras.audio.nut) \
        if extras.audio is not None else 0


def read(payloads: dict[str, tuple[int, bytes]]) -> Extras:
    """The extras in a file's known ancillary sections: tag -> (payload offset, payload), as
    container.known_ancillary returns them. BitstreamError for a malformed one."""
    colour = audio = None
    if COLOUR_TAG in payloads:
        offset, payload = payloads[COLOUR_TAG]
        r = ByteReader(payload, 0, None, f"section '{COLOUR_TAG}' at offset {offset}")
        values = r.unpack(f"<{COLOUR_BYTES}B", "colour tags")
        for (name, lo, hi, _), value in zip(COLOUR_FIELDS, values):
            if not lo <= value <= hi:
                raise r.error(f"colour {name} = {value} outside {lo}..{hi}", 0)
        if r.remaining:
            raise r.error(f"{r.remaining} unused bytes at the end of the section")
        colour = ColourTags(*values)
    if AUDIO_TAG in payloads:
        offset, payload = payloads[AUDIO_TAG]
        r = ByteReader(payload, 0, None, f"section '{AUDIO_TAG}' at offset {offset}")
        if len(payload) > MAX_AUDIO_BYTES:
            raise r.error(f"{len(payload)} bytes of audio (limit {MAX_AUDIO_BYTES})", 0)
        size = r.u8("codec name length")
        raw = r.take(size, "codec name")
        if not 1 <= size <= MAX_CODEC_NAME or not all(32 < b < 127 for b in raw):
            raise r.error(f"codec name {raw!r} is not 1..{MAX_CODEC_NAME} printable ASCII bytes", 0)
        packets, start, num, den = r.unpack("<IqII", "audio record")
        if num < 1 or den < 1:
            raise r.error(f"start tick {num}/{den} is not positive")
        if not r.remaining:
            raise r.error("no audio stream after the record")
        audio = AudioTrack(raw.decode("ascii"), packets, payload[r.pos:], start, (num, den))
    return Extras(colour, audio)


def describe(extras: Extras) -> dict:
    """What `dnerv info` and the encoder's JSON say of the extras ({} for none)."""
    out = {}
    if extras.colour is not None:
        out["colour"] = dict(zip((f[0] for f in COLOUR_FIELDS), extras.colour.values()))
    if extras.audio is not None:
        a = extras.audio
        out["audio"] = {"codec": a.codec, "packets": a.packets, "bytes": audio_bytes(extras),
                        "start_seconds": round(a.start_seconds, 6)}
    return out


def _frame(tag: str, payload: bytes) -> bytes:
    body = tag.encode("ascii") + struct.pack("<I", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))
