"""dnerv in a pipeline: Y4M in on standard input, Y4M out on standard output, a bitrate target
in kb/s, and the limits it prints read back as they are printed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnerv_codec.cli import main
from conftest import write_video
from dnerv_codec.io import read_video
from dnerv_codec.metrics import psnr_rgb

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def y4m_bytes(tiny_clip, tmp_path_factory) -> bytes:
    """tiny_clip as an ffmpeg `-f yuv4mpegpipe -` stream would carry it."""
    return write_video(tmp_path_factory.mktemp("y4m") / "clip.y4m", tiny_clip).read_bytes()


def dnerv(args, stdin: bytes = b"", tmp: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m dnerv_codec ARGS` with `stdin` piped in; temporary files go under `tmp`."""
    env = {**os.environ, **({"TMPDIR": str(tmp)} if tmp else {})}
    return subprocess.run([sys.executable, "-m", "dnerv_codec", *map(str, args)], input=stdin,
                          capture_output=True, cwd=ROOT, env=env, timeout=600)


def spooled(folder: Path) -> list[Path]:
    """What dnerv left of standard input in `folder` (torch keeps its own caches there too)."""
    return [p for p in folder.iterdir() if p.name.startswith("dnerv-stdin-")]


def test_a_y4m_pipe_encodes_and_decodes_to_a_y4m_pipe(y4m_bytes, tiny_clip, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    out, stats = tmp_path / "piped.dnv", tmp_path / "piped.json"
    done = dnerv(["encode", "-", "-o", out, "--bpp", "8", "--epochs", "40", "--lr", "5e-3",
                  "--device", "cpu", "-q", "--json", stats], y4m_bytes, spool)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""  # stdout stays clean
    s = json.loads(stats.read_text())
    assert (s["input"], s["frames"], s["width"], s["height"]) == ("-", 6, 96, 64)
    assert spooled(spool) == []  # the spooled input is gone

    decoded = dnerv(["decode", out, "-o", "-"])
    assert decoded.returncode == 0, decoded.stderr.decode()
    assert decoded.stdout.startswith(b"YUV4MPEG2 W96 H64 F25:1")
    assert b"decoded 6 frames" in decoded.stderr  # the summary stays on stderr
    piped = tmp_path / "from-stdout.y4m"
    piped.write_bytes(decoded.stdout)
    frames = read_video(piped).frames
    assert frames.shape == tiny_clip.frames.shape
    # what a .y4m file gets (the same conversion to 4:2:0), byte for byte
    assert main(["decode", str(out), "-o", str(tmp_path / "file.y4m"), "-q"]) == 0
    assert (tmp_path / "file.y4m").read_bytes() == decoded.stdout
    # and a real decode of the clip, not a flat picture: the encoder's own figure
    assert psnr_rgb(tiny_clip.frames, frames)["total"] > s["baselines"]["mean_frame"]


def test_a_bad_or_empty_pipe_is_one_line_and_leaves_nothing(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    for stdin, words in ((b"", "standard input is empty"),
                         (b"not a video at all " * 100, "'-' is not a video")):
        done = dnerv(["encode", "-", "-o", tmp_path / "x.dnv", "--bpp", "8"], stdin, spool)
        err = done.stderr.decode()
        assert done.returncode == 2 and err.count("\n") == 1 and words in err, err
        assert "dnerv-stdin-" not in err  # the spool's name is not the user's
        assert spooled(spool) == [] and not (tmp_path / "x.dnv").exists()


def test_kbps_is_a_rate_target_in_the_units_players_show(tiny_png_source, tmp_path, capsys):
    # 8 bpp on 96x64 at 25 fps is 1228.8 kb/s
    out, stats = tmp_path / "k.dnv", tmp_path / "k.json"
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--kbps", "1228.8",
                 "--epochs", "4", "--device", "cpu", "--json", str(stats)]) == 0
    err = capsys.readouterr().err
    assert "target 8 bpp (1228.8 kb/s)" in err
    s = json.loads(stats.read_text())
    assert s["target"] == {"kbps": 1228.8, "bpp": pytest.approx(8.0)}
    assert s["target_bpp"] == pytest.approx(8.0)
    assert 0.9 * 1228.8 <= s["kbps"] <= 1.002 * 1228.8  # measured on the file, from below
    assert s["kbps"] == pytest.approx(out.stat().st_size * 8 / 1000 / (6 / 25))
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--kbps", "100",
                 "--bpp", "0.1"]) == 2
    assert "one rate: --bpp or --kbps" in capsys.readouterr().err


