"""Shared pytest fixtures. Keep each fixture small and documented; add new ones below."""

import contextlib
import io
import itertools
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dnerv_codec.io import Video, default_clip_path, open_writer, read_video
from dnerv_codec.metrics import trivial_baselines

if os.environ.get("PYTEST_XDIST_WORKER"):
    # bin/test runs one worker a core (pytest-xdist): each trains with one torch thread, and so
    # does every process a test starts, so that the workers never fight over the cores
    # (OpenMP threads spinning against each other slow both to a crawl). A test that needs
    # another count asks for it (--threads, OMP_NUM_THREADS in a subprocess's environment).
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def optimizer_classes() -> tuple:
    """Every optimizer class a recipe may train with (training/optimizers.py), for the tests
    that stop or damage its steps whichever the recipe names."""
    import torch
    from dnerv_codec.training.optimizers import MuonAdam
    return torch.optim.Adam, MuonAdam


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


def damaged_through_the_cli(seed: bytes, data, tmp_path_factory) -> str:
    """`seed` with 0 to 3 bytes overwritten and its CRCs recomputed (hypothesis draws them
    from `data`), through `dnerv decode` to an output kind and an --fps-scale of 1 to 3 it
    draws too (fuzz_bitstream.check_cli_decode): 'decoded' or 'refused'."""
    from hypothesis import strategies as st
    from fuzz.fuzz_bitstream import OUTPUTS, check_cli_decode, refresh_crcs
    out = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 3))):  # none: the seed itself, to every output
        at = data.draw(st.integers(0, len(out) - 1))
        out[at] = data.draw(st.integers(0, 255))
    output, scale = data.draw(st.sampled_from(OUTPUTS)), data.draw(st.integers(1, 3))
    return check_cli_decode(refresh_crcs(bytes(out)), tmp_path_factory.mktemp("cli"), output,
                            scale)


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


# The one trained encode that test_cli and test_codec both check: the tiny clip at 8 bpp, 80
# epochs at 5e-3 (28.7-30.0 dB total where its mean frame scores 22.78). Encoded once a session
# through the CLI, from a lossless PNG sequence, so the encoder sees tiny_clip's own pixels;
# the two modules encoded the same clip with the same options each on its own before (19-23 s
# apiece on 2 cores).
# DNeRV, not the default HNeRV: every section a file can have (the diff embeddings too).
TINY_ENCODE = ["--epochs", "80", "--lr", "5e-3", "--bpp", "8", "--device", "cpu", "--model", "dnerv"]


@dataclass(frozen=True)
class TinyEncode:
    source: Path   # the PNG pattern the CLI read
    dnv: Path
    data: bytes    # the file's bytes
    stats: dict    # its --json
    stdout: str
    stderr: str


def write_video(path: Path, video: Video) -> Path:
    """`video`'s frames written to `path` (any output io.open_writer takes); returns `path`."""
    with open_writer(path, video.width, video.height, video.fps) as writer:
        for frame in video.frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="session")
def tiny_png_source(tmp_path_factory, tiny_clip) -> Path:
    """tiny_clip as a lossless PNG sequence (what a user would pass as INPUT): its pattern."""
    return write_video(tmp_path_factory.mktemp("tiny-png") / "%03d.png", tiny_clip)


@pytest.fixture(scope="session")
def tiny_encoded(tmp_path_factory, tiny_png_source) -> TinyEncode:
    from dnerv_codec.cli import main
    folder = tmp_path_factory.mktemp("tiny-encode")
    source = tiny_png_source
    out, stats, stdout, stderr = folder / "clip.dnv", folder / "stats.json", io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["encode", str(source), "-o", str(out), "-q", *TINY_ENCODE,
                     "--json", str(stats)])
    assert code == 0, stderr.getvalue()
    return TinyEncode(source, out, out.read_bytes(), json.loads(stats.read_text()),
                      stdout.getvalue(), stderr.getvalue())
