"""What `dnerv info` shows: a .dnv file described from its own bytes, and what decoding it costs.

Torch-free, like the reader it calls: the file is priced from its headers first, and its tensors
are read (entropy-decoded and checked as a decode would) only within `--max-memory` and
`--max-work`, the entropy models no header counts metered as they are met (format/meter.py).
"""

from __future__ import annotations

from dnerv_codec.errors import InputError
from dnerv_codec.format.architecture import config_from_header, symbol_counts, tensor_shapes
from dnerv_codec.format.budget import Limits, check_reading, file_cost
from dnerv_codec.format.container import describe
from dnerv_codec.format.meter import ReadingMeter
from dnerv_codec.text import format_seconds


def describe_file(reader, limits: Limits, chunk: int | None = None, name: str = "the file") -> dict:
    """The description of `reader`'s file (format/chunks.DnvReader), with its decode cost
    under `limits`; of a chunked file, `chunk` K's tensors in detail too. Priced from the
    headers before any tensor is entropy-decoded: reading the tensors costs what unpacking them
    for a decode does, and is refused (BudgetError) past the limits."""
    if chunk is not None and chunk >= len(reader.chunks):
        raise InputError(f"--chunk {chunk}: '{name}' has {len(reader.chunks)} "
                         f"chunk{'s' if len(reader.chunks) > 1 else ''} (0.."
                         f"{len(reader.chunks) - 1})")
    cost = file_cost(reader, limits, writer="h264")
    check_reading(cost, limits)
    meter = ReadingMeter(limits.work - cost.reading_work)  # what no header prices
    desc = (describe_chunks(reader, meter, chunk) if reader.chunked
            else describe_chunk(reader, meter))
    desc["decode_cost"] = {**cost.as_dict(), "writer": "h264",
                           "max_memory": limits.memory, "max_work": limits.work,
                           "within_limits": (cost.peak_bytes <= limits.memory
                                             and cost.work <= limits.work)}
    return desc


def describe_chunk(reader, meter, k: int = 0) -> dict:
    """describe() of chunk k (of a 2.x file: the file), its HEAD checked against the index
    before its tensors are decoded, each tensor named, shares of the whole file."""

    def counts(header: dict):
        reader.check_chunk_header(k, header)
        return symbol_counts(header)
    desc = describe(reader.chunk_bytes(k), counts, tensor_shapes, meter)  # as decode reads it
    desc["file_bytes"] = reader.file_bytes
    _name_tensors(desc)
    return desc


def describe_chunks(reader, meter, detailed: int | None = None) -> dict:
    """A chunked file: the video, and each chunk's place, rate, measured quality, header and
    sections (every chunk is read and verified). Only chunk `detailed` keeps its tensors'
    details: a file of many chunks would otherwise hold every tensor's of all of them (571 MB
    for a 15.7 MB file)."""
    chunks, detail, kept = [], None, {}
    for k, entry in enumerate(reader.chunks):
        desc = describe_chunk(reader, meter, k)
        if k == 0:  # the source's colour tags and audio ride in the first chunk
            kept = {key: desc[key] for key in ("colour", "audio") if key in desc}
        if k == detailed:
            detail = desc
        sections = [{key: value for key, value in s.items() if key != "tensor_details"}
                    for s in desc["sections"]]
        v = reader.video
        video_bytes = entry.length - (kept.get("audio", {}).get("bytes", 0) if k == 0 else 0)
        chunks.append({"index": k, "first_frame": entry.first_frame,
                       "frame_count": entry.frame_count, "offset": entry.offset,
                       "length": entry.length, "psnr_rgb": entry.psnr,
                       # the audio is paid apart from the rate, as the encoder reports it
                       "bpp": 8 * video_bytes / (v["width"] * v["height"] * entry.frame_count),
                       "header": desc["header"], "sections": sections})
    described = {"format_version": reader.version, "file_bytes": reader.file_bytes,
                 "video": dict(reader.video), "chunks": chunks, **kept}
    if detail is not None:
        described["chunk"] = {"index": detailed, **detail}
    return described


def _name_tensors(desc: dict) -> None:
    """Give each tensor of `desc` its name (the decoder's from the architecture the header
    describes) and its share of the file, in place."""

    decoder = [name for name, _ in config_from_header(desc["header"]).tensor_shapes()]
    names = {"WDEC": decoder, "ECON": ["content embeddings"], "EDIF": ["diff embeddings"]}
    for s in desc["sections"]:
        details, known = s.get("tensor_details", []), names.get(s["tag"], [])
        if len(known) == len(details):
            for name, t in zip(known, details):
                t["name"] = name
        for t in details:
            t["share"] = t["bytes"] / desc["file_bytes"]


def format_info(path: str, desc: dict) -> str:
    if "chunks" in desc:
        return _format_chunked_info(path, desc)
    lines = [f"{path}: .dnv format {desc['format_version']}, {desc['file_bytes']} bytes"]
    header = desc.get("header", {})
    lines += _format_sections(desc) + _format_extras(desc)
    return "\n".join(lines + _format_cost(desc["decode_cost"], header.get("padded_height", 0)))