def test_the_eta_counts_past_a_day():
    from dnerv_codec.commands.progressbar import clock_text
    assert (clock_text(59.6), clock_text(3600 * 26 + 2400), clock_text(-3)) == (
        "00:01:00", "26:40:00", "00:00:00")


def test_a_quality_target_gets_the_smallest_file_that_reaches_it(tiny_png_source, tmp_path,
                                                                 capsys):
    """--psnr: the decoded video meets the target, and a lower target costs fewer bytes (the
    same trained network, sized for --bpp 8, the most the file may cost: the same seed and
    schedule, only the rate search differs)."""
    found = {}
    for psnr in (24.0, 27.0):
        out, stats = tmp_path / f"q{psnr:g}.dnv", tmp_path / f"q{psnr:g}.json"
        assert main(["encode", str(tiny_png_source), "-o", str(out), "--psnr", str(psnr),
                     "--bpp", "8", "--epochs", "40", "--lr", "5e-3", "--device", "cpu", "-q",
                     "--json", str(stats)]) == 0
        err = capsys.readouterr().err
        s = json.loads(stats.read_text())
        assert f"target {psnr:g} dB: met" in err and s["psnr_target"]["met"]
        assert s["target"] == {"psnr": psnr, "max_bpp": 8.0} and s["bpp"] <= 8.0
        # the decode's own measure, not the encoder's: the file meets the target
        assert main(["decode", str(out), "-o", str(tmp_path / f"q{psnr:g}-%03d.png"), "-q"]) == 0
        frames = read_video(tmp_path / f"q{psnr:g}-%03d.png").frames
        found[psnr] = (out.stat().st_size, psnr_rgb(read_video(tiny_png_source).frames,
                                                     frames)["total"])
        assert found[psnr][1] >= psnr
    assert found[24.0][0] < found[27.0][0]
    assert main(["encode", str(tiny_png_source), "-o", str(tmp_path / "x.dnv"), "--bpp", "1",
                 "--kbps", "100"]) == 2
    assert "one rate: --bpp or --kbps" in capsys.readouterr().err


def test_progress_for_tools_is_key_value_blocks_ending_in_end(tiny_png_source, tmp_path, capsys):
    out, progress = tmp_path / "p.dnv", tmp_path / "progress.txt"
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--bpp", "8", "--epochs", "3",
                 "--device", "cpu", "-q", "--progress", str(progress), "--json", "-"]) == 0
    stats = json.loads(capsys.readouterr().out)  # stdout still holds only the JSON
    blocks = progress.read_text().split("progress=continue\n")
    assert blocks[-1] == "overall=1.0000\neta_s=0.0\nprogress=end\n"
    parsed = [dict(line.split("=", 1) for line in b.splitlines()) for b in blocks[:-1]]
    epochs = [e for e in parsed if "epoch" in e]
    train = [e for e in epochs if e["stage"] == "train"]
    assert [int(e["epoch"]) for e in train] == [1, 2, 3] and train[0]["epochs"] == "3"
    assert len(epochs) == 3 + stats["finetune_epochs"]
    assert all(float(e["psnr"]) > 0 and float(e["stage_eta_s"]) >= 0 for e in epochs)
    # every stage begins and ends, the searches and the self-check too, in order, and the
    # whole encode's share done only grows
    stages = [(e["stage"], e["state"]) for e in parsed if "state" in e]
    assert stages == [(s, state) for s in ("train", "search", "finetune", "check")
                      for state in ("begin", "end")]
    overall = [float(e["overall"]) for e in parsed]
    assert overall == sorted(overall) and overall[-1] == 1.0 and overall[0] < 0.5
    assert all(float(e["eta_s"]) >= 0 for e in parsed if "eta_s" in e)
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--progress", "-",
                 "--json", "-"]) == 2
    assert "both want stdout" in capsys.readouterr().err
