"""Interrupted, killed and repeated runs: nothing half-written, nothing lost, same bits.

- Ctrl-C stops an encode cleanly (one line, exit status 130, no .dnv), saving the checkpoint
  when one was asked for; `--resume` then ends on the very file an uninterrupted run writes.
- SIGKILL at any moment leaves the last checkpoint whole (it is replaced atomically).
- Two CPU encodes with the same input, options and seed give the same bytes.
- Outputs appear whole or not at all, and never overwrite the input.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dnerv_codec.decoding import video
from dnerv_codec.training import checkpoint
from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.errors import InputError, Interrupted
from dnerv_codec.io import Video, open_writer, read_video
from dnerv_codec.training.loop import FrameSource
from dnerv_codec.training.timeplan import MEASURED_STEPS, WARMUP_STEPS

MEASURING_STEPS = WARMUP_STEPS + MEASURED_STEPS

# 10 epochs, then (because of --min-prune) 2 fine-tuning epochs: both stages get interrupted.
# DNeRV: its training state (the diff encoder and branch) is the larger one to get back.
OPTIONS = dict(bpp=3.0, epochs=10, lr=2e-3, min_prune=0.3, device="cpu", model="dnerv")
CLI_OPTIONS = ["--bpp", "3", "--epochs", "10", "--lr", "2e-3", "--min-prune", "0.3",
               "--device", "cpu", "--model", "dnerv", "-q"]
WAIT_S = 120  # the bound on every wait for a subprocess (they take a few seconds)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C as at a terminal. A shell starts background jobs (and so, sometimes, a CI run)
    with SIGINT ignored, and the encoder rightly leaves an ignored SIGINT alone; these tests
    are about what Ctrl-C does when it is delivered."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _deliverable_sigint() -> None:
    """In a child process: undo an inherited 'ignore SIGINT' so that Python raises on it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def clip(default_clip) -> Video:
    """4 real frames of 48x48: one step takes milliseconds."""
    return Video(np.ascontiguousarray(default_clip.frames[:4, 60:108, 100:148]), default_clip.fps)


@pytest.fixture(scope="module")
def reference(clip) -> bytes:
    """The uninterrupted encode that every interrupted one must end on."""
    return encode(clip, EncodeOptions(**OPTIONS)).data


def test_two_cpu_encodes_are_byte_identical(clip, reference):
    assert encode(clip, EncodeOptions(**OPTIONS)).data == reference


def test_decoding_twice_gives_identical_frames(reference):
    first = np.stack(list(DecodedVideo(reference, device="cpu").frames()))
    assert np.array_equal(first, np.stack(list(DecodedVideo(reference, device="cpu").frames())))


def interrupt_at(monkeypatch, call: int, times: int = 1) -> None:
    """Send this process SIGINT `times` times during the `call`-th frame fetch (a training step,
    or computing the embeddings after training), as Ctrl-C would; the fetches of the steps
    that measure the step time before training (timeplan) are not counted."""
    real, calls = FrameSource.triplet, [-MEASURING_STEPS]

    def triplet(self, i):
        calls[0] += 1
        if calls[0] == call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(self, i)

    monkeypatch.setattr(FrameSource, "triplet", triplet)


# Frame fetches: 10 epochs of 4 training steps and 1 check of the weights each (loop.py's
# sample frames), 4 for the embeddings, then 2 fine-tuning epochs of 4 steps and a check.
@pytest.mark.parametrize("call, where", [
    (27, "at epoch 6/10"),               # mid-epoch: 2 of its 4 steps done
    (52, "after training"),              # outside the training loop
    (61, "at fine-tuning epoch 2/2"),    # in the fine-tuning stage
])
def test_resume_after_ctrl_c_ends_on_the_same_file(clip, reference, tmp_path, monkeypatch,
                                                   call, where):
    path = str(tmp_path / "run.ckpt")
    interrupt_at(monkeypatch, call)
    with pytest.raises(Interrupted) as stopped:
        encode(clip, EncodeOptions(**OPTIONS, checkpoint=path))
    assert (stopped.value.where, stopped.value.checkpoint) == (where, path)
    monkeypatch.undo()
    resumed = encode(clip, EncodeOptions(**OPTIONS, checkpoint=path, resume=True))
    assert resumed.data == reference


