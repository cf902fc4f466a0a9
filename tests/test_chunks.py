"""Long videos as chunks: the 3.0 container, chunked encodes through the CLI, random access,
parallel encoding on Ray (byte-identical to serial, a killed worker retried), resume per chunk.

The format tests build 3.0 files from a real 2.0 file (tests/data); the encode tests use 6
real frames of 96x64 in chunks of 2, a few epochs each.
"""

import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import damaged_through_the_cli, mean_frame_floor
from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedFile, EncodeOptions, encode
from dnerv_codec.coding.chunkplan import (
    MAX_CHUNK_FRAMES,
    chunk_bounds,
    chunk_length,
    min_frames_for,
)
from dnerv_codec.coding.ratecontrol import RateRequest
from dnerv_codec.errors import BitstreamError, BudgetError
from dnerv_codec.format.architecture import symbol_counts, tensor_shapes
from dnerv_codec.format.budget import CHUNK_MACS, VALUE_MACS, Limits
from dnerv_codec.format.chunks import (
    CHUNKED_VERSION,
    RECORD_SIZE,
    VHDR_SIZE,
    DnvReader,
    chunked_size,
    pack_chunked,
)
from dnerv_codec.format.container import FRAME_OVERHEAD, PREAMBLE_SIZE, MAGIC, read_head
from dnerv_codec.format.meter import SEGMENT_MACS
from dnerv_codec.io import open_writer, read_video

DATA = Path(__file__).parent / "data"
ONE = (DATA / "bunny-0.1bpp-learned.dnv").read_bytes()  # a real 2.0 file of 48 frames
HEAD = read_head(ONE)
VIDEO = {k: HEAD[k] for k in ("width", "height", "fps_num", "fps_den")}
INDEX_AT = PREAMBLE_SIZE + FRAME_OVERHEAD + VHDR_SIZE  # the CIDX section


def three_chunks() -> bytes:
    return pack_chunked({**VIDEO, "frame_count": 3 * HEAD["frame_count"]},
                        [(ONE, 30.0), (ONE, 31.0), (ONE, None)])


def refresh(data: bytes) -> bytes:
    """`data` with the CRCs of VHDR and CIDX recomputed, so that an edit reaches the checks
    behind them."""
    out = bytearray(data)
    vhdr_end = PREAMBLE_SIZE + 8 + VHDR_SIZE
    struct.pack_into("<I", out, vhdr_end, zlib.crc32(out[:vhdr_end]))
    count = struct.unpack_from("<I", out, PREAMBLE_SIZE + 8 + VHDR_SIZE - 4)[0]
    cidx_end = INDEX_AT + 8 + RECORD_SIZE * count
    if cidx_end + 4 <= len(out):
        struct.pack_into("<I", out, cidx_end, zlib.crc32(out[INDEX_AT:cidx_end]))
    return bytes(out)


def read_all(data: bytes) -> list[bytes]:
    reader = DnvReader(data)
    return [reader.chunk_bytes(k) for k in range(len(reader.chunks))]


# ----------------------------------------------------------------------------- the container


def test_one_chunk_is_the_2_0_file_itself():
    assert pack_chunked({**VIDEO, "frame_count": 48}, [(ONE, 30.0)]) == ONE
    reader = DnvReader(ONE)
    assert (reader.version, reader.chunked, len(reader.chunks)) == ("2.0", False, 1)
    assert reader.chunk_bytes(0) == ONE and reader.chunks_for(10, 20) == [0]


