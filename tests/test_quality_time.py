"""Quality per minute: recipes, several frames a step, --time, --arch paper and the GPU script."""

import json
import re
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.errors import InputError
from dnerv_codec.format.architecture import PAPER_STRIDES, make_config
from dnerv_codec.io import Video, open_writer
from dnerv_codec.training import loop, timeplan
from dnerv_codec.training.recipe import CODEC, PAPER, RECIPES

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory, tiny_clip):
    path = tmp_path_factory.mktemp("qt") / "tiny.y4m"
    with open_writer(path, tiny_clip.width, tiny_clip.height, tiny_clip.fps) as w:
        for frame in tiny_clip.frames:
            w.write(frame)
    return path


# ----------------------------------------------------------------------------- recipes


def test_the_paper_recipe_is_the_papers():
    """The DNeRV paper trains with Adam lr 5e-4, 20 % linear warm-up from 0.1 x lr, cosine to 0,
    one frame a step."""
    assert (PAPER.lr, PAPER.warmup_fraction, PAPER.warmup_start, PAPER.floor, PAPER.batch) == (
        5e-4, 0.2, 0.1, 0.0, 1)
    assert set(RECIPES) == {"codec", "paper"}


def test_the_help_states_each_presets_time_from_the_presets_epochs():
    from dnerv_codec import cli
    from dnerv_codec.coding import ratecontrol
    # core-seconds a step per megapixel, times steps (epochs + fine-tune) of 250 1080p frames,
    # on 2 cores
    hours = [e * (1 + ratecontrol.FINETUNE_FRACTION) * cli.CORE_SECONDS_PER_MPX_STEP
             * 1920 * 1080 / 1e6 * 250 / 2 / 3600 for e in ratecontrol.PRESET_EPOCHS.values()]
    assert (f"a 10-second 1080p clip takes about {hours[0]:.0f}, {hours[1]:.0f}, {hours[2]:.0f} "
            f"hours") in cli.PRESET_TIME_HELP


def test_a_batch_step_uses_the_square_root_rule():
    assert CODEC.step_lr(4) == pytest.approx(2 * CODEC.lr)
    assert CODEC.step_lr() == CODEC.lr


# ----------------------------------------------------------------------------- --time


def test_the_plan_fills_the_budget_and_grows_with_it():
    step, per_epoch = 0.05, 48  # 2.4 s an epoch
    short = timeplan.plan_training(120, 2.0, step, per_epoch)
    long = timeplan.plan_training(300, 2.0, step, per_epoch)
    assert long.epochs > 2 * short.epochs
    for plan, budget in ((short, 120), (long, 300)):
        assert budget * 0.9 <= plan.expected_seconds <= budget
    assert timeplan.plan_training(1, 0.5, step, per_epoch).epochs == 1  # at least one


def test_the_plan_keeps_room_for_the_self_check_and_a_whole_fine_tune_epoch():
    """At 1280x720 (0.444 s a step, 132 steps an epoch) a 5-minute plan must count the
    fine-tune's minimum of one epoch and the self-check's time, or the encode overruns."""
    epoch = 0.444 * 132
    plan = timeplan.plan_training(300, 20, 0.444, 132)
    # 220 s of room are 3.75 epochs: 3 of training would need 3 + 1 of fine-tune
    assert plan.epochs == 2
    assert plan.expected_seconds == pytest.approx(20 + 3 * epoch + 60)
    checked = timeplan.plan_training(300, 20, 0.444, 132, check=48)
    assert checked.epochs == 1 and checked.expected_seconds == pytest.approx(20 + 2 * epoch + 108)
    assert timeplan.check_seconds(132, 0.25, 0.444) == pytest.approx(132 * (0.25 + 0.111))
    assert 0 < timeplan.measure_check(72, 128) < 5


