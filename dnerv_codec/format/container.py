"""The .dnv container: a declarative header spec, CRC-framed sections, quantized tensor groups.

A .dnv file is untrusted input. Everything here reads it through `entropy.ByteReader`, which
checks every length against the bytes that actually remain before anything is allocated, and
every problem becomes a one-line BitstreamError that says what and where. Nothing is unpickled
or evaluated, and this module never imports torch: it turns numpy arrays into bytes and back.

The byte layout is documented by `specdoc.spec_markdown()`, generated from the constants below
so that the documentation cannot drift from the code; `python -m dnerv_codec.format.specdoc`
prints it and docs/bitstream.md contains it.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from dnerv_codec.errors import BitstreamError, InputError
from dnerv_codec.format import entropy, extras, tensorcode
from dnerv_codec.format.entropy import ByteReader, Histogram
from dnerv_codec.format.meter import ReadingMeter
from dnerv_codec.format.tensorcode import StepTensor

MAGIC = b"\x8bDNV\r\n\x1a\n"
"""PNG-style: the high-bit byte catches 7-bit transfers, CR LF / LF catch text-mode mangling."""

FORMAT_VERSION = (2, 0)
"""(major, minor) written. A higher minor only adds ancillary sections."""
READABLE_MAJORS = (1, 2)
"""Majors this reader decodes: 2.0 (step quantization, per-tensor entropy models, temporal
prediction; tensorcode.py) and 1.0 (affine quantization, one histogram a section), whose writer
is kept too (`pack` of QuantTensors) so that its layout stays pinned by tests."""

PREAMBLE_SIZE = len(MAGIC) + 2
FRAME_OVERHEAD = 12  # tag (4) + payload length (4) + CRC32 (4)

MAX_GROUP_SYMBOLS = 1 << 27
"""Most quantized values in one tensor section (512 MiB as int32): the decoder's memory bound."""

MAX_TENSORS = tensorcode.MAX_TENSORS  # the same bounds in both formats
MAX_FILE_BYTES = 3 * 4 * MAX_GROUP_SYMBOLS + (1 << 30)
"""No valid .dnv is larger: three tensor sections of at most MAX_GROUP_SYMBOLS values, each
coded in at most 32 bits, and a generous allowance for headers, records and histograms. A
larger file is refused by its size, before a byte of it is read."""
MAX_ANCILLARY_SECTIONS = 64
MAX_ANCILLARY_BYTES = 1 << 20
"""Ancillary sections a reader skips: at most this many, holding at most this many bytes in all
(framing included). Enough for any metadata a minor version may add; a flood of them is refused
before it costs time or memory. The ancillary sections this reader knows (extras.KNOWN_TAGS:
colour tags, the audio track) are not counted: each may appear once, within its own bound."""
MAX_NDIM = tensorcode.MAX_NDIM
MIN_BITS, MAX_BITS = 2, 16
MIN_RECORD_BYTES = 1 + 4 + 1 + 1 + 4 + 2  # the smallest tensor record: one dim, one scale

GROUPS = (("decoder", "WDEC"), ("content", "ECON"), ("diff", "EDIF"))
"""Tensor groups in file order, with their section tags. EDIF is present iff diff_stream == 1."""

_GROUP_OF_TAG = {tag: name for name, tag in GROUPS}

MODEL_TAG = "MODL"
"""The model family's section, right after HEAD: present iff the header's `model` is not DNeRV,
so that a DNeRV file is what it was before there were families, and a reader that knows none
refuses the others as an unknown critical section."""
MAX_MODEL_NAME = 16
MODEL_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")


# --- the header spec ------------------------------------------------------------------------

_KIND_CODES = {"u8": "B", "u16": "H", "u32": "I", "u8list": "B", "u16list": "H"}


@dataclass(frozen=True)
class Field:
    """One HEAD field. List kinds are a u8 item count (1..max_len) followed by the items;
    lo..hi bounds the value (or each item)."""

    name: str
    kind: str
    lo: int
    hi: int
    doc: str
    max_len: int = 0

    @property
    def is_list(self) -> bool:
        return self.kind.endswith("list")

    @property
    def code(self) -> str:
        return _KIND_CODES[self.kind]


_MAX_BLOCKS = 8
_U16, _U32 = (1 << 16) - 1, (1 << 32) - 1

