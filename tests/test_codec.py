"""The pipeline end to end through the library: encode -> bytes -> decode, on real frames."""

from fractions import Fraction

import numpy as np
import pytest

from conftest import flat_grey_psnr
from dnerv_codec.format.container import describe, unpack
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.errors import RateError
from dnerv_codec.io import Video
from dnerv_codec.metrics import bpp, psnr_rgb

FAST = dict(epochs=40, lr=2e-3, device="cpu")


@pytest.fixture(scope="module")
def encoded(tiny_clip):
    return encode(tiny_clip, EncodeOptions(bpp=2.0, **FAST))


def test_round_trip_keeps_count_size_fps_and_quality(tiny_clip, encoded):
    decoded = DecodedVideo(encoded.data, device="cpu")
    frames = np.stack(list(decoded.frames()))
    assert frames.shape == tiny_clip.frames.shape and frames.dtype == np.uint8
    assert decoded.fps == tiny_clip.fps
    psnr = psnr_rgb(tiny_clip.frames, frames)["mean"]
    assert psnr > flat_grey_psnr(tiny_clip.frames) + 8
    # The encoder's self-check decoded these same bytes: its figure is the real one.
    assert encoded.stats["psnr_rgb"] == pytest.approx(psnr, abs=1e-9)


def test_reported_rate_is_the_size_of_the_bytes(tiny_clip, encoded):
    s = encoded.stats
    assert s["bytes"] == len(encoded.data)
    assert s["bpp"] == pytest.approx(bpp(len(encoded.data), 96, 64, 6))
    assert 0.9 <= s["bpp"] / 2.0 <= 1.1  # within +-10% of the target


def test_file_is_self_describing(tiny_clip, encoded):
    header = unpack(encoded.data).header
    assert (header["width"], header["height"], header["frame_count"]) == (96, 64, 6)
    assert Fraction(header["fps_num"], header["fps_den"]) == tiny_clip.fps
    tags = [s["tag"] for s in describe(encoded.data)["sections"]]
    assert tags == ["HEAD", "WDEC", "ECON", "EDIF"]


def test_decoding_twice_gives_identical_frames(encoded):
    a = np.stack(list(DecodedVideo(encoded.data, device="cpu").frames()))
    b = np.stack(list(DecodedVideo(encoded.data, device="cpu").frames()))
    assert np.array_equal(a, b)


def test_a_frame_range_decodes_the_same_frames(encoded):
    decoded = DecodedVideo(encoded.data, device="cpu")
    everything = np.stack(list(decoded.frames()))
    part = np.stack(list(decoded.frames(2, 5)))
    assert np.array_equal(part, everything[2:5])


def test_hnerv_ablation_with_forced_embedding_channels_round_trips(tiny_clip):
    result = encode(tiny_clip, EncodeOptions(bpp=2.0, diff_stream=False, embed_channels=5, **FAST))
    tags = [s["tag"] for s in describe(result.data)["sections"]]
    assert tags == ["HEAD", "WDEC", "ECON"]
    assert result.stats["model"]["name"] == "HNeRV"
    parsed = unpack(result.data)
    assert parsed.header["embed_channels"] == 5
    assert parsed.groups["content"][0].shape[:2] == (6, 5)
    frames = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    assert frames.shape == tiny_clip.frames.shape
    assert result.stats["psnr_rgb"] > flat_grey_psnr(tiny_clip.frames) + 8


# bpp is per pixel, and a 1-pixel-high video still carries a whole decoder: it needs a high one.
@pytest.mark.parametrize("frames,height,width,rate", [(1, 64, 96, 4.0), (2, 64, 96, 4.0),
                                                      (3, 37, 65, 4.0), (2, 1, 30, 800.0)])
def test_short_and_odd_videos_round_trip(default_clip, frames, height, width, rate):
    clip = Video(np.ascontiguousarray(default_clip.frames[:frames, 50:50 + height, 100:100 + width]),
                 Fraction(30000, 1001))
    # Equal iteration budgets: an epoch of a one-frame video is a single step.
    result = encode(clip, EncodeOptions(bpp=rate, epochs=150 // frames, lr=2e-3, device="cpu"))
    decoded = DecodedVideo(result.data, device="cpu")
    out = np.stack(list(decoded.frames()))
    assert out.shape == clip.frames.shape
    assert decoded.fps == Fraction(30000, 1001)
    assert result.stats["psnr_rgb"] > flat_grey_psnr(clip.frames) + 5


def test_a_target_below_the_embedding_cost_is_refused_before_training(tiny_clip):
    with pytest.raises(RateError, match="too low"):
        encode(tiny_clip, EncodeOptions(bpp=0.001, **FAST))


def test_min_prune_prunes_and_fine_tunes(tiny_clip):
    result = encode(tiny_clip, EncodeOptions(bpp=2.0, min_prune=0.3, **FAST))
    assert result.stats["compression"]["prune"] >= 0.3
    assert result.stats["finetune_epochs"] > 0
    weights = [t for t in unpack(result.data).groups["decoder"] if len(t.shape) > 1]
    zeros = sum(int(np.sum(t.q == 0)) for t in weights)  # zero is exact: q = 0
    assert zeros >= int(0.3 * sum(int(np.prod(t.shape)) for t in weights))
    assert result.stats["psnr_rgb"] > flat_grey_psnr(tiny_clip.frames) + 8


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_encode_decodes_on_cpu(tiny_clip):
    """Trained on the GPU, the file decodes anywhere: the CPU render matches the GPU's closely."""
    result = encode(tiny_clip, EncodeOptions(bpp=2.0, epochs=40, lr=2e-3, device="cuda"))
    assert result.stats["device"] == "cuda"
    on_cpu = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    on_gpu = np.stack(list(DecodedVideo(result.data, device="cuda").frames()))
    assert on_cpu.shape == tiny_clip.frames.shape
    assert np.abs(on_cpu.astype(int) - on_gpu.astype(int)).max() <= 2
    assert psnr_rgb(tiny_clip.frames, on_cpu)["mean"] > flat_grey_psnr(tiny_clip.frames) + 8
