"""What a source carries besides its pictures comes back: the audio track's packets byte for
byte, on the video's clock, and wide-gamut colour tags; what an output cannot hold is a note."""

import json
import struct

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnerv_codec.cli import main
from dnerv_codec.errors import BitstreamError
from dnerv_codec.format import extras
from dnerv_codec.format.container import read_extras, unpack
from dnerv_codec.io import read_video

QUICK = ["--epochs", "2", "--device", "cpu", "--bpp", "1"]


def write_clip_with_audio(path, frames: np.ndarray, codec: str = "aac", rate: int = 44100):
    """An H.264 video with a real encoded tone of the video's length (a video then an audio
    stream, as cameras and ffmpeg write them)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream(codec, rate=rate, layout="stereo")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        samples, step = len(frames) * rate // 25, 1024
        fmt = audio.codec_context.format.name
        for t in range(0, samples, step):
            tone = np.sin(2 * np.pi * 440 * np.arange(t, t + step) / rate) * 0.3
            data = np.stack([tone, tone]).astype(np.float32)
            if fmt.startswith("s16"):
                data = (data * 32767).astype(np.int16)
            if not fmt.endswith("p"):
                data = data.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = rate, t
            container.mux(audio.encode(frame))
        container.mux([*video.encode(None), *audio.encode(None)])
    return path


def audio_packets(path) -> list[tuple[bytes, float]]:
    """Every audio packet of the file's first audio track: its bytes and its time in seconds
    after the first video frame's (Matroska moves both when one would start below zero)."""
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
        start = float(first.pts * first.time_base)
        container.seek(0)
        stream = container.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base) - start) for p in container.demux(stream)
                if p.dts is not None and p.size]