def test_the_fine_tune_takes_what_the_search_leaves():
    # 100 s spent of 120, the first search took 5 s, an epoch takes 2 s: (120 - 100 - 5) / 2
    assert timeplan.plan_finetune(120, 100, 5, 2.0, most=50) == 8
    assert timeplan.plan_finetune(120, 119, 5, 2.0, most=50) == 1
    assert timeplan.plan_finetune(1000, 0, 5, 2.0, most=50) == 50


# A 1280x720 clip of 132 frames on 2 cores (the widths timed by `dnerv encode --time 5m`; 14
# made up): the step shrinks with the width until the encoders and full-size layers dominate.
STEPS_720P = {64: 1.057, 44: 0.628, 30: 0.420, 21: 0.396, 14: 0.37}


def test_a_budget_too_short_for_the_rates_decoder_trains_a_narrower_one():
    timed = []

    def measure(width):
        timed.append(width)
        return STEPS_720P.get(width, 0.40)

    def plan_for(step):
        return timeplan.plan_training(300, 24, step, 132)

    sizing = timeplan.size_for_time(64, STEPS_720P[64], measure, plan_for)
    # 21, a third of 64, ends the walk; it gets 3 epochs and 30 two, so the widest width
    # between them predicted to keep 3 (26) is timed and taken
    assert [plan_for(STEPS_720P[w]).epochs for w in (64, 44, 30, 21)] == [1, 1, 2, 3]
    assert timed == [44, 30, 21, 26]
    assert sizing.width == 26 and sizing.plan.epochs == 3
    assert sizing.plan == plan_for(0.40)
    assert "sized by the time: the rate fits a decoder of width 64" in sizing.text()
    assert sizing.as_dict()["width"] == 26 and sizing.as_dict()["rate_width"] == 64


def test_narrowing_stops_at_a_third_of_the_rates_width():
    """HNeRV at 1280x720, `--time 5m` (the steps one run timed): 13 gets the most epochs (6), but
    decodes 1.8 dB under 28's 4; nothing under a third of the rate's 83 is timed or trained."""
    steps = {83: 1.153, 58: 0.747, 40: 0.432, 28: 0.290, 27: 0.285, 19: 0.221, 13: 0.199}
    timed = []

    def measure(width):
        timed.append(width)
        return steps.get(width, 0.30)  # a width predicted between two timed ones

    sizing = timeplan.size_for_time(83, steps[83], measure,
                                    lambda step: timeplan.plan_training(300, 24, step, 132))
    assert min(timed) == int(83 * timeplan.NARROWEST_SHARE) == 27
    assert sizing.width >= 27


def test_a_width_that_times_no_faster_does_not_end_the_walk():
    """Two runs' 1280x720 walks timed the rate's c2 = 83 at 907-1,299 ms and c2 = 58 at
    830-1,203 ms (other runs: 453-793), and ended there with one epoch of c2 = 58. The walk
    now goes on to a third of the rate's width and trains what gets the most epochs."""
    steps = {83: 0.907, 58: 0.830, 40: 0.333, 28: 0.283, 27: 0.256}
    timed = []

    def measure(width):
        timed.append(width)
        return steps.get(width, 0.30)

    plan_for = lambda step: timeplan.plan_training(300, 24, step, 132)  # noqa: E731
    sizing = timeplan.size_for_time(83, steps[83], measure, plan_for)
    assert timed[:4] == [58, 40, 28, 27]
    assert sizing.width < 58 and sizing.plan.epochs > plan_for(steps[58]).epochs


def test_a_predicted_width_that_times_slower_than_predicted_is_not_taken():
    def measure(width):
        return STEPS_720P.get(width, 0.45)  # 26: slower than predicted

    sizing = timeplan.size_for_time(64, STEPS_720P[64], measure,
                                    lambda step: timeplan.plan_training(300, 24, step, 132))
    assert sizing.width == 21 and sizing.step_seconds == STEPS_720P[21]
    assert sizing.tried[-1][0] == 26  # timed, and refused


