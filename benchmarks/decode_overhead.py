"""What a decode costs beyond its network's multiply-accumulates (MACs), measured here.

The decode budget (dnerv_codec/format/budget.py) prices work in MACs. A file of tiny frames, of
many chunks or of a huge decoder on one pixel costs time that its MACs do not show: writing each
frame, building each chunk's decoder, entropy-decoding each value. This script measures those
costs in seconds, and the rate at which this machine renders MACs, so that budget.py can charge
each as the MACs the same time would render (the constants FRAME_MACS, CHUNK_MACS,
PARAMETER_MACS, VALUE_MACS and RENDER_MACS_PER_SECOND, and format/meter.py's SEGMENT_MACS).

- rate: 16 frames of 320x180 through a c2 = 24 decoder, rendered in memory;
- per frame and writer (y4m, png, h264): 2x2 frames decoded to a file, 4,001 against 1;
- per chunk: a 2x2 video of 400 one-frame chunks against one chunk of 400 frames;
- per decoder parameter: one 8x8 frame with a 66-million-parameter decoder against c2 = 4;
- per coded value: reading 4 million random 6-bit embedding values;
- per entropy model: 4,096 frames each under its own geometric model, against one model.

Forged files (tests/forge.py: all-zero weights and embeddings) compute as any other: a
convolution's time does not depend on its values. One process, torch's default threads; run it
alone on an idle machine:

    python benchmarks/decode_overhead.py --json decode-overhead.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import benchlib  # noqa: E402
import forge  # noqa: E402
from dnerv_codec.codec import DecodedFile, DecodedVideo  # noqa: E402
from dnerv_codec.format.architecture import make_config, with_width  # noqa: E402
from dnerv_codec.format.budget import UNLIMITED  # noqa: E402
from dnerv_codec.format.chunks import DnvReader, pack_chunked  # noqa: E402
from dnerv_codec.format.container import read_head  # noqa: E402
from dnerv_codec.format.entropy import ByteReader  # noqa: E402
from dnerv_codec.format.tensorcode import StepTensor, pack_section, read_section  # noqa: E402
from dnerv_codec.io import open_writer, output_kind  # noqa: E402

WRITERS = {"y4m": "out.y4m", "png": "%06d.png", "h264": "out.mp4"}


def _decode_seconds(data: bytes, output: Path | None, repeats: int = 3) -> float:
    """Best of `repeats`: the file on disk to `output` (or rendered in memory when None)."""
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.dnv"
        path.write_bytes(data)
        for r in range(repeats):
            t0 = time.perf_counter()
            with DnvReader.open(str(path)) as reader:
                kind = None if output is None else output_kind(output)
                decoded = DecodedFile(reader, device="cpu", limits=UNLIMITED, writer=kind)
                if output is None:
                    for _ in decoded.frames():
                        pass
                else:
                    target = Path(tmp) / f"r{r}" / output
                    target.parent.mkdir()
                    with open_writer(target, decoded.width, decoded.height, decoded.fps) as w:
                        for frame in decoded.frames():
                            w.write(frame)
            best = min(best, time.perf_counter() - t0)
    return best


def render_rate() -> dict:
    config = make_config(180, 320, 24)
    data = forge.forged(config, 320, 180, 16)
    video = DecodedVideo(data, device="cpu", limits=UNLIMITED)
    macs = video.cost.macs_per_frame * 16
    seconds = _decode_seconds(data, None)
    return {"macs": macs, "seconds": seconds, "macs_per_second": macs / seconds}


def per_frame() -> dict:
    config = make_config(2, 2, 4)
    many, one = forge.forged(config, 2, 2, 4001), forge.forged(config, 2, 2, 1)
    out = {}
    for kind, name in WRITERS.items():
        seconds = (_decode_seconds(many, Path(name), 2) - _decode_seconds(one, Path(name))) / 4000
        out[kind] = seconds
    out["none"] = (_decode_seconds(many, None, 2) - _decode_seconds(one, None)) / 4000
    return out


def per_chunk() -> float:
    config = make_config(2, 2, 4)
    frames = 400
    whole = forge.forged(config, 2, 2, frames)
    video = dict(read_head(whole), frame_count=frames)
    chunk = forge.forged(config, 2, 2, 1)
    chunked = pack_chunked(video, [(chunk, None)] * frames)
    return (_decode_seconds(chunked, None) - _decode_seconds(whole, None)) / (frames - 1)


def per_parameter() -> dict:
    small = make_config(8, 8, 4)
    big = with_width(small, 520)
    seconds = (_decode_seconds(forge.forged(big, 8, 8, 1), None)
               - _decode_seconds(forge.forged(small, 8, 8, 1), None))
    params = big.parameter_count() - small.parameter_count()
    return {"parameters": params, "seconds": seconds, "per_parameter": seconds / params}


def per_value() -> dict:
    rng = np.random.default_rng(0)
    values = 1 << 22
    q = np.clip(np.round(rng.normal(0, 6, (values // 256, 16, 4, 4))), -31, 31).astype(np.int32)
    tensor = StepTensor(q.shape, None, np.array([0.1], np.float32), q, temporal=True,
                        channel_axis=1)
    section = pack_section([tensor])
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        read_section(ByteReader(section, 0, len(section), "section"), values, values)
        best = min(best, time.perf_counter() - t0)
    return {"values": values, "bytes": len(section), "seconds": best,
            "per_value": best / values}


def per_segment() -> dict:
    """An entropy model read (what dnerv_codec/format/meter.py charges), at its costliest: a
    geometric model over +-4,096 with a ratio not seen before, 4,096 of them against one
    histogram for the same 4,096 frames."""
    frames = 4096
    config = make_config(2, 2, 4, diff_stream=False)
    seconds = (_decode_seconds(forge.model_flood(frames), None)
               - _decode_seconds(forge.forged(config, 2, 2, frames), None))
    return {"segments": frames, "seconds": seconds, "per_segment": seconds / frames}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    rate = render_rate()
    frame, chunk = per_frame(), per_chunk()
    parameter, value, segment = per_parameter(), per_value(), per_segment()
    r = rate["macs_per_second"]
    results = {
        "name": "decode-overhead", "command": benchlib.command_line("decode_overhead", argv),
        "versions": benchlib.versions(),
        "render": rate,
        "frame_seconds": frame, "chunk_seconds": chunk,
        "parameter": parameter, "value": value, "segment": segment,
        "as_macs": {"frame": {k: s * r for k, s in frame.items()}, "chunk": chunk * r,
                    "parameter": parameter["per_parameter"] * r,
                    "value": value["per_value"] * r,
                    "segment": segment["per_segment"] * r},
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
