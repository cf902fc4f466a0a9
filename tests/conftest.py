"""Shared pytest fixtures. Keep each fixture small and documented; add new ones below."""

import itertools
from fractions import Fraction

import numpy as np
import pytest

from dnerv_codec.io import Video, default_clip_path, open_writer, read_video
from dnerv_codec.metrics import trivial_baselines


@pytest.fixture(scope="session")
def default_clip() -> Video:
    """The first 8 frames of the embedded Bunny clip (320x180, 25 fps), read-only."""
    video = read_video(default_clip_path(), max_frames=8)
    video.frames.flags.writeable = False  # shared by every test: nobody may modify it
    return video


@pytest.fixture
def tmp_video(tmp_path):
    """A writer helper: tmp_video(frames, fps=25, ext=".mp4") writes frames, returns the path.

    `ext` may also be a frame pattern such as "%05d.png"; each call writes to a fresh name.
    """
    counter = itertools.count()

    def write(frames: np.ndarray, fps: Fraction = Fraction(25, 1), ext: str = ".mp4"):
        n = next(counter)
        if "%" in ext:
            folder = tmp_path / f"frames{n}"
            folder.mkdir()
            path = folder / ext
        else:
            path = tmp_path / f"video{n}{ext}"
        height, width = frames.shape[1:3]
        with open_writer(path, width, height, fps) as writer:
            for frame in frames:
                writer.write(frame)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_clip(default_clip) -> Video:
    """6 real frames, a 96x64 crop of the Bunny clip: small enough to overfit in seconds."""
    frames = np.ascontiguousarray(default_clip.frames[:6, 60:124, 112:208])
    frames.flags.writeable = False
    return Video(frames=frames, fps=default_clip.fps)


def mean_frame_floor(frames: np.ndarray, margin_db: float) -> float:
    """A quality floor: the PSNR-RGB (of the total MSE, as `psnr_rgb(...)["total"]` and the
    encoder's "psnr_rgb_total") of showing the clip's mean frame for every frame, plus
    `margin_db`. The mean frame is the strongest trivial baseline (it beats flat grey and the
    flat mean colour on every clip): a decoder that learned nothing of the motion scores it, so
    a floor under it cannot fail. Each caller's margin says what its run clears."""
    return trivial_baselines(frames)["mean_frame"] + margin_db


@pytest.fixture(scope="session")
def small_dnv() -> bytes:
    """A real .dnv of 4 frames of 48x48 (about 3.5 KB, two epochs): the seed of the fuzz tests."""
    from fuzz.fuzz_bitstream import seed_file
    return seed_file()


# tests/fuzz/ holds the atheris harness, run by hand; it is not a pytest module.
collect_ignore = ["fuzz"]


def write_audio_only(path):
    """A real audio-only file (a short 8 kHz tone in a .wav): a container with no video stream."""
    import av
    samples = (1000 * np.sin(np.arange(800) / 5)).astype(np.int16)[None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path
