"""What a newcomer meets first: defaults that work on any clip, one recipe per preset wherever
it is used (the CLI, bin/demo, the benchmarks), benchmarks that write outside the published
results, a pattern output's folder created, and `dnerv --version`."""

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import mean_frame_floor
from dnerv_codec.cli import main
from dnerv_codec.coding.ratecontrol import DEFAULT_BPP, PRESET_EPOCHS, RateRequest, floor_bpp
from dnerv_codec.training.modelchoice import DEFAULT_MODEL
from dnerv_codec.format.chunks import CHUNKED_VERSION
from dnerv_codec.format.container import FORMAT_VERSION
from dnerv_codec.io import open_writer, read_video
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.training.recipe import DEFAULT_RECIPE

ROOT = Path(__file__).resolve().parent.parent
ONE = (Path(__file__).parent / "data" / "bunny-0.1bpp-learned.dnv").read_bytes()  # 48 frames
sys.path.insert(0, str(ROOT / "benchmarks"))
import rd  # noqa: E402

# The realistic-rate encode: 40 epochs of 24 frames, about 75 s on 2 cores.
REALISTIC_EPOCHS = 40


@pytest.fixture(scope="module")
def qcif(tmp_path_factory, default_clip) -> Path:
    """A real 176x144 clip of 5 frames (a crop of the embedded one): too short for 0.05 bpp,
    whose embeddings and smallest decoder alone need more (the default model's and DNeRV's)."""
    path = tmp_path_factory.mktemp("qcif") / "qcif.y4m"
    with open_writer(path, 176, 144, default_clip.fps) as writer:
        for frame in default_clip.frames[:5, 18:162, 72:248]:
            writer.write(np.ascontiguousarray(frame))
    return path


def test_the_default_rate_works_on_a_short_176x144_clip(qcif, tmp_path, capsys):
    floor = floor_bpp(RateRequest(144, 176, 5, None, DEFAULT_MODEL))
    assert floor > DEFAULT_BPP  # the case this test is about
    stats = tmp_path / "s.json"
    assert main(["encode", str(qcif), "-o", str(tmp_path / "a.dnv"), "--epochs", "1",
                 "--json", str(stats)]) == 0
    err = capsys.readouterr().err
    assert f"note: the default --bpp {DEFAULT_BPP:g} is too low for 176x144, 5 frames" in err
    s = json.loads(stats.read_text())
    assert s["target_bpp"] == pytest.approx(1.25 * floor, rel=1e-2)
    assert 0.95 * s["target_bpp"] <= s["bpp"] <= s["target_bpp"] * 1.002
    # one epoch learns less than the clip's mean frame shows: written, but said (stderr, JSON)
    assert s["psnr_rgb_total"] < s["baselines"]["mean_frame"]
    under = (f"the file decodes at {s['psnr_rgb_total']:.2f} dB, under the clip's mean frame "
             f"({s['baselines']['mean_frame']:.2f} dB): 1 epoch(s) of training were too few")
    assert f"note: {under}" in err and any(n.startswith(under) for n in s["notes"])
    # asked for explicitly, the same rate is refused, naming the rate that works
    assert main(["encode", str(qcif), "-o", str(tmp_path / "b.dnv"), "--epochs", "1",
                 "--bpp", str(DEFAULT_BPP)]) == 2
    assert "too low for 176x144" in capsys.readouterr().err
    assert not (tmp_path / "b.dnv").exists()


@pytest.mark.slow
def test_a_realistic_rate_at_the_default_recipe_learns_more_than_the_mean_frame(tmp_path, capsys):
    """The rates users ask for, trained as `dnerv encode` trains by default (the codec recipe,
    learned steps, the planner's width), only shorter: every other frame of the embedded clip
    (24 frames, so that there is motion to learn) at 0.2 bpp through the CLI. The file lands on its rate from below, and its decode learned more
    than any picture that ignores the motion."""
    (tmp_path / "src").mkdir()
    source = tmp_path / "src" / "%03d.png"  # lossless: the y4m writer subsamples the chroma
    clip = read_video(ROOT / "dnerv_codec" / "data" / "bunny_320x180.mp4")
    frames = clip.frames[::2]
    with open_writer(source, 320, 180, clip.fps) as writer:
        for frame in frames:
            writer.write(frame)
    out, stats, rec = tmp_path / "a.dnv", tmp_path / "a.json", tmp_path / "rec"
    assert main(["encode", str(source), "-o", str(out), "--bpp", "0.2", "--epochs",
                 str(REALISTIC_EPOCHS), "--device", "cpu", "--json", str(stats)]) == 0
    capsys.readouterr()
    s = json.loads(stats.read_text())
    assert 0.95 * 0.2 <= s["bpp"] <= 0.2 and s["notes"] == []
    assert s["restarts"] == 0  # a healthy start, judged and kept
    rec.mkdir()
    assert main(["decode", str(out), "-o", str(rec / "%03d.png"), "-q"]) == 0
    decoded = read_video(rec / "%03d.png").frames
    # The mean frame scores 20.29 dB total on these 24 frames (flat grey 11.8); this encode gave
    # 23.46, 23.78 and 22.72 dB at seeds 0-2. Consecutive frames were a poor choice: their mean
    # frame scores 23.19 and the encode 24.16-24.84 dB, and 12 frames 4 apart at 60 epochs gave
    # 20.36-22.34 (seeds 0-2) against 20.33. A dead network (the 12.8 dB at 0.2 bpp of an unseen
    # clip that once passed the suite), one that learned only the mean frame, or a file at a
    # third of its rate fails.
    assert psnr_rgb(frames, decoded)["total"] > mean_frame_floor(frames, 1.5)


