"""Format 2.0's tensor coding and entropy models, golden bytes, and format 1.0 compatibility."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from dnerv_codec.format import entropy
from dnerv_codec.format.architecture import symbol_counts
from dnerv_codec.format.chunks import DnvReader
from dnerv_codec.format.container import MAGIC, DnvFile, pack, unpack
from dnerv_codec.codec import DecodedVideo
from dnerv_codec.format.entropy import ByteReader, Histogram
from dnerv_codec.format.entropy_models import GEOMETRIC, HISTOGRAM, Model, best_model, geometric_counts
from dnerv_codec.errors import BitstreamError
from dnerv_codec.format.tensorcode import StepTensor, pack_section, read_section

DATA = Path(__file__).parent / "data"


# ----------------------------------------------------------------------------- entropy models


def test_geometric_counts_are_canonical_symmetric_and_decreasing():
    counts = geometric_counts(-20, 41, 52000)
    assert counts.dtype == np.uint32 and counts.max() == 4095 and counts.min() >= 1
    assert np.array_equal(counts, counts[::-1])  # centred on 0
    right = counts[20:]
    assert np.all(np.diff(right.astype(int)) <= 0) and right[0] == 4095


def test_geometric_counts_are_pinned():
    """Integer arithmetic only: these numbers are the same on every machine, and a decoder
    anywhere rebuilds exactly these tables from (lo, n, ratio)."""
    assert geometric_counts(-3, 7, 32768).tolist() == [512, 1024, 2048, 4095, 2048, 1024, 512]
    assert geometric_counts(0, 5, 65535).tolist() == [4095, 4095, 4095, 4095, 4095]
    assert geometric_counts(-2, 6, 1).tolist() == [1, 1, 4095, 1, 1, 1]
    assert hashlib.sha256(geometric_counts(-300, 1000, 60000).tobytes()).hexdigest() == \
        "b6487ba99f80c48873ce59f668e7a6d5eeabad7d89147df551b4619abfb90d1f"


def test_the_cheaper_model_is_chosen():
    rng = np.random.default_rng(0)
    laplace = np.round(rng.laplace(0, 3, 5000)).astype(np.int64)
    model, bits = best_model(laplace)
    _, counts = np.unique(laplace, return_counts=True)
    empirical = -np.sum(counts * np.log2(counts / laplace.size))  # what a stored histogram pays
    stored = 8 * len(Histogram.from_symbols(laplace).to_bytes())  # 46 counts in the file
    assert model.kind == GEOMETRIC and bits < empirical + stored  # 3 numbers instead
    assert bits < 1.01 * empirical + 100
    bimodal = np.concatenate([np.full(2000, -40), np.full(2000, 40), [0]])
    model, bits = best_model(bimodal)
    assert model.kind == HISTOGRAM and bits / bimodal.size < 1.2  # 81 counts stored


@pytest.mark.parametrize("model", [
    Model(HISTOGRAM, hist=Histogram(-2, np.array([3, 0, 7, 1], np.uint32))),
    Model(GEOMETRIC, lo=-5, n=9, ratio=40000),
])
def test_a_model_reads_back_as_written(model):
    data = model.to_bytes()
    r = ByteReader(data)
    back = Model.from_reader(r)
    assert r.remaining == 0
    assert back.kind == model.kind
    assert np.array_equal(back.histogram().counts, model.histogram().counts)


@pytest.mark.parametrize("data, words", [
    (bytes([GEOMETRIC, 0, 5, 0, 0]), "ratio 0 outside"),
    (bytes([GEOMETRIC, 0, 0, 1, 0]), "over 0 symbols"),
    (bytes([GEOMETRIC, 0, 0x80, 0x80, 0x10, 1, 0]), "over 262144 symbols"),
    (bytes([GEOMETRIC, 0x80, 0x40, 3, 1, 0]), "beyond \\+-4096"),
    (bytes([7]), "unknown entropy model 7"),
])
def test_a_bad_model_is_refused(data, words):
    with pytest.raises(BitstreamError, match=words):
        Model.from_reader(ByteReader(data))


# ----------------------------------------------------------------------------- tensors


def embeddings(frames=12, channels=4, seed=0):
    """Integer embeddings that drift slowly from frame to frame, as trained ones do."""
    rng = np.random.default_rng(seed)
    spread = 3.0 ** np.arange(channels)[None, :, None, None] / 3  # channels move differently
    start = rng.normal(0, 30, (1, channels, 3, 4))
    steps = rng.normal(0, 1, (frames, channels, 3, 4)) * spread
    return np.round(start + np.cumsum(steps, 0)).astype(np.int32)


def roundtrip(tensors):
    data = pack_section(tensors)
    r = ByteReader(data)
    out, stats = read_section(r, sum(t.q.size for t in tensors), 1 << 27)
    assert r.remaining == 0
    return data, out, stats


def test_embeddings_are_coded_as_temporal_residuals_per_channel():
    q = embeddings()
    t = StepTensor(q.shape, 1, np.full(4, 0.1, np.float32), q, temporal=True, channel_axis=1)
    data, (back,), _ = roundtrip([t])
    assert np.array_equal(back.q, q)
    assert back.coding == {"prediction": "temporal", "model_axis": 1}
    plain = StepTensor(q.shape, 1, t.step, q)  # the same values, without the coding options
    assert len(data) < 0.75 * len(pack_section([plain]))
    assert np.array_equal(back.dequantize(), q.astype(np.float32) * np.float32(0.1))


def test_weights_round_trip_and_cost_about_their_entropy():
    rng = np.random.default_rng(1)
    q = np.round(rng.laplace(0, 5, (32, 16, 3, 3))).astype(np.int32)
    t = StepTensor(q.shape, 0, np.linspace(0.01, 0.02, 32).astype(np.float32), q, channel_axis=0)
    data, (back,), stats = roundtrip([t])
    assert np.array_equal(back.q, q) and np.allclose(back.step, t.step)
    entropy_bits = -np.sum(np.log2(np.unique(q, return_counts=True)[1] / q.size)
                           * np.unique(q, return_counts=True)[1])
    assert 8 * len(data) < 1.03 * entropy_bits + 400 + 32 * 32  # and 32 float32 steps
    assert stats["models"] == {"geometric": 1} or stats["models"].get("geometric", 0) >= 1


def test_constant_and_single_value_tensors_cost_no_words():
    zeros = StepTensor((5, 7), None, np.array([1.0], np.float32), np.zeros((5, 7), np.int32))
    one = StepTensor((1,), None, np.array([0.5], np.float32), np.array([3], np.int32))
    data, out, stats = roundtrip([zeros, one])
    assert stats["payload_bytes"] == 0 and len(data) < 60
    assert np.array_equal(out[0].q, zeros.q) and out[1].q.tolist() == [3]


def test_a_section_holding_more_than_the_header_allows_is_refused_before_decoding():
    q = embeddings(frames=40)
    data = pack_section([StepTensor(q.shape, None, np.array([1.0], np.float32), q, temporal=True)])
    with pytest.raises(BitstreamError, match="holds 1920 values but the header implies at most 100 more"):
        read_section(ByteReader(data), 100, 1 << 27)


def test_every_truncation_of_a_section_is_refused():
    q = embeddings(frames=3, channels=2)
    data = pack_section([StepTensor(q.shape, 1, np.full(2, 0.5, np.float32), q, temporal=True,
                                    channel_axis=1)])
    for end in range(len(data)):
        r = ByteReader(data, 0, end)
        try:
            read_section(r, q.size, 1 << 27)
        except BitstreamError:
            continue
        assert r.remaining == 0 and False, f"a section cut at {end} of {len(data)} was accepted"


# ----------------------------------------------------------------------------- whole files


def golden_2_0() -> bytes:
    """A fixed format 2.0 file, made without training (its bytes must never change)."""
    header = {"width": 40, "height": 20, "padded_width": 48, "padded_height": 24,
              "frame_count": 3, "fps_num": 30000, "fps_den": 1001, "content_strides": (2, 2),
              "kernels": (1, 3), "channels": (2, 1), "embed_channels": 2, "stem_channels": 3,
              "diff_stream": 0, "diff_channels": 0, "diff_upscale": 0, "ccu_block": 0}
    rng = np.random.default_rng(7)
    shapes = [(3, 2, 1, 1), (3,), (8, 3, 1, 1), (8,), (4, 2, 3, 3), (4,), (3, 1, 3, 3), (3,)]
    decoder = [StepTensor(s, None, np.array([0.05], np.float32),
                          np.round(rng.laplace(0, 4, s)).astype(np.int32)) for s in shapes]
    q = embeddings(frames=3, channels=2, seed=3)
    content = StepTensor((3, 2, 6, 12), 1, np.array([0.1, 0.2], np.float32),
                         np.repeat(np.repeat(q[:, :, :, :], 2, 2), 3, 3)[:, :, :6, :12],
                         temporal=True, channel_axis=1)
    return pack(DnvFile(header, {"decoder": decoder, "content": [content]}))




def test_golden_bytes_of_format_2_0():
    """The writer's bytes for a fixed input are pinned: a change of format or of any encoder
    choice shows here (then bump the format version if old readers would misread it)."""
    data = golden_2_0()
    assert data[len(MAGIC):len(MAGIC) + 2] == bytes([2, 0])
    assert hashlib.sha256(data).hexdigest() == \
        "37401e0677b8336d47b0727360b8330bdba575608bdb33d0ab6222a22277a175", len(data)
    f = unpack(data, symbol_counts)
    assert f.header["fps_num"] == 30000 and len(f.groups["decoder"]) == 8


def test_a_format_1_0_file_still_decodes():
    """tests/data/golden-1.0.dnv was written by version 1 (4 frames of 48x48, two epochs):
    its integers are pinned, and it renders the frames version 1 rendered (up to one level of
    float rounding across machines and thread counts)."""
    data = (DATA / "golden-1.0.dnv").read_bytes()
    assert data[len(MAGIC):len(MAGIC) + 2] == bytes([1, 0])
    f = unpack(data, symbol_counts)
    h = hashlib.sha256()
    for group in ("decoder", "content", "diff"):
        for t in f.groups[group]:
            h.update(np.ascontiguousarray(t.q, np.int32).tobytes())
    assert h.hexdigest() == "173b885f366452abb29a01658c686f1320305dc5e66576f265e378922ffd224f"
    frames = np.stack(list(DecodedVideo(data, device="cpu").frames()))
    expected = np.load(DATA / "golden-1.0-frames.npy")
    assert frames.shape == expected.shape == (4, 48, 48, 3)
    assert np.abs(frames.astype(int) - expected).max() <= 1


def test_an_unknown_major_is_refused():
    data = bytearray(golden_2_0())
    data[len(MAGIC)] = 4
    with pytest.raises(BitstreamError, match=r"format version 4\.0 \(this dnerv reads 1\.x and 2\.x\)"):
        unpack(bytes(data))  # the reader of single files; chunks.DnvReader also reads 3.x
    with pytest.raises(BitstreamError, match=r"4\.0 \(this dnerv reads 1\.x, 2\.x and 3\.x\)"):
        DnvReader(bytes(data))


def test_a_flood_of_geometric_models_is_refused_before_its_tables_are_built():
    """Each geometric model's table is built (up to 4097 integer steps): a section may hold at
    most MAX_GEOMETRIC_MODELS of them, counted as they are read."""
    import struct
    import time
    from dnerv_codec.format.entropy_models import MAX_GEOMETRIC_MODELS
    n = MAX_GEOMETRIC_MODELS + 1
    record = struct.pack("<BIb", 1, n, -1) + struct.pack("<f", 1.0) + struct.pack("<Bb", 0, 0)
    one = Model(GEOMETRIC, lo=-4096, n=8193, ratio=65535)
    words = entropy.encode_with(np.array([4096]), one.histogram())
    segment = one.to_bytes() + struct.pack("<I", len(words) // 4) + words
    data = struct.pack("<I", 1) + record + segment * n
    t = time.perf_counter()
    with pytest.raises(BitstreamError, match=f"more than {MAX_GEOMETRIC_MODELS} geometric models"):
        read_section(ByteReader(data), n, 1 << 27)
    assert time.perf_counter() - t < 5


def test_decoding_is_bit_identical_at_one_and_two_threads(tmp_path):
    """A trained file (the embedded clip at 0.1 bpp, learned steps) decoded by `dnerv decode`
    with 1 and with 2 threads gives the same bytes. Before frames were rendered one per
    single-threaded worker, oneDNN's thread-dependent reductions made about 6 values in a
    million differ by one level on exactly this file."""
    import os
    import subprocess
    import sys

    outputs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.y4m"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-m", "dnerv_codec", "decode",
                        str(DATA / "bunny-0.1bpp-learned.dnv"), "-o", str(out), "-q"],
                       env=env, check=True, capture_output=True)
        outputs.append(out.read_bytes())
    assert len(outputs[0]) > 48 * 320 * 180 * 1.5
    assert hashlib.sha256(outputs[0]).digest() == hashlib.sha256(outputs[1]).digest()


@pytest.mark.parametrize("content,diff", [(3, 1), (1, 5)])
def test_files_with_other_embedding_channels_decode(content, diff):
    """The header carries both embeddings' channels; the reader builds what it says."""
    from dnerv_codec.format.architecture import make_config
    from forge import forged

    data = forged(make_config(48, 72, 4, True, content, diff), 72, 48, 3)
    header = unpack(data, symbol_counts).header
    assert (header["embed_channels"], header["diff_channels"]) == (content, diff)
    frames = np.stack(list(DecodedVideo(data, device="cpu").frames()))
    assert frames.shape == (3, 48, 72, 3)
