"""Entropy coding: round trips, rate close to the empirical entropy, and garbage-proof decoding."""

import numpy as np
import pytest

from dnerv_codec.format.entropy import (
    MAX_ALPHABET,
    MAX_STORED_COUNT,
    ByteReader,
    Histogram,
    decode,
    encode,
    unzigzag,
    write_varint,
    zigzag,
)
from dnerv_codec.errors import BitstreamError

LIMIT = 1 << 27


def _round_trip(symbols) -> bytes:
    symbols = np.asarray(symbols)
    hist, payload = encode(symbols)
    reread = Histogram.from_reader(ByteReader(hist.to_bytes()))
    out = decode(reread, payload, symbols.size, max_count=LIMIT)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, symbols.reshape(-1))
    return payload


def _entropy_bits(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


@pytest.mark.parametrize("scale", [0.3, 3.0, 40.0])
def test_laplacian_round_trip_close_to_entropy(scale):
    symbols = np.round(np.random.default_rng(7).laplace(0, scale, 100_000)).astype(np.int64)
    payload = _round_trip(symbols)
    assert 8 * len(payload) <= 1.02 * _entropy_bits(symbols) + 64


def test_skewed_binary_close_to_entropy():
    symbols = (np.random.default_rng(3).random(200_000) < 0.01).astype(np.int32)
    payload = _round_trip(symbols)
    assert 8 * len(payload) <= 1.03 * _entropy_bits(symbols) + 64


def test_constant_costs_no_words():
    assert _round_trip(np.full((7, 9), -3)) == b""


def test_empty_round_trip():
    hist, payload = encode(np.zeros(0, np.int32))
    assert (hist.lo, hist.n, payload) == (0, 0, b"")
    assert decode(hist, payload, 0, max_count=LIMIT).shape == (0,)


def test_single_symbol():
    assert _round_trip(np.array([12345])) == b""


def test_wide_range_and_dtypes():
    symbols = np.random.default_rng(5).integers(-40000, 40001, 50_000)
    symbols[:2] = [-40000, 40000]
    _round_trip(symbols)
    _round_trip(symbols.astype(np.int32).reshape(100, 500))
    _round_trip(np.array([-128, 0, 127, 5], np.int8))


def test_histogram_rescale_keeps_rare_symbols():
    symbols = np.concatenate([np.zeros(1_000_000, np.int64), [1], np.full(10, 3)])
    hist = Histogram.from_symbols(symbols)
    assert hist.lo == 0
    assert hist.counts.dtype == np.uint32
    assert hist.counts.tolist() == [MAX_STORED_COUNT, 1, 0, 1]
    _round_trip(symbols)


def test_histogram_bytes():
    hist = Histogram(-2, np.array([1, 0, 300], np.uint32))
    assert hist.to_bytes() == bytes([3, 3, 1, 0, 0xAC, 0x02])
    again = Histogram.from_reader(ByteReader(hist.to_bytes()))
    assert again.lo == -2 and again.counts.tolist() == [1, 0, 300]


def test_varint_and_zigzag():
    assert [zigzag(v) for v in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]
    for v in (0, 1, -1, 63, -64, 1 << 30, -(1 << 31)):
        assert unzigzag(zigzag(v)) == v
    assert write_varint(0) == b"\x00"
    assert write_varint(127) == b"\x7f"
    assert write_varint(128) == b"\x80\x01"
    assert write_varint((1 << 32) - 1) == b"\xff\xff\xff\xff\x0f"
    with pytest.raises(ValueError):
        write_varint(1 << 32)
    assert ByteReader(b"\xff\xff\xff\xff\x0f").varint("v") == (1 << 32) - 1


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x80\x00", "non-canonical"),
        (b"\xff\xff\xff\xff\x1f", "does not fit 32 bits"),
        (b"\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
        (b"\x80", "needs 1 bytes but 0 remain"),
    ],
)
def test_bad_varints(raw, message):
    with pytest.raises(BitstreamError, match=message):
        ByteReader(raw).varint("v")