def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_still_resumes(
        clip, reference, tmp_path, monkeypatch):
    path = str(tmp_path / "run.ckpt")
    interrupt_at(monkeypatch, 27, times=2)  # the second one lands inside the step
    with pytest.raises(Interrupted) as stopped:
        encode(clip, EncodeOptions(**OPTIONS, checkpoint=path))
    assert (stopped.value.where, stopped.value.checkpoint) == ("at epoch 6/10", path)
    assert checkpoint.load(path).snapshot.loop.epoch == 6  # saved when epoch 5 ended
    monkeypatch.undo()
    assert encode(clip, EncodeOptions(**OPTIONS, checkpoint=path, resume=True)).data == reference


def test_ctrl_c_without_a_checkpoint_says_where_it_stopped(clip, monkeypatch):
    interrupt_at(monkeypatch, 12)
    with pytest.raises(Interrupted) as stopped:
        encode(clip, EncodeOptions(**OPTIONS))
    assert (stopped.value.where, stopped.value.checkpoint) == ("at epoch 3/10", None)


# ----------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def source(clip, tmp_path_factory):
    """The clip as lossless PNGs, so that the CLI reads exactly the frames `reference` used."""
    path = tmp_path_factory.mktemp("src") / "%03d.png"
    with open_writer(path, 48, 48, clip.fps) as writer:
        for frame in clip.frames:
            writer.write(frame)
    return path


def start_encode(source, folder, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "dnerv_codec", "encode", str(source), "-o",
            str(folder / "out.dnv"), "--checkpoint", str(folder / "run.ckpt"), *CLI_OPTIONS, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_deliverable_sigint)


def wait_for_saves(proc: subprocess.Popen, path, saves: int) -> None:
    """Poll until the checkpoint at `path` has been written `saves` times (each save replaces
    the file, so its inode changes); fail if the process ends first or it takes too long."""
    seen, deadline = set(), time.monotonic() + WAIT_S
    while len(seen) < saves:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the checkpoint did not appear"
        try:
            seen.add(os.stat(path).st_ino)
        except FileNotFoundError:
            pass
        time.sleep(0.01)


def resume_in_process(source, folder, capsys) -> bytes:
    out = folder / "out.dnv"
    assert main(["encode", str(source), "-o", str(out), "--checkpoint", str(folder / "run.ckpt"),
                 "--resume", *CLI_OPTIONS]) == 0, capsys.readouterr().err
    assert not (folder / "run.ckpt").exists()  # removed once the .dnv is written
    return out.read_bytes()


