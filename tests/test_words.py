"""The CLI's words: log levels, one bar for the whole encode, the same option names across
commands (--json PATH, --frames N or A:B), grouped help, and the old spellings still read."""

import json

import numpy as np
import pytest

from dnerv_codec.cli import main
from dnerv_codec.encoding.milestones import Milestone, Overall
from dnerv_codec.io import read_video
from dnerv_codec.metrics import psnr_rgb

QUICK = ["--bpp", "8", "--epochs", "3", "--device", "cpu"]


def test_the_whole_encode_is_one_bar_with_one_eta():
    """Stages priced by the plan: the bar's share follows the expected seconds, not the epochs,
    and the ETA is the time so far scaled by what is left."""
    now = [0.0]
    overall = Overall(clock=lambda: now[0])
    overall.milestone(Milestone("train", units=4, plan={"train": 80, "search": 4,
                                                        "finetune": 12, "check": 4}))
    assert overall.fraction() == 0 and overall.eta_seconds() is None
    for _ in range(2):
        overall.epoch()
    now[0] = 40.0
    assert overall.fraction() == pytest.approx(0.4)  # half of training: 40 of 100 seconds
    assert overall.eta_seconds() == pytest.approx(60.0)
    overall.milestone(Milestone("train", done=True))
    overall.milestone(Milestone("search"))
    assert overall.fraction() == pytest.approx(0.8)
    overall.milestone(Milestone("search", done=True))
    # a new plan re-prices what is still to come, never what is done
    overall.milestone(Milestone("finetune", units=1, plan={"finetune": 36, "check": 4}))
    assert overall.fraction() == pytest.approx(84 / 124)
    for stage in ("finetune", "check"):
        overall.milestone(Milestone(stage, done=True))
    assert overall.fraction() == 1.0 and overall.eta_seconds() == 0.0
    with pytest.raises(ValueError, match="unknown stage"):
        Milestone("rest")


def test_log_levels(tiny_png_source, tmp_path, capsys):
    out = tmp_path / "o.dnv"
    assert main(["encode", str(tiny_png_source), "-o", str(out), *QUICK, "-v"]) == 0
    err = capsys.readouterr().err
    assert "dnerv: train epoch 2/3, PSNR" in err and "dnerv: model:" in err
    assert "dnerv: 100 % (check)" in err  # off a terminal: the bar is a line a tenth
    assert main(["encode", str(tiny_png_source), "-o", str(out), *QUICK, "-q"]) == 0
    lines = capsys.readouterr().err.splitlines()
    # -q: the notes and the summary; 3 epochs leave this clip under its mean frame, which is
    # a note (the bar, the plan and the epochs are not said)
    assert lines[-1].startswith("dnerv: 6 frames 96x64 -> ")
    assert lines[:-1] and all(line.startswith("dnerv: note: ") for line in lines[:-1])
    assert any("under the clip's mean frame" in line for line in lines[:-1])
    assert main(["encode", str(tiny_png_source), "-o", str(out), *QUICK, "-qq"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["decode", str(out), "-o", str(tmp_path / "b.y4m"), "-q"]) == 0
    assert capsys.readouterr().err.startswith("dnerv: decoded 6 frames 96x64 @ 25 fps")
    assert main(["decode", str(out), "-o", str(tmp_path / "c.y4m"), "-qq"]) == 0
    assert capsys.readouterr().err == ""


def test_json_path_is_one_spelling_in_every_command(tiny_encoded, tmp_path, capsys):
    dnv = str(tiny_encoded.dnv)
    assert main(["decode", dnv, "-o", str(tmp_path / "b.y4m"), "-qq", "--json", "-"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["frames"] == 6 and decoded["stored_frames"] == [0, 6]
    assert (decoded["width"], decoded["height"], decoded["fps"]) == (96, 64, "25/1")
    assert main(["info", dnv, "--json", str(tmp_path / "i.json")]) == 0
    assert capsys.readouterr().out == ""
    described = json.loads((tmp_path / "i.json").read_text())
    assert main(["info", dnv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == described
    # the spelling before --json took a path still reads, with a note
    assert main(["info", "--json", dnv]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == described
    assert "'info --json FILE' is read as 'info FILE --json'" in captured.err
    assert main(["decode", dnv, "-o", "-", "--json", "-"]) == 2
    assert "both want stdout" in capsys.readouterr().err


def test_frames_reads_the_same_in_encode_and_decode(tiny_png_source, tiny_clip, tmp_path):
    """encode --frames A:B encodes those frames (and N the first N); decode --frames N decodes
    the first N, as A:B with A = 0."""
    out, back = tmp_path / "part.dnv", tmp_path / "back.y4m"
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--frames", "2:5", "--bpp", "8",
                 "--epochs", "40", "--lr", "5e-3", "--device", "cpu", "-qq"]) == 0
    assert main(["decode", str(out), "-o", str(back), "--frames", "2", "-qq"]) == 0
    frames = read_video(back).frames
    assert frames.shape[0] == 2
    source = tiny_clip.frames
    # the frames of 2..3 it was given, not the clip's first two
    assert psnr_rgb(source[2:4], frames)["total"] > psnr_rgb(source[0:2], frames)["total"] + 1
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--frames", "9:", *QUICK]) == 2
    assert main(["encode", str(tiny_png_source), "-o", str(out), "--frames", "4:2", *QUICK]) == 2


def test_help_is_grouped(capsys):
    assert main(["encode", "--help"]) == 0
    text = capsys.readouterr().out
    headings = [line for line in text.splitlines() if line.endswith(":") and not
                line.startswith(" ")]
    assert headings[:3] == ["Input and output:", "Rate or quality:", "How long it trains:"]
    assert "Other options:" not in text and "[default: fast]" in text
    assert np.all([h in text for h in ("Examples:", "--no-audio", "-v, --verbose")])