def test_a_budget_that_buys_enough_epochs_keeps_the_rates_decoder_untimed():
    def measure(width):
        raise AssertionError("nothing narrower is timed")

    plan_for = lambda step: timeplan.plan_training(3600, 5, step, 48)  # noqa: E731
    sizing = timeplan.size_for_time(20, 0.06, measure, plan_for)
    assert sizing.width == 20 and sizing.plan.epochs >= timeplan.SIZED_EPOCHS
    assert sizing.text() == "" and len(sizing.tried) == 1


def test_narrowing_stops_at_the_narrowest_width_it_may_train():
    plan_for = lambda step: timeplan.plan_training(600, 1, step, 100)  # noqa: E731
    sizing = timeplan.size_for_time(16, 2.0, lambda width: width / 8, plan_for)
    # 16 gets 1 epoch, 12 two, and nothing between them two (13: 1.625 s a step)
    assert sizing.width == timeplan.MIN_SIZED_WIDTH and sizing.plan.epochs == 2
    assert [t[0] for t in sizing.tried] == [16, 12]


def test_narrowing_that_buys_no_epoch_keeps_the_rates_decoder():
    """All widths get as many epochs and end within the budget: the widest (the rate's) is
    trained."""
    plan_for = lambda step: timeplan.plan_training(1000, 1, step, 100)  # noqa: E731
    steps = {16: 2.0, 12: 1.999}  # no faster: the walk ends there
    assert plan_for(2.0).epochs == plan_for(1.999).epochs == 2
    assert plan_for(2.0).expected_seconds <= 1000
    sizing = timeplan.size_for_time(16, 2.0, steps.get, plan_for, 1000)
    assert sizing.width == 16 and sizing.text() == ""


def test_when_no_width_ends_within_the_budget_the_quickest_is_trained():
    """One epoch of any width overruns 60 s: the narrowest timed overruns least (the rate's
    width was trained, the worst of them)."""
    plan_for = lambda step: timeplan.plan_training(60, 1, step, 100)  # noqa: E731
    sizing = timeplan.size_for_time(16, 2.0, lambda width: width / 8, plan_for, 60)
    assert all(plan_for(step).expected_seconds > 60 for _, step, _ in sizing.tried)
    assert sizing.width == timeplan.MIN_SIZED_WIDTH == min(t[0] for t in sizing.tried)


def test_a_sized_encode_trains_and_writes_the_narrower_decoder(capsys, monkeypatch, clip_file,
                                                               tmp_path, tiny_clip):
    """The width a --time budget chooses is the one trained, packed, decoded and reported.
    The step times are made up (a step's real time on a tiny clip hardly depends on the width);
    everything else runs."""
    from dnerv_codec.encoding import planning
    # --bpp 8 plans c2 = 16 here: too slow for more than a few epochs in 6 s, any narrower fast
    # (a fine-tuning step at half a training step's time, as measured at 320x136)
    monkeypatch.setattr(planning, "step_seconds", lambda job, h, w, finetune=False: (
        0.3 if job.config.stem_channels >= 16 else 0.05) * (0.5 if finetune else 1))
    out, stats = tmp_path / "t.dnv", tmp_path / "t.json"
    code, _, err = run(capsys, "encode", clip_file, "-o", out, "--bpp", "8", "--time", "6s",
                       "--device", "cpu", "--model", "dnerv", "--json", stats)
    assert code == 0, err
    s = json.loads(stats.read_text())
    sizing = s["sizing"]
    assert sizing["rate_width"] == 16 > sizing["width"] == s["model"]["stem_channels"] >= 12
    assert [t["width"] for t in sizing["tried"]][0] == sizing["rate_width"]
    assert f"sized by the time: the rate fits a decoder of width {sizing['rate_width']}" in err
    assert DecodedVideo(out.read_bytes()).config.stem_channels == sizing["width"]
    frames = np.stack(list(DecodedVideo(out.read_bytes()).frames()))
    assert frames.shape == tiny_clip.frames.shape


