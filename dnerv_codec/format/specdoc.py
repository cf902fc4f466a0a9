"""The .dnv byte layout as Markdown, generated from the container's own constants and header
spec (container.py) and the tensor coding's (tensorcode.py, entropy_models.py), so that
docs/bitstream.md cannot drift from the code: `python -m dnerv_codec.format.specdoc` prints it
and tests/test_bitstream.py checks the docs.
"""

from __future__ import annotations

import argparse
import struct

from dnerv_codec.format import chunks, entropy, extras, tensorcode
from dnerv_codec.format.container import (
    CROSS_RULES,
    FORMAT_VERSION,
    GROUPS,
    HEADER_SPEC,
    MAX_MODEL_NAME,
    MODEL_TAG,
    MAGIC,
    MAX_ANCILLARY_BYTES,
    MAX_ANCILLARY_SECTIONS,
    MAX_BITS,
    MAX_FILE_BYTES,
    MAX_GROUP_SYMBOLS,
    MAX_NDIM,
    MAX_TENSORS,
    MIN_BITS,
    MIN_RECORD_BYTES,
    PREAMBLE_SIZE,
    READABLE_MAJORS,
    Field,
)
from dnerv_codec.format.meter import SEGMENT_MACS
from dnerv_codec.format.entropy_models import (
    MAX_GEOMETRIC_MODELS,
    MAX_GEOMETRIC_REACH,
    MODEL_NAMES,
)


def spec_markdown() -> str:
    """The byte-by-byte format description, generated from the constants and HEADER_SPEC."""
    parts = [_preamble_md(), _sections_md(), _head_md(), _group_v2_md(), _models_md(),
             _histogram_md(), _group_md(), _extras_md(), _chunked_md(), _bounds_md()]
    return "\n\n".join(parts) + "\n"


def _preamble_md() -> str:
    magic_hex = " ".join(f"{b:02X}" for b in MAGIC)
    major, minor = FORMAT_VERSION
    return "\n".join([
        f"## File preamble (format version {major}.{minor})",
        "",
        "All integers are little-endian; `f32` is IEEE 754 binary32, little-endian.",
        "",
        "| offset | size | content |",
        "|---|---|---|",
        f"| 0 | {len(MAGIC)} | magic `{magic_hex}` (`{repr(MAGIC)[2:-1]}`): PNG-style, catches 7-bit and"
        " text-mode transfers |",
        f"| {len(MAGIC)} | 1 | major version, u8 = {major} (this reader also reads "
        f"{', '.join(str(m) for m in READABLE_MAJORS if m != major)}, and "
        f"{chunks.CHUNKED_VERSION[0]} for chunked files): a reader refuses any other major |",
        f"| {len(MAGIC) + 1} | 1 | minor version, u8 = {minor}: a higher minor is read (it may only add ancillary sections) |",
        f"| {PREAMBLE_SIZE} | ... | sections |",
    ])


def _sections_md() -> str:
    order = ", ".join(f"`{tag}` ({name})" for name, tag in GROUPS)
    return "\n".join([
        "## Sections",
        "",
        "| size | content |",
        "|---|---|",
        "| 4 | tag, ASCII letters |",
        "| 4 | payload length L, u32 |",
        "| L | payload |",
        "| 4 | CRC32 (zlib.crc32), u32 |",
        "",
        "- The CRC covers tag, length and payload. The CRC of `HEAD` starts at file offset 0, so it",
        "  also covers the magic and the version bytes.",
        f"- Order: `HEAD` first, then `{MODEL_TAG}` where the model is not DNeRV, then the tensor",
        f"  sections {order}. `EDIF` is present iff `diff_stream == 1`. A missing, duplicated,",
        "  misplaced or unknown critical section is an error.",
        f"- `{MODEL_TAG}` names the model family that reads HEAD's fields and builds the decoder: a u8",
        f"  length (1..{MAX_MODEL_NAME}) and that many bytes of lower-case ASCII letters, digits or",
        "  `_`, starting with a letter. Without it the family is `dnerv` (DNeRV and its HNeRV",
        "  ablation: every file written before families, and every file of them since). A reader",
        "  refuses a family it does not know, before any tensor is read.",
        "- A tag whose first letter is lower case is ancillary: a reader checks its framing and CRC",
        "  and skips it (room for minor versions). This version writes two, after the tensor",
        f"  sections: `{extras.COLOUR_TAG}` and `{extras.AUDIO_TAG}` (below), at most one of each. Of the others a file may",
        f"  hold at most {MAX_ANCILLARY_SECTIONS}, {MAX_ANCILLARY_BYTES} bytes in all, framing included.",
        "- The file ends right after the last section: trailing bytes are an error.",
        "- Every section payload must be consumed exactly.",
    ])