def test_a_chunked_file_round_trips_and_indexes_its_chunks(tmp_path):
    data = three_chunks()
    assert data[:PREAMBLE_SIZE] == MAGIC + bytes(CHUNKED_VERSION)
    assert len(data) == chunked_size([len(ONE)] * 3)
    overhead = len(data) - 3 * len(ONE)  # the container's cost: 42 bytes, then 38 a chunk
    assert overhead == PREAMBLE_SIZE + 2 * FRAME_OVERHEAD + VHDR_SIZE + 3 * (RECORD_SIZE + 12)
    path = tmp_path / "three.dnv"
    path.write_bytes(data)
    with DnvReader.open(str(path)) as reader:
        assert reader.version == "3.0" and reader.video["frame_count"] == 144
        assert [(c.first_frame, c.frame_count, c.psnr) for c in reader.chunks] == [
            (0, 48, 30.0), (48, 48, 31.0), (96, 48, None)]
        assert reader.chunks_for(47, 49) == [0, 1] and reader.chunks_for(100, 101) == [2]
        assert all(reader.chunk_bytes(k) == ONE for k in range(3))
        assert reader.chunk_head(2) == HEAD


def test_truncation_at_every_offset_is_refused():
    data = three_chunks()
    for end in list(range(0, 200)) + list(range(200, len(data), 97)):
        with pytest.raises(BitstreamError):
            read_all(data[:end])


def test_every_flipped_bit_of_the_header_and_index_is_caught():
    data = three_chunks()
    for offset in range(len(MAGIC), INDEX_AT + 8 + 3 * RECORD_SIZE + 4):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[offset] ^= 1 << bit
            with pytest.raises(BitstreamError):
                read_all(bytes(bad))


def _edit_record(data: bytes, k: int, field: int, value: int) -> bytes:
    """Chunk k's index record with one field (0 first frame, 1 frame count, 2 offset,
    3 length) replaced, CRCs refreshed."""
    at = INDEX_AT + 8 + k * RECORD_SIZE
    values = list(struct.unpack_from("<IIQQH", data, at))
    values[field] = value
    out = bytearray(data)
    struct.pack_into("<IIQQH", out, at, *values)
    return refresh(bytes(out))


@pytest.mark.parametrize("k, field, value, message", [
    (1, 0, 40, "chunk 1 in the index starts at frame 40, expected 48"),
    (1, 1, 0, "chunk 1 in the index holds no frames"),
    (2, 1, 0xFFFFFFFF, "ends at frame"),
    (1, 2, 0, "chunk 1 in the index is at offset 0"),
    (0, 3, 3, "less than the"),
    (2, 3, 1 << 62, "past the file's"),
    (2, 3, 100, "trailing garbage"),
])
def test_hostile_chunk_indexes_are_refused_before_any_chunk_is_read(k, field, value, message):
    with pytest.raises(BitstreamError, match=message):
        DnvReader(_edit_record(three_chunks(), k, field, value))


@pytest.mark.parametrize("count, message", [
    (0, "chunk_count"), (1, "chunk_count"),
    (100_001, "chunk_count"), (60000, "cannot hold the index"),
])
def test_a_hostile_chunk_count_is_refused_before_the_index_is_read(count, message):
    out = bytearray(three_chunks())
    struct.pack_into("<I", out, PREAMBLE_SIZE + 8 + 4, 100_000)  # frame_count: room for them
    struct.pack_into("<I", out, PREAMBLE_SIZE + 8 + VHDR_SIZE - 4, count)
    with pytest.raises(BitstreamError, match=message):
        DnvReader(refresh(bytes(out)))


def test_a_chunk_that_disagrees_with_the_index_is_refused_before_its_tensors_decode():
    other = bytearray(ONE)  # the same chunk claiming another width, its HEAD CRC refreshed
    struct.pack_into("<H", other, PREAMBLE_SIZE + 8, HEAD["width"] - 2)
    head_end = PREAMBLE_SIZE + 8 + struct.unpack_from("<I", other, PREAMBLE_SIZE + 4)[0]
    struct.pack_into("<I", other, head_end, zlib.crc32(other[:head_end]))
    bad = bytearray(three_chunks())
    second = DnvReader(three_chunks()).chunks[1]
    bad[second.offset + 8:second.offset + 8 + len(ONE)] = other
    end = second.offset + second.length - 4
    struct.pack_into("<I", bad, end, zlib.crc32(bad[second.offset:end]))
    reader = DnvReader(bytes(bad))
    with pytest.raises(BitstreamError, match="chunk 1 has width = 318, the video 320"):
        reader.chunk_head(1)
    with pytest.raises(BitstreamError, match="chunk 1 has width"):
        list(DecodedFile(reader, device="cpu", start=50, stop=51).frames())


