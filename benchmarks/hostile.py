"""What forged .dnv files cost a decoder: exit status, seconds and peak memory of each run.

CRC-valid files of a few hundred bytes to 24 MB (tests/forge.py makes them):

- huge-frame: 8192x8192 frames, the narrowest decoder (memory from the header);
- huge-decoder: a 50M-parameter decoder at 256x256, 8192 frames (work from the header);
- ancillary-flood: a valid 48x48 file followed by 2,000,000 empty ancillary sections;
- long-temporal: 2^23 frames of 24x24, 2^27 content values under temporal prediction;
- spliced-diff: a 48x96 file whose diff embedding has the right size in the wrong shape;
- tiny-frames: 10^7 frames of 2x2;
- chunk-flood: 200 one-frame 8x8 chunks, each with an all-zero 66M-parameter decoder;
- model-flood: 128 chunks of 4,096 2x2 frames, each frame's embedding under its own geometric
  model over +-4,096 (524,288 probability tables of 8,193 entries, which no header counts).

Each is run through `dnerv info --json` and `dnerv decode -o out.y4m` (and `-o out.mp4` for the
huge frame; the later files through the commands that broke), each in a fresh process, killed
after --timeout seconds. `--code DIR` runs another
checkout's dnerv_codec on the same files (e.g. a `git worktree` of an older commit), so that
before and after are measured in one run on one machine:

    git worktree add ../base <commit>
    OMP_NUM_THREADS=2 python benchmarks/hostile.py --code ../base --json before.json
    OMP_NUM_THREADS=2 python benchmarks/hostile.py --json after.json

`--only NAME ...` runs only those files' commands.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


FORGE = """
import sys
sys.path.insert(0, sys.argv[2])
import forge
from pathlib import Path
from dnerv_codec.format.architecture import make_config
folder = Path(sys.argv[1])
(folder / "huge-frame.dnv").write_bytes(forge.huge_frame(8192))
(folder / "huge-decoder.dnv").write_bytes(forge.huge_decoder(frames=8192))
(folder / "ancillary-flood.dnv").write_bytes(
    forge.forged(make_config(48, 48, 4), 48, 48, 2, ancillary=2_000_000))
(folder / "long-temporal.dnv").write_bytes(
    forge.forged(make_config(24, 24, 4), 24, 24, 1 << 23, temporal=True))
config = make_config(48, 96, 4)
c, h, w = config.diff_embed_shape
(folder / "spliced-diff.dnv").write_bytes(forge.forged(config, 96, 48, 3, diff_shape=(3, c, w, h)))
(folder / "tiny-frames.dnv").write_bytes(forge.forged(make_config(2, 2, 4), 2, 2, 10**7))
from dnerv_codec.format.architecture import with_width
from dnerv_codec.format.chunks import pack_chunked
from dnerv_codec.format.container import read_head
one = forge.forged(with_width(make_config(8, 8, 4), 520), 8, 8, 1)
(folder / "chunk-flood.dnv").write_bytes(
    pack_chunked(dict(read_head(one), frame_count=200), [(one, None)] * 200))
(folder / "model-flood.dnv").write_bytes(forge.model_flood(4096, chunks=128))
"""
NAMES = ("huge-frame", "huge-decoder", "ancillary-flood", "long-temporal", "spliced-diff",
         "tiny-frames", "chunk-flood", "model-flood")
FIRST = NAMES[:3]  # run through info, decode y4m (and mp4): the rest through what broke them


def forge_files(folder: Path) -> dict[str, Path]:
    """The three files, made in a child process: this one stays small, because Linux hands a
    parent's peak RSS down to its children (ru_maxrss survives fork and exec), and the forging
    imports torch."""
    subprocess.run([sys.executable, "-c", FORGE, str(folder), str(ROOT / "tests")], check=True,
                   cwd=ROOT)
    return {name: folder / f"{name}.dnv" for name in NAMES}


def peak_rss(argv: list[str], code: Path, timeout: float) -> dict:
    """Run `python -m dnerv_codec ARGV` with `code` first on the path: status, seconds, peak
    resident memory (MiB, the child's own getrusage, printed by a small wrapper) and the last
    line of stderr."""
    wrapper = ("import resource, runpy, sys; sys.argv = ['dnerv'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('dnerv_codec', run_name='__main__')\n"
               "finally:\n    sys.stderr.write('\\nPEAK_RSS_KIB %d\\n' % "
               "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    env = {**os.environ, "PYTHONPATH": str(code)}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", wrapper, *argv], cwd=code, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err = proc.communicate(timeout=timeout)[1]
        status = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        err, status = proc.communicate()[1], "timeout"
    seconds = time.perf_counter() - t
    lines = err.strip().splitlines()
    peak = next((int(x.split()[1]) for x in lines if x.startswith("PEAK_RSS_KIB")), None)
    text = [x for x in lines if x.strip() and not x.startswith("PEAK_RSS_KIB")]
    return {"status": status, "seconds": round(seconds, 2),
            "peak_rss_mib": None if peak is None else round(peak / 1024, 1),
            "last_line": (text or [""])[-1][:200]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="checkout whose dnerv_codec runs (default: this one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run (default 120)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=NAMES,
                        help="run only these files' commands (default: all)")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = forge_files(folder)
        runs = [(name, "info", ["info", "--json", str(files[name])]) for name in FIRST]
        runs += [(name, "decode y4m", ["decode", str(files[name]), "-o",
                                       str(folder / f"{name}.y4m")]) for name in FIRST]
        runs.append(("huge-frame", "decode mp4",
                     ["decode", str(files["huge-frame"]), "-o", str(folder / "huge-frame.mp4")]))
        runs += [
            ("long-temporal", "info --max-memory 512M",
             ["info", "--json", "--max-memory", "512M", str(files["long-temporal"])]),
            ("long-temporal", "info", ["info", "--json", str(files["long-temporal"])]),
            ("spliced-diff", "info", ["info", "--json", str(files["spliced-diff"])]),
            ("tiny-frames", "decode y4m --fps-scale 16",
             ["decode", str(files["tiny-frames"]), "-o", str(folder / "tiny.y4m"),
              "--fps-scale", "16"]),
            ("tiny-frames", "decode y4m --max-work 1e14",
             ["decode", str(files["tiny-frames"]), "-o", str(folder / "tiny.y4m"),
              "--max-work", "1e14"]),
            ("chunk-flood", "info", ["info", "--json", str(files["chunk-flood"])]),
            ("chunk-flood", "decode y4m",
             ["decode", str(files["chunk-flood"]), "-o", str(folder / "flood.y4m")]),
            ("model-flood", "info --max-work 1e11",
             ["info", "--json", "--max-work", "1e11", str(files["model-flood"])]),
        ]
        runs = [run for run in runs if run[0] in args.only]
        for name, what, run_argv in runs:
            r = peak_rss(run_argv, args.code.resolve(), args.timeout)
            r.update(file=name, command=what, file_bytes=files[name].stat().st_size)
            results[f"{name} / {what}"] = r
            print(f"{name:16s} {what:26s} status {r['status']!s:8s} {r['seconds']:7.2f} s "
                  f"{r['peak_rss_mib']!s:>8} MiB  {r['last_line']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