def test_measuring_a_step_leaves_the_seeded_run_unchanged(tiny_clip):
    """The throwaway network the step is timed on must not move torch's random numbers: the
    same seed gives the same file with or without a measurement before it."""
    from dnerv_codec.scaling.chunkwork import ChunkJob, step_seconds
    config = make_config(64, 96, 8)
    job = ChunkJob(index=0, chunks=1, start=0, stop=6, config=config, bpp=1.0, epochs=1, lr=None,
                   seed=0, device="cpu", learned_steps=True, min_prune=0.0, threads=1)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    seconds = step_seconds(job, 64, 96)
    assert torch.equal(torch.rand(4), expected)
    assert 0 < seconds < 10


def test_time_plans_the_epochs_and_writes_a_valid_file(capsys, clip_file, tmp_path, tiny_clip):
    out, stats = tmp_path / "t.dnv", tmp_path / "t.json"
    code, stdout, err = run(capsys, "encode", clip_file, "-o", out, "--bpp", "2", "--time",
                            "20s", "--device", "cpu", "--json", stats)
    assert code == 0 and stdout == "", err
    s = json.loads(stats.read_text())
    assert s["time_budget"] == 20 and s["step_seconds"] > 0
    assert s["epochs"] > 1 and s["finetune_epochs"] >= 1
    assert "--time 20 s: " in err and f"{s['epochs']} epochs" in err
    frames = np.stack(list(DecodedVideo(out.read_bytes()).frames()))
    assert frames.shape == tiny_clip.frames.shape


def _interrupt_in_training(clip, options, monkeypatch):
    """Run encode(clip, options) and press Ctrl-C in training, after the measuring."""
    import signal
    from dnerv_codec.errors import Interrupted
    real, calls = loop.FrameSource.triplet, [0]

    def triplet(self, i):  # Ctrl-C at the 30th frame fetch: in training, after the measuring
        calls[0] += 1
        if calls[0] == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, i)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(loop.FrameSource, "triplet", triplet)
        with pytest.raises(Interrupted):
            encode(clip, EncodeOptions(**options))
        monkeypatch.undo()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_resumed_time_encode_keeps_the_plan_it_was_interrupted_in(default_clip, tmp_path,
                                                                    monkeypatch):
    """The epochs a --time encode planned are in its checkpoint; resuming with --time again
    continues that plan instead of planning anew (and so could not continue the run)."""
    from dnerv_codec.training import checkpoint
    clip = Video(np.ascontiguousarray(default_clip.frames[:4, 60:108, 100:148]), default_clip.fps)
    options = dict(bpp=3.0, time_budget=8.0, device="cpu", checkpoint=str(tmp_path / "t.ckpt"))
    _interrupt_in_training(clip, options, monkeypatch)
    planned = checkpoint.peek(options["checkpoint"])["epochs"]
    assert planned > 1
    resumed = encode(clip, EncodeOptions(**options, resume=True))
    assert resumed.stats["epochs"] == planned
    assert resumed.stats["step_seconds"] is None  # not measured: the plan is the checkpoint's
    json.dumps(resumed.stats, allow_nan=False)