def _format_extras(desc: dict) -> list[str]:
    """What the file keeps of its source besides the pictures, a line each."""
    lines = []
    if "colour" in desc:
        c = desc["colour"]
        lines.append(f"  colour  primaries {c['primaries']}, transfer {c['transfer']}, matrix "
                     f"{c['matrix']} (ISO/IEC 23091-2 code points), tagged on decode")
    if "audio" in desc:
        a = desc["audio"]
        lines.append(f"  audio   {a['codec']}, {a['packets']} packets, {a['bytes']} bytes (not "
                     f"in bpp), from {a['start_seconds']:+.3f} s; muxed back on decode to "
                     f".mp4/.mkv/.mov")
    return lines


def _format_sections(desc: dict) -> list[str]:
    """The header's fields, then each section with its tensors' coding."""
    lines, header = [], desc.get("header", {})
    width = max((len(k) for k in header), default=0)
    for key, value in header.items():
        shown = "x".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        lines.append(f"  {key:<{width}}  {shown}")
    lines.append("  sections:")
    for s in desc.get("sections", []):
        extra = ""
        share = 100 * s["length"] / desc["file_bytes"]
        if "tensors" in s:
            plural = "" if s["tensors"] == 1 else "s"
            extra = f"  {s['tensors']} tensor{plural}, {s['symbols']} symbols"
            if "bits_per_value" in s:
                extra += f", {s['bits_per_value']:.2f} bits a value"
        lines.append(f"    {s['tag']}  {s['length']:>10} bytes {share:5.1f} %{extra}")
        for t in s.get("tensor_details", []):
            coding = "+".join(t["models"]) + (" per slice" if t["model_axis"] is not None else "")
            if t["prediction"] != "none":
                coding = f"{t['prediction']} prediction, {coding}"
            shape = "x".join(map(str, t["shape"]))
            lines.append(f"      {t.get('name', ''):<22} {shape:>12} {t['bytes']:>9} bytes "
                         f"{100 * t['share']:5.1f} % {t['bits_per_value']:6.2f} bits a value  "
                         f"{coding}")
    return lines


def _format_chunked_info(path: str, desc: dict) -> str:
    v = desc["video"]
    fps = f"{v['fps_num']}/{v['fps_den']}" if v["fps_den"] != 1 else str(v["fps_num"])
    lines = [f"{path}: .dnv format {desc['format_version']}, {desc['file_bytes']} bytes, "
             f"{len(desc['chunks'])} chunks",
             f"  video  {v['width']}x{v['height']}, {v['frame_count']} frames, {fps} fps",
             "  chunks:",
             f"    {'#':>4}  {'frames':>15}  {'bytes':>10}  {'bpp':>7}  {'PSNR-RGB':>9}  "
             f"{'c2':>4}  {'decoder params':>14}"]
    for c in desc["chunks"]:
        h = c["header"]
        params = config_from_header(h).parameter_count()
        psnr = f"{c['psnr_rgb']:.2f} dB" if c["psnr_rgb"] else "-"
        frames = f"{c['first_frame']}..{c['first_frame'] + c['frame_count'] - 1}"
        lines.append(f"    {c['index']:>4}  {frames:>15}  {c['length']:>10}  {c['bpp']:7.4f}  "
                     f"{psnr:>9}  {h['stem_channels']:>4}  {params:>14}")
    if "chunk" in desc:
        lines.append(f"  chunk {desc['chunk']['index']}:")
        lines += ["  " + line for line in _format_sections(desc["chunk"])]
    lines += _format_extras(desc)
    heights = max(c["header"]["padded_height"] for c in desc["chunks"])
    return "\n".join(lines + _format_cost(desc["decode_cost"], heights))


def _format_cost(c: dict, padded_height: int) -> list[str]:

    mib = 1 << 20
    bands = ("whole frames" if c["band_rows"] >= padded_height
             else f"bands of {c['band_rows']} rows (+{c['halo_rows']} either side)")
    lines = [
        "  decoding (to .mp4)" + (f", a chunk at a time ({c['chunks']} chunks):"
                                  if "chunks" in c else ":"),
        f"    peak memory  {c['peak_memory_bytes'] / mib:.1f} MiB (limit {c['max_memory'] / mib:.0f} MiB): "
        f"unpacking {c['unpack_bytes'] / mib:.1f} MiB, rendering {c['render_bytes'] / mib:.1f} MiB",
        f"    work         {c['work_macs']:.3g} MACs = {c['macs_per_frame']:.3g} a frame x "
        f"{c['frames']} frames + {c['overhead_macs']:.3g} for writing frames and reading "
        f"tensors (limit {c['max_work']:.3g}; about {format_seconds(c['seconds_estimate'])} on "
        f"2 CPU cores)",
        f"    rendering    {c['render_batch']} frame{'s' if c['render_batch'] > 1 else ''} a call, {bands}",
        f"  reading the tensors (what info does): {c['reading_work_macs']:.3g} MACs' worth of "
        f"time at most, about {format_seconds(c['reading_seconds_estimate'])}",
    ]
    if not c["within_limits"]:
        lines.append("    over the limits: `dnerv decode` refuses it unless they are raised")
    return lines
