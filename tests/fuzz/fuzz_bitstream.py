"""Coverage-guided fuzzing of the .dnv reader with atheris, to run by hand for as long as you like:

    pip install atheris          # optional: not a dependency of dnerv-codec
    OMP_NUM_THREADS=1 python tests/fuzz/fuzz_bitstream.py -atheris_runs=100000 [CORPUS_DIR ...]

The seed is a real small .dnv (4 frames of 48x48 of the embedded clip, encoded on start, about
3.5 KB), written to a temporary corpus folder when no folder is given. Half of the mutations
get their section CRCs recomputed, so the fuzzer gets past the CRC checks into the range
checks, the architecture cross-check and the entropy decoder. A second seed is a chunked
(format 3.0) file of two copies of the first. Every input must end, within TIME_LIMIT_S, in a
decoded video or in a one-line BitstreamError, through both the chunk reader and `DecodedFile`
(what `dnerv decode` runs) and the description `dnerv info` prints, and then through `dnerv
decode` itself to a .y4m, an .mp4 or a PNG sequence at an --fps-scale of 1 to 3 (which, the
input's bytes choose), leaving a whole output or none; anything else is a crash that atheris
reports and saves.

tests/test_hostile.py runs `check` on the same kinds of input, drawn by hypothesis, in the
test suite. This file is not a pytest module (tests/conftest.py keeps pytest out of fuzz/).
"""

from __future__ import annotations

import struct
import sys
import tempfile
import time
import types
import zlib
from pathlib import Path

import numpy as np

from dnerv_codec import codec
from dnerv_codec.format import architecture, chunks
from dnerv_codec.format import container as bitstream
from dnerv_codec.format import entropy
from dnerv_codec.format.chunks import DnvReader, pack_chunked
from dnerv_codec.format.container import FRAME_OVERHEAD, PREAMBLE_SIZE, read_head
from dnerv_codec.codec import DecodedFile, EncodeOptions, encode
from dnerv_codec.errors import BitstreamError, BudgetError
from dnerv_codec.io import Video, default_clip_path, read_video

TIME_LIMIT_S = 2.0
"""Far above what any case takes (milliseconds); only a reader that decodes what a file merely
claims, or loops, comes near it."""


def seed_file() -> bytes:
    """A real .dnv: 4 frames, a 48x48 crop of the embedded clip, two epochs of training."""
    clip = read_video(default_clip_path(), max_frames=4)
    frames = np.ascontiguousarray(clip.frames[:, 60:108, 100:148])
    options = EncodeOptions(bpp=3.0, epochs=2, lr=2e-3, device="cpu", model="dnerv")  # EDIF too
    return encode(Video(frames, clip.fps), options).data


def refresh_crcs(data: bytes) -> bytes:
    """`data` with the CRC of every section that still frames recomputed (HEAD's and VHDR's
    from offset 0, as the format says; a CHNK's after the 2.x file inside it has had its own
    refreshed), so that a mutation reaches the checks behind the CRC."""
    out, pos = bytearray(data), PREAMBLE_SIZE
    while pos + FRAME_OVERHEAD <= len(out):
        end = pos + 8 + struct.unpack_from("<I", out, pos + 4)[0]
        if end + 4 > len(out):
            break
        tag = bytes(out[pos:pos + 4])
        if tag == b"CHNK" and end - pos - 8 >= PREAMBLE_SIZE:
            out[pos + 8:end] = refresh_crcs(bytes(out[pos + 8:end]))
        covered = out[0 if tag in (b"HEAD", b"VHDR") else pos:end]
        struct.pack_into("<I", out, end, zlib.crc32(covered))
        pos = end + 4
    return bytes(out)


def chunked_seed(one: bytes) -> bytes:
    """A real 3.0 file: the 2.x file `one` twice, as two chunks of one video."""
    head = read_head(one)
    video = {**{k: head[k] for k in ("width", "height", "fps_num", "fps_den")},
             "frame_count": 2 * head["frame_count"]}
    return pack_chunked(video, [(one, 30.0), (one, None)])


def check_file(data: bytes) -> str:
    """Read `data` as `dnerv decode` and `dnerv info` do, for a file of any version: the chunk
    reader, DecodedFile (the first and the last frame) and info's description of every chunk.
    'decoded' or 'refused'.

    Raises AssertionError for anything but a decoded video or a one-line BitstreamError within
    TIME_LIMIT_S (any other exception propagates as it is)."""
    from dnerv_codec.decoding.describe import describe_chunk, describe_chunks
    from dnerv_codec.format.meter import ReadingMeter
    start = time.perf_counter()
    outcome = _decode(data)
    try:
        reader = DnvReader(data)
        (describe_chunks if reader.chunked else describe_chunk)(reader, ReadingMeter())
        # the description does not apply the decode budget: a file over it is valid, yet refused
        assert outcome in ("decoded", "over budget"), "info accepts a file that decode refuses"
    except BitstreamError as e:
        _assert_one_line(e)
        assert outcome == "refused", f"info refuses a file that decodes: {e}"
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{len(data)}-byte input took {elapsed:.2f} s"
    return "refused" if outcome == "over budget" else outcome


