"""What chunking costs and buys, on the embedded clip, through the `dnerv` CLI itself.

1. **Price**: at each --bpp, one network for the whole clip against --chunk (the clip in
   chunks of that many frames, each its own network), at the same rate, the chunks started
   cold (each from its seeded weights, the default) and warm (--warm-start: each from the
   previous chunk's trained network): file size, PSNR and encode time of each.
2. **Parallelism**: an encode in `--parallel-chunks` chunks run three ways in one run: serial
   with torch's default threads, serial with one thread, and `--workers 2` (a local Ray
   instance, one thread a worker); wall times, their ratios, and whether the one-thread serial
   file and the parallel one are byte-identical (they must be: same seed, same threads).
3. **Random access**: decoding a 10-frame range of that chunked file against decoding all of
   it (`dnerv decode --frames A:B` builds only the chunks that hold A..B-1).

Every encode and decode is a fresh `python -m dnerv_codec` process, encodes timed from outside
(Ray's start included), decodes by the time they report. Writes chunks-rd-<clip>.json and
chunks-parallel-<clip>.json (CompressAI-shaped, with the command) to --out and prints the tables.

    python benchmarks/chunks.py --parts rd --bpp 0.05 0.2 --chunk 24   # 60 epochs, the recipe's lr
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from dnerv_codec.io import default_clip_path

SCRIPT = "chunks"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bpp", type=float, nargs="+", default=[0.05, 0.2], help="target rates")
    p.add_argument("--chunk", type=int, default=24, help="chunk length of the chunked encodes")
    p.add_argument("--parallel-chunks", type=int, default=4,
                   help="chunks of the parallel-encoding comparison")
    p.add_argument("--parallel-epochs", type=int, default=10,
                   help="epochs of the parallel-encoding comparison (its wall time is the point)")
    p.add_argument("--parallel-bpp", type=float, default=0.2)
    p.add_argument("--range", default="20:30", help="the frames decoded for random access")
    p.add_argument("--parts", nargs="+", choices=["rd", "parallel"], default=["rd", "parallel"],
                   help="rd: part 1; parallel: parts 2 and 3. Each writes its own file, "
                        "chunks-<part>-<clip>.json")
    benchlib.add_common_args(p, epochs=60, lr=None)
    return p.parse_args(argv)


def decode_seconds(stderr: str) -> float:
    """The decode time `dnerv decode` reports (from reading the file to the last frame
    written; the interpreter's start and torch's import are not in it)."""
    match = re.search(r" in ([0-9.]+) s \(", stderr)
    if not match:
        raise SystemExit(f"{SCRIPT}: no decode time in: {stderr}")
    return float(match.group(1))


def dnerv(*args: str) -> tuple[float, str]:
    """Run `dnerv ARGS` in a fresh interpreter; (wall seconds, stderr). Fails loudly."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dnerv_codec", *args], capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{SCRIPT}: dnerv {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done.stderr


def encode(clip: str, out: Path, *args: str) -> dict:
    stats = out.with_suffix(".json")
    seconds, _ = dnerv("encode", clip, "-o", str(out), "--json", str(stats), "-q", *args)
    s = json.loads(stats.read_text())
    return {"bytes": s["bytes"], "bpp": round(s["bpp"], 5), "psnr_rgb": round(s["psnr_rgb"], 3),
            "chunks": len(s["chunks"]), "wall_seconds": round(seconds, 1),
            "chunk_psnr_rgb": [round(c["psnr_rgb"], 2) for c in s["chunks"]],
            "chunk_bpp": [round(c["bpp"], 4) for c in s["chunks"]],
            "decoder_params": [c["model"]["decoder_params"] for c in s["chunks"]]}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    clip = str(default_clip_path())
    common = ["--epochs", str(args.epochs), "--device", args.device,
              *(["--lr", str(args.lr)] if args.lr else [])]
    common_fields = {"name": SCRIPT, "command": benchlib.command_line(SCRIPT, argv),
                     "versions": benchlib.versions()}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        if "rd" in args.parts:
            rows = []
            for bpp in args.bpp:
                for chunk, start in ((None, "-"), (args.chunk, "warm"), (args.chunk, "cold")):
                    name = f"{bpp}-{chunk or 'whole'}-{start}"
                    extra = ["--chunk", str(chunk)] if chunk else []
                    extra += ["--warm-start"] if start == "warm" else []
                    row = {"target_bpp": bpp, "chunk": chunk or 48, "start": start,
                           **encode(clip, folder / f"{name}.dnv", "--bpp", str(bpp), *common,
                                    *extra)}
                    benchlib.log(SCRIPT, f"{bpp} bpp, chunk {row['chunk']} ({start}): "
                                         f"{row['bpp']} bpp, {row['psnr_rgb']} dB, "
                                         f"{row['wall_seconds']} s")
                    rows.append(row)
            result = {**common_fields, "results": benchlib.columns(rows),
                      "description": f"the embedded clip (48 frames, 320x180): one network vs "
                                     f"chunks of {args.chunk} frames, started warm and cold, "
                                     f"at each rate"}
            benchlib.publish(SCRIPT, args.out, "chunks-rd-bunny_320x180", result, markdown(result))
        if "parallel" in args.parts:
            result = {**common_fields, **parallel_and_access(args, clip, folder),
                      "description": f"a {args.parallel_chunks}-chunk encode of the embedded clip"
                                     f" serial vs --workers 2; --frames {args.range} vs all"}
            benchlib.publish(SCRIPT, args.out, "chunks-parallel-bunny_320x180", result,
                             markdown(result))
    return result


def parallel_and_access(args, clip: str, folder: Path) -> dict:
    """Parts 2 and 3."""
    fast = ["--bpp", str(args.parallel_bpp), "--epochs", str(args.parallel_epochs),
            *(["--lr", str(args.lr)] if args.lr else []), "--device", "cpu",
            "--chunk", str(48 // args.parallel_chunks)]
    runs = {"serial, default threads": [], "serial, 1 thread": ["--threads", "1"],
            "--workers 2 (1 thread each)": ["--workers", "2"]}
    parallel = {}
    for label, extra in runs.items():
        out = folder / f"par-{len(parallel)}.dnv"
        parallel[label] = {**encode(clip, out, *fast, *extra), "file": out}
        benchlib.log(SCRIPT, f"{label}: {parallel[label]['wall_seconds']} s")
    files = [p.pop("file") for p in parallel.values()]
    identical = files[1].read_bytes() == files[2].read_bytes()
    base = parallel["serial, default threads"]["wall_seconds"]
    a, b = (int(x) for x in args.range.split(":"))
    _, part = dnerv("decode", str(files[2]), "-o", str(folder / "part.y4m"), "--frames", args.range)
    _, whole = dnerv("decode", str(files[2]), "-o", str(folder / "all.y4m"))
    t_part, t_all = decode_seconds(part), decode_seconds(whole)
    return {
        "parallel": {
            "command_options": " ".join(fast),
            "runs": {k: {"wall_seconds": v["wall_seconds"],
                         "speedup": round(base / v["wall_seconds"], 2),
                         "bytes": v["bytes"], "psnr_rgb": v["psnr_rgb"]}
                     for k, v in parallel.items()},
            "one_thread_serial_equals_workers_2": identical},
        "random_access": {"range": args.range, "frames": b - a, "range_seconds": t_part,
                          "all_seconds": t_all, "ratio": round(t_all / t_part, 2)}}


def markdown(result: dict) -> str:
    lines = []
    if "results" in result:
        r = result["results"]
        lines += ["| target bpp | frames a chunk | chunks | start | bpp | PSNR-RGB | per chunk "
                  "| encode s |", "|---|---|---|---|---|---|---|---|"]
        for i in range(len(r["target_bpp"])):
            start = r.get("start", ["-"] * len(r["target_bpp"]))[i]
            per_chunk = ", ".join(f"{q:.2f}" for q in r["chunk_psnr_rgb"][i])
            lines.append(f"| {r['target_bpp'][i]} | {r['chunk'][i]} | {r['chunks'][i]} | "
                         f"{start} | {r['bpp'][i]:.4f} | {r['psnr_rgb'][i]:.2f} dB | "
                         f"{per_chunk} | {r['wall_seconds'][i]} |")
        lines.append("")
    if "parallel" not in result:
        return "\n".join(lines)
    p = result["parallel"]
    lines += [f"`dnerv encode {p['command_options']}`:", "",
              "| run | wall s | speed-up | bytes | PSNR-RGB |", "|---|---|---|---|---|"]
    for label, v in p["runs"].items():
        lines.append(f"| {label} | {v['wall_seconds']} | {v['speedup']}x | {v['bytes']} | "
                     f"{v['psnr_rgb']:.2f} dB |")
    lines.append(f"\none-thread serial file == --workers 2 file: "
                 f"{p['one_thread_serial_equals_workers_2']}")
    ra = result["random_access"]
    lines.append(f"\ndecode --frames {ra['range']}: {ra['range_seconds']} s; all 48 frames: "
                 f"{ra['all_seconds']} s ({ra['ratio']}x; the times `dnerv decode` reports, "
                 f"without the interpreter's start)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