def test_a_pattern_output_gets_its_folder(tmp_path, capsys):
    dnv = tmp_path / "in.dnv"
    dnv.write_bytes(ONE)
    assert main(["decode", str(dnv), "-o", str(tmp_path / "png" / "sub" / "%05d.png"),
                 "--frames", "0:3"]) == 0
    assert sorted(p.name for p in (tmp_path / "png" / "sub").iterdir()) == [
        "00001.png", "00002.png", "00003.png"]
    assert len(read_video(tmp_path / "png" / "sub" / "%05d.png").frames) == 3
    capsys.readouterr()
    # a failed decode leaves no folder behind
    (tmp_path / "bad.dnv").write_bytes(ONE[:100])
    assert main(["decode", str(tmp_path / "bad.dnv"), "-o",
                 str(tmp_path / "out" / "deeper" / "%05d.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated .dnv" in err[0]
    assert not (tmp_path / "out").exists()
    # other outputs still need their folder
    assert main(["decode", str(dnv), "-o", str(tmp_path / "nodir" / "x.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_version_names_the_formats(capsys):
    with pytest.raises(SystemExit) as stop:
        from dnerv_codec.cli import cli
        cli.main(["--version"], standalone_mode=True)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    import dnerv_codec
    assert out.startswith(f"dnerv {dnerv_codec.__version__}: ")
    assert f"format {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}" in out
    assert f"{CHUNKED_VERSION[0]}.{CHUNKED_VERSION[1]}" in out and "reads 1.x, 2.x, 3.x" in out


def test_the_progress_line_and_the_json_name_the_width_alike(tiny_clip, tmp_video, tmp_path, capsys):
    clip = tmp_video(tiny_clip.frames)
    stats = tmp_path / "s.json"
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.dnv"), "--bpp", "2",
                 "--epochs", "1", "--json", str(stats)]) == 0
    err = capsys.readouterr().err
    width = json.loads(stats.read_text())["model"]["stem_channels"]
    assert f"stem_channels={width}," in err and "c2=" not in err


def _demo_encode_args() -> list[str]:
    line = next(line for line in (ROOT / "bin" / "demo").read_text().splitlines()
                if line.startswith(".venv/bin/dnerv encode"))
    return shlex.split(line)


def test_one_recipe_per_preset_in_the_demo_and_the_rd_benchmark():
    demo = _demo_encode_args()
    assert demo[demo.index("--preset") + 1] == "fast"
    assert not {"--lr", "--epochs", "--recipe", "--time"} & set(demo)  # the preset's own
    args = rd.parse_args([])
    assert args.preset == "fast" and args.epochs == PRESET_EPOCHS["fast"]
    assert args.recipe == DEFAULT_RECIPE and args.lr is None
    options = rd.encode_options(args, 0.2, "dnerv")
    assert (options.epochs, options.recipe, options.lr) == (PRESET_EPOCHS["fast"], DEFAULT_RECIPE,
                                                            None)
    slow = rd.parse_args(["--preset", "slow"])
    assert rd.encode_options(slow, 0.2, "hnerv").epochs == PRESET_EPOCHS["slow"]


def test_rd_writes_outside_the_published_results_and_says_its_defaults(capsys):
    assert rd.parse_args([]).out == Path("rd-results")
    assert rd.parse_args(["--out", "benchmarks/results"]).out == Path("benchmarks/results")
    with pytest.raises(SystemExit):
        rd.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 0.1 0.2 0.4 0.8)", "fast 60 epochs", "(default: fast)",
                  "(default: rd-results)", "(default: codec)"):
        assert shown in text


def test_rd_runs_only_the_codecs_asked_for(tmp_path, tiny_clip, tmp_video):
    clip = tmp_video(tiny_clip.frames[:4], ext=".y4m")
    out = tmp_path / "results"
    rd.main([str(clip), "--codecs", "dnerv", "--bpp", "3", "--epochs", "1", "--device", "cpu",
             "--out", str(out)])
    written = sorted(p.name for p in out.iterdir())
    name = Path(clip).stem
    assert written == sorted([f"bdrate-{name}.json", f"rd-{name}.png", f"rd-dnerv-{name}.json"])
    data = json.loads((out / f"rd-dnerv-{name}.json").read_text())
    assert data["results"]["target-bpp"] == [3.0]
    assert "codec recipe" in data["description"]
