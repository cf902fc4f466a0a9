"""Reading and writing videos with PyAV, and atomic file output.

Everything here works on uint8 RGB frames of shape (T, H, W, 3) and keeps the frame rate as an
exact `Fraction`, so that 30000/1001 survives a decode/encode round trip unchanged. Every failure a
user can cause (a missing file, a pipe or a device instead of a file, a file that is not a video,
an output folder that does not exist, a frame rate the output container cannot store) raises
`InputError` with a one-line message that names the path; raw PyAV or OS errors never escape the
public functions for a bad file. What reading had to change or could not keep (a rotation, alpha,
extra video streams, decoding errors FFmpeg concealed) is reported in `Video.notes`, one line each.

Names reach FFmpeg as plain files, never as protocol URLs: FFmpeg reads "pipe:0" or "http://..."
as a protocol, so a relative name is handed over as "./name".

Outputs are atomic: they are written under a hidden temporary name in the destination folder and
moved into place with `os.replace` only when complete, so an interrupted run never leaves a
truncated video that looks finished.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
import re
import secrets
import stat
import struct
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from dnerv_codec import passthrough
from dnerv_codec.errors import InputError
from dnerv_codec.format.extras import NONE as NO_EXTRAS
from dnerv_codec.format.extras import Extras

DEFAULT_CLIP_NAME = "bunny_320x180.mp4"

# Frame rates outside this range come from broken headers or from time bases mistaken for rates.
_MAX_SANE_FPS = 1000
_MAX_FPS_DENOMINATOR = 100_000  # keeps a measured average rate within the .dnv's u32 fields
_FALLBACK_FPS = Fraction(25, 1)

# Container outputs: file extension -> FFmpeg muxer name. The muxer is passed explicitly because
# the temporary file's name does not end with the extension.
_H264_MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
_Y4M_MUXER = "yuv4mpegpipe"
_H264_OPTIONS = {"preset": "medium"}
_DEFAULT_CRF = 12

# An ffmpeg-style frame pattern in the file name: "%d" or "%0Nd", nothing else with a "%".
_PATTERN_RE = re.compile(r"^[^%]*%(0[1-9][0-9]*)?d[^%]*$")
_SUPPORTED_HINT = "use .mp4, .mkv, .y4m, a %05d.png pattern, or - for Y4M on stdout"
STDOUT = "-"
"""The output name of Y4M written to standard output (`dnerv decode x.dnv -o - | ffplay -`)."""
STDIN = "-"
"""The input name of a video read from standard input (`ffmpeg ... - | dnerv encode -`)."""
MAX_SPOOL_BYTES = 1 << 38
"""The most bytes of standard input kept for an encode (256 GiB): an endless pipe is refused
before it fills the disk."""

# FFmpeg keeps rates and time bases as AVRational, two C ints: a larger numerator or denominator
# cannot be stored in a container (PyAV raises OverflowError converting it).
_MAX_RATIONAL_TERM = 2**31 - 1


@dataclass(frozen=True, eq=False)
class Video:
    """A decoded video: uint8 RGB frames (T, H, W, 3), C-contiguous, and an exact frame rate.

    `notes` says, one line each, what reading changed or could not keep (a display rotation
    applied, an alpha channel dropped, a variable frame rate averaged); the CLI prints them.
    `extras` is what the file keeps of the source besides its pictures (colour tags, audio).
    """

    frames: np.ndarray
    fps: Fraction
    notes: tuple[str, ...] = ()
    extras: Extras = NO_EXTRAS

    def __post_init__(self):
        f = self.frames
        if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 4
                and f.shape[3] == 3 and f.flags.c_contiguous):
            raise ValueError("Video.frames must be a C-contiguous uint8 (T, H, W, 3) array")
        if not (isinstance(self.fps, Fraction) and self.fps > 0):
            raise ValueError(f"Video.fps must be a positive Fraction, got {self.fps!r}")

    @property
    def frame_count(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    def chunks(self, bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
        """The frames of each (start, stop) in `bounds` (views, no copy): `VideoStream.chunks`
        for a video already in memory."""
        for start, stop in bounds:
            yield self.frames[start:stop]


def default_clip_path() -> pathlib.Path:
    """The embedded default input: 48 frames of Big Buck Bunny at 320x180 (see data/README.md)."""
    # setup.cfg installs the package as a plain folder, so the resource is a real file.
    return pathlib.Path(importlib.resources.files("dnerv_codec") / "data" / DEFAULT_CLIP_NAME)


# ---------------------------------------------------------------------------------------------
# Reading


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> Video:
    """Decode a video file (anything FFmpeg reads, including a %05d.png sequence) to RGB frames.

    Only the first video stream that is not a cover picture is read; `max_frames` stops decoding
    early. Frames are converted with FFmpeg's own RGB conversion (which honours the stream's
    colour matrix tag, and handles 10-bit, grey and 4:4:4 input) and held as uint8 only.
    Frames are turned upright as the display matrix says (what players show); alpha is dropped;
    a variable frame rate becomes the average rate from the first frame to the last; further
    video streams are ignored; errors the decoder concealed (a damaged file) are counted.
    `Video.notes` reports each.
    Raises InputError for a missing, unreadable or non-video file, a pipe or a device, a file
    without decodable frames, frames whose size changes mid-stream, or a mirrored or oblique
    display matrix.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    name = os.fspath(path)
    _check_readable(name)
    try:
        container = av.open(_file_url(name))
    except FileNotFoundError:  # an image sequence pattern whose files do not exist
        raise InputError(f"cannot read '{name}': no such file") from None
    except av.FFmpegError as e:
        raise InputError(f"'{name}' is not a video ({_reason(e)})") from None
    with container:
        streams = _video_streams(container, name)
        frames, traits = _decode_frames(container, streams[0], name, max_frames)
        traits.streams = len(streams)
        fps = traits.average_rate() or _frame_rate(streams[0])
        start = traits.start(streams[0])
    extras, notes = _extras(name, traits, start, len(frames), fps, max_frames)
    return Video(frames=frames, fps=fps, notes=traits.notes(frames.shape, fps) + notes,
                 extras=extras)