HEADER_SPEC = (
    # video
    Field("width", "u16", 1, _U16,
          "Width in pixels of the original video; decoded frames are cropped to it."),
    Field("height", "u16", 1, _U16, "Height in pixels of the original video."),
    Field("padded_width", "u16", 1, _U16,
          "Width the network renders: width padded up to what the strides need."),
    Field("padded_height", "u16", 1, _U16,
          "Height the network renders: height padded up to what the strides need."),
    Field("frame_count", "u32", 1, 10_000_000, "Number of frames in the video."),
    Field("fps_num", "u32", 1, _U32,
          "Frame rate numerator (the rate is fps_num / fps_den frames per second)."),
    Field("fps_den", "u32", 1, _U32, "Frame rate denominator."),
    # model
    Field("content_strides", "u8list", 1, 16,
          "Stride of each content-encoder stage = PixelShuffle factor of each decoder block.",
          _MAX_BLOCKS),
    Field("kernels", "u8list", 1, 15, "Conv kernel size of each decoder block (odd).", _MAX_BLOCKS),
    Field("channels", "u16list", 1, 4096, "Output channels of each decoder block.", _MAX_BLOCKS),
    Field("embed_channels", "u8", 1, 255,
          "d: channels of the per-frame content embedding (the paper's 16)."),
    Field("stem_channels", "u16", 1, 4096, "c2: channels after the decoder's 1x1 stem conv."),
    Field("diff_stream", "u8", 0, 1,
          "1: DNeRV with the difference stream and CCU; 0: the HNeRV ablation."),
    Field("diff_channels", "u8", 0, 255,
          "Channels of the per-frame diff embedding (the paper's 2; 0 without the diff stream)."),
    Field("diff_upscale", "u8", 0, 16,
          "PixelShuffle factor of the diff decoder block (4 when the diff stream is on)."),
    Field("ccu_block", "u8", 0, _MAX_BLOCKS - 1,
          "Index of the decoder block after which the CCU fuses the diff feature."),
)

CROSS_RULES = (
    ("padded_width >= width", lambda h: h["padded_width"] >= h["width"]),
    ("padded_height >= height", lambda h: h["padded_height"] >= h["height"]),
    ("len(kernels) == len(content_strides)",
     lambda h: len(h["kernels"]) == len(h["content_strides"])),
    ("len(channels) == len(content_strides)",
     lambda h: len(h["channels"]) == len(h["content_strides"])),
    ("every kernel is odd", lambda h: all(k % 2 for k in h["kernels"])),
    ("ccu_block < len(content_strides)", lambda h: h["ccu_block"] < len(h["content_strides"])),
    (
        "diff_channels >= 1 and diff_upscale >= 1 when diff_stream == 1",
        lambda h: not h["diff_stream"] or (h["diff_channels"] >= 1 and h["diff_upscale"] >= 1),
    ),
)
"""Rules between header fields, as (text for docs and errors, predicate)."""


def _field_problem(field: Field, value) -> str | None:
    """Why `value` is not valid for `field`, or None."""
    items = value
    if field.is_list:
        if not isinstance(value, (list, tuple)):
            return f"field '{field.name}' must be a list of integers"
        if not 1 <= len(value) <= field.max_len:
            return f"field '{field.name}' has {len(value)} items (allowed 1..{field.max_len})"
    else:
        items = (value,)
    for item in items:
        if not isinstance(item, (int, np.integer)):
            return f"field '{field.name}' must hold integers, got {item!r}"
        if not field.lo <= item <= field.hi:
            return f"field '{field.name}' = {item} outside {field.lo}..{field.hi}"
    return None


def model_name_problem(name) -> str | None:
    """Why `name` cannot be a model family's name (MODL), or None."""
    raw = name.encode("ascii", "replace") if isinstance(name, str) else b""
    if (not 1 <= len(raw) <= MAX_MODEL_NAME or not set(raw) <= MODEL_NAME_BYTES
            or not raw[:1].isalpha()):
        return (f"model family {name!r} is not 1..{MAX_MODEL_NAME} lower-case letters, digits "
                f"or '_' starting with a letter")
    return None


