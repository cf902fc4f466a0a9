"""The pipeline end to end through the library: encode -> bytes -> decode, on real frames."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import mean_frame_floor
from dnerv_codec.format.container import describe, unpack
from dnerv_codec.codec import DecodedVideo, EncodeOptions, EncodeResult, encode
from dnerv_codec.errors import RateError
from dnerv_codec.io import Video, default_clip_path, read_video
from dnerv_codec.metrics import bpp, psnr_rgb, trivial_baselines

# 8 bpp, 80 epochs at 5e-3 on the 6-frame 96x64 clip: 28.7-30.0 dB total (seeds 0-2, one or two
# threads), where showing the clip's mean frame scores 22.78 dB. The earlier 2 bpp, 40 epochs
# at 2e-3 gave 20.5 dB, under the mean frame: no floor could tell it from a decoder that learned
# nothing of the motion.
FAST = dict(epochs=80, lr=5e-3, device="cpu")
RATE = 8.0
# What these encodes clear with room, and a decoder showing the mean frame does not.
MARGIN_DB = 3.0
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def encoded(tiny_encoded):
    """The tiny clip at RATE with FAST's options, as conftest.tiny_encoded made it (the CLI's
    bytes and --json are encode()'s own)."""
    assert tiny_encoded.stats["target_bpp"] == RATE and tiny_encoded.stats["epochs"] == FAST["epochs"]
    return EncodeResult(tiny_encoded.data, tiny_encoded.stats)


def test_round_trip_keeps_count_size_fps_and_quality(tiny_clip, encoded):
    decoded = DecodedVideo(encoded.data, device="cpu")
    frames = np.stack(list(decoded.frames()))
    assert frames.shape == tiny_clip.frames.shape and frames.dtype == np.uint8
    assert decoded.fps == tiny_clip.fps
    psnr = psnr_rgb(tiny_clip.frames, frames)
    assert psnr["total"] > mean_frame_floor(tiny_clip.frames, MARGIN_DB)
    # The encoder's self-check decoded these same bytes: its figure is the real one.
    assert encoded.stats["psnr_rgb"] == pytest.approx(psnr["mean"], abs=1e-9)
    assert encoded.stats["baselines"] == pytest.approx(trivial_baselines(tiny_clip.frames))


def test_reported_rate_is_the_size_of_the_bytes(tiny_clip, encoded):
    s = encoded.stats
    assert s["bytes"] == len(encoded.data)
    assert s["bpp"] == pytest.approx(bpp(len(encoded.data), 96, 64, 6))
    assert 0.95 <= s["bpp"] / RATE <= 1.0  # never over, and within the search's 5 % under
    assert s["notes"] == []


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
    result = encode(tiny_clip, EncodeOptions(bpp=RATE, model="hnerv", embed_channels=5,
                                             **FAST))
    tags = [s["tag"] for s in describe(result.data)["sections"]]
    assert tags == ["HEAD", "WDEC", "ECON"]
    assert result.stats["model"]["name"] == "HNeRV"
    parsed = unpack(result.data)
    assert parsed.header["embed_channels"] == 5
    assert parsed.groups["content"][0].shape[:2] == (6, 5)
    frames = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    assert frames.shape == tiny_clip.frames.shape
    assert result.stats["psnr_rgb_total"] > mean_frame_floor(tiny_clip.frames, MARGIN_DB)


# bpp is per pixel, and a 1-pixel-high video still carries a whole decoder: it needs a high one.
@pytest.mark.parametrize("frames,height,width,rate", [(1, 64, 96, 4.0), (2, 64, 96, 4.0),
                                                      (3, 37, 65, 4.0), (2, 1, 30, 800.0)])
def test_short_and_odd_videos_round_trip(default_clip, frames, height, width, rate):
    clip = Video(np.ascontiguousarray(default_clip.frames[:frames, 50:50 + height, 100:100 + width]),
                 Fraction(30000, 1001))
    # Equal iteration budgets: an epoch of a one-frame video is a single step. 150 steps are
    # too few for Muon's small first steps (docs/training.md): Adam, the paper's optimizer.
    result = encode(clip, EncodeOptions(bpp=rate, epochs=150 // frames, lr=2e-3, device="cpu",
                                        recipe="paper"))
    decoded = DecodedVideo(result.data, device="cpu")
    out = np.stack(list(decoded.frames()))
    assert out.shape == clip.frames.shape
    assert decoded.fps == Fraction(30000, 1001)
    # One or two frames: the mean frame is (nearly) the video itself, out of reach of a few
    # hundred steps (100 dB for one frame, 26-59 dB here), so the floor is the strongest
    # baseline these clear: one flat colour (14.4-26.9 dB; they score 17.2-33.7), which a
    # network that learned nothing (about mid-grey, 9-11 dB) does not.
    assert result.stats["psnr_rgb_total"] > trivial_baselines(clip.frames)["flat_colour"] + 2


