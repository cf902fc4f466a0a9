"""`dnerv decode` and `dnerv info`: a .dnv file back to frames, or described."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import click

from dnerv_codec.commands.params import (
    SectionedCommand,
    check_device,
    check_new_file,
    fps_text,
    limits_options,
    parse_range,
    write_json,
)
from dnerv_codec.commands.progressbar import LOGGER, SUMMARY, frame_bar, set_verbosity
from dnerv_codec.errors import InputError
from dnerv_codec.tasks.interpolate import MAX_FPS_SCALE  # torch-free too


DECODE_SECTIONS = {
    "Input and output": ["-o", "--frames", "--fps-scale"],
    "Limits (priced from the header before anything is allocated)": ["--max-memory",
                                                                      "--max-work"],
    "Machine": ["--device"],
    "What it says": ["--json", "-v", "-q", "--help"],
}


@click.command(cls=SectionedCommand, sections=DECODE_SECTIONS, epilog="""\b
Examples:
  dnerv decode out.dnv -o rec.mp4                 # H.264, the original size and rate
  dnerv decode out.dnv -o frames/%05d.png         # lossless, for metrics
  dnerv decode out.dnv -o - | ffplay -            # Y4M on stdout
  dnerv decode long.dnv -o part.mp4 --frames 3000:3100""")
@click.argument("input", metavar="INPUT.dnv")
@click.option("-o", "--output", required=True, metavar="OUT",
              help="out.mp4/.mkv (H.264), out.y4m (raw), or a pattern like frames/%05d.png "
                   "(lossless; a missing folder is created).")
@click.option("--frames", "frame_range", default=None, metavar="A:B|N",
              help="Decode only frames A..B-1 (a half-open range; either end may be left out), "
                   "or N: the first N, as encode --frames N.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to run the decoder network.")
@click.option("--fps-scale", type=click.IntRange(1, MAX_FPS_SCALE), default=1, show_default=True,
              metavar="K",
              help="Render K-1 in-between frames after each frame, interpolated from the stored "
                   "embeddings: K times the frame rate, the stored frames at their own times "
                   "(docs/tasks.md).")
@limits_options
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Also write what was decoded as JSON ('-' for stdout), as encode --json does: "
                   "frames, size, rate, seconds, notes.")
@click.option("-v", "--verbose", count=True, help="Say more (the same as the default today).")
@click.option("-q", "--quiet", count=True,
              help="Say less: -q notes and the summary line only (no progress), -qq errors only.")
def decode(input, output, frame_range, fps_scale, device, max_memory, max_work, json_path,
           verbose, quiet):
    """Decode INPUT.dnv back to video at its original size and frame rate.

    What decoding costs is priced from the file's header before anything is allocated (see
    `dnerv info`); OUT is replaced if it exists, and only once it is complete (a PNG
    pattern's frames are moved into place one by one, each once it is complete).
    """
    from dnerv_codec.io import STDOUT, check_output_path

    set_verbosity(verbose, quiet)
    if Path(output).resolve() == Path(input).resolve():
        raise InputError(f"output '{output}' is the input file; choose another name")
    if json_path == "-" and output == STDOUT:
        raise InputError("-o - and --json - both want stdout: send one to a file")
    if json_path and json_path != "-":
        check_new_file(json_path, ("input", input), ("output", output))
    check_device(device)
    with _pattern_folder(output):
        check_output_path(output)
        stats = _decode(input, output, frame_range, fps_scale, device, max_memory, max_work)
    if json_path:
        write_json(stats, json_path)


@contextmanager
def _pattern_folder(output: str):
    """A frame pattern's folder (png/ of png/%05d.png) is created when missing: the user asked
    for a folder of frames. Removed again if the decode fails before writing into it."""
    from dnerv_codec.io import output_kind

    folder = Path(output).parent
    made = []  # the folders created, innermost first
    if output_kind(output) == "png" and not folder.exists():
        made = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise InputError(f"cannot write '{output}': cannot create folder '{folder}' "
                             f"({e.strerror})") from None
    try:
        yield
    except BaseException:
        for path in made:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def _decode(input, output, frame_range, fps_scale, device, max_memory, max_work) -> dict:
    from dnerv_codec.codec import DecodedFile
    from dnerv_codec.format.budget import Limits
    from dnerv_codec.io import open_writer, output_kind

    t0 = time.perf_counter()
    limits = Limits(memory=max_memory, work=max_work)
    with _open_dnv(input, max_memory) as reader:
        start, stop = parse_range(frame_range, reader.video["frame_count"])
        decoded = DecodedFile(reader, device=device, limits=limits, writer=output_kind(output),
                              start=start, stop=stop, fps_scale=fps_scale)
        extras, notes = _extras_for(reader, start, stop)
        with open_writer(output, decoded.width, decoded.height, decoded.fps,
                         extras=extras) as writer:
            with frame_bar(decoded.output_frames) as bar:
                for frame in decoded.frames():
                    writer.write(frame)
                    bar.update()
    seconds = time.perf_counter() - t0
    notes += writer.notes
    for note in notes:
        LOGGER.warning(f"note: {note}")
    n = decoded.output_frames
    made = (f" ({stop - start} stored + {n - (stop - start)} interpolated)"
            if fps_scale > 1 else "")
    LOGGER.log(SUMMARY, f"decoded {n} frames{made} {decoded.width}x{decoded.height} @ "
                        f"{fps_text(decoded.fps)} fps -> {output} in {seconds:.2f} s "
                        f"({n / seconds:.1f} fps)")
    return {"input": str(input), "output": str(output), "frames": n, "stored_frames": [start, stop],
            "width": decoded.width, "height": decoded.height,
            "fps": f"{decoded.fps.numerator}/{decoded.fps.denominator}",
            "decode_seconds": seconds, "decode_fps": n / seconds if seconds > 0 else None,
            "audio": writer.wrote_audio,
            "colour_tags": extras.colour is not None, "notes": notes}


def _extras_for(reader, start: int, stop: int):
    """The extras to write with frames start..stop-1, and a note on what a part leaves out: the
    audio goes with the whole video only (its packets are not cut)."""
    from dnerv_codec.format.extras import Extras

    extras = reader.extras()
    if extras.audio is None or (start, stop) == (0, reader.video["frame_count"]):
        return extras, []
    return Extras(extras.colour), [f"the file's audio ({extras.audio.codec}) is written only "
                                   f"when the whole video is decoded"]


def _open_dnv(path: str, max_memory: int):
    """A reader of the file (a 2.x file read whole, a chunked one a chunk at a time), each
    read refused unless it fits the format's bound and the memory limit."""
    from dnerv_codec.format.chunks import DnvReader
    from dnerv_codec.format.container import MAX_FILE_BYTES
    if max_memory < MAX_FILE_BYTES:
        return DnvReader.open(path, max_memory, "--max-memory allows")
    return DnvReader.open(path)


@click.command(epilog="""\b
Examples:
  dnerv info out.dnv
  dnerv info out.dnv --json                       # the same as JSON on stdout
  dnerv info out.dnv --json out.json              # ... into a file, as encode --json PATH""")
@click.argument("input", metavar="INPUT.dnv", required=False)
@click.option("--json", "json_path", is_flag=False, flag_value="-", default=None,
              metavar="[PATH]",
              help="The description as JSON: on stdout, or into PATH as encode and decode "
                   "--json PATH write theirs.")
@click.option("--chunk", "chunk", type=click.IntRange(min=0), default=None, metavar="K",
              help="Of a chunked file, describe chunk K (from 0) as a single-chunk file is "
                   "described: its header and every tensor's coding. Every chunk is still read "
                   "and checked.")
@limits_options
def info(input, json_path, chunk, max_memory, max_work):
    """Print the header, the architecture, the size of each section of INPUT.dnv, and what
    decoding it costs (peak memory, multiply-accumulates, how frames are rendered)."""
    from dnerv_codec.decoding.describe import describe_file, format_info
    from dnerv_codec.format.budget import Limits

    if input is None and json_path not in (None, "-"):
        # `info --json FILE`, the spelling before --json took a PATH: kept for one version
        input, json_path = json_path, "-"
        click.echo("dnerv: note: 'info --json FILE' is read as 'info FILE --json' (write it "
                   "that way: the old spelling goes in the next version)", err=True)
    if input is None:
        raise click.UsageError("Missing argument 'INPUT.dnv'.")
    if json_path not in (None, "-"):
        check_new_file(json_path, ("input", input))
    with _open_dnv(input, max_memory) as reader:
        desc = describe_file(reader, Limits(memory=max_memory, work=max_work), chunk, input)
    if json_path is None:
        click.echo(format_info(input, desc))
    else:
        write_json(desc, json_path)