def _header_problem(header: dict) -> str | None:
    """Why `header` breaks HEADER_SPEC or CROSS_RULES, or None. The optional `model` key is the
    family MODL names."""
    names = [f.name for f in HEADER_SPEC]
    if "model" in header:
        if problem := model_name_problem(header["model"]):
            return problem
        header = {k: v for k, v in header.items() if k != "model"}
    if set(header) != set(names):
        missing = [n for n in names if n not in header]
        unknown = sorted(set(header) - set(names))
        return f"header fields missing {missing}, unknown {unknown}"
    for field in HEADER_SPEC:
        problem = _field_problem(field, header[field.name])
        if problem:
            return problem
    for text, holds in CROSS_RULES:
        if not holds(header):
            return f"header breaks the rule '{text}'"
    return None


def _group_tags(header: dict) -> list[tuple[str, str]]:
    """The tensor groups this header requires, in file order."""
    return [(name, tag) for name, tag in GROUPS if name != "diff" or header["diff_stream"] == 1]


# --- the data model -------------------------------------------------------------------------


@dataclass
class QuantTensor:
    """An affine-quantized tensor: value = (q - zero_point) * scale, per tensor or per slice."""

    shape: tuple[int, ...]
    bits: int
    axis: int | None  # None: one scale for the whole tensor; else one per slice along this axis
    scale: np.ndarray  # float32, shape (1,) or (shape[axis],)
    zero_point: np.ndarray  # int32, same length as scale
    q: np.ndarray  # int32 of `shape`, values in 0 .. 2**bits - 1

    def centred(self) -> np.ndarray:
        """q - zero_point (int64, the tensor's shape): the symbols the entropy coder sees."""
        view = _axis_view(len(self.shape), self.axis)
        return np.asarray(self.q, np.int64) - np.asarray(self.zero_point, np.int64).reshape(view)

    def dequantize(self) -> np.ndarray:
        """float32 values (q - zero_point) * scale.

        In float32 throughout: q and the zero points are below 2**16, so their difference is
        exact in float32 (the value `centred` gives) and a long video's embeddings cost one
        float32 copy here, not an int64 one on the way."""
        view = _axis_view(len(self.shape), self.axis)
        values = np.asarray(self.q, np.float32) - np.asarray(self.zero_point, np.float32).reshape(view)
        values *= np.asarray(self.scale, np.float32).reshape(view)
        return values


@dataclass
class DnvFile:
    """Everything a .dnv file holds: the header and the quantized tensor groups."""

    header: dict[str, int | tuple[int, ...]]  # the fields of HEADER_SPEC
    groups: dict[str, list[QuantTensor] | list[StepTensor]]  # keys among decoder, content, diff
    extras: extras.Extras = extras.NONE  # what the source carried besides its pictures


def _axis_view(ndim: int, axis: int | None) -> list[int]:
    """Shape that broadcasts per-slice parameters along `axis` (or a single one everywhere)."""
    view = [1] * ndim
    if axis is not None:
        view[axis] = -1
    return view


def _layout_problem(shape: tuple[int, ...], bits: int, axis: int | None) -> str | None:
    """Why a tensor's shape/bits/axis are invalid, or None (shared by pack and unpack)."""
    if not 1 <= len(shape) <= MAX_NDIM or min(shape) < 1:
        return f"shape {tuple(shape)} is not 1..{MAX_NDIM} dims of size >= 1"
    if math.prod(shape) > MAX_GROUP_SYMBOLS:
        return f"{math.prod(shape)} elements (limit {MAX_GROUP_SYMBOLS})"
    if not MIN_BITS <= bits <= MAX_BITS:
        return f"bits = {bits} outside {MIN_BITS}..{MAX_BITS}"
    if axis is not None and not 0 <= axis < len(shape):
        return f"axis {axis} is not a dimension of shape {tuple(shape)}"
    return None


def _params_problem(shape, bits: int, axis: int | None, scale: np.ndarray,
                    zp: np.ndarray) -> str | None:
    """Why scales/zero points are invalid, or None (shared by pack and unpack)."""
    n = 1 if axis is None else shape[axis]
    if scale.shape != (n,) or zp.shape != (n,):
        return f"needs {n} scales and zero points, got {scale.shape} and {zp.shape}"
    if not np.all(np.isfinite(scale) & (scale > 0)):
        return "a scale is not finite and > 0"
    if zp.min() < 0 or zp.max() >= 1 << bits:
        return f"a zero point is outside 0..{(1 << bits) - 1}"
    return None


# --- writing --------------------------------------------------------------------------------