def _head_md() -> str:
    rows = ["| offset | field | type | range | meaning |", "|---|---|---|---|---|"]
    fixed, per_item = 0, 0  # offset = fixed + per_item * n
    for f in HEADER_SPEC:
        size = struct.calcsize(f"<{f.code}")
        cells = [_offset_md(fixed, per_item), f"`{f.name}`", _type_md(f, size), _range_md(f), f.doc]
        rows.append("| " + " | ".join(cells) + " |")
        fixed, per_item = (fixed + 1, per_item + size) if f.is_list else (fixed + size, per_item)
    rules = [f"- `{text}`" for text, _ in CROSS_RULES]
    return "\n".join([
        "## HEAD payload",
        "",
        "The fields in this order, nothing else. n is the number of decoder blocks, the item count",
        "of every list field (see the rules below), so later offsets depend on it.",
        "",
        *rows,
        "",
        "Rules between fields (checked when writing and when reading):",
        "",
        *rules,
    ])


def _offset_md(fixed: int, per_item: int) -> str:
    if not per_item:
        return str(fixed)
    return f"{fixed} + {per_item if per_item > 1 else ''}n"


def _type_md(f: Field, size: int) -> str:
    item = f"u{8 * size}"
    return f"u8 n, then n x {item}" if f.is_list else item


def _range_md(f: Field) -> str:
    values = f"{f.lo}..{f.hi}"
    return f"n in 1..{f.max_len}; items {values}" if f.is_list else values


def _group_v2_md() -> str:
    tags = ", ".join(f"`{tag}`" for _, tag in GROUPS)
    return "\n".join([
        f"## Tensor sections ({tags}), format 2.x",
        "",
        "| size | content |",
        "|---|---|",
        f"| 4 | tensor count T, u32, at most {tensorcode.MAX_TENSORS} |",
        "| ... | T tensors, each a record followed by its segments |",
        "",
        "Tensor record:",
        "",
        "| size | field | values |",
        "|---|---|---|",
        f"| 1 | ndim, u8 | 1..{tensorcode.MAX_NDIM} |",
        "| 4 ndim | dims, u32 each | each >= 1 |",
        "| 1 | step axis, i8 | -1: one step for the tensor; else 0..ndim-1: one step per slice along it |",
        "| 4 m | steps, f32 each | m = 1 if the step axis is -1 else dims[step axis]; finite and > 0 |",
        f"| 1 | prediction, u8 | 0: none; {tensorcode.PREDICT_TEMPORAL}: temporal (along axis 0) |",
        "| 1 | model axis, i8 | -1: one segment; else 0..ndim-1: one segment per slice along it |",
        "",
        "Segment (S of them: 1, or dims[model axis]), each its own ANS stream:",
        "",
        "| size | content |",
        "|---|---|",
        "| ... | entropy model (below) |",
        "| 4 | ANS word count W, u32 |",
        "| 4 W | the ANS words, u32 each (none when the model has one symbol) |",
        "",
        "A tensor holds integers q (C order) and means q * step, the step broadcast along the step",
        "axis: zero is exact. The coded symbols r are q itself, or with temporal prediction",
        "r[0] = q[0] and r[t] = q[t] - q[t-1] along axis 0 (a decoder takes the running sum, in",
        "integers: no drift). Segment i holds the symbols of slice i along the model axis",
        "(`numpy.take(r, i, axis)` in C order), or all of r for one segment; the segments follow",
        "each other in order. Each segment is coded as in format 1.0 (below) with its own model's",
        f"canonical histogram. A decoded |q| of {2 * tensorcode.MAX_STEP_SYMBOL} or more is an",
        f"error (writers keep |q| < {tensorcode.MAX_STEP_SYMBOL}).",
    ])


