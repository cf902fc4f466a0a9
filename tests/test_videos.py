"""Broken and unusual input videos, each through the CLI: it encodes correctly (and decodes back
at the size and rate it should), or it fails with one clear line and exit status 2.

Inputs are made here with PyAV from real frames of the embedded clip (crops, recolourings),
encoded the way such files come from cameras and tools: 10-bit H.264, grey FFV1, PNG with alpha,
timestamps that are not regular, a display matrix that rotates or mirrors, two video streams, a
damaged H.264 stream; and paths that are not files at all (a FIFO, a device).
"""

import os
import re
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from dnerv_codec.cli import main
from dnerv_codec.io import open_writer, read_video
from conftest import write_audio_only

FAST = ["--epochs", "2", "--lr", "2e-3", "--device", "cpu"]


@pytest.fixture(scope="module")
def frames(default_clip) -> np.ndarray:
    """6 real frames, a 48x48 crop with detail in it."""
    return np.ascontiguousarray(default_clip.frames[:6, 60:108, 100:148])


def write(path, frames: np.ndarray, codec: str, pix_fmt: str, *, fmt: str | None = None,
          pts: list[int] | None = None, rotation: int | None = None, hflip: bool = False,
          options: dict | None = None):
    """Encode RGB or RGBA `frames` with PyAV; `pts` in milliseconds (a 1/1000 time base)."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if pts:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation, hflip=hflip)
        source = "rgba" if frames.shape[3] == 4 else "rgb24"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=source)
            frame = frame.reformat(format=pix_fmt)
            frame.pts = pts[i] if pts else i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_png_sequence(folder, frames: np.ndarray, pix_fmt: str):
    folder.mkdir()
    for i, rgb in enumerate(frames, 1):
        write(folder / f"{i:03d}.png", rgb[None], "png", pix_fmt, fmt="image2")
    return folder / "%03d.png"


def encode_and_decode(capsys, tmp_path, source, bpp: float, *extra: str):
    """CLI encode then CLI decode to Y4M; returns (the decoded video, encode's stderr)."""
    dnv, out = tmp_path / "out.dnv", tmp_path / "back.y4m"
    code = main(["encode", str(source), "-o", str(dnv), "--bpp", str(bpp), *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    assert main(["decode", str(dnv), "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    return read_video(out), err


def write_streams(path, *clips: np.ndarray):
    """One file with a video stream per clip (H.264, interleaved frame by frame)."""
    with av.open(str(path), "w") as container:
        streams = []
        for clip in clips:
            stream = container.add_stream("libx264", rate=25)
            stream.height, stream.width = clip.shape[1:3]
            stream.pix_fmt = "yuv420p"
            streams.append(stream)
        for i in range(max(len(clip) for clip in clips)):
            for stream, clip in zip(streams, clips):
                if i < len(clip):
                    frame = av.VideoFrame.from_ndarray(clip[i], format="rgb24")
                    frame.pts = i
                    for packet in stream.encode(frame.reformat(format="yuv420p")):
                        container.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def damage_h264_slices(path) -> bytes:
    """The MP4's bytes with 8 bytes inverted in the middle of every coded slice: the moov index,
    the parameter sets and each slice header stay intact, so the file opens and every frame
    decodes, with errors that FFmpeg's decoder logs and conceals."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in packets:  # each packet: NAL units, each after a 4-byte big-endian length
        at = pos
        while at < pos + size:
            length = int.from_bytes(data[at:at + 4], "big")
            if data[at + 4] & 0x1F in (1, 5):  # a slice (5: of an IDR picture), not SEI/SPS/PPS
                middle = at + 4 + length // 2
                data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
            at += 4 + length
    return bytes(data)


def refused(capsys, source, needle: str, tmp_path) -> None:
    dnv = tmp_path / "out.dnv"
    code = main(["encode", str(source), "-o", str(dnv), "--bpp", "8", *FAST])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not dnv.exists()


class unblocked_after:
    """If a reader hangs opening `fifo` (the bug under test), open its writing end after
    `seconds` so that the reader gets an empty stream and the test fails instead of hanging."""

    def __init__(self, fifo, seconds: float = 10):
        self._timer = threading.Timer(seconds, self._open_writer, args=(str(fifo),))

    @staticmethod
    def _open_writer(fifo: str) -> None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # nobody is reading: nothing to unblock

    def __enter__(self):
        self._timer.start()

    def __exit__(self, *exc):
        self._timer.cancel()


# ----------------------------------------------------------------------------- refused


def test_empty_file(capsys, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    refused(capsys, tmp_path / "empty.mp4", "is not a video", tmp_path)


def test_text_file(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("a shopping list, not a video\n" * 2000)
    refused(capsys, tmp_path / "notes.txt", "is not a video", tmp_path)


def test_audio_only_file(capsys, tmp_path):
    path = write_audio_only(tmp_path / "tone.wav")
    refused(capsys, path, "is not a video (no video stream)", tmp_path)


def test_a_video_with_zero_decodable_frames(capsys, tmp_path, frames):
    whole = tmp_path / "whole.y4m"
    with open_writer(whole, 48, 48, Fraction(25)) as writer:
        writer.write(frames[0])
    data = whole.read_bytes()
    (tmp_path / "header_only.y4m").write_bytes(data[:data.index(b"\n") + 1])
    refused(capsys, tmp_path / "header_only.y4m", "no decodable video frames", tmp_path)


def test_an_mp4_cut_in_half(capsys, tmp_path, frames):
    data = write(tmp_path / "whole.mp4", frames, "libx264", "yuv420p").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])  # the index (moov) is at the end
    refused(capsys, tmp_path / "cut.mp4", "is not a video", tmp_path)


def test_a_fifo_is_refused_without_blocking(capsys, tmp_path):
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    with unblocked_after(fifo):
        refused(capsys, fifo, "not a regular file (a pipe)", tmp_path)


def test_a_device_is_refused_unread(capsys, tmp_path):
    refused(capsys, "/dev/zero", "cannot read '/dev/zero': not a regular file (a device)",
            tmp_path)


@pytest.mark.parametrize("degrees, hflip, needle", [
    (0, True, "mirrored video (a flipped display matrix) is not supported"),
    (45, False, "a display rotation of 45 degrees is not supported"),
])
def test_a_mirrored_or_oblique_display_matrix(capsys, tmp_path, frames, degrees, hflip, needle):
    source = write(tmp_path / "odd.mp4", frames, "libx264", "yuv420p", rotation=degrees,
                   hflip=hflip)
    refused(capsys, source, needle, tmp_path)


# ----------------------------------------------------------------------------- encoded


def test_a_png_image(capsys, tmp_path, frames):
    source = write(tmp_path / "still.png", frames[:1], "png", "rgb24", fmt="image2")
    video, _ = encode_and_decode(capsys, tmp_path, source, 16)
    assert video.frames.shape == (1, 48, 48, 3)


@pytest.mark.parametrize("count, bpp", [(1, 16), (2, 8)])
def test_one_and_two_frames(capsys, tmp_path, frames, count, bpp):
    source = write(tmp_path / "short.mp4", frames[:count], "libx264", "yuv420p")
    video, _ = encode_and_decode(capsys, tmp_path, source, bpp)
    assert video.frames.shape == (count, 48, 48, 3) and video.fps == 25


@pytest.mark.parametrize("height, width, bpp", [(8, 8, 400), (24, 1, 700), (1, 24, 700),
                                                (37, 65, 8)])
def test_tiny_and_odd_sizes(capsys, tmp_path, default_clip, height, width, bpp):
    crop = np.ascontiguousarray(default_clip.frames[:3, 70:70 + height, 120:120 + width])
    source = write_png_sequence(tmp_path / "src", crop[:3 if height * width > 64 else 2], "rgb24")
    video, _ = encode_and_decode(capsys, tmp_path, source, bpp)
    assert video.frames.shape[1:] == (height, width, 3)


def test_10_bit_input(capsys, tmp_path, frames):
    source = write(tmp_path / "ten.mp4", frames, "libx264", "yuv420p10le")
    assert av.open(str(source)).streams.video[0].format.name == "yuv420p10le"
    video, _ = encode_and_decode(capsys, tmp_path, source, 3)
    assert video.frames.shape == (6, 48, 48, 3)


def test_greyscale_input(capsys, tmp_path, frames):
    source = write(tmp_path / "grey.mkv", frames, "ffv1", "gray")
    grey = read_video(source).frames
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    video, _ = encode_and_decode(capsys, tmp_path, source, 3)
    assert video.frames.shape == (6, 48, 48, 3)


def test_alpha_is_dropped_with_a_note(capsys, tmp_path, frames):
    alpha = np.full(frames.shape[:3] + (1,), 100, np.uint8)
    source = write_png_sequence(tmp_path / "src", np.concatenate([frames, alpha], axis=3), "rgba")
    video, err = encode_and_decode(capsys, tmp_path, source, 3)
    assert video.frames.shape == (6, 48, 48, 3)
    assert "note: alpha channel dropped" in err


def test_variable_frame_rate_is_stored_as_the_average(capsys, tmp_path, frames):
    source = write(tmp_path / "vfr.mp4", frames, "libx264", "yuv420p",
                   pts=[0, 40, 100, 120, 200, 210])
    video, err = encode_and_decode(capsys, tmp_path, source, 3)
    assert video.frames.shape == (6, 48, 48, 3)
    assert video.fps == Fraction(5, Fraction(210, 1000))  # 5 intervals in 210 ms
    assert "note: variable frame rate" in err


def test_a_constant_rate_with_rounded_timestamps_stays_exact(tmp_path, frames):
    """29.97 fps on a millisecond time base is 33 and 34 ms steps: that is not variable."""
    pts = [round(i * 1001 / 30) for i in range(6)]
    video = read_video(write(tmp_path / "ntsc.mp4", frames, "libx264", "yuv420p", pts=pts))
    assert video.notes == ()


@pytest.mark.parametrize("degrees, turns", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(capsys, tmp_path, frames, degrees, turns):
    stored = np.ascontiguousarray(frames[:, :, :40])  # 40 wide, 48 high
    source = write(tmp_path / "phone.mkv", stored, "ffv1", "yuv444p", rotation=degrees)
    upright = read_video(source)
    assert np.array_equal(upright.frames, np.rot90(read_video(
        write(tmp_path / "plain.mkv", stored, "ffv1", "yuv444p")).frames, turns, axes=(1, 2)))
    video, err = encode_and_decode(capsys, tmp_path, source, 3)
    assert video.frames.shape == upright.frames.shape
    assert f"display rotation of {degrees % 360} degrees applied" in err


def test_only_the_first_of_two_video_streams_is_encoded_with_a_note(capsys, tmp_path, frames):
    small = np.ascontiguousarray(frames[:, :32, :32])
    source = write_streams(tmp_path / "two.mkv", frames, small)
    assert [s.width for s in av.open(str(source)).streams.video] == [48, 32]
    video = read_video(source)
    assert video.frames.shape == (6, 48, 48, 3)
    assert video.notes == ("the input has 2 video streams: only the first is encoded",)
    decoded, err = encode_and_decode(capsys, tmp_path, source, 3)
    assert decoded.frames.shape == (6, 48, 48, 3)
    assert "dnerv: note: the input has 2 video streams: only the first is encoded\n" in err


def test_a_damaged_h264_stream_is_encoded_as_concealed_with_a_note(capfd, tmp_path, frames):
    # libx264 with one thread writes the same bytes on every machine: the damage is repeatable.
    whole = write(tmp_path / "whole.mp4", frames, "libx264", "yuv420p", options={"threads": "1"})
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(damage_h264_slices(whole))
    assert read_video(whole).notes == ()
    level = av.logging.get_level()
    video = read_video(damaged)
    assert video.frames.shape == (6, 48, 48, 3)  # every frame still comes out
    [note] = video.notes
    assert note.startswith("damaged input: FFmpeg reported ") and " decoding error" in note
    assert note.endswith("; frames are encoded as decoded")
    assert av.logging.get_level() == level  # PyAV's logging is as it was (off by default) ...
    assert capfd.readouterr() == ("", "")  # ... and FFmpeg's messages reached no terminal
    code = main(["encode", str(damaged), "-o", str(tmp_path / "out.dnv"), "--bpp", "3", *FAST])
    err = capfd.readouterr().err
    # How many frames FFmpeg's threaded decoder concealed can differ from read to read.
    assert code == 0 and re.search(r"dnerv: note: damaged input: FFmpeg reported \d+ decoding "
                                   r"errors? .*; frames are encoded as decoded\n", err), err