def pack(f: DnvFile) -> bytes:
    """Serialise `f`: format 2.0 when its tensors are StepTensors, 1.0 when they are
    QuantTensors. Invalid input is a programming error: ValueError, never a bad file."""
    problem = _header_problem(f.header)
    if problem:
        raise ValueError(problem)
    tags = _group_tags(f.header)
    if set(f.groups) != {name for name, _ in tags}:
        need = [name for name, _ in tags]
        raise ValueError(f"groups {sorted(f.groups)} do not match the header (need {need})")
    tensors = [t for ts in f.groups.values() for t in ts]
    if all(isinstance(t, StepTensor) for t in tensors):
        version, pack_group = FORMAT_VERSION, lambda name, ts: tensorcode.pack_section(ts)
    elif all(isinstance(t, QuantTensor) for t in tensors):
        version, pack_group = (1, 0), _pack_group
    else:
        raise ValueError("a file holds either StepTensors (2.0) or QuantTensors (1.0)")
    preamble = MAGIC + bytes(version)
    out = [preamble, _frame("HEAD", _pack_head(f.header), covered_prefix=preamble)]
    if "model" in f.header:
        name = f.header["model"].encode("ascii")
        out.append(_frame(MODEL_TAG, bytes([len(name)]) + name))
    out += [_frame(tag, pack_group(name, f.groups[name])) for name, tag in tags]
    return b"".join(out) + extras.sections(f.extras)


def _frame(tag: str, payload: bytes, covered_prefix: bytes = b"") -> bytes:
    """tag, u32 length, payload, u32 CRC32 of (covered_prefix + tag + length + payload)."""
    body = tag.encode("ascii") + struct.pack("<I", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body, zlib.crc32(covered_prefix)))


def _pack_head(header: dict) -> bytes:
    parts = []
    for field in HEADER_SPEC:
        value = header[field.name]
        if field.is_list:
            parts.append(struct.pack(f"<B{len(value)}{field.code}", len(value), *map(int, value)))
        else:
            parts.append(struct.pack(f"<{field.code}", int(value)))
    return b"".join(parts)