def _models_md() -> str:
    return "\n".join([
        "## Entropy models (format 2.x)",
        "",
        "| size | content |",
        "|---|---|",
        f"| 1 | kind, u8: {', '.join(f'{k} {v}' for k, v in MODEL_NAMES.items())} |",
        "| ... | histogram: as below; geometric: lo (zig-zag varint), N (varint), ratio (u16, "
        f"1..65535); the symbols lo..lo+N-1 within +-{MAX_GEOMETRIC_REACH} |",
        "",
        "The geometric model is a two-sided geometric law centred on 0 (a discrete Laplace) on the",
        "symbols lo..lo+N-1. Its histogram is computed in integers only, so it is the same on",
        "every machine: w(0) = 2^40, w(k) = max(1, floor(w(k-1) * ratio / 2^16)) for k = 1, 2, ...;",
        "symbol s gets w(|s|); then the counts are scaled to a largest of "
        f"{entropy.MAX_STORED_COUNT}: c = max(1, floor((w * {entropy.MAX_STORED_COUNT} + floor(wmax / 2)) / wmax)).",
        "The writer picks, per segment, the model with the shorter ideal code length, its own",
        "bytes included, and per tensor the prediction and segmentation that cost least.",
    ])


def _group_md() -> str:
    tags = ", ".join(f"`{tag}`" for _, tag in GROUPS)
    return "\n".join([
        f"## Tensor sections ({tags}), format 1.x (read for compatibility; written by no encoder)",
        "",
        "| size | content |",
        "|---|---|",
        f"| 4 | tensor count T, u32, at most {MAX_TENSORS} |",
        "| ... | T tensor records |",
        "| ... | one histogram for the symbols of all T tensors |",
        "| 4 | ANS word count W, u32 |",
        "| 4 W | the ANS words, u32 each |",
        "",
        "Tensor record:",
        "",
        "| size | field | values |",
        "|---|---|---|",
        f"| 1 | ndim, u8 | 1..{MAX_NDIM} |",
        "| 4 ndim | dims, u32 each | each >= 1 |",
        f"| 1 | bits, u8 | {MIN_BITS}..{MAX_BITS} |",
        "| 1 | axis, i8 | -1: one scale for the tensor; else 0..ndim-1: one scale per slice along it |",
        "| 4 m | scales, f32 each | m = 1 if axis = -1 else dims[axis]; finite and > 0 |",
        "| 2 m | zero points, u16 each | < 2^bits |",
        "",
        "A tensor holds q in 0..2^bits-1 (C order) and means (q - zero_point) * scale, with scale and",
        "zero point broadcast along `axis`. Its symbols are q - zero_point. The symbols of all tensors",
        "of the section, concatenated in record order, are coded with one histogram; a decoded q",
        "outside 0..2^bits-1 is an error.",
    ])


def _histogram_md() -> str:
    return "\n".join([
        "## Histogram and ANS words",
        "",
        "| content | encoding |",
        "|---|---|",
        "| lo, the smallest symbol | zig-zag (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), then varint |",
        f"| N, the number of symbols lo..lo+N-1 | varint, at most {entropy.MAX_ALPHABET} |",
        "| N counts | varint each, < 2^32; 0 for a symbol that does not occur |",
        "",
        "Varint: unsigned LEB128, 7 bits per byte, low group first, high bit set on every byte but",
        "the last; at most 5 bytes, shortest form only. The symbols lo..lo+N-1 must lie within",
        "-(2^b - 1)..2^b - 1, b the largest `bits` of the section's tensors. The writer scales the",
        f"counts down so the largest is at most {entropy.MAX_STORED_COUNT}, keeping every occurring symbol >= 1.",
        "",
        "The ANS words are what constriction 0.5 `stack.AnsCoder.get_compressed()` returns after",
        "`encode_reverse` of all symbols minus lo (int32) with the model",
        "`stream.model.Categorical(counts as float64, perfect=False)`; decoding pops the symbols in",
        "order and must leave the coder empty. W = 0 when there are no symbols or N = 1 (the one",
        "symbol is certain and costs no bits).",
    ])