@pytest.fixture(scope="module")
def with_audio(tmp_path_factory, tiny_clip):
    """tiny_clip as an MP4 with an AAC track, and its encode (JSON too)."""
    folder = tmp_path_factory.mktemp("audio")
    source = write_clip_with_audio(folder / "clip.mp4", tiny_clip.frames)
    dnv, stats = folder / "clip.dnv", folder / "stats.json"
    assert main(["encode", str(source), "-o", str(dnv), "-q", *QUICK, "--json", str(stats)]) == 0
    return source, dnv, json.loads(stats.read_text())


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_audio_packets_come_back_byte_identical(with_audio, tmp_path, suffix):
    source, dnv, _ = with_audio
    out, report = tmp_path / f"back{suffix}", tmp_path / "decode.json"
    assert main(["decode", str(dnv), "-o", str(out), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["audio"] is True
    kept, back = audio_packets(source), audio_packets(out)
    assert len(kept) > 5
    assert [p for p, _ in back] == [p for p, _ in kept]  # never re-encoded
    # on the video's clock: each packet at its own time (Matroska keeps milliseconds)
    assert np.allclose([t for _, t in back], [t for _, t in kept], atol=1e-3)
    assert read_video(out).frames.shape == (6, 64, 96, 3)


def test_the_audio_is_paid_apart_from_the_rate(with_audio):
    source, dnv, stats = with_audio
    data = dnv.read_bytes()
    audio = stats["audio"]
    assert stats["audio_bytes"] == audio["bytes"] > sum(len(p) for p, _ in audio_packets(source))
    assert stats["bytes"] == len(data)
    video_bytes = stats["bpp"] * 96 * 64 * 6 / 8
    assert video_bytes == pytest.approx(len(data) - stats["audio_bytes"])
    assert audio["codec"] == "aac" and audio["packets"] == len(audio_packets(source))
    # the tensors are what they would be without it: the audio is an ancillary section after them
    assert unpack(data).extras.audio.nut == read_extras(data).audio.nut


def test_info_names_the_audio(with_audio, capsys):
    _, dnv, _ = with_audio
    assert main(["info", str(dnv)]) == 0
    out = capsys.readouterr().out
    assert "  audio   aac, " in out and "(not in bpp)" in out


def test_outputs_without_audio_say_so_and_a_part_leaves_it_out(with_audio, tmp_path, capsys):
    _, dnv, _ = with_audio
    report = tmp_path / "decode.json"
    assert main(["decode", str(dnv), "-o", str(tmp_path / "back.y4m"), "--json", str(report)]) == 0
    assert "note: Y4M holds no audio: the file's audio (aac) is not written" in \
        capsys.readouterr().err
    assert json.loads(report.read_text())["audio"] is False
    out = tmp_path / "part.mp4"
    assert main(["decode", str(dnv), "-o", str(out), "--frames", "2:4"]) == 0
    assert "audio (aac) is written only when the whole video is decoded" in capsys.readouterr().err
    with av.open(str(out)) as container:
        assert not container.streams.audio


def test_no_audio_leaves_it_out(tiny_clip, tmp_path, capsys):
    source = write_clip_with_audio(tmp_path / "clip.mp4", tiny_clip.frames[:2])
    dnv, stats = tmp_path / "clip.dnv", tmp_path / "stats.json"
    assert main(["encode", str(source), "-o", str(dnv), "-q", "-an", *QUICK,
                 "--json", str(stats)]) == 0
    assert "dnerv: note: --no-audio: the input's audio is left out" in capsys.readouterr().err
    assert read_extras(dnv.read_bytes()).audio is None
    assert json.loads(stats.read_text())["audio_bytes"] == 0


def test_a_short_encode_keeps_the_audio_of_its_frames(tiny_clip, tmp_path):
    source = write_clip_with_audio(tmp_path / "clip.mp4", tiny_clip.frames)
    video = read_video(source, max_frames=2)
    track = video.extras.audio
    packets = audio_packets(source)
    # 2 frames are 80 ms: the packets that start before then (AAC's are 23 ms, from -23 ms)
    assert track.packets == sum(1 for _, t in packets if t < 0.08) < len(packets)
    assert read_video(source).extras.audio.packets == len(packets)


def test_wide_gamut_tags_come_back(tmp_path, tiny_clip, capsys):
    from av.video.reformatter import Colorspace
    source = tmp_path / "pq.mkv"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p10le"
        context = stream.codec_context  # BT.2020 with PQ, as HDR cameras tag it
        context.color_primaries, context.color_trc, context.colorspace = 9, 16, 9
        for i, rgb in enumerate(tiny_clip.frames[:3]):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=Colorspace.BT2020)
            frame.color_primaries, frame.color_trc, frame.colorspace, frame.pts = 9, 16, 9, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    dnv, out, stats = tmp_path / "pq.dnv", tmp_path / "back.mkv", tmp_path / "stats.json"
    assert main(["encode", str(source), "-o", str(dnv), *QUICK, "--json", str(stats)]) == 0
    assert "note: 10-bit input: encoded at 8 bits a component" in capsys.readouterr().err
    assert read_extras(dnv.read_bytes()).colour == extras.ColourTags(9, 16, 9)
    assert main(["decode", str(dnv), "-o", str(out)]) == 0
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.color_primaries, frame.color_trc, int(frame.colorspace)) == (9, 16, 9)
    # converted with the matrix it is tagged with: the output reads back as the encoder
    # measured its own decode (a BT.709 conversion under BT.2020 tags would shift every colour)
    back = read_video(out).frames.astype(float)
    mine = read_video(source).frames.astype(float)
    psnr = 10 * np.log10(255 ** 2 / np.mean((back - mine) ** 2))
    assert psnr == pytest.approx(json.loads(stats.read_text())["psnr_rgb_total"], abs=0.3)


def test_bt709_sources_write_no_colour_section(tmp_path, tiny_clip):
    from conftest import write_video
    source = write_video(tmp_path / "clip.mp4", tiny_clip)
    assert read_video(source).extras == extras.NONE


# --- the sections, as untrusted bytes


def colour_section(values: bytes) -> bytes:
    import zlib
    body = b"colr" + struct.pack("<I", len(values)) + values
    return body + struct.pack("<I", zlib.crc32(body))


def test_the_sections_round_trip(small_dnv):
    kept = extras.Extras(extras.ColourTags(9, 16, 9),
                         extras.AudioTrack("aac", 3, b"nut bytes", -1024, (1, 44100)))
    data = extras.attach(small_dnv, kept)
    assert unpack(data).extras == kept == read_extras(data)
    assert len(data) - len(small_dnv) == len(extras.sections(kept))
    assert extras.audio_bytes(kept) == len(extras.sections(extras.Extras(audio=kept.audio)))