def test_histogram_bounds_checked_before_allocation():
    too_many = write_varint(0) + write_varint(MAX_ALPHABET + 1)
    with pytest.raises(BitstreamError, match="limit"):
        Histogram.from_reader(ByteReader(too_many))
    claims_more_than_present = write_varint(0) + write_varint(1000) + b"\x01" * 10
    with pytest.raises(BitstreamError, match="1000 histogram counts needs 1000 bytes"):
        Histogram.from_reader(ByteReader(claims_more_than_present))
    beyond_int32 = write_varint(zigzag((1 << 31) - 1)) + write_varint(2) + b"\x01\x01"
    with pytest.raises(BitstreamError, match="int32"):
        Histogram.from_reader(ByteReader(beyond_int32))


def test_from_symbols_refuses_bad_input():
    with pytest.raises(ValueError):
        Histogram.from_symbols(np.array([0.5, 1.0]))
    with pytest.raises(ValueError):
        Histogram.from_symbols(np.array([0, MAX_ALPHABET]))


def test_decode_checks_count_before_decoding():
    hist, payload = encode(np.arange(10))
    with pytest.raises(BitstreamError, match="limit 5"):
        decode(hist, payload, 10, max_count=5)
    with pytest.raises(BitstreamError):
        decode(hist, payload, -1, max_count=5)


def test_decode_refuses_inconsistent_payloads():
    hist, payload = encode(np.arange(10))
    with pytest.raises(BitstreamError, match="whole words"):
        decode(hist, payload[:-1], 10, max_count=LIMIT)
    with pytest.raises(BitstreamError, match="left over"):
        decode(hist, payload, 3, max_count=LIMIT)
    with pytest.raises(BitstreamError, match="none are needed"):
        decode(Histogram(4, np.array([1], np.uint32)), payload, 3, max_count=LIMIT)
    with pytest.raises(BitstreamError, match="empty histogram"):
        decode(Histogram(0, np.zeros(3, np.uint32)), payload, 3, max_count=LIMIT)


def test_garbage_never_crashes():
    """Random histograms and words: BitstreamError or `count` in-range symbols, nothing else."""
    rng = np.random.default_rng(11)
    for _ in range(3000):
        n = int(rng.integers(1, 40))
        hist = Histogram(int(rng.integers(-5, 5)), rng.integers(0, 4, n).astype(np.uint32))
        words = rng.integers(0, 1 << 32, int(rng.integers(0, 6)), dtype=np.uint64).astype("<u4")
        count = int(rng.integers(0, 50))
        try:
            out = decode(hist, words.tobytes(), count, max_count=LIMIT)
        except BitstreamError as exc:
            assert "\n" not in str(exc)
            continue
        assert out.shape == (count,)
        assert count == 0 or hist.lo <= out.min() <= out.max() < hist.lo + n


def test_real_streams_never_look_exhausted_to_the_chunked_decoder():
    """A final run of the lowest symbol (free for the coder: it decodes from an empty coder)
    and a 1000:1 skew over many chunks must decode, not trip the stuck-coder check."""
    rng = np.random.default_rng(4)
    final_run = np.concatenate([[3], rng.integers(-3, 4, 5000), np.full(300_000, -3)])
    skewed = (rng.random(400_000) < 0.001).astype(np.int64)
    skewed[[0, -1]] = 1
    for symbols in (final_run, skewed, 1 - skewed):
        _round_trip(symbols)


def test_ans_words_that_run_out_are_refused_at_once():
    hist = Histogram(0, np.array([4095, 1], np.uint32))
    with pytest.raises(BitstreamError, match="runs out before the last symbol"):
        decode(hist, np.array([1], "<u4").tobytes(), LIMIT, max_count=LIMIT)  # < 0.1 s
    with pytest.raises(BitstreamError, match="no ANS words for 10 symbols"):
        decode(hist, b"", 10, max_count=LIMIT)