def test_a_target_below_the_embedding_cost_is_refused_before_training(tiny_clip):
    with pytest.raises(RateError, match="too low"):
        encode(tiny_clip, EncodeOptions(bpp=0.001, **FAST))


def test_min_prune_prunes_and_fine_tunes(tiny_clip):
    result = encode(tiny_clip, EncodeOptions(bpp=RATE, min_prune=0.3, **FAST))
    assert result.stats["compression"]["prune"] >= 0.3
    assert result.stats["finetune_epochs"] > 0
    weights = [t for t in unpack(result.data).groups["decoder"] if len(t.shape) > 1]
    zeros = sum(int(np.sum(t.q == 0)) for t in weights)  # zero is exact: q = 0
    assert zeros >= int(0.3 * sum(int(np.prod(t.shape)) for t in weights))
    assert result.stats["psnr_rgb_total"] > mean_frame_floor(tiny_clip.frames, MARGIN_DB)


def test_the_trained_golden_file_decodes_at_its_published_quality():
    """The committed 0.1 bpp file of the embedded clip (48 frames, rate-aware training at 60
    epochs) against its source: docs/benchmarks.md publishes 25.00 dB mean PSNR-RGB for it.
    Decoding is bit-exact at any thread count on one machine; another instruction set may round
    a few values differently, hence the small tolerance. The clip's mean frame scores 20.27 dB."""
    clip = read_video(default_clip_path())
    data = (DATA / "bunny-0.1bpp-learned.dnv").read_bytes()
    frames = np.stack(list(DecodedVideo(data, device="cpu").frames()))
    psnr = psnr_rgb(clip.frames, frames)
    assert psnr["mean"] == pytest.approx(25.00, abs=0.02)
    assert psnr["total"] > mean_frame_floor(clip.frames, 4)


def test_a_network_that_never_learns_is_not_written(tiny_png_source, tmp_path, capsys,
                                                    monkeypatch):
    """Training whose steps do nothing (after its restarts too) ends in one line and exit 2,
    with no file: a flat-colour decode is never shipped as a video."""
    from conftest import optimizer_classes
    from dnerv_codec.cli import main
    for kind in optimizer_classes():
        monkeypatch.setattr(kind, "step", lambda self, *a, **k: None)
    out = tmp_path / "dead.dnv"
    # 70 epochs of 6 frames: 420 steps, long enough to judge a start (2 x 200 steps)
    code = main(["encode", str(tiny_png_source), "-o", str(out), "--bpp", "8", "--epochs", "70",
                 "--device", "cpu", "-qq"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.startswith("dnerv: error: training did not learn: the file decodes at ")
    # restarted once at step 200; a second judgement needs 400 more steps than are left
    assert "after 1 restart(s)" in err and len(err.strip().splitlines()) == 1


def test_a_file_that_compression_emptied_is_blamed_on_compression_not_training():
    """When training learned but the decoded file is at a flat colour's level, the refusal
    says so (a rate search gone wrong is not the user's seed)."""
    from dnerv_codec.encoding.selfcheck import refuse_a_dead_file
    from dnerv_codec.errors import TrainingError
    from dnerv_codec.format.architecture import make_config
    from dnerv_codec.scaling.chunkwork import ChunkJob
    job = ChunkJob(index=0, chunks=1, start=0, stop=6, config=make_config(64, 96, 16), bpp=8.0,
                   epochs=80, lr=None, seed=0, device="cpu", learned_steps=True, min_prune=0.0,
                   threads=1)
    stats = {"psnr_rgb_total": 12.2, "baselines": {"flat_colour": 14.19}, "restarts": 0}
    with pytest.raises(TrainingError, match="compression lost what training learned: the file "
                                            "decodes at 12.20 dB.*training reached 29.00 dB"):
        refuse_a_dead_file({**stats, "train_psnr": 29.0}, [job])
    with pytest.raises(TrainingError, match="training did not learn"):
        refuse_a_dead_file({**stats, "train_psnr": 14.5}, [job])
    refuse_a_dead_file({**stats, "psnr_rgb_total": 20.0, "train_psnr": 29.0}, [job])  # passes


def test_only_a_file_under_the_mean_frame_gets_the_mean_frame_note(encoded):
    """The tiny encode clears its mean frame: no note. The same figures a dB under it: one."""
    from dnerv_codec.encoding.selfcheck import under_the_mean_frame
    s = encoded.stats
    assert s["psnr_rgb_total"] > s["baselines"]["mean_frame"]
    assert under_the_mean_frame(s) is None
    below = {**s, "psnr_rgb_total": s["baselines"]["mean_frame"] - 1}
    assert under_the_mean_frame(below).startswith(
        f"the file decodes at {below['psnr_rgb_total']:.2f} dB, under the clip's mean frame "
        f"({s['baselines']['mean_frame']:.2f} dB): {s['epochs']} epoch(s)")