@pytest.mark.parametrize("sig, status, words", [
    (signal.SIGINT, 130, "interrupted"),
    (signal.SIGTERM, 143, "stopped by SIGTERM"),  # kill, timeout, docker stop
    (signal.SIGHUP, 129, "stopped by SIGHUP"),    # the terminal went away
])
def test_ctrl_c_sigterm_and_sighup_stop_the_cli(source, tmp_path, sig, status, words):
    """Ctrl-C, SIGTERM and SIGHUP all stop an encode the same way: at the next training step,
    the checkpoint saved, one line, 128 + the signal's number (130 for Ctrl-C)."""
    proc = start_encode(source, tmp_path, "--epochs", "400")
    wait_for_saves(proc, tmp_path / "run.ckpt", 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == status, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"dnerv: {words} at epoch ") and line.endswith(
        f"/400; checkpoint saved to {tmp_path / 'run.ckpt'} (resume with --resume)"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no .dnv, no temporary
    assert checkpoint.load(str(tmp_path / "run.ckpt")).stage == "train"


def test_sigkill_leaves_a_usable_checkpoint(source, reference, tmp_path, capsys):
    proc = start_encode(source, tmp_path)
    wait_for_saves(proc, tmp_path / "run.ckpt", 3)  # killed wherever it is, a save included
    proc.kill()
    proc.communicate(timeout=WAIT_S)
    assert not (tmp_path / "out.dnv").exists()
    checkpoint.load(str(tmp_path / "run.ckpt"))  # whole: the previous save survived
    assert resume_in_process(source, tmp_path, capsys) == reference


def test_a_resumed_cli_run_ends_on_the_uninterrupted_file(source, reference, tmp_path, capsys,
                                                         monkeypatch):
    interrupt_at(monkeypatch, 26)
    out = tmp_path / "out.dnv"
    argv = ["encode", str(source), "-o", str(out), "--checkpoint", str(tmp_path / "run.ckpt"),
            *CLI_OPTIONS]
    assert main(argv) == 130
    assert "interrupted at epoch 6/10; checkpoint saved to" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.undo()
    assert resume_in_process(source, tmp_path, capsys) == reference


# ----------------------------------------------------------------------------- refused resumes


@pytest.fixture(scope="module")
def saved(clip, tmp_path_factory) -> str:
    """A checkpoint of the reference options, saved at the end of training."""
    path = str(tmp_path_factory.mktemp("saved") / "run.ckpt")
    encode(clip, EncodeOptions(**{**OPTIONS, "min_prune": 0.0}, checkpoint=path))
    return path


@pytest.mark.parametrize("change, message", [
    (dict(seed=1), "it was made for seed = 0 (this run: 1)"),
    (dict(epochs=15), "it was made for epochs = 10 (this run: 15)"),
    (dict(bpp=4.0), "it was made for bpp = 3.0 (this run: 4.0)"),
])
def test_a_checkpoint_for_other_options_is_refused(clip, saved, change, message):
    options = EncodeOptions(**{**OPTIONS, "min_prune": 0.0, **change}, checkpoint=saved, resume=True)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode(clip, options)


def test_a_checkpoint_for_another_input_is_refused(clip, saved):
    other = Video(np.ascontiguousarray(clip.frames[::-1]), clip.fps)
    with pytest.raises(InputError, match="a different input video"):
        encode(other, EncodeOptions(**{**OPTIONS, "min_prune": 0.0}, checkpoint=saved, resume=True))


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "text", "another format"])
def test_a_damaged_checkpoint_is_refused_in_one_line(source, saved, tmp_path, capsys, damage):
    path = tmp_path / "run.ckpt"
    data = open(saved, "rb").read()
    contents = {"empty": b"", "truncated": data[:len(data) // 2], "text": b"hello\n" * 40,
                "another format": data.replace(b"dnerv-checkpoint/1", b"dnerv-checkpoint/9")}
    if damage in contents:
        path.write_bytes(contents[damage])
    code = main(["encode", str(source), "-o", str(tmp_path / "out.dnv"), "--checkpoint",
                 str(path), "--resume", *CLI_OPTIONS])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot resume" in err, err
    assert not (tmp_path / "out.dnv").exists()


def test_resume_needs_a_checkpoint(source, tmp_path, capsys):
    assert main(["encode", str(source), "-o", str(tmp_path / "o.dnv"), "--resume"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("flag", ["-o", "--json", "--checkpoint"])
def test_no_output_may_overwrite_the_input_or_another_output(clip, tmp_path, capsys, flag):
    source = tmp_path / "in.y4m"
    with open_writer(source, 48, 48, clip.fps) as writer:
        writer.write(clip.frames[0])
    argv = {"-o": ["-o", str(source)],
            "--json": ["-o", str(tmp_path / "a.dnv"), "--json", str(tmp_path / "a.dnv")],
            "--checkpoint": ["-o", str(tmp_path / "a.dnv"), "--checkpoint", str(source)]}[flag]
    before = source.read_bytes()
    assert main(["encode", str(source), *argv, *CLI_OPTIONS]) == 2
    assert "choose another name" in capsys.readouterr().err
    assert source.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.y4m"]


def test_a_failed_encode_leaves_nothing(source, tmp_path, capsys):
    assert main(["encode", str(source), "-o", str(tmp_path / "a.dnv"), "--bpp", "0.01"]) == 2
    assert "too low" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".mp4", ".y4m", "%03d.png"])
def test_ctrl_c_during_decode_leaves_no_partial_video(reference, tmp_path, capsys, monkeypatch,
                                                       ext):
    dnv = tmp_path / "in.dnv"
    dnv.write_bytes(reference)
    monkeypatch.setattr(video, "RENDER_BATCH", 1)  # 4 batches of one frame
    real, calls = DecodedVideo.render, [0]

    def render(self, indices):
        calls[0] += 1
        if calls[0] == 2:  # the first frames are already in the writer
            raise KeyboardInterrupt
        return real(self, indices)

    monkeypatch.setattr(DecodedVideo, "render", render)
    assert main(["decode", str(dnv), "-o", str(tmp_path / f"out{ext}")]) == 130
    assert capsys.readouterr().err.strip() == "dnerv: interrupted"
    # a PNG sequence keeps the frames it finished, each whole (as ffmpeg's); no temporary
    finished = ["out001.png"] if "png" in ext else []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(finished + ["in.dnv"])
    if finished:
        assert read_video(tmp_path / "out%03d.png").frames.shape[0] == 1