def _extras_md() -> str:
    colour = [f"| {i} | {name} | u8 | {lo}..{hi} | {doc} |"
              for i, (name, lo, hi, doc) in enumerate(extras.COLOUR_FIELDS)]
    audio = [f"| {name} | {kind} | {doc} |" for name, kind, doc in extras.AUDIO_RECORD]
    return "\n".join([
        "## What the source carries besides its pictures (ancillary)",
        "",
        f"`{extras.COLOUR_TAG}`: the source's colour tags, written where they differ from what a",
        "decoder's BT.709 output already shows (wide-gamut primaries, an HDR transfer, a matrix",
        "other than BT.709's or BT.601's). A decoder tags its output with them and converts RGB with",
        "the kept matrix; without the section it writes BT.709.",
        "",
        "| offset | field | type | range | meaning |",
        "|---|---|---|---|---|",
        *colour,
        "",
        f"`{extras.AUDIO_TAG}`: the source's first audio track, never re-encoded. At most "
        f"{extras.MAX_AUDIO_BYTES} bytes;",
        "bpp leaves it out (its bytes are reported apart).",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
        *audio,
        "",
        "In a chunked file both ride in chunk 0's 2.x file. A reader that predates them skips them",
        f"(and refuses a file whose audio section is over its {MAX_ANCILLARY_BYTES}-byte bound for",
        "ancillary sections).",
    ])


def _chunked_md() -> str:
    major, minor = chunks.CHUNKED_VERSION
    vhdr, offset = [], 0
    for f in chunks.VIDEO_SPEC:
        size = struct.calcsize(f"<{f.code}")
        vhdr.append(f"| {offset} | `{f.name}` | u{8 * size} | {f.lo}..{f.hi} | {f.doc} |")
        offset += size
    record, offset = [], 0
    for name, kind, doc in chunks.INDEX_RECORD:
        size = int(kind[1:]) // 8
        record.append(f"| {offset} | `{name}` | {kind} | {doc} |")
        offset += size
    shared = ", ".join(f"`{f}`" for f in chunks.VIDEO_FIELDS)
    return "\n".join([
        f"## Chunked files (format {major}.{minor})",
        "",
        "A video of several chunks, each its own network and embeddings, decodable on its own.",
        "A video of one chunk is written as a 2.0 file instead (no byte more). The preamble is the",
        f"magic and version {major}.{minor}; then, framed as sections (tag, length, payload, CRC32):",
        "",
        "| section | payload |",
        "|---|---|",
        f"| `VHDR` | the video, {chunks.VHDR_SIZE} bytes (below); its CRC starts at file offset 0 |",
        f"| `CIDX` | the index: `chunk_count` records of {chunks.RECORD_SIZE} bytes (below) |",
        "| `CHNK` x `chunk_count` | one chunk each, in frame order: a complete 2.x file (its own"
        " preamble, `HEAD` and tensor sections) |",
        "",
        "`VHDR` payload:",
        "",
        "| offset | field | type | range | meaning |",
        "|---|---|---|---|---|",
        *vhdr,
        "",
        "`CIDX` record:",
        "",
        "| offset | field | type | meaning |",
        "|---|---|---|---|",
        *record,
        "",
        "A reader reads the preamble, `VHDR` and `CIDX` and checks the whole index against the file",
        "before reading any chunk: chunk k starts at frame 0 or where chunk k-1 ends, holds at least",
        "one frame, and its `CHNK` section starts at the end of `CIDX` or of chunk k-1's section;",
        "the last ends on the last frame and on the last byte of the file. A chunk is then read",
        "alone (one positioned read), its `CHNK` framing and CRC checked, and decoded as a 2.x file",
        f"whose `HEAD` must repeat {shared} and hold the index's `frame_count`,",
        "checked before its tensors are decoded. A chunk that is itself a 3.x file is refused.",
    ])