@pytest.mark.parametrize("payload, message", [
    (b"\x09\x10", "colour tags needs 3 bytes but 2 remain"),
    (b"\x09\x10\x63", "colour matrix = 99 outside 0..14"),
    (b"\x09\x10\x09\x00", "1 unused bytes at the end of the section"),
])
def test_a_bad_colour_section_is_refused(small_dnv, payload, message):
    data = small_dnv + colour_section(payload)
    for read in (unpack, read_extras):
        with pytest.raises(BitstreamError, match=message):
            read(data)


def test_a_repeated_section_is_refused(small_dnv):
    data = small_dnv + colour_section(b"\x09\x10\x09") * 2
    for read in (unpack, read_extras):
        with pytest.raises(BitstreamError, match="duplicate section 'colr'"):
            read(data)


def test_an_audio_section_ffmpeg_cannot_read_is_one_line(small_dnv, tmp_path, capsys):
    track = extras.AudioTrack("aac", 1, b"\x00" * 64, 0, (1, 1000))
    dnv = tmp_path / "bad.dnv"
    dnv.write_bytes(extras.attach(small_dnv, extras.Extras(audio=track)))
    assert main(["decode", str(dnv), "-o", str(tmp_path / "out.mp4")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("dnerv: error: corrupt .dnv: the audio section") and err.count("\n") == 1
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


def test_a_chunked_file_carries_the_audio_in_its_first_chunk(tiny_clip, tmp_path):
    source = write_clip_with_audio(tmp_path / "clip.mp4", tiny_clip.frames)
    dnv, out = tmp_path / "clip.dnv", tmp_path / "back.mp4"
    assert main(["encode", str(source), "-o", str(dnv), "-q", "--chunk", "3", *QUICK]) == 0
    from dnerv_codec.format.chunks import DnvReader
    with DnvReader.open(str(dnv)) as reader:
        assert reader.chunked and len(reader.chunks) == 2
        assert reader.extras().audio is not None
        assert read_extras(reader.chunk_bytes(1)).audio is None
    assert main(["decode", str(dnv), "-o", str(out)]) == 0
    assert [p for p, _ in audio_packets(out)] == [p for p, _ in audio_packets(source)]
    # info prices each chunk's rate as the encoder does: without the audio
    assert main(["info", str(dnv), "--json", str(tmp_path / "info.json")]) == 0
    described = json.loads((tmp_path / "info.json").read_text())
    first = described["chunks"][0]
    audio = described["audio"]["bytes"]
    assert first["bpp"] == pytest.approx(8 * (first["length"] - audio) / (96 * 64 * 3))


@pytest.fixture(scope="module")
def audio_track(tmp_path_factory, tiny_clip) -> extras.AudioTrack:
    """A real AAC track (two frames' worth) as a .dnv keeps it."""
    path = write_clip_with_audio(tmp_path_factory.mktemp("track") / "a.mp4", tiny_clip.frames[:2])
    return read_video(path).extras.audio


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_audio_streams_decode_or_are_refused(small_dnv, audio_track, data,
                                                     tmp_path_factory):
    """The NUT stream is read by FFmpeg from an untrusted file: with up to 4 bytes of it
    overwritten (the section's CRC made good again), `dnerv decode` to .mp4 writes every frame
    or exits 2 in one line, leaving nothing half-written."""
    from dataclasses import replace

    from fuzz.fuzz_bitstream import check_cli_decode
    nut = bytearray(audio_track.nut)
    for _ in range(data.draw(st.integers(1, 4))):
        nut[data.draw(st.integers(0, len(nut) - 1))] = data.draw(st.integers(0, 255))
    damaged = extras.attach(small_dnv, extras.Extras(audio=replace(audio_track, nut=bytes(nut))))
    folder = tmp_path_factory.mktemp("audi")
    assert check_cli_decode(damaged, folder, "out.mp4") in ("decoded", "refused")