check = check_file


def _decode(data: bytes) -> str:
    try:
        reader = DnvReader(data)
        last = reader.video["frame_count"] - 1
        frames = [f for a in sorted({0, last})
                  for f in DecodedFile(reader, device="cpu", start=a, stop=a + 1).frames()]
    except BitstreamError as e:
        _assert_one_line(e)
        return "refused"
    except BudgetError as e:  # a valid file whose header asks for more than the limits
        _assert_one_line(e)
        return "over budget"
    video = reader.video
    assert all(f.shape == (video["height"], video["width"], 3) and f.dtype == np.uint8
               for f in frames) and len(frames) == len({0, last})
    return "decoded"


OUTPUTS = ("out.y4m", "out.mp4", "png/%03d.png")
"""What `check_cli_decode` writes to: each writer kind, the pattern a folder of frames."""


def check_cli_decode(data: bytes, folder: Path, output: str, fps_scale: int = 1) -> str:
    """`dnerv decode` run in-process on `data` (written to `folder`, which holds nothing
    else) to `output` (one of OUTPUTS) with `--fps-scale`: 'decoded' with every frame written
    and readable back, or 'refused' with exit status 2, one line on stderr and nothing left
    beside the input but, for a PNG pattern, the frames finished before the refusal, each
    whole (never a temporary). Within TIME_LIMIT_S."""
    import contextlib
    import io as _io
    from dnerv_codec.cli import main as cli_main
    source = folder / "in.dnv"
    source.write_bytes(data)
    target = folder / output
    if "%" in output:
        target.parent.mkdir()
    err = _io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        status = cli_main(["decode", str(source), "-o", str(target), "-qq",
                           "--fps-scale", str(fps_scale)])
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{len(data)}-byte input took {elapsed:.2f} s"
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert not [p for p in left if ".tmp" in p], f"temporaries left: {left}"
    if status == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dnerv: error: "), lines
        frames = [p for p in left if p != "in.dnv"]
        if "%" in output and frames:  # the frames finished first, numbered from 1, all whole
            assert frames == [output % (k + 1) for k in range(len(frames))], frames
            assert read_video(target).frame_count == len(frames)
        else:
            assert not frames, f"a refused decode left {left}"
        return "refused"
    assert status == 0, (status, err.getvalue())
    reader = DnvReader(data)
    expected = DecodedFile(reader, device="cpu", fps_scale=fps_scale).output_frames
    back = read_video(target)
    assert back.frame_count == expected, (back.frame_count, expected)
    assert (back.width, back.height) == (reader.video["width"], reader.video["height"])
    return "decoded"


def _assert_one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"


def _instrument_reader(atheris) -> None:
    """Coverage feedback from the code that reads .dnv files: every function and method of
    these modules (instrument_all would also instrument torch, minutes of start-up)."""
    for module in (architecture, bitstream, chunks, codec, entropy):
        for obj in list(vars(module).values()):
            members = vars(obj).values() if isinstance(obj, type) else [obj]
            for member in members:
                func = getattr(member, "__func__", member)  # classmethod, staticmethod
                if isinstance(func, types.FunctionType) and func.__module__ == module.__name__:
                    atheris.instrument_func(func)


def main() -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("fuzz_bitstream: atheris is not installed; `pip install atheris` (optional, "
                 "Linux and macOS wheels), then run this file again")
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given: the seed
        corpus = tempfile.mkdtemp(prefix="dnv-corpus-")
        seed = seed_file()
        Path(corpus, "seed.dnv").write_bytes(seed)
        Path(corpus, "seed-chunked.dnv").write_bytes(chunked_seed(seed))
        args.append(corpus)

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        mutated = atheris.Mutate(data, max_size)
        return refresh_crcs(mutated) if seed % 2 else mutated

    def one_input(data: bytes) -> None:
        data = bytes(data)
        check_file(data)
        # and through the CLI, to an output and at an --fps-scale the input's bytes choose
        with tempfile.TemporaryDirectory() as folder:
            check_cli_decode(data, Path(folder), OUTPUTS[zlib.crc32(data) % len(OUTPUTS)],
                             1 + zlib.adler32(data) % 3)

    _instrument_reader(atheris)
    atheris.Setup(args, one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
