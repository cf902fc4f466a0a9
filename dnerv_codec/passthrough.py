"""The source's audio and colour tags, carried through a .dnv untouched (format/extras.py).

Reading: `read_audio` copies the first audio track's packets, byte for byte, into a NUT stream
(FFmpeg's container with exact time bases), from the video's first frame to its last when the
encode keeps only the first frames. `colour_tags` says which colour tags are worth a section.
Writing: `AudioCopy` adds the stored track to an output container (MP4, MKV, MOV) and muxes its
packets back on the video's clock; a container that cannot hold the codec gets a note, not an
error. Nothing here re-encodes audio.
"""

from __future__ import annotations

import io as _bytes_io
from fractions import Fraction

import av
from av.video.reformatter import Colorspace

from dnerv_codec.errors import BitstreamError
from dnerv_codec.format.extras import COLOUR_FIELDS, AudioTrack, ColourTags

# Tags under which the decoder's BT.709 output already looks right (io.py's conversion): BT.709,
# unspecified, and the SD primaries, transfer and matrices (BT.601's, within a few percent of
# BT.709's, which players treat alike); matrix 0 is RGB input, which the decoder writes as YUV.
PLAIN_PRIMARIES = (1, 2, 5, 6)  # BT709, UNSPECIFIED, BT470BG, SMPTE170M
PLAIN_TRANSFERS = (1, 2, 6)  # BT709, UNSPECIFIED, SMPTE170M
PLAIN_MATRICES = (0, 1, 2, 5, 6)  # RGB, BT709, UNSPECIFIED, BT470BG, SMPTE170M
SCALER_MATRICES = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601,
                   6: Colorspace.ITU601, 7: Colorspace.SMPTE240M, 9: Colorspace.BT2020}
"""Matrices FFmpeg's scaler converts RGB with, by code point, as the scaler names them (BT.709,
FCC, BT.601 twice, SMPTE 240M, BT.2020 NCL): the output is converted with the kept matrix and
tagged so; any other is written BT.709."""


def colour_tags(primaries: int, transfer: int, matrix: int) -> ColourTags | None:
    """The tags worth a `colr` section: None when the decoder's BT.709 default shows the
    video as the source tags say (or a value is outside the code points a section holds)."""
    values = (primaries, transfer, matrix)
    if any(not lo <= v <= hi for (_, lo, hi, _), v in zip(COLOUR_FIELDS, values)):
        return None
    if (primaries in PLAIN_PRIMARIES and transfer in PLAIN_TRANSFERS
            and matrix in PLAIN_MATRICES):
        return None
    return ColourTags(*values)


def read_audio(url: str, name: str, video_start: Fraction, duration: Fraction | None,
               from_start: bool = False, keep: bool = True) -> tuple[AudioTrack | None, list[str]]:
    """The first audio track of the file at `url` (`name` in messages), up to `duration` after
    `video_start` (seconds, the first frame's time; None: to its end), and notes on what was
    not kept. With `from_start` (an encode from a later frame) the packets that end before
    `video_start` are left out; otherwise all of the track's beginning is kept, as it was (an
    AAC track's priming packet before the first frame included). A track FFmpeg cannot copy is
    a note, not an error. Without `keep` (--no-audio) nothing is copied: a note says so."""
    try:
        source = av.open(url)
    except av.FFmpegError:
        return None, []  # the video reader has opened it: nothing to add
    with source:
        streams = list(source.streams.audio)
        if not streams:
            return None, []
        if not keep:
            return None, ["--no-audio: the input's audio is left out"]
        stream = streams[0]
        notes = [] if len(streams) == 1 else [
            f"the input has {len(streams)} audio streams: only the first is kept"]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        try:
            track = _copy_track(source, stream, codec, video_start, duration, from_start)
        except (av.FFmpegError, ValueError, OverflowError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            return None, notes + [f"the input's audio ({codec}) cannot be kept ({reason}): the "
                                  f"decoded video has none"]
        if track is None:
            notes.append(f"the input's audio ({codec}) has no packets within the video: none "
                         f"is kept")
        return track, notes


def _copy_track(source, stream, codec: str, video_start: Fraction,
                duration: Fraction | None, from_start: bool) -> AudioTrack | None:
    tb = Fraction(stream.time_base)
    buffer = _bytes_io.BytesIO()
    shift, count = None, 0
    with av.open(buffer, "w", format="nut") as out:
        copy = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            if duration is not None and pts * tb - video_start >= duration:
                break  # past the last encoded frame (packets come in decoding order)
            if from_start and (pts + (packet.duration or 0)) * tb <= video_start:
                continue  # it ends before the first encoded frame
            if shift is None:  # NUT stores no negative time: the first packet becomes 0
                shift = min(pts, packet.dts)
            packet.pts, packet.dts = pts - shift, packet.dts - shift
            packet.stream = copy
            out.mux(packet)
            count += 1
    if count == 0:
        return None
    start = round((shift * tb - video_start) / tb)  # the stream's zero on the video's clock
    return AudioTrack(codec, count, buffer.getvalue(), start, (tb.numerator, tb.denominator))


class AudioCopy:
    """A stored audio track added to an output container; `mux_all` writes its packets."""

    def __init__(self, container, track: AudioTrack):
        try:
            self._source = av.open(_bytes_io.BytesIO(track.nut), format="nut")
        except av.FFmpegError as e:
            raise BitstreamError(f"corrupt .dnv: the audio section's stream cannot be read "
                                 f"({str(e).splitlines()[0]})") from None
        try:
            streams = list(self._source.streams.audio)
            if len(streams) != 1 or len(self._source.streams) != 1:
                raise BitstreamError("corrupt .dnv: the audio section must hold one audio "
                                     "stream and nothing else")
            self._in = streams[0]
            tb = Fraction(self._in.time_base)
            tick = Fraction(*track.start_tick)
            self._offset = round(track.start * tick / tb)
            # ValueError when the container cannot hold the codec: the caller makes it a note
            self.stream = container.add_stream_from_template(self._in)
        except BaseException:
            self._source.close()
            raise
        self.codec = track.codec

    def mux_all(self, container) -> None:
        try:
            for packet in self._source.demux(self._in):
                if packet.dts is None or packet.size == 0:
                    continue
                packet.pts = (packet.pts if packet.pts is not None else packet.dts) + self._offset
                packet.dts += self._offset
                packet.stream = self.stream
                container.mux(packet)
        except av.FFmpegError as e:  # a NUT stream that opened but whose packets do not mux
            raise BitstreamError(f"corrupt .dnv: the audio section's packets cannot be written "
                                 f"({str(e).splitlines()[0]})") from None
        finally:
            self._source.close()

    def close(self) -> None:
        self._source.close()
