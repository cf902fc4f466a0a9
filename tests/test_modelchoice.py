"""--model auto: both models try the start of their schedule, the one ahead goes on, and its
file is the one naming it writes. A resume continues the model chosen; Ctrl-C in the trial
leaves nothing behind."""

import json
import math
import os
import signal

import numpy as np
import pytest

from dnerv_codec.cli import main
from dnerv_codec.codec import EncodeOptions, encode
from dnerv_codec.errors import InputError, Interrupted, RateError
from dnerv_codec.io import Video
from dnerv_codec.training.modelchoice import BUDGET_SHARE, DEFAULT_MODEL, choose, trial_epochs

# 10 epochs: a trial of 3 for each model, then 7 more for the one ahead.
OPTIONS = dict(bpp=3.0, epochs=10, lr=2e-3, device="cpu", threads=1)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C as at a terminal (a background CI job may start with SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="module")
def clip(default_clip) -> Video:
    """4 real frames of 48x48: one step takes milliseconds."""
    return Video(np.ascontiguousarray(default_clip.frames[:4, 60:108, 100:148]), default_clip.fps)


@pytest.fixture(scope="module")
def auto(clip):
    """The uninterrupted --model auto encode."""
    return encode(clip, EncodeOptions(**OPTIONS, model="auto"))


def test_the_trial_is_a_quarter_of_a_schedule_of_8_epochs_or_more():
    assert [trial_epochs(e) for e in (1, 2, 7, 8, 10, 60, 300)] == [0, 0, 0, 2, 3, 15, 75]


def test_the_model_ahead_is_kept_and_a_diverged_trial_loses():
    seconds = {"dnerv": 1.0, "hnerv": 1.0}
    def both(value):
        return {"dnerv": value, "hnerv": value}

    ahead = choose({"dnerv": 20.0, "hnerv": 21.5}, seconds, both(15), both(60))
    assert (ahead.chosen, ahead.lead_db) == ("hnerv", 1.5)
    assert "HNeRV is ahead after 15 of 60 epochs (21.50 dB against DNeRV 20.00 dB" in ahead.text()
    assert choose({"dnerv": math.nan, "hnerv": 12.0}, seconds, both(3), both(10)).chosen == "hnerv"
    tie = choose({"dnerv": 12.0, "hnerv": 12.0}, seconds, both(3), both(10))
    assert tie.chosen == DEFAULT_MODEL
    # under --time the two plans differ: the chosen model's own trial and schedule are reported
    planned = choose({"dnerv": 20.0, "hnerv": 21.5}, seconds, {"dnerv": 15, "hnerv": 12},
                     {"dnerv": 60, "hnerv": 48})
    assert (planned.trial_epochs, planned.epochs) == (12, 48)


def test_auto_writes_the_file_of_the_model_it_keeps_and_says_why(clip, auto):
    choice = auto.stats["model_choice"]
    assert choice["mode"] == "auto" and choice["trial_epochs"] == 3
    psnr = choice["trial_psnr"]
    assert set(psnr) == {"dnerv", "hnerv"} and all(p > 10 for p in psnr.values())
    assert choice["chosen"] == max(psnr, key=psnr.get)
    assert choice["lead_db"] == pytest.approx(abs(psnr["dnerv"] - psnr["hnerv"]))
    assert auto.stats["model"]["name"] == {"dnerv": "DNeRV", "hnerv": "HNeRV"}[choice["chosen"]]
    named = encode(clip, EncodeOptions(**OPTIONS, model=choice["chosen"]))
    assert named.data == auto.data
    assert named.stats["model_choice"] == {"mode": choice["chosen"], "chosen": choice["chosen"],
                                           "trial_epochs": 0}


def test_a_resumed_auto_encode_continues_the_model_it_chose(clip, auto, tmp_path):
    path = str(tmp_path / "run.ckpt")

    def stop_after_the_trial(p):  # epoch 5 is past the 3-epoch trials
        if p.stage == "train" and p.epoch == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted) as stopped:
        encode(clip, EncodeOptions(**OPTIONS, model="auto", checkpoint=path),
               progress=stop_after_the_trial)
    assert (stopped.value.where, stopped.value.checkpoint) == ("at epoch 6/10", path)
    resumed = encode(clip, EncodeOptions(**OPTIONS, model="auto", checkpoint=path, resume=True))
    assert resumed.data == auto.data
    assert resumed.stats["model"] == auto.stats["model"]