def test_a_resumed_time_encode_trains_the_width_it_was_sized_to(default_clip, tmp_path,
                                                                monkeypatch):
    """A checkpoint of a decoder the budget narrowed is continued at that width (the rate's
    would not fit its weights). Made-up step times make the budget narrow it."""
    from dnerv_codec.encoding import planning
    from dnerv_codec.training import checkpoint
    clip = Video(np.ascontiguousarray(default_clip.frames[:4, 60:108, 100:148]), default_clip.fps)
    options = dict(bpp=40.0, time_budget=8.0, device="cpu", checkpoint=str(tmp_path / "t.ckpt"))
    monkeypatch.setattr(planning, "step_seconds",
                        lambda job, h, w, finetune=False: job.config.stem_channels * 0.02)
    _interrupt_in_training(clip, options, monkeypatch)
    width = checkpoint.peek(options["checkpoint"])["stem_channels"]
    rate_width = planning.ratecontrol.plan(planning.ratecontrol.RateRequest(48, 48, 4, 40.0)).stem_channels
    assert width == timeplan.MIN_SIZED_WIDTH < rate_width
    resumed = encode(clip, EncodeOptions(**options, resume=True))
    assert resumed.stats["model"]["stem_channels"] == width
    assert DecodedVideo(resumed.data).config.stem_channels == width


@pytest.mark.parametrize("value", ["5x", "m", "0s", "-3m", "1e9h", ""])
def test_a_duration_that_is_not_one_is_a_usage_error(capsys, clip_file, tmp_path, value):
    code, out, err = run(capsys, "encode", clip_file, "-o", tmp_path / "x.dnv", "--time", value)
    assert code == 2 and out == "" and "Invalid value for '--time'" in err
    assert not (tmp_path / "x.dnv").exists()


def test_durations_in_any_unit(clip_file):
    from dnerv_codec.cli import Duration
    d = Duration()
    assert [d.convert(v, None, None) for v in ("90", "90s", "5m", "2.5min", "1h30m", " 1h 5s")] == [
        90, 90, 300, 150, 5400, 3605]


def test_time_and_epochs_together_are_refused(capsys, clip_file, tmp_path):
    code, _, err = run(capsys, "encode", clip_file, "-o", tmp_path / "x.dnv", "--time", "1m",
                       "--epochs", "3")
    assert code == 2
    assert err == "dnerv: error: --time plans the epochs itself: give --time or --epochs, not both\n"


def test_every_encode_prints_its_measured_step_time(capsys, clip_file, tmp_path):
    code, _, err = run(capsys, "encode", clip_file, "-o", tmp_path / "e.dnv", "--bpp", "2",
                       "--epochs", "1", "--device", "cpu")
    assert code == 0
    assert "dnerv: estimate: " in err and " ms a step (measured)" in err


# ----------------------------------------------------------------------------- --arch paper


def test_paper_architecture_at_the_papers_size():
    """960x1920 at c2 = 92: strides 5,4,4,3,2, a 16x2x4 content embedding and the 3,405,368
    decoder parameters of the official configuration; the default chooses another model."""
    paper = make_config(960, 1920, 92, arch="paper")
    assert paper.strides == PAPER_STRIDES and paper.kernels == (1, 3, 5, 5, 5)
    assert paper.embed_shape == (16, 2, 4)
    assert paper.parameter_count() == 3_405_368
    assert make_config(960, 1920, 92).strides != PAPER_STRIDES


def test_paper_architecture_where_the_frame_does_not_fit_it_is_refused_in_one_line(capsys,
                                                                                     clip_file,
                                                                                     tmp_path):
    with pytest.raises(InputError, match=r"--arch paper needs sides that are multiples of 480"):
        make_config(180, 320, 20, arch="paper")
    code, _, err = run(capsys, "encode", clip_file, "-o", tmp_path / "p.dnv", "--arch", "paper")
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("dnerv: error: --arch paper needs sides")
    assert "96x64 would be padded to 480x480" in last
    assert not (tmp_path / "p.dnv").exists()


def test_paper_architecture_round_trip(tiny_clip):
    """A 480x480 clip (the tiny clip tiled) encodes with the paper's strides, and the file
    alone rebuilds them."""
    frames = np.tile(tiny_clip.frames[:2], (1, 8, 5, 1))[:, :480, :480]
    video = Video(np.ascontiguousarray(frames), tiny_clip.fps)
    result = encode(video, EncodeOptions(bpp=0.3, epochs=1, arch="paper", device="cpu"))
    decoded = DecodedVideo(result.data)
    assert decoded.config.strides == PAPER_STRIDES
    out = np.stack(list(decoded.frames()))
    assert out.shape == frames.shape


