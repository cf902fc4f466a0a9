"""Video reading and writing through PyAV: round trips, frame rates, odd sizes, user errors."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from dnerv_codec.errors import InputError
from dnerv_codec.io import (
    Video,
    atomic_write_bytes,
    check_output_folder,
    check_output_path,
    default_clip_path,
    open_writer,
    read_video,
)
from dnerv_codec.metrics import psnr_rgb
from conftest import write_audio_only

NTSC = Fraction(30000, 1001)


def crop(video: Video, height: int, width: int, frames: int = 4) -> np.ndarray:
    """A C-contiguous crop of real frames (odd sizes included), from the middle of the picture."""
    top = (video.height - height) // 2
    left = (video.width - width) // 2
    return np.ascontiguousarray(video.frames[:frames, top:top + height, left:left + width])


# --- reading -------------------------------------------------------------------------------


def test_default_clip_is_48_frames_of_320x180_at_25fps():
    video = read_video(default_clip_path())
    assert video.frames.shape == (48, 180, 320, 3)
    assert (video.frame_count, video.width, video.height) == (48, 320, 180)
    assert video.frames.dtype == np.uint8 and video.frames.flags.c_contiguous
    assert video.fps == Fraction(25, 1) and isinstance(video.fps, Fraction)


def test_max_frames_reads_only_the_first_frames(default_clip):
    five = read_video(default_clip_path(), max_frames=5)
    assert five.frame_count == 5
    np.testing.assert_array_equal(five.frames, default_clip.frames[:5])


def test_max_frames_beyond_the_end_returns_every_frame():
    assert read_video(default_clip_path(), max_frames=1000).frame_count == 48


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".y4m"])
@pytest.mark.parametrize("fps", [Fraction(25, 1), NTSC])
def test_round_trip_keeps_count_size_and_exact_fps(default_clip, tmp_video, ext, fps):
    frames = crop(default_clip, 64, 96)
    video = read_video(tmp_video(frames, fps, ext))
    assert video.frames.shape == frames.shape
    assert video.fps == fps


@pytest.mark.parametrize("ext", [".mp4", ".y4m"])
def test_odd_size_is_kept_exactly(default_clip, tmp_video, ext):
    frames = crop(default_clip, 37, 65)
    video = read_video(tmp_video(frames, NTSC, ext))
    assert video.frames.shape == (4, 37, 65, 3)
    assert video.fps == NTSC
    assert psnr_rgb(frames, video.frames)["mean"] > 35


def test_mp4_at_crf_12_is_high_quality(default_clip, tmp_video):
    video = read_video(tmp_video(default_clip.frames[:4]))
    assert psnr_rgb(default_clip.frames[:4], video.frames)["mean"] > 35


def test_png_pattern_is_bit_exact_and_numbered_from_1(default_clip, tmp_video):
    frames = crop(default_clip, 37, 65, frames=3)
    pattern = tmp_video(frames, ext="%05d.png")
    assert sorted(os.listdir(pattern.parent)) == ["00001.png", "00002.png", "00003.png"]
    np.testing.assert_array_equal(read_video(pattern).frames, frames)


def test_output_replaces_an_existing_file(default_clip, tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    with open_writer(path, 320, 180, Fraction(25)) as writer:
        writer.write(default_clip.frames[0])
    assert read_video(path).frame_count == 1
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_atomic_write_bytes_writes_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.dnv"
    atomic_write_bytes(path, b"payload")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["x.dnv"]


# --- input errors ----------------------------------------------------------------------------


def expect_input_error(path, *fragments):
    with pytest.raises(InputError) as info:
        read_video(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_input(tmp_path):
    expect_input_error(tmp_path / "nope.mp4", "no such file")


def test_directory_input(tmp_path):
    expect_input_error(tmp_path, "is a directory")


def test_missing_frame_pattern(tmp_path):
    expect_input_error(tmp_path / "%05d.png", "no such file")


def test_a_fifo_is_not_opened(tmp_path):
    # Opening a FIFO blocks until a writer comes: the check must refuse it without opening it.
    fifo = tmp_path / "live.mp4"
    os.mkfifo(fifo)
    expect_input_error(fifo, "cannot read", "not a regular file (a pipe)")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_not_read(device):
    expect_input_error(device, "cannot read", "not a regular file (a device)")


def test_a_name_that_looks_like_a_protocol_is_a_file(default_clip, monkeypatch, tmp_path):
    # FFmpeg would take "a:b.mp4" for the protocol "a" (and "pipe:0" for standard input).
    monkeypatch.chdir(tmp_path)
    with open_writer("a:b.mp4", 320, 180, Fraction(25)) as writer:
        writer.write(default_clip.frames[0])
    assert os.listdir(tmp_path) == ["a:b.mp4"]
    assert read_video("a:b.mp4").frame_count == 1


@pytest.mark.parametrize("lines", [2, 3000], ids=["short", "long"])
def test_text_file_is_not_a_video(tmp_path, lines):
    # A long .txt file is what FFmpeg's "tty" demuxer turns into ANSI-art "video".
    path = tmp_path / "notes.txt"
    path.write_text("just some notes, nothing to see here\n" * lines)
    expect_input_error(path, "is not a video")


def test_empty_file_is_not_a_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    expect_input_error(path, "is not a video")


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = write_audio_only(tmp_path / "tone.wav")
    expect_input_error(path, "is not a video (no video stream)")


def test_video_without_frames(default_clip, tmp_video, tmp_path):
    # A Y4M file cut after its header: a video stream, but not a single frame.
    data = tmp_video(crop(default_clip, 36, 64, frames=1), ext=".y4m").read_bytes()
    path = tmp_path / "header_only.y4m"
    path.write_bytes(data[:data.index(b"\n") + 1])
    expect_input_error(path, "no decodable video frames")


def test_frame_size_change_is_reported(default_clip, tmp_path):
    # Two raw H.264 streams of different sizes, back to back, decode as one stream.
    path = tmp_path / "mixed.h264"
    path.write_bytes(raw_h264(crop(default_clip, 36, 64, 2), tmp_path / "a.h264")
                     + raw_h264(crop(default_clip, 32, 32, 2), tmp_path / "b.h264"))
    expect_input_error(path, "frame 3 is 32x32", "64x36")


def raw_h264(frames: np.ndarray, path) -> bytes:
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for pts, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = pts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


# --- output errors ---------------------------------------------------------------------------


def test_output_in_a_missing_folder_fails_before_writing(tmp_path):
    path = tmp_path / "nodir" / "out.mp4"
    with pytest.raises(InputError, match=r"cannot write '.*out.mp4': folder '.*nodir' does not"):
        open_writer(path, 64, 36, Fraction(25))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["out.xyz", "out", "frames/%05d.jpg", "f%d_%d.png"])
def test_unsupported_output_is_refused(tmp_path, name):
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError, match="cannot write") as info:
        check_output_path(tmp_path / name)
    assert "\n" not in str(info.value)


def test_unsupported_extension_message(tmp_path):
    expected = ("unsupported output format '.xyz' (use .mp4, .mkv, .y4m, a %05d.png pattern, or - "
                "for Y4M on stdout)")
    with pytest.raises(InputError) as info:
        open_writer(tmp_path / "out.xyz", 64, 36, Fraction(25))
    assert expected in str(info.value)


def test_atomic_write_bytes_into_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nodir" / "x.dnv", b"")


@pytest.mark.parametrize("ext", [".mp4", ".y4m"])
def test_failed_write_leaves_nothing_behind(default_clip, tmp_path, ext):
    path = tmp_path / ("out" + ext)
    with pytest.raises(RuntimeError, match="interrupted"):
        with open_writer(path, 320, 180, Fraction(25)) as writer:
            writer.write(default_clip.frames[0])
            writer.write(default_clip.frames[1])
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_a_png_sequence_moves_each_frame_into_place_as_it_is_written(default_clip, tmp_path):
    """Each frame's file is whole or absent at any moment: a killed decode leaves the frames it
    finished and no temporaries (they were all renamed at the end once: a decode stopped
    after 60 s held 104,000 of them); a failed one keeps the finished frames too."""
    with pytest.raises(RuntimeError, match="interrupted"):
        with open_writer(tmp_path / "%05d.png", 320, 180, Fraction(25)) as writer:
            writer.write(default_clip.frames[0])
            writer.write(default_clip.frames[1])
            assert sorted(os.listdir(tmp_path)) == ["00001.png", "00002.png"]  # as if killed
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["00001.png", "00002.png"]
    np.testing.assert_array_equal(read_video(tmp_path / "%05d.png").frames,
                                  default_clip.frames[:2])


def test_a_bad_frame_is_refused_and_nothing_is_left(default_clip, tmp_path):
    with pytest.raises(ValueError, match="frame must be uint8 of shape"):
        with open_writer(tmp_path / "out.mp4", 64, 36, Fraction(25)) as writer:
            writer.write(default_clip.frames[0])
    assert os.listdir(tmp_path) == []


HUGE_RATES = [Fraction(2**32 - 1), Fraction(1, 2**32 - 1), Fraction(4294967291, 4294967279)]


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".y4m"])
@pytest.mark.parametrize("fps", HUGE_RATES, ids=str)
def test_a_rate_ffmpeg_cannot_store_is_refused_and_nothing_is_left(tmp_path, ext, fps):
    # A .dnv header holds the rate as two u32: FFmpeg's rationals are C ints.
    path = tmp_path / f"out{ext}"
    with pytest.raises(InputError) as info:
        open_writer(path, 64, 36, fps)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write '{path}': ")
    assert f"a frame rate of {fps.numerator}" in message and "cannot be stored" in message
    assert os.listdir(tmp_path) == []


def test_the_largest_rate_terms_ffmpeg_stores_round_trip(default_clip, tmp_video):
    fps = Fraction(2**31 - 1, 2**31 - 2)
    assert read_video(tmp_video(crop(default_clip, 36, 64, 2), fps, ".y4m")).fps == fps


@pytest.mark.parametrize("fps", HUGE_RATES, ids=str)
def test_a_png_pattern_takes_any_rate(default_clip, tmp_video, fps):
    frames = crop(default_clip, 36, 64, 2)
    np.testing.assert_array_equal(read_video(tmp_video(frames, fps, "%05d.png")).frames, frames)


def test_an_empty_output_name_is_refused():
    for check in (check_output_path, check_output_folder,
                  lambda name: open_writer(name, 64, 36, Fraction(25)),
                  lambda name: atomic_write_bytes(name, b"")):
        with pytest.raises(InputError, match="^the output name is empty$"):
            check("")


def test_an_empty_output_name_is_refused_by_the_cli(capsys):
    from dnerv_codec.cli import main
    code = main(["encode", str(default_clip_path()), "-o", "", "--epochs", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err == "dnerv: error: the output name is empty\n"


def test_float_fps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Fraction"):
        open_writer(tmp_path / "out.mp4", 64, 36, 29.97)


def test_what_reading_drops_is_said_in_a_note_each(tmp_path):
    """More than 8 bits is not kept: a note, from the whole-file reader and from the streaming
    one alike; the wide-gamut tags and the audio are kept (tests/test_passthrough.py)."""
    import av
    from av.video.reformatter import ColorPrimaries, ColorTrc

    from dnerv_codec.io import VideoStream
    path = tmp_path / "wide.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p10le"
        video.codec_context.color_primaries = ColorPrimaries.BT2020
        video.codec_context.color_trc = ColorTrc.SMPTE2084
        audio = container.add_stream("pcm_s16le", rate=8000)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8),
                                               format="rgb24").reformat(format="yuv420p10le")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        tone = av.AudioFrame.from_ndarray((1000 * np.sin(np.arange(800) / 5)).astype(np.int16)[None],
                                          format="s16", layout="mono")
        tone.sample_rate = 8000
        for packet in [*audio.encode(tone), *audio.encode(None), *video.encode(None)]:
            container.mux(packet)
    expected = ("10-bit input: encoded at 8 bits a component (the colour tags are kept)",)
    assert read_video(path).notes == expected
    assert VideoStream(path).notes == expected
    kept = VideoStream(path).extras
    assert (kept.colour.primaries, kept.colour.transfer) == (9, 16)
    assert kept.audio.codec == "pcm_s16le" and read_video(path).extras == kept
    assert read_video(path).frames.shape == (3, 48, 64, 3)