def test_ctrl_c_in_the_trial_leaves_no_checkpoint_and_a_resume_is_refused_at_once(clip, tmp_path):
    path = str(tmp_path / "run.ckpt")

    def stop_in_the_trial(p):
        if p.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted) as stopped:
        encode(clip, EncodeOptions(**OPTIONS, model="auto", checkpoint=path),
               progress=stop_in_the_trial)
    assert stopped.value.where == "in --model auto's trial, at epoch 2/10"
    assert stopped.value.checkpoint is None and not os.path.exists(path)
    with pytest.raises(InputError, match="cannot resume: no checkpoint at"):
        encode(clip, EncodeOptions(**OPTIONS, model="auto", checkpoint=path, resume=True),
               progress=lambda p: pytest.fail("trained before refusing the resume"))


def test_the_cli_says_which_model_it_kept(tmp_video, clip, tmp_path, capsys):
    source = tmp_video(clip.frames)
    out, stats = tmp_path / "a.dnv", tmp_path / "a.json"
    assert main(["encode", str(source), "-o", str(out), "--bpp", "3", "--epochs", "10",
                 "--threads", "1", "--device", "cpu", "--model", "auto", "--json", str(stats)]) == 0
    err = capsys.readouterr().err
    choice = json.loads(stats.read_text())["model_choice"]
    title = {"dnerv": "DNeRV", "hnerv": "HNeRV"}[choice["chosen"]]
    assert "--model auto: trying DNeRV" in err
    assert f"--model auto: {title}, {choice['lead_db']:+.2f} dB after the 3-epoch trial" in err


def test_no_diff_is_model_hnerv_and_refuses_another_model(tmp_video, clip, tmp_path, capsys):
    source = tmp_video(clip.frames)
    assert main(["encode", str(source), "-o", str(tmp_path / "a.dnv"), "--no-diff",
                 "--model", "dnerv"]) == 2
    assert "--no-diff is --model hnerv: it cannot go with --model dnerv" in capsys.readouterr().err


def test_a_rate_only_hnerv_fits_trains_it_alone(clip):
    # 4 frames of 48x48: DNeRV's diff embeddings and smallest decoder need about 1.8 bpp,
    # HNeRV's about 0.94
    said = []
    result = encode(clip, EncodeOptions(**{**OPTIONS, "bpp": 1.2}, model="auto"),
                    log=said.append)
    assert result.stats["model_choice"] == {"mode": "auto", "chosen": "hnerv", "trial_epochs": 0}
    assert "--model auto: only HNeRV fits 1.2 bpp here; no trial" in said
    with pytest.raises(RateError):
        encode(clip, EncodeOptions(**{**OPTIONS, "bpp": 1.2}, model="dnerv"))


def test_a_schedule_too_short_for_a_trial_trains_the_default(clip):
    said = []
    result = encode(clip, EncodeOptions(**{**OPTIONS, "epochs": 7}, model="auto"),
                    log=said.append)
    assert result.stats["model_choice"]["chosen"] == DEFAULT_MODEL
    assert any("7 epochs are too few to try both models" in s for s in said), said


def test_under_time_each_model_keeps_three_quarters_of_its_epochs(clip, monkeypatch):
    from dnerv_codec.encoding import planning
    monkeypatch.setattr(planning, "step_seconds", lambda job, h, w, finetune=False: 0.05)  # steady
    timed = dict(OPTIONS, epochs=None, time_budget=20.0)
    auto = encode(clip, EncodeOptions(**timed, model="auto")).stats
    named = encode(clip, EncodeOptions(**timed, model=auto["model_choice"]["chosen"])).stats
    assert auto["model_choice"]["trial_epochs"] == trial_epochs(auto["epochs"]) > 0
    assert abs(auto["epochs"] - math.floor(named["epochs"] * BUDGET_SHARE)) <= 1
