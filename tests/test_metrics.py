"""Quality metrics: known values, the 100 dB cap, the YUV weighting, MS-SSIM at any size."""

import json
import math

import numpy as np
import pytest
import torch

from dnerv_codec import metrics
from dnerv_codec.metrics import (
    bpp,
    ms_ssim_db,
    ms_ssim_rgb,
    psnr_from_mse,
    psnr_rgb,
    psnr_yuv,
    quality_report,
)


def with_uniform_error(frames: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """frames clipped to [d, 255-d], and a copy off by exactly +d or -d in every value."""
    ref = np.clip(frames, d, 255 - d)
    signs = np.where(np.indices(ref.shape).sum(axis=0) % 2 == 0, 1, -1)
    return ref, (ref.astype(np.int16) + d * signs).astype(np.uint8)


def with_noise(frames: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-amplitude, amplitude + 1, frames.shape)
    return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """MS-SSIM on small tensors gains nothing from intra-op threads, and on a busy 2-core
    machine OpenMP barriers made it ~100x slower (1.3 s instead of 13 ms for two frames)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frames(default_clip) -> np.ndarray:
    return default_clip.frames[:3]


@pytest.fixture(scope="module")
def square(default_clip) -> np.ndarray:
    """Two 176x176 frames: the smallest cheap size at which MS-SSIM uses all 5 scales."""
    return np.ascontiguousarray(default_clip.frames[:2, :176, 72:248])


# --- PSNR ----------------------------------------------------------------------------------


def test_identical_videos_score_the_100_db_cap(frames):
    assert psnr_rgb(frames, frames) == {"mean": 100.0, "total": 100.0}
    assert psnr_yuv(frames, frames) == {"y": 100.0, "u": 100.0, "v": 100.0, "yuv": 100.0}


@pytest.mark.parametrize("d", [1, 3, 10])
def test_uniform_error_gives_the_textbook_psnr(frames, d):
    ref, dist = with_uniform_error(frames, d)
    expected = 20 * math.log10(255 / d)
    result = psnr_rgb(ref, dist)
    assert result["mean"] == pytest.approx(expected, abs=1e-6)
    assert result["total"] == pytest.approx(expected, abs=1e-6)


def test_mean_of_frames_and_total_mse_differ_as_defined(frames):
    ref1, dist1 = with_uniform_error(frames[:1], 1)
    ref4, dist4 = with_uniform_error(frames[1:2], 4)
    result = psnr_rgb(np.concatenate([ref1, ref4]), np.concatenate([dist1, dist4]))
    assert result["mean"] == pytest.approx((20 * math.log10(255) + 20 * math.log10(255 / 4)) / 2)
    assert result["total"] == pytest.approx(10 * math.log10(255 ** 2 / ((1 + 16) / 2)))


def test_a_grey_shift_is_all_luma(frames):
    # The same error on R, G and B changes Y by exactly that error and Cb, Cr not at all.
    ref = np.clip(frames, 0, 250)
    dist = ref + np.uint8(5)
    result = psnr_yuv(ref, dist)
    assert result["y"] == pytest.approx(20 * math.log10(255 / 5), abs=1e-6)
    assert result["u"] == result["v"] == 100.0


def test_yuv_is_the_6_1_1_weighted_average(frames):
    result = psnr_yuv(frames, with_noise(frames, 6))
    assert result["u"] != result["y"] != result["v"]
    assert result["yuv"] == pytest.approx((6 * result["y"] + result["u"] + result["v"]) / 8)


def test_yuv_uses_bt709_full_range(frames):
    # An error d on blue alone: dY = 0.0722 d, dCb = 0.9278 d / 1.8556, dCr = -0.0722 d / 1.5748.
    ref = np.clip(frames, 0, 235)
    dist = ref.copy()
    dist[..., 2] += 20
    result = psnr_yuv(ref, dist)
    for key, scale in (("y", 0.0722), ("u", 0.9278 / 1.8556), ("v", 0.0722 / 1.5748)):
        assert result[key] == pytest.approx(20 * math.log10(255 / (20 * scale)), abs=1e-6)


def test_shape_mismatch_is_refused(frames):
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_rgb(frames, frames[:2])
    with pytest.raises(ValueError, match="uint8"):
        psnr_yuv(frames, frames.astype(np.float32))


# --- MS-SSIM -------------------------------------------------------------------------------


def test_ms_ssim_of_identical_frames_is_1(square):
    assert ms_ssim_rgb(square, square) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_decreases_with_noise(square):
    scores = [ms_ssim_rgb(square, with_noise(square, a)) for a in (2, 8, 32)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0


@pytest.mark.parametrize("size", [(37, 65), (5, 7)])
def test_ms_ssim_works_on_small_frames(frames, size):
    small = np.ascontiguousarray(frames[:, :size[0], :size[1]])
    assert ms_ssim_rgb(small, small) == pytest.approx(1.0, abs=1e-6)
    noisy = [ms_ssim_rgb(small, with_noise(small, a)) for a in (4, 32)]
    assert 1.0 > noisy[0] > noisy[1] > 0


def test_fewer_scales_use_as_many_as_fit():
    assert [metrics._ms_ssim_scales(s) for s in (5, 11, 21, 37, 41, 81, 160, 161, 1080)] == \
        [1, 1, 2, 2, 3, 4, 4, 5, 5]


def test_reduced_loop_matches_pytorch_msssim_with_5_scales(square):
    x = metrics._to_nchw(square)
    y = metrics._to_nchw(with_noise(square, 8))
    expected = metrics.ms_ssim(x, y, data_range=255, size_average=False)
    actual = metrics._reduced_ms_ssim(x, y, list(metrics.MS_SSIM_WEIGHTS))
    torch.testing.assert_close(actual, expected)


def test_ms_ssim_chunks_do_not_change_the_result(frames, monkeypatch):
    small = np.ascontiguousarray(frames[:, :37, :65])
    dist = with_noise(small, 8)
    whole = ms_ssim_rgb(small, dist)
    monkeypatch.setattr(metrics, "_MS_SSIM_CHUNK_VALUES", 1)  # one frame per chunk
    assert ms_ssim_rgb(small, dist) == pytest.approx(whole, abs=1e-6)


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == 100.0


# --- bpp and the report --------------------------------------------------------------------


def test_bpp():
    assert bpp(1000, 320, 180, 48) == pytest.approx(8000 / (320 * 180 * 48))
    with pytest.raises(ValueError):
        bpp(1000, 0, 180, 48)


def test_quality_report_is_plain_json(square):
    report = quality_report(square, with_noise(square, 4))
    assert set(report) == {"psnr_rgb", "psnr_rgb_total", "psnr_y", "psnr_u", "psnr_v",
                           "psnr_yuv", "ms_ssim_rgb", "baselines"}
    baselines = report.pop("baselines")
    assert set(baselines) == {"flat_grey", "flat_colour", "mean_frame"}
    assert all(type(value) is float for value in [*report.values(), *baselines.values()])
    report["baselines"] = baselines
    assert json.loads(json.dumps(report)) == report


def test_trivial_baselines_are_the_psnr_of_the_trivial_decoders():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    b = metrics.trivial_baselines(frames)
    as_float = frames.astype(np.float64)
    expected = {
        "flat_grey": np.full_like(as_float, 128.0),
        "flat_colour": np.broadcast_to(as_float.reshape(-1, 3).mean(axis=0), frames.shape),
        "mean_frame": np.broadcast_to(as_float.mean(axis=0), frames.shape),
    }
    for name, guess in expected.items():  # un-rounded guesses: the baselines are exact
        assert b[name] == pytest.approx(psnr_from_mse(np.mean((as_float - guess) ** 2)), abs=1e-9)
    assert b["flat_grey"] < b["flat_colour"] < b["mean_frame"]
    # handed over a few frames at a time, the same figures
    streamed = metrics.Baselines()
    streamed.add(frames[:2])
    streamed.add(frames[2:])
    assert streamed.result() == pytest.approx(b)


def test_trivial_baselines_leave_unknown_pixels_out():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    known = np.full((4, 6, 8, 1), 255, np.uint8)
    known[:, :, :2] = 0  # the two left columns are unknown in every frame
    noisy = rgb.copy()
    noisy[:, :, :2] = 0  # whatever is there does not count
    masked = metrics.trivial_baselines(np.concatenate([noisy, known], axis=3))
    assert masked == pytest.approx(metrics.trivial_baselines(np.ascontiguousarray(rgb[:, :, 2:])))


def test_a_report_merged_from_chunks_is_the_report_of_the_whole():
    """The encoder's self-check measures each chunk once and merges: every figure, the
    baselines included, must equal measuring the whole video in one report."""
    from dnerv_codec.metrics import QualityReport
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (7, 24, 32, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + rng.integers(-9, 10, ref.shape), 0, 255).astype(np.uint8)
    whole = QualityReport()
    whole.add(ref, dist)
    parts = [QualityReport(), QualityReport()]
    parts[0].add(ref[:3], dist[:3])
    parts[1].add(ref[3:], dist[3:])
    merged = QualityReport.merged(parts).result()
    expected = whole.result()
    assert merged["baselines"] == expected["baselines"]
    for key in ("psnr_rgb", "psnr_rgb_total", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv"):
        assert merged[key] == pytest.approx(expected[key], abs=1e-9), key
    assert merged["ms_ssim_rgb"] == pytest.approx(expected["ms_ssim_rgb"], abs=1e-6)
    assert parts[0].result()["psnr_rgb"] != merged["psnr_rgb"]  # the parts stay their own


def test_one_scale_ms_ssim_is_scikit_images_ssim():
    """An independent check: on frames too small for a second scale, ms_ssim_rgb is SSIM
    (Gaussian window of sigma 1.5, 11 taps, the population statistics of Wang et al.), which
    scikit-image computes with its own code."""
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (2, 20, 28, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, ref.shape)
    dist = np.clip(ref.astype(int) + noise, 0, 255).astype(np.uint8)
    theirs = np.mean([structural_similarity(r, d, channel_axis=-1, gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False,
                                            data_range=255) for r, d in zip(ref, dist)])
    assert 0.3 < theirs < 0.99  # a pair that is neither equal nor unrelated
    assert ms_ssim_rgb(ref, dist) == pytest.approx(theirs, abs=1e-4)
