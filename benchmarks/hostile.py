"""What forged .dnv files cost a decoder: exit status, seconds and peak memory of each run.

Three CRC-valid files of a few hundred bytes to 24 MB (tests/forge.py makes them):

- huge-frame: 8192x8192 frames, the narrowest decoder (memory from the header);
- huge-decoder: a 50M-parameter decoder at 256x256, 8192 frames (work from the header);
- ancillary-flood: a valid 48x48 file followed by 2,000,000 empty ancillary sections.

Each is run through `dnerv info --json` and `dnerv decode -o out.y4m` (and `-o out.mp4` for the
huge frame) in a fresh process, killed after --timeout seconds. `--code DIR` runs another
checkout's dnerv_codec on the same files (e.g. a `git worktree` of an older commit), so that
before and after are measured in one run on one machine:

    git worktree add ../base <commit>
    OMP_NUM_THREADS=2 python benchmarks/hostile.py --code ../base --json before.json
    OMP_NUM_THREADS=2 python benchmarks/hostile.py --json after.json
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
"""
NAMES = ("huge-frame", "huge-decoder", "ancillary-flood")


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
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = forge_files(folder)
        runs = [(name, "info", ["info", "--json", str(path)]) for name, path in files.items()]
        runs += [(name, "decode y4m", ["decode", str(path), "-o", str(folder / f"{name}.y4m")])
                 for name, path in files.items()]
        runs.append(("huge-frame", "decode mp4",
                     ["decode", str(files["huge-frame"]), "-o", str(folder / "huge-frame.mp4")]))
        for name, what, run_argv in runs:
            r = peak_rss(run_argv, args.code.resolve(), args.timeout)
            r.update(file=name, command=what, file_bytes=files[name].stat().st_size)
            results[f"{name} / {what}"] = r
            print(f"{name:16s} {what:11s} status {r['status']!s:8s} {r['seconds']:7.2f} s "
                  f"{r['peak_rss_mib']!s:>8} MiB  {r['last_line']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