def _extras(name: str, traits: _Traits, start: Fraction, frames: int, fps: Fraction,
            max_frames: int | None, first_frame: int = 0,
            keep_audio: bool = True) -> tuple[Extras, tuple[str, ...]]:
    """The colour tags and audio worth keeping, and notes on what is not. With `max_frames`
    the audio stops where the last frame read does; from a `first_frame`, it starts there;
    without `keep_audio`, none is read (--no-audio)."""
    cut = Fraction(frames) / fps if max_frames is not None and frames == max_frames else None
    audio, notes = passthrough.read_audio(_file_url(name), name, start, cut,
                                          from_start=first_frame > 0, keep=keep_audio)
    return Extras(passthrough.colour_tags(*traits.colour), audio), tuple(notes)


def _check_readable(name: str) -> None:
    """Fail early, with a clear message, on paths that cannot be a readable file.

    Only regular files are read: FFmpeg would block for ever on a FIFO with no writer, and read
    /dev/zero or /dev/urandom without end.
    """
    if _PATTERN_RE.match(os.path.basename(name)) and not os.path.exists(name):
        return  # an image sequence pattern: FFmpeg resolves the numbered files itself
    try:
        mode = os.stat(name).st_mode  # follows links: /dev/stdin is the pipe or tty behind it
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"cannot read '{name}': no such file") from None
    except PermissionError:
        raise InputError(f"cannot read '{name}': permission denied") from None
    except OSError as e:  # a name too long, a loop of links
        raise InputError(f"cannot read '{name}': {(e.strerror or str(e)).lower()}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"cannot read '{name}': is a directory")
    if not stat.S_ISREG(mode):
        raise InputError(f"cannot read '{name}': not a regular file ({_file_kind(mode)})")
    if not os.access(name, os.R_OK):
        raise InputError(f"cannot read '{name}': permission denied")


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _file_url(name: str) -> str:
    """`name` as FFmpeg must be given it to open the file of that name: a relative name such as
    "pipe:0" or "a:b.mp4" would otherwise be taken as a protocol ("pipe:0" reads stdin)."""
    return name if os.path.isabs(name) else os.path.join(".", name)


def _reason(error: av.FFmpegError) -> str:
    """FFmpeg's own one-line reason, without the errno and file name PyAV appends."""
    return (error.strerror or str(error)).splitlines()[0].lower()


def _video_streams(container, name: str) -> list:
    """The file's video streams, in file order; InputError if there is none."""
    # FFmpeg's "tty" demuxer renders any large enough .txt file as ANSI art: that is text, not
    # video. Cover pictures of audio files are attached-picture "video" streams: not video either.
    streams = [] if container.format.name == "tty" else [
        s for s in container.streams.video
        if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise InputError(f"'{name}' is not a video (no video stream)")
    return streams


def _decode_frames(container, stream, name: str, max_frames: int | None):
    """(uint8 frames, _Traits) of the stream's frames, each turned upright."""
    store = _FrameStore(capacity_hint=stream.frames, max_frames=max_frames)
    traits = _Traits(alpha=stream.metadata.get("alpha_mode") == "1")  # VP9 alpha in WebM
    for rgb in _upright_frames(container, stream, name, max_frames, traits):
        store.append(rgb, name)
    if store.count == 0:
        raise InputError(f"'{name}': no decodable video frames")
    return store.result(), traits


def _upright_frames(container, stream, name: str, max_frames: int | None,
                    traits: _Traits, skip: int = 0) -> Iterator[np.ndarray]:
    """The stream's frames as uint8 RGB, each turned upright, recorded in `traits` (whose
    error count is set once the stream ends); the first `skip` frames are decoded and left
    out (an encode of frames A..B-1)."""
    stream.thread_type = "AUTO"
    count = skipped = 0
    with _ffmpeg_errors() as errors:
        try:
            for frame in container.decode(stream):
                if skipped < skip:
                    skipped += 1
                    continue
                turns = traits.see(frame, name)
                rgb = frame.to_ndarray(format="rgb24")
                yield np.rot90(rgb, turns) if turns else rgb
                count += 1
                if count == max_frames:
                    break
        except av.FFmpegError as e:
            raise InputError(f"'{name}': decoding failed after {count} frames "
                             f"({_reason(e)})") from None
        finally:
            # Frame threads may still be decoding ahead (after max_frames, or an error): wait
            # for them here, without the GIL, so that none is left logging into a callback
            # that needs the GIL while the context is freed (with the GIL held) later.
            stream.codec_context.flush_buffers()
    traits.errors = len(errors)


class VideoStream:
    """A video file read in passes, never held whole: what a long video's encode reads.

    Opening it makes a first pass that decodes every frame and keeps none: it learns the
    frame count, size, rate and notes (exactly what `read_video` would report). Each call of
    `chunks(bounds)` is one more pass that yields the frames of one chunk at a time, so memory
    holds one chunk, whatever the video's length. The frames are those `read_video` returns."""

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None,
                 first_frame: int = 0, audio: bool = True):
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.name, self.max_frames, self.first_frame = os.fspath(path), max_frames, first_frame
        _check_readable(self.name)
        count, shape = 0, None
        with self._open() as (container, stream, traits):
            for rgb in _upright_frames(container, stream, self.name, max_frames, traits,
                                       first_frame):
                if shape is None:
                    shape = rgb.shape
                elif rgb.shape != shape:
                    raise InputError(
                        f"'{self.name}': frame {count + 1} is {rgb.shape[1]}x{rgb.shape[0]} but "
                        f"earlier frames are {shape[1]}x{shape[0]} (size changes are not supported)")
                count += 1
            if count == 0 and first_frame:
                raise InputError(f"'{self.name}': no frame from frame {first_frame} on (--frames "
                                 f"counts from 0)")
            if count == 0:
                raise InputError(f"'{self.name}': no decodable video frames")
            self.fps = traits.average_rate() or _frame_rate(stream)
            start = traits.start(stream)
        self.height, self.width = shape[:2]
        self.frame_count = count
        self.extras, notes = _extras(self.name, traits, start, count, self.fps, max_frames,
                                     first_frame, audio)
        self.notes = traits.notes((count, *shape), self.fps) + notes

    @contextmanager
    def _open(self):
        try:
            container = av.open(_file_url(self.name))
        except FileNotFoundError:
            raise InputError(f"cannot read '{self.name}': no such file") from None
        except av.FFmpegError as e:
            raise InputError(f"'{self.name}' is not a video ({_reason(e)})") from None
        with container:
            streams = _video_streams(container, self.name)
            traits = _Traits(alpha=streams[0].metadata.get("alpha_mode") == "1")
            traits.streams = len(streams)
            yield container, streams[0], traits

    def chunks(self, bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
        """The uint8 frames (stop - start, H, W, 3) of each (start, stop) in `bounds`, which
        must run in order from frame 0 without gaps; one decoding pass."""
        expected = 0
        for start, stop in bounds:
            if start != expected or stop <= start:
                raise ValueError(f"chunk bounds must be contiguous from 0, got {bounds}")
            expected = stop
        if not bounds:
            return
        with self._open() as (container, stream, traits):
            frames = _upright_frames(container, stream, self.name, bounds[-1][1], traits,
                                     self.first_frame)
            for start, stop in bounds:
                chunk = np.empty((stop - start, self.height, self.width, 3), np.uint8)
                for i in range(stop - start):
                    rgb = next(frames, None)
                    if rgb is None or rgb.shape != chunk.shape[1:]:
                        raise InputError(f"'{self.name}' changed while it was being encoded")
                    chunk[i] = rgb
                yield chunk
            frames.close()


@contextmanager
def _ffmpeg_errors():
    """Collect FFmpeg's error messages, from every thread, into the list yielded.

    PyAV drops FFmpeg's log by default (av.logging level None). A damaged stream decodes with
    errors that FFmpeg logs and conceals; counting them lets the reader say so. Frame-threaded
    decoders log from their worker threads, hence a global (not thread-local) capture. Each
    error counts, repeated or not (PyAV otherwise folds repeats into a later line, which could
    then surface after the capture). PyAV's level and repeat setting are restored afterwards;
    no message reaches stderr or Python logging meanwhile.
    """
    level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    with av.logging.Capture(local=False) as logs:  # in place before any message is let through
        av.logging.set_skip_repeated(False)
        av.logging.set_level(av.logging.ERROR)
        try:
            yield logs
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skip_repeated)


class _Traits:
    """What reading a stream noticed that the frames alone do not show: rotation, alpha,
    whether the frame times are regular, other video streams, colour tags, and damage FFmpeg
    concealed."""

    def __init__(self, alpha: bool):
        self.degrees = 0
        self.alpha = alpha
        self.pts: list[int | None] = []
        self.time_base: Fraction | None = None
        self.streams = 1  # video streams in the file; only the first is read
        self.errors = 0  # error messages FFmpeg logged while decoding
        self.concealed = 0  # frames the decoder flagged as corrupt (damage concealed)
        self.bits = 8  # bits per component of the first frame: 8 are kept
        self.colour: tuple[int, int, int] = (1, 1, 1)  # primaries, transfer, matrix: BT.709

    def see(self, frame, name: str) -> int:
        """Record one frame; returns the counter-clockwise quarter turns that make it upright."""
        if not self.pts:
            self.alpha = self.alpha or any(c.is_alpha for c in frame.format.components)
            self.time_base = frame.time_base
            self.bits = max(c.bits for c in frame.format.components)
            self.colour = (int(frame.color_primaries), int(frame.color_trc),
                           int(frame.colorspace))
        self.pts.append(frame.pts)
        self.concealed += frame.is_corrupt
        self.degrees = _display_rotation(frame, name)
        return self.degrees // 90

    def start(self, stream) -> Fraction:
        """The first frame's time in seconds (0 when the stream does not say): the audio is
        kept on this clock."""
        first = self.pts[0] if self.pts else None
        if first is None:
            first = stream.start_time
        if first is None or not self.time_base:
            return Fraction(0)
        return first * Fraction(self.time_base)

    def variable_rate(self) -> bool:
        """Frame durations that differ by more than a tenth of their mean (and a tick): a
        fixed rate rounded to a time base, as 33/34 ms at 29.97 fps, is not variable."""
        if len(self.pts) < 3 or None in self.pts or not self.time_base:
            return False
        steps = np.diff(np.array(self.pts, dtype=np.int64))
        spread = int(steps.max() - steps.min())
        return int(steps.min()) > 0 and spread > 1 and 10 * spread > steps.mean()

    def average_rate(self) -> Fraction | None:
        """For variable-rate video, the rate that keeps the time from the first frame to the
        last (containers disagree on what their own average is); None for a fixed rate."""
        if not self.variable_rate():
            return None
        span = (self.pts[-1] - self.pts[0]) * Fraction(self.time_base)
        fps = (Fraction(len(self.pts) - 1) / span).limit_denominator(_MAX_FPS_DENOMINATOR)
        return fps if 0 < fps <= _MAX_SANE_FPS else None

    def notes(self, shape: tuple[int, ...], fps: Fraction) -> tuple[str, ...]:
        out = []
        if self.degrees:
            out.append(f"display rotation of {self.degrees} degrees applied: frames are "
                       f"{shape[2]}x{shape[1]} as players show them")
        if self.alpha:
            out.append("alpha channel dropped: the colour planes are encoded as stored")
        if self.variable_rate():
            out.append(f"variable frame rate: frame times are not kept; stored at the average "
                       f"rate from first to last frame, {_fraction_text(fps)} fps")
        if self.streams > 1:
            out.append(f"the input has {self.streams} video streams: only the first is encoded")
        if self.bits > 8:
            out.append(f"{self.bits}-bit input: encoded at 8 bits a component (the colour tags "
                       f"are kept)")
        out += self._colour_notes()
        if self.errors or self.concealed:
            out.append(self._damage_note(shape[0]))
        return tuple(out)

    def _colour_notes(self) -> list[str]:
        primaries, transfer, matrix = self.colour
        kept = passthrough.colour_tags(primaries, transfer, matrix)
        if kept is None and not (primaries in passthrough.PLAIN_PRIMARIES
                                 and transfer in passthrough.PLAIN_TRANSFERS):
            return [f"colour primaries {_enum_name(ColorPrimaries, primaries)} and transfer "
                    f"{_enum_name(ColorTrc, transfer)} are not kept: the decoded video is "
                    f"tagged BT.709 (its colours shift on players that honour the tags)"]
        if kept is not None and matrix not in (*passthrough.SCALER_MATRICES, 0, 2):
            return [f"colour matrix {_enum_name(Colorspace, matrix)} is not kept: the decoded "
                    f"video is converted and tagged with BT.709's (its primaries and transfer "
                    f"are kept)"]
        return []

    def _damage_note(self, frames: int) -> str:
        # Concealed errors are not refused: the frames are what any player would show.
        found = []
        if self.errors:
            found.append(f"reported {_count(self.errors, 'decoding error')}")
        if self.concealed:
            found.append(f"concealed damage in {self.concealed} of {_count(frames, 'frame')}")
        return f"damaged input: FFmpeg {' and '.join(found)}; frames are encoded as decoded"


def _enum_name(enum, value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _display_rotation(frame, name: str) -> int:
    """Counter-clockwise degrees (0, 90, 180 or 270) that the frame's display matrix turns it
    by; InputError for a mirrored matrix or an angle that is not a right angle."""
    matrix = next((bytes(d) for d in frame.side_data if d.type.name == "DISPLAYMATRIX"), None)
    if matrix is None:
        return 0
    a, b, _, c, d, *_ = struct.unpack("=9i", matrix)  # FFmpeg's int32_t[9], native order
    if a * d - b * c < 0:
        raise InputError(f"'{name}': mirrored video (a flipped display matrix) is not supported")
    degrees = frame.rotation
    if degrees % 90:
        raise InputError(f"'{name}': a display rotation of {degrees} degrees is not supported "
                         f"(only multiples of 90)")
    return degrees % 360


def _fraction_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


class _FrameStore:
    """A growing uint8 (T, H, W, 3) array: frames are copied in once, never stacked from a list.

    Stacking a list would hold every frame twice at the end; this keeps one copy plus at most
    the slack of the last growth step.
    """

    _MAX_INITIAL = 256  # a header's frame count is only a hint, and may be absurd

    def __init__(self, capacity_hint: int, max_frames: int | None):
        self._initial = min(max(capacity_hint, 1), max_frames or self._MAX_INITIAL,
                            self._MAX_INITIAL)
        self._buffer: np.ndarray | None = None
        self.count = 0

    def append(self, rgb: np.ndarray, name: str) -> None:
        if self._buffer is None:
            self._buffer = np.empty((self._initial, *rgb.shape), dtype=np.uint8)
        elif rgb.shape != self._buffer.shape[1:]:
            h, w = self._buffer.shape[1:3]
            raise InputError(f"'{name}': frame {self.count + 1} is {rgb.shape[1]}x{rgb.shape[0]} "
                             f"but earlier frames are {w}x{h} (size changes are not supported)")
        if self.count == len(self._buffer):
            self._resize(self.count + self.count // 2 + 1)
        self._buffer[self.count] = rgb
        self.count += 1

    def result(self) -> np.ndarray:
        self._resize(self.count)
        return self._buffer

    def _resize(self, frames: int) -> None:
        # In-place realloc; no views of the buffer exist yet, so the reference check is moot.
        self._buffer.resize((frames, *self._buffer.shape[1:]), refcheck=False)


def _frame_rate(stream) -> Fraction:
    """The stream's rate as an exact Fraction: average rate, else guessed, else base, else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and 0 < rate <= _MAX_SANE_FPS:
            return Fraction(rate.numerator, rate.denominator)
    return _FALLBACK_FPS


# ---------------------------------------------------------------------------------------------
# Output paths


@contextmanager
def spooled_stdin(limit: int = MAX_SPOOL_BYTES) -> Iterator[str]:
    """The bytes of standard input in a temporary file, for a reader that reads its input more
    than once; yields its path and removes it however the block ends (Ctrl-C and SIGTERM too:
    the CLI turns them into KeyboardInterrupt). InputError for an empty input, a terminal, or
    more than `limit` bytes."""
    stream = sys.stdin.buffer
    if stream.isatty():
        raise InputError("cannot read '-': standard input is a terminal, not a video "
                         "(pipe one in: ffmpeg -i in.mkv -f yuv4mpegpipe - | dnerv encode - ...)")
    with tempfile.TemporaryDirectory(prefix="dnerv-stdin-") as folder:
        path = os.path.join(folder, "stdin")
        size = 0
        with open(path, "wb") as spool:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise InputError(f"cannot read '-': standard input is larger than "
                                     f"{limit} bytes")
                spool.write(chunk)
        if size == 0:
            raise InputError("cannot read '-': standard input is empty")
        yield path


def check_output_path(path: str | os.PathLike) -> None:
    """Check, before any work, that a video can be written to `path`; raise InputError if not.

    Accepted: .mp4/.mkv/.mov (H.264), .y4m (raw), or a PNG frame pattern such as
    'frames/%05d.png'. The folder must exist; nothing is created.
    """
    _output_kind(os.fspath(path))
    check_output_folder(path)


def check_output_folder(path: str | os.PathLike) -> None:
    """Check that a file can be created at `path`: the name is not empty, its folder exists and
    is writable, and `path` is not itself a folder. Raises InputError if not. Standard output
    (`-`) always can be."""
    if os.fspath(path) == STDOUT:
        return
    name = _output_name(path)
    folder = os.path.dirname(name)
    if folder and not os.path.isdir(folder):
        raise InputError(f"cannot write '{name}': folder '{folder}' does not exist")
    if not os.access(folder or ".", os.W_OK):
        raise InputError(f"cannot write '{name}': folder '{folder or '.'}' is not writable")
    if os.path.isdir(name):
        raise InputError(f"cannot write '{name}': is a directory")


def _output_name(path: str | os.PathLike) -> str:
    # An empty name (`-o ''`) would otherwise pass as "a file in the current folder".
    name = os.fspath(path)
    if not name:
        raise InputError("the output name is empty")
    return name


def _output_kind(name: str) -> str:
    """'h264', 'y4m' or 'png', from the output name; InputError for anything else."""
    if name == STDOUT:
        return "y4m"
    _output_name(name)
    base = os.path.basename(name)
    ext = os.path.splitext(base)[1].lower()
    if "%" in base:
        if _PATTERN_RE.match(base) and ext == ".png":
            return "png"
        raise InputError(f"cannot write '{name}': a frame pattern must be like 'frames/%05d.png'")
    if ext in _H264_MUXERS:
        return "h264"
    if ext == ".y4m":
        return "y4m"
    raise InputError(f"cannot write '{name}': unsupported output format '{ext or base}' "
                     f"({_SUPPORTED_HINT})")


def _temporary_name(name: str) -> str:
    """A hidden, unique name next to `name`, so that os.replace stays on one filesystem."""
    folder, base = os.path.split(name)
    return os.path.join(folder, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_file(name: str) -> None:
    with open(name, "rb") as f:
        os.fsync(f.fileno())


def _remove_quietly(name: str) -> None:
    try:
        os.remove(name)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically: a temporary file in the same folder, fsync, rename."""
    name = os.fspath(path)
    check_output_folder(name)
    temp = _temporary_name(name)
    try:
        with open(temp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, name)
    except BaseException as e:
        _remove_quietly(temp)
        if isinstance(e, OSError):
            raise InputError(f"cannot write '{name}': {e.strerror or e}") from None
        raise


# ---------------------------------------------------------------------------------------------
# Writing


def open_writer(path: str | os.PathLike, width: int, height: int, fps: Fraction,
                *, crf: int = _DEFAULT_CRF, extras: Extras = NO_EXTRAS) -> VideoWriter:
    """Open a VideoWriter for `path`; use it as a context manager. The format follows the name:

    - .mp4 / .mkv / .mov: H.264 (libx264, preset medium, `crf`, 12 by default: visually
      lossless), 4:2:0, tagged and converted as BT.709 limited range. libx264 cannot encode
      4:2:0 at an odd width or height, so odd sizes are encoded 4:4:4 (High 4:4:4 profile;
      FFmpeg-based players decode it, some hardware/browser decoders do not). The size is
      always kept exactly: never resized or cropped. The time base is 1/fps, so the file's
      average rate reads back as the same Fraction.
    - .y4m: raw YUV in the yuv4mpegpipe container, 4:2:0 when both sides are even, else 4:4:4.
      Y4M carries no colour matrix, so frames are converted as BT.601, which is what FFmpeg
      assumes when reading it back.
    - a pattern such as 'frames/%05d.png' (%d or %0Nd): one lossless RGB PNG per frame,
      numbered from 1 as ffmpeg's image2 muxer does, each moved into place as soon as it is
      complete (so a stopped write leaves the frames it finished, each whole). The frame rate
      is not stored. Files of a previous, longer sequence with the same pattern are not
      deleted.

    `extras` (what a .dnv kept of its source) go into .mp4 / .mkv / .mov: the colour tags
    (frames converted with the kept matrix where FFmpeg's scaler has it) and the audio track's
    packets as they were. What an output cannot hold (any audio in Y4M or PNG, a codec the
    container refuses) is said in `VideoWriter.notes`, one line each; `VideoWriter.wrote_audio`
    says whether the audio went in.

    Raises InputError at once for an unsupported name, a missing folder, or (for a container)
    a frame rate whose numerator or denominator is above 2**31 - 1: FFmpeg cannot store it.
    """
    return VideoWriter(path, width, height, fps, crf=crf, extras=extras)


class VideoWriter:
    """Writes RGB frames to a temporary file and moves it into place when the `with` ends.

    On an exception inside the `with` block every temporary file is removed and nothing is
    left behind; the destination, if it existed, is untouched. A PNG sequence is the exception:
    its frames are moved into place one by one, and the ones finished stay.
    """

    def __init__(self, path, width: int, height: int, fps: Fraction, *, crf: int = _DEFAULT_CRF,
                 extras: Extras = NO_EXTRAS):
        self.path = os.fspath(path)
        kind = _output_kind(self.path)
        check_output_folder(self.path)
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self.fps = _as_fraction(fps)
        if kind != "png":  # a PNG sequence does not store the rate
            _check_storable_rate(self.fps, self.path)
        self.frames_written = 0
        self.notes: list[str] = []
        self._sink = None
        self._sink = self._run(_sink_for, kind, self.path, width, height, self.fps, crf,
                               extras, self.notes)
        self.wrote_audio = getattr(self._sink, "wrote_audio", False)

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame of shape (height, width, 3)."""
        if self._sink is None:
            raise ValueError(f"writer for '{self.path}' is closed")
        expected = (self.height, self.width, 3)
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8
                and frame.shape == expected):
            got = (getattr(frame, "dtype", type(frame).__name__), getattr(frame, "shape", None))
            raise ValueError(f"frame must be uint8 of shape {expected}, got {got}")
        self._run(self._sink.write, np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place. A writer with no frames is an error."""
        if self._sink is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written to '{self.path}'")
        self._run(self._sink.finish)
        self._sink = None

    def abort(self) -> None:
        """Discard everything written so far."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.abort()

    def _run(self, action, *args):
        """Run a sink action; on failure discard the output, and report I/O errors in one line."""
        try:
            return action(*args)
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise InputError(f"cannot write '{self.path}': {e.strerror or e}") from None
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _as_fraction(fps) -> Fraction:
    # A float rate such as 29.97 is ambiguous (30000/1001 or 2997/100?): refuse it.
    if isinstance(fps, bool) or not isinstance(fps, (int, Fraction)) or fps <= 0:
        raise ValueError(f"fps must be a positive Fraction or int, got {fps!r}")
    return Fraction(fps)


def _check_storable_rate(fps: Fraction, name: str) -> None:
    # Checked before any file is created. A .dnv header holds u32 terms, so such rates can come
    # from a valid file; PyAV would raise OverflowError in add_stream or at the time base.
    if max(fps.numerator, fps.denominator) > _MAX_RATIONAL_TERM:
        raise InputError(f"cannot write '{name}': a frame rate of {_fraction_text(fps)} fps "
                         f"cannot be stored (FFmpeg needs numerator and denominator at most "
                         f"{_MAX_RATIONAL_TERM})")


def _sink_for(kind: str, name: str, width: int, height: int, fps: Fraction, crf: int,
              extras: Extras, notes: list[str]):
    if kind != "h264":
        what = "a PNG sequence holds" if kind == "png" else "Y4M holds"
        if extras.audio is not None:
            notes.append(f"{what} no audio: the file's audio ({extras.audio.codec}) is not "
                         f"written (decode to .mkv or .mp4 to keep it)")
        if extras.colour is not None:
            notes.append(f"{what} no colour tags: the file's are not written (decode to .mkv "
                         f"or .mp4 to keep them)")
    if kind == "png":
        return _PngSequenceSink(name, width, height)
    if kind == "y4m":
        return _ContainerSink(name, _Y4M_MUXER, "rawvideo", width, height, fps, {}, bt709=False)
    muxer = _H264_MUXERS[os.path.splitext(name)[1].lower()]
    options = {**_H264_OPTIONS, "crf": str(crf)}
    return _ContainerSink(name, muxer, "libx264", width, height, fps, options, bt709=True,
                          extras=extras, notes=notes)


class _ContainerSink:
    """One video stream in one container file (H.264 or raw Y4M), written to a temporary name,
    with the audio track `extras` keep when there is one.

    With `bt709`, RGB is converted with the BT.709 matrix and the stream is tagged so (or with
    the matrix and tags `extras.colour` keeps); without, with BT.601 and no tag, which is what
    FFmpeg assumes for untagged input (Y4M has no tag).
    """

    def __init__(self, name, muxer, codec, width, height, fps, options, *, bt709: bool,
                 extras: Extras = NO_EXTRAS, notes: list[str] | None = None):
        self._name = name
        # standard output is written as it comes: there is no name to move into place
        self._temp = None if name == STDOUT else _temporary_name(name)
        self._colorspace = Colorspace.ITU709 if bt709 else Colorspace.ITU601
        self._audio = None
        self.wrote_audio = False
        # libx264 and Y4M 4:2:0 need even sides; 4:4:4 keeps odd sizes exact.
        self._pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self._next_pts = 0
        target = sys.stdout.buffer if self._temp is None else _file_url(self._temp)
        self._container = av.open(target, mode="w", format=muxer)
        try:
            self._stream = self._container.add_stream(codec, rate=fps, options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = self._pix_fmt
            self._stream.time_base = 1 / fps  # one tick per frame: the rate reads back exactly
            if bt709:
                _tag_bt709(self._stream.codec_context)
            if extras.colour is not None:
                self._colorspace = _tag_kept(self._stream.codec_context, extras.colour)
            if extras.audio is not None:
                self._add_audio(extras.audio, muxer, notes)
        except BaseException:
            self.abort()
            raise

    def _add_audio(self, track, muxer: str, notes: list[str]) -> None:
        try:
            self._audio = passthrough.AudioCopy(self._container, track)
        except ValueError:  # the muxer cannot hold this codec
            notes.append(f"{muxer} cannot hold the file's audio ({track.codec}): it is not "
                         f"written (decode to .mkv to keep it)")
            return
        # Written now, all of it: the muxer interleaves it with the frames as they come.
        self._audio.mux_all(self._container)
        self.wrote_audio = True

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format=self._pix_fmt, dst_colorspace=self._colorspace, dst_color_range=ColorRange.MPEG)
        frame.pts = self._next_pts
        self._next_pts += 1
        self._encode(frame)

    def _encode(self, frame) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def finish(self) -> None:
        self._encode(None)  # flush the encoder's delayed frames
        self._container.close()
        if self._temp is None:
            sys.stdout.buffer.flush()
            return
        _fsync_file(self._temp)
        os.replace(self._temp, self._name)

    def abort(self) -> None:
        if self._audio is not None:
            self._audio.close()
        try:
            self._container.close()
        except (av.FFmpegError, OSError):
            pass  # the file is being discarded; a failure to finalise it does not matter
        if self._temp is not None:
            _remove_quietly(self._temp)


def _tag_bt709(codec_context) -> None:
    # Written into the H.264 VUI, so that players and FFmpeg convert back with the same matrix.
    codec_context.colorspace = Colorspace.ITU709  # same value as AVCOL_SPC_BT709
    codec_context.color_range = ColorRange.MPEG
    codec_context.color_primaries = ColorPrimaries.BT709  # sRGB shares BT.709 primaries
    codec_context.color_trc = ColorTrc.BT709


def _tag_kept(codec_context, colour) -> Colorspace:
    """Tag the stream with the kept colour tags; returns the matrix to convert RGB with (the
    kept one where FFmpeg's scaler has it, else BT.709's, as tagged)."""
    codec_context.color_primaries = colour.primaries
    codec_context.color_trc = colour.transfer
    if colour.matrix in passthrough.SCALER_MATRICES:
        codec_context.colorspace = colour.matrix
        return passthrough.SCALER_MATRICES[colour.matrix]
    return Colorspace.ITU709


class _PngSequenceSink:
    """Numbered lossless RGB PNGs, each written to a temporary name and renamed into place as
    soon as it is complete: every frame's file is whole or absent, and a stopped decode leaves
    the frames it finished (as ffmpeg does) and at most the one temporary it was writing. (All
    of them were renamed at the end once: a decode stopped after 60 s held 104,000 temporaries
    and took 147 s more to remove them.)"""

    def __init__(self, pattern: str, width: int, height: int):
        self._pattern = pattern
        self._codec = av.CodecContext.create("png", "w")
        self._codec.width, self._codec.height = width, height
        self._codec.pix_fmt = "rgb24"
        self._written = 0
        self._temp: str | None = None  # the frame being written

    def write(self, rgb: np.ndarray) -> None:
        final = self._pattern % (self._written + 1)  # ffmpeg numbers image files from 1
        self._temp = _temporary_name(final)
        packets = self._codec.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
        with open(self._temp, "xb") as f:
            for packet in packets:
                f.write(bytes(packet))
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._temp, final)
        self._temp = None
        self._written += 1

    def finish(self) -> None:
        pass  # every frame is in place already

    def abort(self) -> None:
        if self._temp is not None:
            _remove_quietly(self._temp)


def png_bytes(rgb: np.ndarray) -> bytes:
    """One uint8 RGB image (H, W, 3) as a lossless PNG file's bytes."""
    codec = av.CodecContext.create("png", "w")
    codec.height, codec.width = rgb.shape[:2]
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """One image to `path` as a lossless PNG (a mask, a figure), written atomically."""
    atomic_write_bytes(path, png_bytes(rgb))


def output_kind(path: str | os.PathLike) -> str:
    """'h264', 'y4m' or 'png': the kind of writer `path` gets (InputError for an unsupported
    name). The decode budget counts the writer's buffers by kind."""
    return _output_kind(os.fspath(path))