def _bounds_md() -> str:
    return "\n".join([
        "## Bounds and trust",
        "",
        "A .dnv file is untrusted. A reader checks every length and count against the bytes that",
        "remain before allocating, and refuses:",
        "",
        f"- a file of more than {MAX_FILE_BYTES} bytes (for a chunked file: a chunk of more), or",
        "  anything but a regular file, by its size and type before reading it;",
        f"- (format 3.x) more than {chunks.MAX_CHUNKS} chunks, more chunks than frames, or an index",
        "  that the file's size cannot hold, before the index is read;",
        f"- (format 2.x) more than {MAX_GEOMETRIC_MODELS} geometric models in a section, or one whose",
        f"  symbols reach beyond +-{MAX_GEOMETRIC_REACH}: each one's table is built, so both are bounded;",
        "  a tensor whose dims hold more values than the header leaves for it, checked before it is",
        "  decoded;",
        f"- a tensor section holding more than {MAX_GROUP_SYMBOLS} (2^{MAX_GROUP_SYMBOLS.bit_length() - 1}) values, "
        "summed over its records before anything is decoded;",
        f"- more than {MAX_TENSORS} tensors in a section, or more than fit the remaining bytes "
        f"({MIN_RECORD_BYTES} per record at least);",
        f"- a histogram over more than {entropy.MAX_ALPHABET} symbols, one whose first or last count is",
        f"  0, or one with a count above {entropy.MAX_STORED_COUNT} (no writer stores such histograms);",
        "- any field outside the ranges above, a non-finite or non-positive scale, a CRC mismatch;",
        "- (decoders) a tensor section whose values, summed over its records, are not exactly what",
        "  HEAD implies: the decoder's parameter count for `WDEC`, `frame_count` times the size of",
        "  one frame's embedding for `ECON` and `EDIF`; checked before anything is entropy-decoded;",
        "- ANS words that run out before the last symbol. Decoding goes in chunks of 2^16 symbols: a",
        "  chunk of nothing but the first symbol that consumed no bit means the coder is stuck (under",
        "  a valid histogram each symbol costs at least log2(4096/4095) bits), and symbols of two or",
        "  more kinds cannot be coded in zero words;",
        "- (decoders and `dnerv info`) entropy models beyond what the work limit leaves. HEAD prices",
        "  every value and one model a tensor (what every writer stores), but a tensor may be split",
        "  into a model per slice along any axis: a geometric model is 5 to 7 bytes and its table up",
        "  to 8,193 entries. So a reader charges each model beyond a tensor's first",
        f"  {SEGMENT_MACS:,} MACs' worth of time, as it meets it, against the limit left after the",
        "  priced work, and refuses the first one past it. There is no fixed cap on models per file:",
        f"  a legitimate file of {chunks.MAX_CHUNKS} chunks may hold millions; the work limit bounds",
        "  them as it bounds rendering.",
        "",
        f"- an `{extras.AUDIO_TAG}` section over {extras.MAX_AUDIO_BYTES} bytes, before FFmpeg's NUT demuxer (the one",
        "  that reads any input video) sees its stream; a stream it cannot read, or that holds",
        "  anything but one audio track, is a one-line error.",
        "",
        "Nothing in a file is unpickled or evaluated. bpp counts the whole file but its audio",
        f"section: 8 x (file size - `{extras.AUDIO_TAG}` section) in bytes / (width x height x frame_count).",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dnerv_codec.format.specdoc",
                                     description="Print the .dnv byte layout as Markdown.")
    parser.parse_args(argv)
    print(spec_markdown(), end="")


if __name__ == "__main__":
    main()
