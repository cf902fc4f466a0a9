"""Hostile .dnv files: whatever the bytes, a decoded video or one line and exit status 2, fast.

tests/test_bitstream.py checks the container on synthetic files (truncation at every offset,
every bit flip, each range check). This layer takes a *real* encoder output through everything
`dnerv decode` and `dnerv info` run (the architecture cross-check, the entropy decoder, building
the network, rendering) with hypothesis drawing the damage, and through the CLI itself.
`check` is shared with the atheris harness tests/fuzz/fuzz_bitstream.py, which runs longer.
"""

import math
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dnerv_codec.format.architecture import symbol_counts, tensor_shapes
from dnerv_codec.format.container import MAGIC, PREAMBLE_SIZE, describe, unpack
from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedVideo
from dnerv_codec.errors import BitstreamError
from conftest import damaged_through_the_cli
from fuzz.fuzz_bitstream import OUTPUTS, check, check_cli_decode, refresh_crcs

# Deterministic (derandomize) and without an example database in the work tree; the per-case
# time bound is check's own (TIME_LIMIT_S), not hypothesis' deadline, which a loaded 2-core
# machine would trip on a case that normally takes 5 ms.
FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HOSTILE_INTS = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                0xFFFFFFFF, 1 << 27, (1 << 27) + 1, 1 << 26]


def sections(data: bytes) -> list[dict]:
    return describe(data)["sections"]


def structural_offsets(data: bytes) -> list[int]:
    """File offsets of every byte that is not ANS payload: the HEAD fields, and in each tensor
    section the tensor count, the records, the histogram and the word count."""
    out = []
    for s in sections(data):
        start = s["offset"] + 8
        out += range(start, start + s["length"] - 12 - s.get("payload_bytes", 0))
    return out


# Each case writes a video through the CLI: fewer of them.
CLI_FUZZ = settings(FUZZ, max_examples=60)


@CLI_FUZZ
@given(data=st.data())
def test_damaged_files_through_the_cli_to_every_output(small_dnv, data, tmp_path_factory):
    """`dnerv decode` to each kind of output, at --fps-scale 1 to 3, of the seed with up to 3
    bytes overwritten and its CRCs recomputed: every frame written, or exit 2 in one line with
    nothing half-written left."""
    assert damaged_through_the_cli(small_dnv, data, tmp_path_factory) in ("decoded", "refused")


def test_the_seed_decodes_to_every_output_at_every_scale(small_dnv, tmp_path_factory):
    for output in OUTPUTS:
        for scale in (1, 3):
            folder = tmp_path_factory.mktemp("seed")
            assert check_cli_decode(small_dnv, folder, output, scale) == "decoded"


def test_the_seed_file_decodes(small_dnv):
    assert check(small_dnv) == "decoded"
    assert [s["tag"] for s in sections(small_dnv)] == ["HEAD", "WDEC", "ECON", "EDIF"]


def test_truncation_at_every_offset(small_dnv):
    for end in range(len(small_dnv)):
        assert check(small_dnv[:end]) == "refused", end