@pytest.mark.parametrize("counts, message", [
    ([0, 5, 1], "does not start and end"), ([1, 5, 0], "does not start and end"),
    ([1, MAX_STORED_COUNT + 1], f"count {MAX_STORED_COUNT + 1} exceeds"),
])
def test_histograms_no_writer_stores_are_refused(counts, message):
    raw = Histogram(0, np.array(counts, np.uint32)).to_bytes()
    with pytest.raises(BitstreamError, match=message):
        Histogram.from_reader(ByteReader(raw))


def test_a_tensor_packs_to_the_same_bytes_from_the_cache_and_afresh():
    """The rate search packs the same tensors again and again; the cache hands back the bytes a
    fresh pack makes, and a tensor differing in one value, its step or its options is not it."""
    from dnerv_codec.format import tensorcode
    from dnerv_codec.format.tensorcode import StepTensor

    rng = np.random.default_rng(0)
    # four equal frames: temporal prediction, where allowed, codes them as zeros
    q = np.repeat(rng.integers(-20, 21, (1, 3, 5, 5)), 4, axis=0).astype(np.int32)
    t = StepTensor((4, 3, 5, 5), 0, np.full(4, 0.01, np.float32), q, channel_axis=0)
    first = tensorcode.pack_tensor(t)
    assert tensorcode.pack_tensor(t) == first == tensorcode._pack_tensor(t)
    other = q.copy()
    other[0, 0, 0, 0] += 1
    variants = [StepTensor(t.shape, 0, t.step, other, channel_axis=0),
                StepTensor(t.shape, 0, np.full(4, 0.02, np.float32), q, channel_axis=0),
                StepTensor(t.shape, 0, t.step, q, temporal=True, channel_axis=0)]
    for v in variants:
        assert tensorcode.pack_tensor(v) == tensorcode._pack_tensor(v) != first


def test_the_vectorised_varints_are_the_varints_one_by_one():
    """Histograms write their counts with write_varints (for speed): the same bytes as
    write_varint on each, at every length's edges, and the same refusal out of range."""
    from dnerv_codec.format.entropy import write_varint, write_varints
    edges = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**32 - 1]
    values = np.array(edges + list(np.random.default_rng(3).integers(0, 2**32, 500)))
    assert write_varints(values) == b"".join(write_varint(int(v)) for v in values)
    assert write_varints(np.zeros(0, np.uint32)) == b""
    for bad in ([-1], [2**32]):
        with pytest.raises(ValueError, match="outside 0..2\\*\\*32-1"):
            write_varints(np.array(bad))


def test_the_fitted_ratio_is_the_one_a_plain_search_over_the_candidates_finds():
    """_fit_ratio scores every candidate in one array operation up to _FIT_AT_ONCE symbols and
    a ratio at a time beyond: either way it picks what scoring each candidate alone picks (the
    encoder's files depend on it), on both sides of that bound."""
    import math

    from dnerv_codec.format import entropy_models as em

    def plain(symbols, lo, n):
        ks = np.abs(np.arange(lo, lo + n, dtype=np.float64))
        mags = float(np.abs(symbols).sum())
        scores = []
        for ratio in em._FIT_RATIOS:
            log_r = math.log2(ratio / (1 << em.RATIO_BITS))
            e = ks * log_r
            top = float(e.max())
            scores.append(symbols.size * (top + math.log2(float(np.exp2(e - top).sum())))
                          - mags * log_r)
        return em._FIT_RATIOS[int(np.argmin(scores))]

    rng = np.random.default_rng(7)
    sizes = set()
    for scale in (0.3, 2, 15, 60, 150, 400):
        for _ in range(20):
            s = np.round(rng.laplace(0, scale, int(rng.integers(1, 3000)))).astype(np.int64)
            lo, n = int(s.min()), int(s.max() - s.min() + 1)
            if n < 2 or max(abs(lo), abs(lo + n - 1)) > em.MAX_GEOMETRIC_REACH:
                continue
            sizes.add(n <= em._FIT_AT_ONCE)
            assert em._fit_ratio(s, lo, n) == plain(s, lo, n), (scale, lo, n)
    assert sizes == {True, False}