def test_more_chunks_than_frames_are_refused():
    out = bytearray(three_chunks())
    struct.pack_into("<I", out, PREAMBLE_SIZE + 8 + VHDR_SIZE - 4, 145)
    with pytest.raises(BitstreamError, match="145 chunks for 144 frames"):
        DnvReader(refresh(bytes(out)))


def test_a_chunk_holding_a_chunked_file_is_refused():
    nested = three_chunks()
    with pytest.raises(ValueError):
        pack_chunked({**VIDEO, "frame_count": 96}, [(ONE, None), (nested, None)])
    data = bytearray(three_chunks())
    first = DnvReader(bytes(data)).chunks[0]
    data[first.offset + 8 + len(MAGIC)] = 3  # the chunk's own version byte: 3.0
    end = first.offset + first.length - 4
    struct.pack_into("<I", data, end, zlib.crc32(data[first.offset:end]))
    with pytest.raises(BitstreamError, match="chunk 0 .* is not a 1.x or 2.x file"):
        DnvReader(bytes(data)).chunk_bytes(0)


def test_the_decode_budget_adds_up_the_chunks_a_range_needs():
    reader = DnvReader(three_chunks())
    one = DecodedFile.cost_of(DnvReader(ONE))
    whole = DecodedFile.cost_of(reader)
    assert whole.work == 3 * one.work and whole.frames == 144
    assert whole.peak_bytes == one.peak_bytes + 3 * RECORD_SIZE  # a chunk at a time
    assert DecodedFile.cost_of(reader, start=40, stop=50).frames == 10
    with pytest.raises(BudgetError, match="multiply-accumulates"):
        DecodedFile(reader, device="cpu", limits=Limits(work=2 * one.work))
    DecodedFile(reader, device="cpu", limits=Limits(work=2 * one.work), start=0, stop=96)


# ----------------------------------------------------------------------------- the chunk rule