@FUZZ
@given(data=st.data())
def test_bit_flips(small_dnv, data):
    # distinct bits: a bit flipped twice is no flip, and an undamaged file would check nothing
    flips = data.draw(st.lists(st.integers(0, 8 * len(small_dnv) - 1), min_size=1, max_size=4,
                               unique=True))
    damaged = bytearray(small_dnv)
    for bit in flips:
        damaged[bit // 8] ^= 1 << bit % 8
    assert check(bytes(damaged)) == "refused"  # CRC32 catches up to 3 flipped bits


@FUZZ
@given(junk=st.binary(max_size=4096), prefix=st.sampled_from([b"", MAGIC + b"\x01\x00"]))
def test_random_bytes(junk, prefix):
    assert check(prefix + junk) == "refused"


@FUZZ
@given(data=st.data())
def test_edits_behind_valid_crcs(small_dnv, data):
    """Random bytes overwritten, CRCs recomputed: the checks behind the CRC must hold alone."""
    damaged = bytearray(small_dnv)
    for _ in range(data.draw(st.integers(1, 6))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    check(refresh_crcs(bytes(damaged)))


@FUZZ
@given(data=st.data())
def test_huge_zero_and_negative_looking_fields(small_dnv, data):
    """Lengths, counts, dims and sizes set to 0, sign bits, all ones, 2**27...: written over
    any structural field (HEAD, tensor counts, records, histograms, word counts)."""
    offsets = structural_offsets(small_dnv)
    damaged = bytearray(small_dnv)
    offset = data.draw(st.sampled_from(offsets))
    width = data.draw(st.sampled_from([1, 2, 4]))
    value = data.draw(st.sampled_from(HOSTILE_INTS)) & ((1 << 8 * width) - 1)
    damaged[offset:offset + width] = value.to_bytes(width, "little")[:len(damaged) - offset]
    check(refresh_crcs(bytes(damaged)))


@FUZZ
@given(data=st.data())
def test_section_lengths(small_dnv, data):
    s = data.draw(st.sampled_from(sections(small_dnv)))
    damaged = bytearray(small_dnv)
    struct.pack_into("<I", damaged, s["offset"] + 4, data.draw(st.sampled_from(HOSTILE_INTS)))
    assert check(bytes(damaged)) == "refused"


@FUZZ
@given(data=st.data())
def test_a_valid_header_on_garbage(small_dnv, data):
    """The real HEAD, then sections with the right tags, valid framing and CRCs, and random
    payloads (or the real sections' payloads with their tails replaced)."""
    head_end = PREAMBLE_SIZE + sections(small_dnv)[0]["length"]
    out = bytearray(small_dnv[:head_end])
    for s in sections(small_dnv)[1:]:
        real = small_dnv[s["offset"] + 8:s["offset"] + s["length"] - 4]
        keep = data.draw(st.integers(0, len(real)))
        payload = real[:keep] + data.draw(st.binary(max_size=64))
        out += s["tag"].encode() + struct.pack("<I", len(payload)) + payload + b"\0\0\0\0"
    check(refresh_crcs(bytes(out)))


# ----------------------------------------------------------------------------- the declared-size gap


def with_frame_count(data: bytes, frames: int) -> bytes:
    """`data` with HEAD's frame_count changed (payload offset 8, u32)."""
    out = bytearray(data)
    struct.pack_into("<I", out, PREAMBLE_SIZE + 8 + 8, frames)
    return refresh_crcs(bytes(out))


def with_section(data: bytes, tag: str, payload: bytes) -> bytes:
    """`data` with section `tag` replaced by one holding `payload` (CRC computed)."""
    s = next(s for s in sections(data) if s["tag"] == tag)
    framed = tag.encode() + struct.pack("<I", len(payload)) + payload + b"\0\0\0\0"
    return refresh_crcs(data[:s["offset"]] + framed + data[s["offset"] + s["length"]:])


def one_tensor_section(values: int, ans_words: list[int],
                       shape: tuple[int, ...] | None = None) -> bytes:
    """A format 2.0 section: one tensor of `values` values (1-D, or of `shape`), one step, no
    prediction, one segment whose histogram over -1..1 gives the middle symbol probability
    4095/4097, and the given ANS words."""
    shape = shape or (values,)
    assert math.prod(shape) == values
    record = (struct.pack(f"<B{len(shape)}Ib", len(shape), *shape, -1) + struct.pack("<f", 1.0)
              + struct.pack("<Bb", 0, -1))
    model = bytes([0, 1, 3, 1, 0xFF, 0x1F, 1])  # histogram: lo -1 (zig-zag 1), n 3, counts 1 4095 1
    words = struct.pack(f"<I{len(ans_words)}I", len(ans_words), *ans_words)
    return struct.pack("<I", 1) + record + model + words


def peak_rss_kib() -> int:
    """The process's peak resident memory (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def bounded_refusal(data: bytes, message: str) -> None:
    """Refused with `message`, fast, and without touching much memory."""
    # The peak resident memory is reset first (clear_refs 5): ru_maxrss alone is the whole
    # run's peak, under which any refusal hides once an earlier test has peaked higher.
    # Resident memory rather than tracemalloc: it counts what constriction (Rust) and torch
    # touch, which tracemalloc does not see, and not the arrays sized from the header that are
    # reserved but never written (the ANS tests below np.empty 768 MiB for 2**26 symbols,
    # which tracemalloc counts, and refuse before touching them).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = peak_rss_kib()
    except OSError:
        before = None  # not Linux: the refusal and the time are still checked
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match=message):
        DecodedVideo(data, device="cpu")
    with pytest.raises(BitstreamError, match=message):
        describe(data, symbol_counts)
    assert time.perf_counter() - start < 0.5
    if before is None:
        pytest.skip("the memory check needs /proc/self/clear_refs (Linux)")
    touched = peak_rss_kib() - before
    assert touched < 64 * 1024, f"refusing touched {touched / 1024:.0f} MiB"


def test_a_section_holding_more_than_the_header_implies(small_dnv):
    hostile = with_section(small_dnv, "ECON", one_tensor_section(1 << 27, [1]))
    bounded_refusal(hostile, f"holds {1 << 27} values but the header implies")


def big_header(small_dnv: bytes) -> tuple[bytes, int, tuple[int, ...]]:
    """The seed with a frame count whose content embeddings are about 2**26 values: a header
    that really implies a long video, for the sections below to match (in size and shape)."""
    header = unpack(small_dnv).header
    per_frame = symbol_counts(header)["content"] // 4
    frames = (1 << 26) // per_frame
    shape = tensor_shapes(dict(header, frame_count=frames))["content"][0]
    return with_frame_count(small_dnv, frames), frames * per_frame, shape


def test_ans_data_that_runs_out_is_refused_at_once(small_dnv):
    """Before: constriction went on decoding past its words, 2**26 symbols from 4 bytes."""
    data, values, shape = big_header(small_dnv)
    bounded_refusal(with_section(data, "ECON", one_tensor_section(values, [1], shape)),
                    "ANS data runs out before the last symbol")


def test_no_ans_words_for_many_symbols(small_dnv):
    data, values, shape = big_header(small_dnv)
    bounded_refusal(with_section(data, "ECON", one_tensor_section(values, [], shape)),
                    "no ANS words")


def test_a_decoder_too_large_to_build_is_refused_before_decoding(small_dnv):
    header = unpack(small_dnv).header
    n = len(header["content_strides"])
    out = bytearray(small_dnv)
    channels_at = PREAMBLE_SIZE + 8 + 20 + 2 * (1 + n) + 1
    struct.pack_into(f"<{n}H", out, channels_at, *[4096] * n)
    struct.pack_into("<H", out, channels_at + 2 * n + 1, 4096)  # stem_channels, after d
    bounded_refusal(refresh_crcs(bytes(out)), "parameters exceeds the limit")


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@settings(FUZZ, max_examples=100,
          suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_refuses_in_one_line_with_status_2(small_dnv, cli_dir, capsys, data):
    """capsys is reset by readouterr() between examples, which is all it needs."""
    damaged = bytearray(small_dnv)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= data.draw(st.integers(1, 255))
    damaged = refresh_crcs(bytes(damaged)) if data.draw(st.booleans()) else bytes(damaged)
    bad, out = cli_dir / "bad.dnv", cli_dir / "out.y4m"
    bad.write_bytes(damaged)
    capsys.readouterr()
    decoded = main(["decode", str(bad), "-o", str(out)]) == 0
    assert out.exists() == decoded  # damage can leave a valid file (a scale, the frame rate)
    if not decoded:
        assert_one_line_error(capsys)
        assert main(["info", str(bad)]) == 2
        assert_one_line_error(capsys)
    out.unlink(missing_ok=True)
    assert sorted(p.name for p in cli_dir.iterdir()) == ["bad.dnv"]  # no temporary left over


def assert_one_line_error(capsys) -> None:
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.startswith("dnerv: error: ") and stderr.count("\n") == 1, stderr


def test_the_process_exit_status_is_2(small_dnv, tmp_path):
    bad = tmp_path / "bad.dnv"
    bad.write_bytes(with_section(small_dnv, "ECON", one_tensor_section(1 << 27, [1])))
    done = subprocess.run([sys.executable, "-m", "dnerv_codec", "info", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "header implies" in done.stderr