def _pack_group(name: str, tensors: list[QuantTensor]) -> bytes:
    """u32 tensor count, the tensor records, one histogram for all symbols, the ANS words."""
    if len(tensors) > MAX_TENSORS:
        raise ValueError(f"group '{name}' has {len(tensors)} tensors (limit {MAX_TENSORS})")
    records, symbols = [], []
    for i, t in enumerate(tensors):
        record, sym = _pack_tensor(t, f"group '{name}' tensor {i}")
        records.append(record)
        symbols.append(sym)
    total = sum(s.size for s in symbols)
    if total > MAX_GROUP_SYMBOLS:
        raise ValueError(f"group '{name}' has {total} values (limit {MAX_GROUP_SYMBOLS})")
    hist, words = entropy.encode(np.concatenate(symbols) if symbols else np.zeros(0, np.int64))
    tail = [hist.to_bytes(), struct.pack("<I", len(words) // 4), words]
    return b"".join([struct.pack("<I", len(tensors)), *records, *tail])


def _pack_tensor(t: QuantTensor, where: str) -> tuple[bytes, np.ndarray]:
    """The tensor's record and its symbols q - zero_point (flattened in C order)."""
    shape, scale = tuple(int(d) for d in t.shape), np.asarray(t.scale, np.float32).reshape(-1)
    zp, q = np.asarray(t.zero_point).reshape(-1), np.asarray(t.q)
    problem = (
        _layout_problem(shape, t.bits, t.axis)
        or _params_problem(shape, t.bits, t.axis, scale, zp)
        or _values_problem(shape, t.bits, q, zp)
    )
    if problem:
        raise ValueError(f"{where}: {problem}")
    axis = -1 if t.axis is None else t.axis
    head = struct.pack(f"<B{len(shape)}IBb", len(shape), *shape, t.bits, axis)
    record = head + scale.astype("<f4").tobytes() + zp.astype("<u2").tobytes()
    return record, t.centred().reshape(-1)


def _values_problem(shape, bits: int, q: np.ndarray, zp: np.ndarray) -> str | None:
    if not np.issubdtype(q.dtype, np.integer) or not np.issubdtype(zp.dtype, np.integer):
        return f"q and zero_point must be integer arrays, got {q.dtype} and {zp.dtype}"
    if q.shape != shape:
        return f"q has shape {q.shape}, expected {shape}"
    if q.min() < 0 or q.max() >= 1 << bits:
        return f"q values outside 0..{(1 << bits) - 1}"
    return None


# --- reading --------------------------------------------------------------------------------


@dataclass
class _Section:
    tag: str
    offset: int  # of the tag, in the file
    length: int  # payload bytes
    crc: int

    @property
    def payload_start(self) -> int:
        return self.offset + 8

    @property
    def end(self) -> int:
        return self.offset + FRAME_OVERHEAD + self.length


SymbolCounts = Callable[[dict], Mapping[str, int]]
TensorShapes = Callable[[dict], Mapping[str, list[tuple[int, ...]]]]
"""header -> the exact number of values each tensor group must hold (architecture.symbol_counts).

Passed in rather than imported: the numbers come from the network the header describes, and this
module knows the container, not the network."""


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file at `path` and its stat, refused (InputError,
    nothing left open) for a missing file, a folder, a pipe or a device. Opened non-blocking:
    a FIFO must not block."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"cannot read '{path}': no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read '{path}': it is a folder") from None
    except OSError as e:
        raise InputError(f"cannot read '{path}': {e.strerror}") from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode) or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = ("it is a folder" if stat.S_ISDIR(info.st_mode)
                else "not a regular file (a pipe or a device)")
        raise InputError(f"cannot read '{path}': {kind}")
    return fd, info


def read_file(path: str, max_bytes: int = MAX_FILE_BYTES,
              limit: str = "a .dnv file can be") -> bytes:
    """The bytes of the .dnv file at `path`, refused (InputError) unless it is a regular file of
    at most `max_bytes` bytes (`limit` says whose bound that is): checked by stat before
    reading, and read with that cap, so a FIFO, a device such as /dev/zero or a huge sparse
    file costs nothing."""
    fd, info = open_regular(path)
    try:
        if info.st_size > max_bytes:
            raise InputError(f"cannot read '{path}': {info.st_size} bytes is larger than "
                             f"{limit} ({max_bytes} bytes)")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise InputError(f"cannot read '{path}': {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew after the stat
        raise InputError(f"cannot read '{path}': larger than {max_bytes} bytes")
    return data


def unpack(data: bytes, symbol_counts: SymbolCounts | None = None,
           tensor_shapes: TensorShapes | None = None,
           meter: ReadingMeter | None = None) -> DnvFile:
    """Parse and fully validate a .dnv file. Any problem raises BitstreamError.

    With `symbol_counts`, every tensor section must hold exactly the number of values it returns
    for the file's header, checked before the section is entropy-decoded: without it a section
    may declare up to MAX_GROUP_SYMBOLS values, whatever the header says. With `tensor_shapes`
    (architecture.tensor_shapes), every group must hold exactly the tensors it returns, each
    tensor's shape checked before it is decoded (in 1.x files, once its group is read). With
    `meter`, every entropy model of a 2.x section is charged before its table is built.
    """
    return _parse(data, symbol_counts, tensor_shapes, meter)[0]


def describe(data: bytes, symbol_counts: SymbolCounts | None = None,
             tensor_shapes: TensorShapes | None = None,
             meter: ReadingMeter | None = None) -> dict:
    """What `dnerv info` shows: version, header, and every section's place, size and CRC.

    The file is fully validated (and decoded) like `unpack`, so `info` also verifies a file.
    """
    f, sections, version = _parse(data, symbol_counts, tensor_shapes, meter)
    header = {k: list(v) if isinstance(v, tuple) else v for k, v in f.header.items()}
    return {"format_version": version, "file_bytes": len(data), "header": header,
            "sections": sections, **extras.describe(f.extras)}


def read_extras(data: bytes) -> extras.Extras:
    """The colour tags and audio a 1.x or 2.x file carries, its sections' framing and CRCs
    checked but no tensor decoded: what a decoder needs before it opens its output. The rest
    of the file is validated when it is decoded."""
    read_preamble(bytes(data[:PREAMBLE_SIZE]))
    known, pos, first = {}, PREAMBLE_SIZE, True
    while pos < len(data):
        sec = _read_frame(data, pos, after_last=False)
        if first and sec.tag != "HEAD":
            raise BitstreamError(f"corrupt .dnv: expected section 'HEAD' at offset {pos}, "
                                 f"found '{sec.tag}'")
        if sec.tag in extras.KNOWN_TAGS:
            _keep_known(known, sec, data)
        pos, first = sec.end, False
    return extras.read(known)


def _keep_known(known: dict[str, tuple[int, bytes]], sec: _Section, data: bytes) -> None:
    """Add a known ancillary section's payload to `known`; one of each, or BitstreamError."""
    if sec.tag in known:
        raise BitstreamError(f"corrupt .dnv: duplicate section '{sec.tag}' at offset "
                             f"{sec.offset}")
    known[sec.tag] = (sec.payload_start, bytes(data[sec.payload_start:sec.end - 4]))


def read_head(data: bytes) -> dict:
    """The HEAD of a 1.x or 2.x file, its CRC and fields checked, nothing after it read: what
    the chunked reader compares with its index before a chunk is decoded."""
    read_preamble(bytes(data[:PREAMBLE_SIZE]))
    sec = _read_frame(data, PREAMBLE_SIZE, after_last=False)
    if sec.tag != "HEAD":
        raise BitstreamError(f"corrupt .dnv: expected section 'HEAD' at offset {PREAMBLE_SIZE}, "
                             f"found '{sec.tag}'")
    reader = ByteReader(data, sec.payload_start, sec.end - 4, "section 'HEAD'")
    header = _read_head(reader)
    if reader.remaining:
        raise reader.error(f"{reader.remaining} unused bytes at the end of the section")
    if _model_follows(data, sec.end):
        model = _read_frame(data, sec.end, after_last=False)
        header["model"] = _read_model(ByteReader(data, model.payload_start, model.end - 4,
                                                  f"section '{MODEL_TAG}'"))
    return header


def _read_model(r: ByteReader) -> str:
    """MODL's payload: a u8 length and the family's name; nothing else."""
    start = r.pos
    raw = r.take(r.u8("model name length"), "model name")
    name = raw.decode("ascii", "replace")
    if problem := model_name_problem(name):
        raise r.error(problem, start)
    if r.remaining:
        raise r.error(f"{r.remaining} unused bytes at the end of the section")
    return name


def _parse(data: bytes, symbol_counts: SymbolCounts | None,
           tensor_shapes: TensorShapes | None = None,
           meter: ReadingMeter | None = None) -> tuple[DnvFile, list[dict], str]:
    """Walk the sections in order; returns the file, per-section info and the version string."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    version = read_preamble(data)
    header, groups, infos, seen, counts, shapes = None, {}, [], set(), None, None
    ancillary_count = ancillary_bytes = 0
    known: dict[str, tuple[int, bytes]] = {}
    expected = ["HEAD"]
    pos = PREAMBLE_SIZE
    while pos < len(data):
        sec = _read_frame(data, pos, after_last=not expected)
        info = {"tag": sec.tag, "offset": sec.offset, "length": sec.end - sec.offset,
                "crc32": f"{sec.crc:08x}"}
        if header is not None and sec.tag in extras.KNOWN_TAGS:
            info["ancillary"] = True
            _keep_known(known, sec, data)
        elif header is not None and _is_ancillary(sec.tag):
            info["ancillary"] = True  # skipped: only a newer minor version knows what it means
            ancillary_count += 1
            ancillary_bytes += sec.end - sec.offset
            if ancillary_count > MAX_ANCILLARY_SECTIONS or ancillary_bytes > MAX_ANCILLARY_BYTES:
                raise BitstreamError(
                    f"corrupt .dnv: more than {MAX_ANCILLARY_SECTIONS} ancillary sections or "
                    f"{MAX_ANCILLARY_BYTES} bytes of them (at offset {sec.offset})")
        elif expected and sec.tag == expected[0]:
            expected.pop(0)
            reader = ByteReader(data, sec.payload_start, sec.end - 4, f"section '{sec.tag}'")
            if sec.tag == "HEAD":
                header = _read_head(reader)
                expected += [MODEL_TAG] if _model_follows(data, sec.end) else []
                expected += [tag for _, tag in _group_tags(header)]
            elif sec.tag == MODEL_TAG:
                header["model"] = _read_model(reader)
            else:
                if not groups:  # the header is whole: the network it describes bounds the rest
                    counts = symbol_counts(header) if symbol_counts else None
                    shapes = tensor_shapes(header) if tensor_shapes else None
                name = _GROUP_OF_TAG[sec.tag]
                expected_count = counts[name] if counts else None
                want = shapes.get(name, []) if shapes is not None else None
                if version.startswith("1."):
                    groups[name], stats = _read_group(reader, expected_count)
                    got = [tuple(t.shape) for t in groups[name]]
                    if want is not None and got != want:
                        raise reader.error(f"tensors of shapes {got} where the header "
                                           f"describes {want}", sec.payload_start)
                else:
                    groups[name], stats = tensorcode.read_section(reader, expected_count,
                                                                  MAX_GROUP_SYMBOLS, want,
                                                                  meter)
                info.update(group=name, **stats)
            if reader.remaining:
                raise reader.error(f"{reader.remaining} unused bytes at the end of the section")
        else:
            raise _unexpected(sec, expected, seen)
        seen.add(sec.tag)
        infos.append(info)
        pos = sec.end
    if expected:
        raise BitstreamError(
            f"truncated .dnv: file ends at offset {pos} but section '{expected[0]}' is missing")
    return DnvFile(header, groups, extras.read(known)), infos, version


def read_preamble(data: bytes, majors: tuple[int, ...] = READABLE_MAJORS) -> str:
    """Check magic and major version (one of `majors`); returns the version as 'major.minor'."""
    if not data:
        raise BitstreamError("not a .dnv file (the file is empty)")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise BitstreamError("not a .dnv file (bad magic bytes)")
    if len(data) < PREAMBLE_SIZE:
        raise BitstreamError(
            f"truncated .dnv: {len(data)} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble")
    major, minor = data[len(MAGIC)], data[len(MAGIC) + 1]
    if major not in majors:
        names = [f"{m}.x" for m in majors]
        readable = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise BitstreamError(
            f"unsupported .dnv format version {major}.{minor} (this dnerv reads {readable})")
    return f"{major}.{minor}"


def _read_frame(data: bytes, pos: int, after_last: bool) -> _Section:
    """Check one section's framing and CRC. After the last expected section, bytes that do not
    frame as a section are reported as trailing garbage."""
    remaining = len(data) - pos
    tag_bytes = data[pos : pos + 4]
    length = struct.unpack_from("<I", data, pos + 4)[0] if remaining >= 8 else None
    fits = remaining >= FRAME_OVERHEAD and length <= remaining - FRAME_OVERHEAD
    framed = fits and tag_bytes.isalpha()
    if after_last and not framed:
        raise BitstreamError(f"corrupt .dnv: {remaining} bytes of trailing garbage at offset {pos}")
    if remaining < FRAME_OVERHEAD:
        raise BitstreamError(
            f"truncated .dnv: {remaining} bytes at offset {pos} cannot hold a section")
    if not tag_bytes.isalpha():
        raise BitstreamError(f"corrupt .dnv: invalid section tag {tag_bytes!r} at offset {pos}")
    tag = tag_bytes.decode("ascii")
    if not framed:
        raise BitstreamError(
            f"truncated .dnv: section '{tag}' at offset {pos} declares {length} bytes"
            f" but {remaining - FRAME_OVERHEAD} remain"
        )
    sec = _Section(tag, pos, length, struct.unpack_from("<I", data, pos + 8 + length)[0])
    covered_from = 0 if tag == "HEAD" else pos  # HEAD's CRC also protects magic and version
    if zlib.crc32(data[covered_from : sec.end - 4]) != sec.crc:
        raise BitstreamError(f"corrupt .dnv: CRC mismatch in section '{tag}' at offset {pos}")
    return sec


def _model_follows(data: bytes, pos: int) -> bool:
    """Whether the section at `pos` is MODL (optional, and only right after HEAD)."""
    return data[pos:pos + 4] == MODEL_TAG.encode()


def _is_ancillary(tag: str) -> bool:
    """PNG convention: a lower-case first letter marks a section a reader may skip."""
    return tag[0].islower()


def _unexpected(sec: _Section, expected: list[str], seen: set[str]) -> BitstreamError:
    where = f"section '{sec.tag}' at offset {sec.offset}"
    wanted = f"'{expected[0]}'" if expected else "end of file"
    if sec.tag in seen:
        return BitstreamError(f"corrupt .dnv: duplicate {where}")
    known = ("HEAD", MODEL_TAG, *_GROUP_OF_TAG)
    if sec.tag not in known and not _is_ancillary(sec.tag):
        return BitstreamError(f"corrupt .dnv: unknown critical {where} (written by a newer dnerv?)")
    return BitstreamError(f"corrupt .dnv: unexpected {where} (expected {wanted})")


def _read_head(r: ByteReader) -> dict:
    header = {}
    for field in HEADER_SPEC:
        start = r.pos
        if field.is_list:
            count = r.u8(f"item count of '{field.name}'")
            if not 1 <= count <= field.max_len:
                allowed = f"allowed 1..{field.max_len}"
                raise r.error(f"field '{field.name}' has {count} items ({allowed})", start)
            value = r.unpack(f"<{count}{field.code}", f"field '{field.name}'")
        else:
            value = r.unpack(f"<{field.code}", f"field '{field.name}'")[0]
        problem = _field_problem(field, value)
        if problem:
            raise r.error(problem, start)
        header[field.name] = value
    problem = _header_problem(header)
    if problem:
        raise r.error(problem)
    return header


def _read_group(r: ByteReader, expected: int | None) -> tuple[list[QuantTensor], dict]:
    """Read records, bound the symbol count (by `expected`, the header's, when given), then
    decode; returns tensors and describe() stats."""
    start = r.pos
    count = r.u32("tensor count")
    if count > MAX_TENSORS or count * MIN_RECORD_BYTES > r.remaining:
        why = f"limit {MAX_TENSORS}, {r.remaining} bytes left"
        raise r.error(f"tensor count {count} is impossible ({why})", start)
    records, total = [], 0
    for i in range(count):
        records.append(_read_record(r, i))
        total += math.prod(records[-1][0])
        if total > MAX_GROUP_SYMBOLS:
            raise r.error(f"tensors 0..{i} hold {total} values (limit {MAX_GROUP_SYMBOLS})")
    if expected is not None and total != expected:
        raise r.error(f"{count} tensors hold {total} values but the header implies {expected}",
                      start)
    hist_start = r.pos
    hist = Histogram.from_reader(r)
    hist_bytes = r.pos - hist_start
    span = (1 << max((rec[1] for rec in records), default=MIN_BITS)) - 1
    if hist.n and (hist.lo < -span or hist.lo + hist.n - 1 > span):
        # q - zero_point of any tensor here lies in -span..span; this also keeps int32 safe below
        symbols = f"{hist.lo}..{hist.lo + hist.n - 1}"
        raise r.error(f"histogram symbols {symbols} exceed +-{span}", hist_start)
    n_words = r.u32("ANS word count")
    words = r.take(4 * n_words, f"{n_words} ANS words")
    try:
        symbols = entropy.decode(hist, words, total, max_count=MAX_GROUP_SYMBOLS)
    except BitstreamError as exc:
        raise BitstreamError(f"{exc} (in {r.where})") from exc
    tensors = _split(symbols, records, r)
    stats = {"tensors": count, "symbols": total, "histogram_bytes": hist_bytes,
             "payload_bytes": 4 * n_words}
    return tensors, stats


def _read_record(r: ByteReader, index: int) -> tuple:
    """(shape, bits, axis, scale, zero_point) of one tensor, validated before use."""
    start = r.pos
    ndim = r.u8(f"tensor {index} ndim")
    shape = r.unpack(f"<{ndim}I", f"tensor {index} dims")
    bits = r.u8(f"tensor {index} bits")
    stored_axis = r.i8(f"tensor {index} axis")
    axis = None if stored_axis == -1 else stored_axis
    problem = _layout_problem(shape, bits, axis)
    if problem:
        raise r.error(f"tensor {index}: {problem}", start)
    n = 1 if axis is None else shape[axis]
    r.need(6 * n, f"tensor {index}'s {n} scales and zero points")
    scale = r.array("<f4", n, f"tensor {index} scales")
    zp = r.array("<u2", n, f"tensor {index} zero points").astype(np.int32)
    problem = _params_problem(shape, bits, axis, scale, zp)
    if problem:
        raise r.error(f"tensor {index}: {problem}", start)
    return shape, bits, axis, scale, zp


def _split(symbols: np.ndarray, records: list[tuple], r: ByteReader) -> list[QuantTensor]:
    """Cut the group's symbols into tensors and undo the zero-point shift, range-checked."""
    tensors, offset = [], 0
    for i, (shape, bits, axis, scale, zp) in enumerate(records):
        size = math.prod(shape)
        part = symbols[offset : offset + size].reshape(shape)
        offset += size
        q = part + zp.reshape(_axis_view(len(shape), axis))
        if q.min() < 0 or q.max() >= 1 << bits:
            top = (1 << bits) - 1
            raise r.error(f"tensor {i} decodes to values outside 0..{top} ({bits} bits)")
        tensors.append(QuantTensor(tuple(shape), bits, axis, scale, zp, q))
    return tensors