# ----------------------------------------------------------------------------- benchmarks


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["cross-device-cpu.json", "paper-cpu.json", "speed-cpu-batch4.json",
                     "speed-cpu.json"]
    assert "1 passed" in done.stdout  # the device test ran on the CPU, not skipped
    cross = json.loads((tmp_path / "cross-device-cpu.json").read_text())["results"]
    assert (cross["decoded-on"], cross["compared-with"]) == (["cpu, 2 threads"], ["cpu, 1 thread"])
    assert cross["max-abs-diff"] == [0]  # the CPU decode gives the same bytes at any thread count
    batched = json.loads((tmp_path / "speed-cpu-batch4.json").read_text())["results"]
    assert batched["batch"] == [4, 4]


def test_gpu_check_refuses_unknown_arguments():
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--wet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown argument '--wet'" in done.stderr


def test_schedule_and_quality_time_write_their_results(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import quality_time
    import schedule
    s = schedule.main(["--clips", str(ROOT / "dnerv_codec/data/bunny_320x180.mp4"), "--frames",
                       "3", "--width", "4", "--epochs", "2", "--recipes", "paper", "4e-3 batch 2",
                       "--out", str(tmp_path)])
    assert s["results"]["recipe"] == ["paper", "4e-3 batch 2"]
    assert s["results"]["steps"] == [6, 4]
    # Plumbing, not quality: 2 epochs of 3 frames on a width-4 network land at the flat-grey
    # level (11.7 dB against 11.6), under any baseline a floor could name. A diverged run
    # (NaN) still fails here; what this trainer learns is floored by test_train.py and
    # test_first_run.py's realistic-rate encode against the clip's mean frame.
    assert all(math.isfinite(p) for p in s["results"]["psnr"])
    q = quality_time.main(["--parts", "time", "--seconds", "3", "--time-width", "4",
                           "--out", str(tmp_path)])
    r = q["results"]
    assert r["part"] == ["time"] and r["tree"] == ["this"] and r["epochs"][0] >= 1
    # 3 seconds buy one epoch of a width-4 network: 12.45 dB, the flat colour's level (12.49),
    # so no baseline can be floored here; the figure must be a PSNR the run measured (a NaN or
    # a capped 100 dB would mean it measured nothing). Quality under --time: the encode tests.
    assert 5 < r["psnr"][0] < 60
    assert "| this | 4 | 3 s |" in quality_time.markdown(q)
    assert (tmp_path / "quality-time-bunny_320x180.json").exists()


def test_a_budget_too_short_to_learn_says_so_and_what_would_do(capsys, clip_file, tmp_path):
    """Before training, a --time budget that buys fewer than timeplan.USEFUL_EPOCHS epochs is
    said to be short, with the budget that would buy them; the JSON lists the same notes."""
    from dnerv_codec.training.timeplan import USEFUL_EPOCHS
    out, stats = tmp_path / "t.dnv", tmp_path / "t.json"
    code, _, err = run(capsys, "encode", clip_file, "-o", out, "--bpp", "2", "--time", "4s",
                       "--device", "cpu", "--json", stats)
    assert code == 0, err
    s = json.loads(stats.read_text())
    assert s["epochs"] < USEFUL_EPOCHS
    short = [n for n in s["notes"] if f"buys {s['epochs']} epoch(s) of training" in n]
    assert len(short) == 1 and f"{USEFUL_EPOCHS} epochs would take about --time " in short[0]
    assert f"dnerv: note: {short[0]}" in err
    progress = re.search(r"dnerv: +\d+ % \(", err)  # the first line of the bar, off a terminal
    assert progress and err.index("dnerv: note: --time") < progress.start()  # before training
