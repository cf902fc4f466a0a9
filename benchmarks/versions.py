"""Version against version: BD-rate of this version's RD curves against an earlier version's, and
where the bits of the files go.

    python benchmarks/versions.py                          # results/ against results/v1/
    python benchmarks/versions.py --earlier v1=DIR depth=DIR --files a=DIR b=DIR

The RD curves are CompressAI-shaped JSON files written by benchmarks/rd.py (earlier versions'
kept in benchmarks/results/v1/ and benchmarks/results/v2.0-depth/). BD-rate is rd.bd_rate (the bjontegaard package,
PCHIP) on the Pareto points of each curve. With --files, each folder's .dnv files (rd.py
--streams keeps them) are opened with `dnerv info --json` semantics (bitstream.describe) and
reported per section: bytes, share of the file, bits per coded value and, for the decoder,
bits per non-zero weight. Writes versions-<clip>.json (and prints it as markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import benchlib
from dnerv_codec.format.architecture import symbol_counts
from dnerv_codec.format.container import describe, unpack
from rd import BD_METRICS, bd_rate

SCRIPT = "versions"
CODECS = ("dnerv", "hnerv")


def compare_curves(results: Path, earlier: Path, clip: str) -> dict:
    """{codec: {metric: BD-rate entry}} of results/ against earlier/ for the codecs both have."""
    out = {}
    for codec in CODECS:
        new, old = results / f"rd-{codec}-{clip}.json", earlier / f"rd-{codec}-{clip}.json"
        if new.exists() and old.exists():
            a, b = json.loads(old.read_text())["results"], json.loads(new.read_text())["results"]
            out[codec] = {m: bd_rate(a, b, m) for m in BD_METRICS}
    return out


def file_breakdown(path: Path) -> dict:
    """Sections of one .dnv: bytes, share, bits a value; bits per non-zero decoder weight."""
    data = path.read_bytes()
    desc = describe(data, symbol_counts)
    f = unpack(data)
    sections = {}
    for s in desc["sections"]:
        entry = {"bytes": s["length"], "share": s["length"] / len(data)}
        if "group" in s:
            tensors = f.groups[s["group"]]
            values = sum(t.q.size for t in tensors)
            entry["bits_per_value"] = 8 * s["length"] / values
            if s["group"] == "decoder":
                nonzero = sum(int((t.dequantize() != 0).sum()) for t in tensors)
                entry["bits_per_nonzero_weight"] = 8 * s["length"] / max(nonzero, 1)
                entry["nonzero_share"] = nonzero / values
        sections[s["tag"]] = entry
    return {"file": path.name, "format": desc["format_version"], "bytes": len(data),
            "bpp": 8 * len(data) / (desc["header"]["width"] * desc["header"]["height"]
                                    * desc["header"]["frame_count"]),
            "sections": sections}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=benchlib.RESULTS_DIR)
    p.add_argument("--earlier", nargs="+", default=[f"v1={benchlib.RESULTS_DIR / 'v1'}"],
                   metavar="LABEL=DIR", help="earlier versions' rd-*.json folders (default: v1)")
    p.add_argument("--clip", default="bunny_320x180")
    p.add_argument("--files", nargs="*", default=[], metavar="LABEL=DIR",
                   help="folders of .dnv files to break down (e.g. v1=/tmp/v1 v2=/tmp/rd-streams)")
    p.add_argument("--out", type=Path, default=None, help="default: RESULTS/versions-CLIP.json")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    report = {
        "name": "versions",
        "description": ("BD-rate of this version's curves against earlier versions' "
                        "(rd.bd_rate: bjontegaard, pchip, Pareto points; negative = fewer bits "
                        "for the same quality), and where the bits of each file go."),
        "command": benchlib.command_line(SCRIPT, argv),
        "clip": args.clip,
        "versions": benchlib.versions(),
        "bd_rate_vs_earlier": {label: compare_curves(args.results, Path(folder), args.clip)
                               for label, folder in (e.split("=", 1) for e in args.earlier)},
        "files": {},
    }
    for item in args.files:
        label, folder = item.split("=", 1)
        report["files"][label] = [file_breakdown(f) for f in sorted(Path(folder).glob("*.dnv"))]
    out = args.out or args.results / f"versions-{args.clip}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(versions_markdown(report))
    return report


def versions_markdown(report: dict) -> str:
    lines = [f"BD-rate of this version against earlier ones on {report['clip']} "
             "(negative = fewer bits for the same quality):", "",
             "| codec | against | " + " | ".join(BD_METRICS) + " |",
             "|---|---|" + "---:|" * len(BD_METRICS)]
    for label, codecs in report["bd_rate_vs_earlier"].items():
        for codec, entry in codecs.items():
            cells = [("n/a" if e["bd-rate"] is None else f"{e['bd-rate']:+.1f} % "
                      f"(overlap {e['overlap']:.0%})") for e in (entry[m] for m in BD_METRICS)]
            lines.append(f"| {codec} | {label} | " + " | ".join(cells) + " |")
    if report["files"]:
        lines += ["", "| version | file | bpp | WDEC share | bits / non-zero weight | ECON share "
                  "| bits / content value | EDIF share | bits / diff value |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for label, files in report["files"].items():
            for f in files:
                s = f["sections"]
                w, c, d = s.get("WDEC", {}), s.get("ECON", {}), s.get("EDIF", {})
                lines.append(
                    f"| {label} | {f['file']} | {f['bpp']:.4f} | {w.get('share', 0):.0%} | "
                    f"{w.get('bits_per_nonzero_weight', 0):.2f} | {c.get('share', 0):.0%} | "
                    f"{c.get('bits_per_value', 0):.2f} | {d.get('share', 0):.0%} | "
                    f"{d.get('bits_per_value', 0):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
