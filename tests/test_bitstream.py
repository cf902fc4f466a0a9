"""The .dnv container: round trips, pinned bytes, and refusal of every kind of bad file.

The helpers below re-implement the framing independently (from docs/bitstream.md), so that the
tests can build hostile files with valid CRCs and check the range checks, not just the CRC.
"""

import ast
import hashlib
import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from dnerv_codec.format import container as bitstream
from dnerv_codec.format.container import (
    MAGIC,
    MAX_GROUP_SYMBOLS,
    DnvFile,
    QuantTensor,
    describe,
    pack,
    unpack,
)
from dnerv_codec.format.specdoc import spec_markdown
from dnerv_codec.errors import BitstreamError

ROOT = Path(__file__).resolve().parents[1]


# --- building files ------------------------------------------------------------------------


def _header(**overrides) -> dict:
    h = dict(
        width=20, height=10, padded_width=24, padded_height=12, frame_count=3,
        fps_num=30000, fps_den=1001, content_strides=(3, 2, 2), kernels=(1, 3, 5),
        channels=(8, 6, 5), embed_channels=4, stem_channels=8, diff_stream=1,
        diff_channels=2, diff_upscale=4, ccu_block=1,
    )
    h.update(overrides)
    return h


def _tensor(shape, bits, axis, seed) -> QuantTensor:
    rng = np.random.default_rng(seed)
    n = 1 if axis is None else shape[axis]
    top = (1 << bits) - 1
    zp = np.clip(top // 2 + rng.integers(-2, 3, n), 0, top).astype(np.int32)
    q = np.clip(np.round(rng.laplace(top / 2, min(top / 10, 3), shape)), 0, top).astype(np.int32)
    scale = rng.uniform(0.001, 0.1, n).astype(np.float32)
    return QuantTensor(tuple(shape), bits, axis, scale, zp, q)


def _file(diff: bool = True) -> DnvFile:
    groups = {
        "decoder": [_tensor((8, 4, 3, 3), 8, 0, 1), _tensor((8,), 8, None, 2),
                    _tensor((6, 8, 1, 1), 16, 1, 3), _tensor((3, 2), 2, None, 4)],
        "content": [_tensor((3, 4, 2, 2), 6, None, 5)],
    }
    if diff:
        groups["diff"] = [_tensor((3, 2, 1, 1), 7, 1, 6)]
    return DnvFile(_header(diff_stream=int(diff)), groups)


def _sections(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a valid file into (tag, payload) pairs."""
    out, pos = [], len(MAGIC) + 2
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 4)
        out.append((data[pos : pos + 4], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _build(sections, version=(1, 0)) -> bytes:  # these tests build format 1.0 sections
    """A file from (tag, payload) pairs with correct CRCs (HEAD's CRC starts at offset 0)."""
    out = MAGIC + bytes(version)
    for tag, payload in sections:
        body = tag + struct.pack("<I", len(payload)) + payload
        covered = out + body if tag == b"HEAD" else body
        out += body + struct.pack("<I", zlib.crc32(covered))
    return out


def _head_bytes(h: dict) -> bytes:
    """HEAD payload written field by field, independently of HEADER_SPEC."""
    def u8s(xs):
        return struct.pack(f"<B{len(xs)}B", len(xs), *xs)

    def u16s(xs):
        return struct.pack(f"<B{len(xs)}H", len(xs), *xs)

    return b"".join([
        struct.pack("<HHHHIII", h["width"], h["height"], h["padded_width"], h["padded_height"],
                    h["frame_count"], h["fps_num"], h["fps_den"]),
        u8s(h["content_strides"]), u8s(h["kernels"]), u16s(h["channels"]),
        struct.pack("<BHBBBB", h["embed_channels"], h["stem_channels"], h["diff_stream"],
                    h["diff_channels"], h["diff_upscale"], h["ccu_block"]),
    ])


def _with_head(data: bytes, **overrides) -> bytes:
    """`data` with its HEAD replaced (CRC recomputed), so only the range checks can object."""
    sections = _sections(data)
    sections[0] = (b"HEAD", _head_bytes(_header(**overrides)))
    return _build(sections)


def _with_section(data: bytes, index: int, payload: bytes) -> bytes:
    sections = _sections(data)
    sections[index] = (sections[index][0], payload)
    return _build(sections)


def _tensor_section(records: bytes, count: int, tail: bytes = b"\x00\x00\x00\x00\x00\x00") -> bytes:
    """A tensor-section payload; the default tail is an empty histogram and zero ANS words."""
    return struct.pack("<I", count) + records + tail


@pytest.fixture(scope="module")
def packed() -> bytes:
    return pack(_file())


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("diff", [True, False])
def test_round_trip(diff):
    f = _file(diff)
    data = pack(f)
    g = unpack(data)
    assert g.header == {k: tuple(v) if isinstance(v, list) else v for k, v in f.header.items()}
    assert set(g.groups) == set(f.groups)
    for name, tensors in f.groups.items():
        assert len(g.groups[name]) == len(tensors)
        for a, b in zip(tensors, g.groups[name]):
            assert (b.shape, b.bits, b.axis) == (a.shape, a.bits, a.axis)
            assert b.q.dtype == np.int32 and b.zero_point.dtype == np.int32
            assert b.scale.dtype == np.float32
            np.testing.assert_array_equal(b.q, a.q)
            np.testing.assert_array_equal(b.zero_point, a.zero_point)
            np.testing.assert_array_equal(b.scale, a.scale)
            np.testing.assert_array_equal(b.dequantize(), a.dequantize())
    assert pack(g) == data


def test_dequantize_per_channel():
    t = QuantTensor((2, 3), 4, 1, np.array([1, 2, 0.5], np.float32), np.array([0, 8, 15], np.int32),
                    np.array([[0, 8, 15], [3, 9, 0]], np.int32))
    expected = np.array([[0, 0, 0], [3, 2, -7.5]], np.float32)
    np.testing.assert_array_equal(t.dequantize(), expected)
    assert t.dequantize().dtype == np.float32


def test_empty_groups_round_trip():
    f = DnvFile(_header(diff_stream=0), {"decoder": [], "content": []})
    assert unpack(pack(f)).groups == {"decoder": [], "content": []}


def test_describe(packed):
    d = describe(packed)
    json.dumps(d)
    assert d["format_version"] == "1.0"
    assert d["file_bytes"] == len(packed)
    assert d["header"]["content_strides"] == [3, 2, 2]
    assert [s["tag"] for s in d["sections"]] == ["HEAD", "WDEC", "ECON", "EDIF"]
    pos = len(MAGIC) + 2
    for s in d["sections"]:
        assert s["offset"] == pos
        assert s["crc32"] == packed[pos + s["length"] - 4 : pos + s["length"]][::-1].hex()
        pos += s["length"]
    assert pos == len(packed)
    wdec = d["sections"][1]
    assert (wdec["group"], wdec["tensors"], wdec["symbols"]) == ("decoder", 4, 288 + 8 + 48 + 6)
    assert wdec["payload_bytes"] % 4 == 0 and wdec["histogram_bytes"] > 0


# --- pinned bytes --------------------------------------------------------------------------


def _golden_file() -> DnvFile:
    """Small and fully deterministic: no random numbers at all."""
    weight = QuantTensor((2, 3), 4, 0, np.array([0.5, 0.25], np.float32), np.array([8, 7], np.int32),
                         np.array([[8, 9, 7], [7, 7, 15]], np.int32))
    embed = QuantTensor((1, 2, 1, 2), 6, None, np.array([0.125], np.float32), np.array([32], np.int32),
                        np.array([30, 32, 33, 32], np.int32).reshape(1, 2, 1, 2))
    header = _header(width=16, height=8, padded_width=16, padded_height=8, frame_count=1, fps_num=25,
                     fps_den=1, content_strides=(4, 2), kernels=(1, 3), channels=(300, 2),
                     embed_channels=2, stem_channels=5, diff_stream=0, diff_channels=0,
                     diff_upscale=0, ccu_block=1)
    return DnvFile(header, {"decoder": [weight], "content": [embed]})


GOLDEN_HEX = (
    "8b444e560d0a1a0a" "0100"  # magic, version 1.0
    # HEAD, 38 bytes (field by field in test_golden_head_field_by_field), CRC from offset 0
    "48454144" "26000000"
    "1000080010000800010000001900000001000000020402020103022c01020002050000000001"
    "c857984d"
    # WDEC, 47 bytes: 1 tensor: ndim 2, dims 2 3, 4 bits, axis 0, scales 0.5 0.25, zero points 8 7
    "57444543" "2f000000" "01000000"
    "02" "02000000" "03000000" "04" "00" "0000003f" "0000803e" "0800" "0700"
    "01" "0a" "01030100000000000001"  # histogram: lo -1 (zig-zag 1), n 10, counts
    "01000000" "4c5955e5"  # 1 ANS word
    "df483855"
    # ECON, 43 bytes: 1 tensor: ndim 4, dims 1 2 1 2, 6 bits, per tensor, scale 0.125, zero point 32
    "45434f4e" "2b000000" "01000000"
    "04" "01000000" "02000000" "01000000" "02000000" "06" "ff" "0000003e" "2000"
    "03" "04" "01000201"  # histogram: lo -2 (zig-zag 3), n 4, counts
    "01000000" "0500000e"  # 1 ANS word
    "7c690a8b"
)
GOLDEN_SHA256 = "75dcb0753508dc58f60c6fb888e8b26b9ee386a402116e15d1b3f99f7463415f"
GOLDEN_LENGTH = 174


def test_golden_bytes():
    data = pack(_golden_file())
    assert (len(data), hashlib.sha256(data).hexdigest()) == (GOLDEN_LENGTH, GOLDEN_SHA256)
    assert data.hex() == GOLDEN_HEX


def test_golden_head_field_by_field():
    data = pack(_golden_file())
    head = (
        "1000" "0800" "1000" "0800"  # width 16, height 8, padded 16 x 8 (u16 each)
        "01000000" "19000000" "01000000"  # frame_count 1, fps 25/1 (u32 each)
        "02" "0402"  # content_strides: 2 items, 4 2
        "02" "0103"  # kernels: 2 items, 1 3
        "02" "2c01" "0200"  # channels: 2 items, 300 2 (u16 each)
        "02" "0500"  # embed_channels 2, stem_channels 5 (u16)
        "00" "00" "00" "01"  # diff_stream 0, diff_channels 0, diff_upscale 0, ccu_block 1
    )
    assert data[:10] == MAGIC + b"\x01\x00"
    assert data[10:18] == b"HEAD" + struct.pack("<I", len(head) // 2)
    assert data[18 : 18 + len(head) // 2].hex() == head
    crc_end = 18 + len(head) // 2
    assert data[crc_end : crc_end + 4] == struct.pack("<I", zlib.crc32(data[:crc_end]))
    assert data[18:crc_end] == _head_bytes(_golden_file().header)


# --- the specification ---------------------------------------------------------------------


def test_docs_contain_the_current_spec():
    docs = (ROOT / "docs" / "bitstream.md").read_text()
    assert docs.endswith(spec_markdown()), (
        "docs/bitstream.md is out of date: replace its generated end with the output of "
        "`python -m dnerv_codec.format.specdoc`"
    )


def test_spec_cli_prints_spec():
    out = subprocess.run([sys.executable, "-m", "dnerv_codec.format.specdoc"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == spec_markdown()
    for field in bitstream.HEADER_SPEC:
        assert f"`{field.name}`" in out and field.doc in out


def test_reader_modules_never_import_torch():
    """The code that reads untrusted files (all of format/) stays numpy + stdlib +
    constriction, with no eval; tests/test_layering.py keeps it below the other rooms."""
    modules = sorted(p.stem for p in (ROOT / "dnerv_codec" / "format").glob("*.py"))
    code = ("import sys; import " + ", ".join(f"dnerv_codec.format.{m}" for m in modules)
            + "; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    allowed = {"__future__", "argparse", "collections", "dataclasses", "functools", "hashlib",
               "itertools",
               "math", "os",
               "stat", "struct", "typing", "zlib", "numpy", "constriction", "dnerv_codec"}
    for path in sorted((ROOT / "dnerv_codec" / "format").glob("*.py")):
        name = path.name
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module]
            else:
                modules = []
            assert {m.split(".")[0] for m in modules} <= allowed, f"{name} imports {modules}"
            if isinstance(node, ast.Name):
                assert node.id not in {"eval", "exec", "pickle", "load"}, f"{name} uses {node.id}"
            if isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", f"{name} passes allow_pickle"


# --- refusing bad files ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x89PNG\r\n\x1a\n\x00\x00", b"\x8bDNV\n\x1a\n\x01\x00"])
def test_bad_magic(data):
    with pytest.raises(BitstreamError, match="not a .dnv file"):
        unpack(data)


def test_text_mode_mangling_is_caught(packed):
    with pytest.raises(BitstreamError, match="bad magic"):
        unpack(packed.replace(b"\r\n", b"\n"))


def test_unknown_major_version(packed):
    data = _build(_sections(packed), version=(4, 0))
    with pytest.raises(BitstreamError) as err:
        unpack(data)
    assert str(err.value) == "unsupported .dnv format version 4.0 (this dnerv reads 1.x and 2.x)"


def test_higher_minor_version_is_read(packed):
    data = _build(_sections(packed), version=(1, 7))
    assert describe(data)["format_version"] == "1.7"
    assert unpack(data).header == unpack(packed).header


def test_truncation_at_every_offset(packed):
    for end in range(len(packed)):
        with pytest.raises(BitstreamError):
            unpack(packed[:end])


def test_truncation_message(packed):
    with pytest.raises(BitstreamError, match=r"truncated .dnv: section 'WDEC' at offset \d+ declares \d+ bytes"):
        unpack(packed[:200])


def test_every_flipped_bit_is_caught(packed):
    """CRC32 catches every single-bit error; the preamble is covered by HEAD's CRC."""
    data = bytearray(packed)
    for i in range(len(data)):
        for bit in range(8):
            data[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack(bytes(data))
            data[i] ^= 1 << bit


def test_crc_mismatch_message(packed):
    econ = describe(packed)["sections"][2]["offset"]
    data = bytearray(packed)
    data[econ + 9] ^= 0x10
    with pytest.raises(BitstreamError, match=f"CRC mismatch in section 'ECON' at offset {econ}"):
        unpack(bytes(data))


def test_random_corruption_with_valid_crcs(packed, monkeypatch):
    """Mutated payloads with recomputed CRCs: the semantic checks alone must hold.

    A mutated dimension can legitimately ask for up to MAX_GROUP_SYMBOLS values (seconds of
    work each), so the limit is lowered here to keep the test fast; the logic is the same."""
    monkeypatch.setattr(bitstream, "MAX_GROUP_SYMBOLS", 1 << 12)
    rng = np.random.default_rng(2024)
    sections = _sections(packed)
    for _ in range(1500):
        index = int(rng.integers(len(sections)))
        payload = bytearray(sections[index][1])
        for _ in range(int(rng.integers(1, 4))):
            payload[int(rng.integers(len(payload)))] = int(rng.integers(256))
        try:
            unpack(_with_section(packed, index, bytes(payload)))
        except BitstreamError as exc:
            assert "\n" not in str(exc)


def test_trailing_garbage(packed):
    for junk in (b"\x00", b"junk" * 5, b"ABCD\xff\xff\xff\xff"):
        with pytest.raises(BitstreamError, match="trailing garbage"):
            unpack(packed + junk)


def test_duplicate_section(packed):
    sections = _sections(packed)
    with pytest.raises(BitstreamError, match="duplicate section 'EDIF'"):
        unpack(_build(sections + sections[-1:]))
    with pytest.raises(BitstreamError, match="duplicate section 'HEAD'"):
        unpack(_build(sections[:1] + sections))


def test_section_order(packed):
    head, wdec, econ, edif = _sections(packed)
    with pytest.raises(BitstreamError, match=r"unexpected section 'ECON' at offset \d+ \(expected 'WDEC'\)"):
        unpack(_build([head, econ, wdec, edif]))
    with pytest.raises(BitstreamError, match="expected 'HEAD'"):
        unpack(_build([wdec, head, econ, edif]))


def test_missing_edif_when_diff_stream_is_on(packed):
    with pytest.raises(BitstreamError, match="section 'EDIF' is missing"):
        unpack(_build(_sections(packed)[:-1]))


def test_edif_refused_when_diff_stream_is_off(packed):
    head, wdec, econ, edif = _sections(packed)
    head = (b"HEAD", _head_bytes(_header(diff_stream=0)))
    with pytest.raises(BitstreamError, match="unexpected section 'EDIF'"):
        unpack(_build([head, wdec, econ, edif]))


def test_unknown_sections(packed):
    head, *rest = _sections(packed)
    with pytest.raises(BitstreamError, match="unknown critical section 'ABCD'"):
        unpack(_build([head, (b"ABCD", b"x"), *rest]))
    ancillary = _build([head, (b"abCD", b"future metadata"), *rest])
    assert unpack(ancillary).header == unpack(packed).header
    assert describe(ancillary)["sections"][1] == {
        "tag": "abCD", "offset": describe(packed)["sections"][1]["offset"], "length": 27,
        "crc32": f"{zlib.crc32(b'abCD' + struct.pack('<I', 15) + b'future metadata'):08x}",
        "ancillary": True,
    }
    with pytest.raises(BitstreamError, match="invalid section tag"):
        unpack(_build([head, (b"AB\x00D", b""), *rest]))


def test_huge_section_length(packed):
    data = bytearray(packed)
    data[10 + 4 : 10 + 8] = b"\xff\xff\xff\xff"
    with pytest.raises(BitstreamError, match="declares 4294967295 bytes"):
        unpack(bytes(data))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(width=0), "field 'width' = 0 outside 1..65535"),
        (dict(frame_count=10_000_001), "field 'frame_count'"),
        (dict(fps_den=0), "field 'fps_den'"),
        (dict(diff_stream=2), "field 'diff_stream'"),
        (dict(diff_upscale=17), "field 'diff_upscale'"),
        (dict(content_strides=(3, 2, 17)), "field 'content_strides' = 17"),
        (dict(channels=(8, 6, 4097)), "field 'channels' = 4097"),
        (dict(content_strides=(), kernels=(), channels=()), "'content_strides' has 0 items"),
        (dict(content_strides=(2,) * 9, kernels=(3,) * 9, channels=(4,) * 9), "has 9 items"),
        (dict(padded_width=19), "padded_width >= width"),
        (dict(padded_height=9), "padded_height >= height"),
        (dict(kernels=(1, 3)), "len\\(kernels\\) == len\\(content_strides\\)"),
        (dict(channels=(8, 6, 5, 4)), "len\\(channels\\)"),
        (dict(kernels=(1, 4, 5)), "every kernel is odd"),
        (dict(ccu_block=3), "ccu_block < len"),
        (dict(diff_channels=0), "diff_channels >= 1"),
    ],
)
def test_out_of_range_header_fields(packed, overrides, message):
    with pytest.raises(BitstreamError, match=f"section 'HEAD'.*{message}"):
        unpack(_with_head(packed, **overrides))
    with pytest.raises(ValueError, match=message):
        pack(DnvFile(_header(**overrides), _file().groups))


def test_head_with_extra_bytes(packed):
    data = _with_section(packed, 0, _head_bytes(_header()) + b"\x00")
    with pytest.raises(BitstreamError, match="1 unused bytes"):
        unpack(data)


def test_tensor_claiming_2_31_elements_is_refused_before_allocation(packed):
    record = struct.pack("<B2IBb", 2, 1 << 16, 1 << 15, 8, -1) + struct.pack("<fH", 1.0, 0)
    hostile = _with_section(packed, 1, _tensor_section(record, 1))
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match=f"2147483648 elements \\(limit {MAX_GROUP_SYMBOLS}\\)"):
            unpack(hostile)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_group_total_is_bounded(packed):
    record = struct.pack("<B1IBb", 1, 1 << 26, 8, -1) + struct.pack("<fH", 1.0, 0)
    with pytest.raises(BitstreamError, match="tensors 0..2 hold"):
        unpack(_with_section(packed, 1, _tensor_section(record * 3, 3)))


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<I", 1 << 31), "tensor count 2147483648 is impossible"),
        (struct.pack("<I", 1000) + b"\x00" * 100, "tensor count 1000 is impossible"),
        # per-channel along a 2**26 axis: 6 * 2**26 bytes of scales that are not there
        (_tensor_section(struct.pack("<B1IBb", 1, 1 << 26, 8, 0) + b"\x00" * 6, 1),
         "needs 402653184 bytes but"),
        # an empty tensor list whose histogram claims 2**20 symbols
        (struct.pack("<I", 0) + b"\x00\x80\x80\x40" + b"\x00" * 4, "histogram has 1048576 symbols"),
        # a 2-bit tensor whose histogram spans symbols 0..4 (q - zero_point is at most 3)
        (_tensor_section(struct.pack("<B1IBb", 1, 2, 2, -1) + struct.pack("<fH", 1.0, 0), 1,
                         b"\x00\x05" + b"\x01" * 5 + b"\x00" * 4), "histogram symbols 0..4 exceed \\+-3"),
        # ... or whose ANS word count is 2**30
        (struct.pack("<I", 0) + b"\x00\x00" + struct.pack("<I", 1 << 30), "ANS words needs 4294967296 bytes"),
    ],
)
def test_huge_counts_are_refused(packed, payload, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(_with_section(packed, 1, payload))


def _record(shape=(2,), bits=8, axis=-1, scales=(1.0,), zps=(0,)) -> bytes:
    n = len(scales)
    return (struct.pack(f"<B{len(shape)}IBb", len(shape), *shape, bits, axis)
            + struct.pack(f"<{n}f{n}H", *scales, *zps))


@pytest.mark.parametrize(
    "record, message",
    [
        (_record(shape=()), "shape \\(\\) is not 1..5 dims"),
        (_record(shape=(1,) * 6), "is not 1..5 dims"),
        (_record(shape=(2, 0)), "is not 1..5 dims of size >= 1"),
        (_record(bits=1), "bits = 1 outside 2..16"),
        (_record(bits=17), "bits = 17"),
        (_record(axis=1), "axis 1 is not a dimension"),
        (_record(axis=-2), "axis -2"),
        (_record(scales=(0.0,)), "scale is not finite and > 0"),
        (_record(scales=(float("nan"),)), "scale is not finite"),
        (_record(scales=(-1.0,)), "scale is not finite"),
        (_record(scales=(float("inf"),)), "scale is not finite"),
        (_record(bits=4, zps=(16,)), "zero point is outside 0..15"),
    ],
)
def test_bad_tensor_records(packed, record, message):
    with pytest.raises(BitstreamError, match=f"section 'WDEC'.*tensor 0: .*{message}"):
        unpack(_with_section(packed, 1, _tensor_section(record, 1)))


def test_decoded_values_out_of_range():
    """A valid ANS stream relabelled as 2 bits with zero point 3: q = 3..6 must be refused."""
    tensor = QuantTensor((4,), 8, None, np.array([1.0], np.float32), np.array([0], np.int32),
                         np.array([0, 1, 2, 3], np.int32))
    f = DnvFile(_header(diff_stream=0), {"decoder": [tensor], "content": []})
    head, (tag, payload), econ = _sections(pack(f))
    bits_at, zp_at = 4 + 1 + 4, 4 + 1 + 4 + 1 + 1 + 4  # after count, ndim, dim (, bits, axis, scale)
    payload = payload[:bits_at] + b"\x02" + payload[bits_at + 1 : zp_at] + b"\x03\x00" + payload[zp_at + 2 :]
    with pytest.raises(BitstreamError, match="tensor 0 decodes to values outside 0..3"):
        unpack(_build([head, (tag, payload), econ]))


def test_unused_bytes_in_tensor_section(packed):
    payload = _sections(packed)[1][1] + b"\x00"
    with pytest.raises(BitstreamError, match="section 'WDEC'.*1 unused bytes"):
        unpack(_with_section(packed, 1, payload))


def test_error_messages_are_one_line(packed):
    for end in range(0, len(packed), 7):
        with pytest.raises(BitstreamError) as err:
            describe(packed[:end])
        assert "\n" not in str(err.value)


# --- refusing bad input on the writing side ---------------------------------------------------


def _bad(**changes) -> QuantTensor:
    t = _tensor((4, 3), 8, 0, 9)
    for key, value in changes.items():
        setattr(t, key, value)
    return t


@pytest.mark.parametrize(
    "tensor, message",
    [
        (_bad(q=np.full((4, 3), 256)), "q values outside 0..255"),
        (_bad(q=np.zeros((3, 4), np.int32)), "q has shape"),
        (_bad(q=np.zeros((4, 3))), "integer arrays"),
        (_bad(scale=np.ones(3, np.float32)), "needs 4 scales"),
        (_bad(scale=np.array([1, 1, 0, 1], np.float32)), "scale is not finite"),
        (_bad(scale=np.full(4, 1e-50)), "scale is not finite"),  # 0 in float32
        (_bad(zero_point=np.full(4, 256)), "zero point"),
        (_bad(axis=-1), "axis -1"),
        (_bad(bits=17), "bits = 17"),
    ],
)
def test_pack_refuses_invalid_tensors(tensor, message):
    with pytest.raises(ValueError, match=message):
        pack(DnvFile(_header(diff_stream=0), {"decoder": [tensor], "content": []}))


def test_pack_refuses_mismatched_groups_and_header():
    f = _file(diff=True)
    with pytest.raises(ValueError, match="do not match the header"):
        pack(DnvFile(_header(diff_stream=0), f.groups))
    with pytest.raises(ValueError, match="do not match the header"):
        pack(DnvFile(_header(), {"decoder": [], "content": []}))
    with pytest.raises(ValueError, match="missing \\['width'\\]"):
        pack(DnvFile({k: v for k, v in _header().items() if k != "width"}, f.groups))
    with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
        pack(DnvFile(_header(colour=1), f.groups))