def test_the_chunk_rule_cuts_only_where_it_must():
    assert chunk_length(RateRequest(180, 320, 48, 0.05)) == 48  # the embedded clip: one chunk
    assert chunk_length(RateRequest(180, 320, 1800, 0.05)) == MAX_CHUNK_FRAMES  # time
    assert chunk_length(RateRequest(1080, 1920, 1800, 0.05)) == (1 << 30) // (3 * 1080 * 1920)  # memory
    assert chunk_length(RateRequest(180, 320, 48, 0.05), forced=20) == 20
    shortest = min_frames_for(RateRequest(180, 320, 0, 0.01))
    assert chunk_length(RateRequest(180, 320, 5000, 0.01)) >= shortest > 1  # rate: never below the floor
    assert chunk_bounds(48, 20) == [(0, 16), (16, 32), (32, 48)]
    assert chunk_bounds(10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert chunk_bounds(7, 100) == [(0, 7)]


# ----------------------------------------------------------------------------- encoding


# 150 epochs at 5e-3: each 2-frame chunk's network learns more than the clip's mean frame (the
# earlier 20 epochs at 2e-3 and 3 bpp gave 14.9 dB, 8 dB under it). About 35 s.
FAST = ["--bpp", "8", "--epochs", "150", "--lr", "5e-3", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def source(tiny_clip, tmp_path_factory):
    """The 6-frame 96x64 clip as lossless PNGs (the CLI reads exactly these frames)."""
    path = tmp_path_factory.mktemp("src") / "%03d.png"
    with open_writer(path, 96, 64, tiny_clip.fps) as writer:
        for frame in tiny_clip.frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def chunked(source, tmp_path_factory) -> tuple[Path, dict]:
    """The clip in 3 chunks of 2 frames through the CLI."""
    folder = tmp_path_factory.mktemp("chunked")
    out, stats = folder / "three.dnv", folder / "three.json"
    assert main(["encode", str(source), "-o", str(out), "--chunk", "2", "--json", str(stats),
                 *FAST]) == 0
    return out, json.loads(stats.read_text())


def test_three_chunks_through_the_cli(chunked, tiny_clip, tmp_path, capsys):
    out, stats = chunked
    assert [c["frames"] for c in stats["chunks"]] == [[0, 2], [2, 4], [4, 6]]
    assert stats["bytes"] == out.stat().st_size
    assert 0.95 <= stats["bpp"] / 8 <= 1  # the whole file lands on the target, from below
    assert main(["decode", str(out), "-o", str(tmp_path / "back.y4m"), "-q"]) == 0
    back = read_video(tmp_path / "back.y4m")
    assert back.frames.shape == tiny_clip.frames.shape and back.fps == tiny_clip.fps
    mse = np.mean((back.frames.astype(float) - tiny_clip.frames) ** 2)
    # 23.68 dB total here (three 17k-parameter networks, 300 steps each); the clip's mean frame
    # scores 22.78 dB, flat grey 11.4. Chunks of 2 frames are the hard case: a decoder showing
    # the mean frame, or one that learned nothing, fails this floor.
    assert 10 * np.log10(255**2 / mse) > mean_frame_floor(tiny_clip.frames, 0.5)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 chunks" in text and "4..5" in text and " dB" in text


def test_info_keeps_one_chunks_tensor_details_at_most(chunked, capsys):
    """Every chunk is read and checked, but only the chunk asked for with --chunk keeps its
    tensors' details (all of them, for a file of many chunks, held 571 MB for 15.7 MB)."""
    out, _ = chunked
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert len(desc["chunks"]) == 3 and "chunk" not in desc
    assert all("tensor_details" not in s and s["length"] > 0
               for c in desc["chunks"] for s in c["sections"])
    assert main(["info", str(out), "--json", "--chunk", "2"]) == 0
    desc = json.loads(capsys.readouterr().out)
    detail = desc["chunk"]
    assert detail["index"] == 2 and detail["header"] == desc["chunks"][2]["header"]
    names = [t["name"] for s in detail["sections"] for t in s.get("tensor_details", [])]
    assert names[0] == "stem.weight" and "content embeddings" in names
    assert main(["info", str(out), "--chunk", "1"]) == 0
    text = capsys.readouterr().out
    assert "  chunk 1:" in text and "stem.weight" in text
    assert main(["info", str(out), "--chunk", "3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"dnerv: error: --chunk 3: '{out}' has 3 chunks (0..2)"


def test_info_refuses_to_read_past_the_work_limit(chunked, capsys):
    """Reading every chunk's tensors is priced from the headers (a chunk, each value
    entropy-decoded, one entropy model a tensor) and refused past --max-work before any of them
    is read; the price is enough to read a file as the encoder writes it."""
    out, _ = chunked
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["decode_cost"]
    reading = cost["reading_work_macs"]
    heads = [DnvReader(out.read_bytes()).chunk_head(k) for k in range(3)]
    assert reading == (3 * CHUNK_MACS + VALUE_MACS * sum(sum(symbol_counts(h).values())
                                                         for h in heads)
                       + SEGMENT_MACS * sum(len(s) for h in heads
                                            for s in tensor_shapes(h).values()))
    assert reading < cost["work_macs"]  # decoding reads them too, and renders
    assert main(["info", str(out), "--max-work", str(reading)]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--max-work", str(reading - 1)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("dnerv: error: reading the file's tensors needs ")
    assert captured.err.rstrip().endswith("raise it with --max-work)")


def test_a_range_decodes_only_the_chunks_it_needs(chunked, tmp_path):
    out, _ = chunked
    data = bytearray(out.read_bytes())
    last = DnvReader(bytes(data)).chunks[2]
    data[last.offset + last.length // 2] ^= 0xFF  # damage the last chunk only
    damaged = tmp_path / "damaged.dnv"
    damaged.write_bytes(bytes(data))
    assert main(["decode", str(damaged), "-o", str(tmp_path / "a.y4m"), "--frames", "1:4",
                 "-q"]) == 0
    assert read_video(tmp_path / "a.y4m").frame_count == 3
    assert main(["decode", str(damaged), "-o", str(tmp_path / "b.y4m"), "-q"]) == 2
    assert not (tmp_path / "b.y4m").exists()
    whole = DecodedFile(DnvReader(out.read_bytes()), device="cpu")
    part = DecodedFile(DnvReader(out.read_bytes()), device="cpu", start=1, stop=4)
    assert np.array_equal(np.stack(list(whole.frames()))[1:4], np.stack(list(part.frames())))


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is an optional extra (pip install 'dnerv-codec[ray]')")


# The parallel and resumed encodes are checked against a cheap serial one (3 epochs, one
# torch thread): their point is the bytes, not the quality.
QUICK = ["--bpp", "3", "--epochs", "3", "--lr", "2e-3", "--device", "cpu", "--chunk", "2",
         "--threads", "1"]


@pytest.fixture(scope="module")
def quick(tiny_clip) -> bytes:
    return encode(tiny_clip, EncodeOptions(bpp=3.0, epochs=3, lr=2e-3, device="cpu", chunk=2,
                                           threads=1)).data


@pytest.fixture(scope="module")
def quick_warm(tiny_clip) -> bytes:
    return encode(tiny_clip, EncodeOptions(bpp=3.0, epochs=3, lr=2e-3, device="cpu", chunk=2,
                                           threads=1, warm_start=True)).data


def test_a_warm_chunk_starts_where_the_previous_chunk_ended(tiny_clip):
    """With --warm-start chunk 2 trains from chunk 1's trained network: its first epoch already
    scores far above a cold start's first epoch. Chunk 1 is the same either way, and without
    it (the default) every chunk starts from its seeded weights."""
    seen, stats = {}, {}
    for warm in (True, False):
        events = []
        stats[warm] = encode(tiny_clip, EncodeOptions(bpp=3.0, epochs=30, device="cpu",
                                                      chunk=3, threads=1, warm_start=warm),
                             progress=events.append).stats
        seen[warm] = [e.psnr for e in events if e.stage == "train"]
    assert len(seen[True]) == len(seen[False]) == 60  # 30 epochs for each of 2 chunks
    assert seen[True][:30] == seen[False][:30]  # chunk 1 does not depend on the choice
    # chunk 2's first epoch, warm against from scratch (14.7 and 11.9 dB when written), and its
    # last (Muon's slow first steps make the cold chunk's 90 steps learn little)
    assert seen[True][30] > seen[False][30] + 2
    assert seen[True][-1] > seen[False][-1] + 2
    assert (stats[True]["warm_start"], stats[False]["warm_start"]) == (True, False)


def _kill_the_first_worker_seen_training(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first Ray worker process whose title says it runs train_chunk."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::train_chunk"):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


@needs_ray
def test_two_ray_workers_one_of_them_killed_write_the_serial_file(quick, source, tmp_path):
    """--workers 2 on a local Ray instance (num_cpus=2): the same bytes as the serial encode,
    even though one worker is SIGKILLed mid-chunk (Ray reruns its task)."""
    killed, stop = [], threading.Event()
    watcher = threading.Thread(target=_kill_the_first_worker_seen_training,
                               args=(killed, stop), daemon=True)
    watcher.start()
    try:
        assert main(["encode", str(source), "-o", str(tmp_path / "p.dnv"), "--workers", "2",
                     "--json", str(tmp_path / "p.json"), "-q", *QUICK]) == 0
    finally:
        stop.set()
    assert killed, "no worker was seen training"
    assert (tmp_path / "p.dnv").read_bytes() == quick
    stats = json.loads((tmp_path / "p.json").read_text())
    assert (stats["workers"], stats["threads"]) == (2, 1)


def test_chunks_too_short_for_the_rate_are_refused_with_the_length_that_works(source, tmp_path,
                                                                            capsys):
    assert main(["encode", str(source), "-o", str(tmp_path / "o.dnv"), "--chunk", "2",
                 "--bpp", "1.5", "--model", "dnerv", "-q"]) == 2
    err = capsys.readouterr().err
    assert "chunks of 2 frames are too short for this rate: use --chunk 3 or more" in err, err


def test_workers_without_ray_say_how_to_install_it(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["encode", str(source), "-o", str(tmp_path / "o.dnv"), "--workers", "2",
                 *FAST]) == 2
    assert "pip install 'dnerv-codec[ray]'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("start", ["cold", "warm"])
def test_sigkill_then_resume_redoes_only_the_chunk_in_flight(start, quick, quick_warm, source,
                                                             tmp_path, capsys):
    """Warm: chunk 2 resumes its own checkpoint, chunk 3 starts from chunk 2's resumed end."""
    ck = tmp_path / "run.ckpt"
    argv = ["encode", str(source), "-o", str(tmp_path / "out.dnv"), "--checkpoint", str(ck),
            *QUICK, *(["--warm-start"] if start == "warm" else [])]
    proc = subprocess.Popen([sys.executable, "-m", "dnerv_codec", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = tmp_path / "run.chunk0001.ckpt"
    deadline = time.monotonic() + 120
    while not second.exists():  # chunk 1 is done, chunk 2 has saved its first epoch
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (tmp_path / "out.dnv").exists()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming chunk 1/3 from" in err and "at epoch 4" in err  # finished: not redone
    assert quick_warm != quick  # the warm chunks did start from their predecessors
    assert (tmp_path / "out.dnv").read_bytes() == (quick_warm if start == "warm" else quick)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dnv"]  # checkpoints removed


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, dnerv_codec.codec, dnerv_codec.cli; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def chunked_seed(small_dnv) -> bytes:
    from fuzz.fuzz_bitstream import chunked_seed
    return chunked_seed(small_dnv)


FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_the_chunked_seed_decodes(chunked_seed):
    from fuzz.fuzz_bitstream import check_file
    assert check_file(chunked_seed) == "decoded"


@FUZZ
@given(data=st.data())
def test_chunked_files_with_damage_behind_valid_crcs(chunked_seed, data):
    """Edits anywhere, every CRC recomputed (a CHNK's after its inner file's): decoded or one
    line, never a crash, a hang or a huge allocation."""
    from fuzz.fuzz_bitstream import check_file, refresh_crcs
    out = bytearray(chunked_seed)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(out) - 1))
        out[at] = data.draw(st.integers(0, 255))
    check_file(refresh_crcs(bytes(out)))


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_chunked_files_through_the_cli_to_every_output(chunked_seed, data, tmp_path_factory):
    """Two chunks, damaged behind valid CRCs, through `dnerv decode` to each kind of output at
    --fps-scale 1 to 3: whole, or refused in one line (a PNG sequence keeping the frames it
    finished before the damaged chunk, each whole)."""
    assert damaged_through_the_cli(chunked_seed, data, tmp_path_factory) in ("decoded", "refused")


@FUZZ
@given(data=st.data())
def test_chunked_index_fields_take_hostile_values(chunked_seed, data):
    from fuzz.fuzz_bitstream import check_file, refresh_crcs
    out = bytearray(chunked_seed)
    k, field = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 3))
    at = INDEX_AT + 8 + k * RECORD_SIZE + (0, 4, 8, 16)[field]
    value = data.draw(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40,
                                       len(out), len(out) - 1]))
    size = 4 if field < 2 else 8
    out[at:at + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    assert check_file(refresh_crcs(bytes(out))) in ("decoded", "refused")
