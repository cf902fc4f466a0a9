"""`dnerv` as a user runs it: clean stdout, one summary line, one-line errors, exit codes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mean_frame_floor
from dnerv_codec.cli import main
from dnerv_codec.io import read_video

# 8 bpp, 80 epochs at 5e-3: about 29 dB total on the 6-frame clip, whose mean frame scores
# 22.78 dB (30 epochs at 2e-3 and 2 bpp stayed under it).


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def source(tiny_png_source):
    """The tiny real clip as a lossless PNG sequence (what a user would pass as INPUT); the
    tests of usage errors need no trained file."""
    return tiny_png_source


@pytest.fixture(scope="module")
def encoded(tiny_encoded):
    """The clip encoded once through the CLI (conftest.tiny_encoded): (.dnv path, stdout, stderr)."""
    return tiny_encoded.dnv, tiny_encoded.stdout, tiny_encoded.stderr


@pytest.fixture(scope="module")
def dnv(encoded):
    return encoded[0]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_prints_one_summary_line_and_keeps_stdout_clean(encoded):
    out_path, out, err = encoded
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    for word in ("bpp", "kb/s", "PSNR-RGB", "PSNR-YUV", "6 frames", "96x64"):
        assert word in lines[0]
    assert out_path.stat().st_size > 0


def test_json_stats_describe_the_written_file(dnv, tiny_encoded):
    stats = tiny_encoded.stats
    assert stats["bytes"] == dnv.stat().st_size
    assert stats["bpp"] == pytest.approx(8 * dnv.stat().st_size / (96 * 64 * 6))
    for key in ("psnr_rgb", "psnr_yuv", "psnr_y", "ms_ssim_rgb", "kbps", "encode_seconds", "fps"):
        assert key in stats


def test_decode_to_png_matches_the_encoders_psnr(capsys, dnv, workdir, tiny_clip, tiny_encoded):
    pattern = workdir / "rec" / "%05d.png"
    pattern.parent.mkdir()
    code, out, err = run(capsys, "decode", dnv, "-o", pattern)
    assert code == 0 and out == ""
    assert "decoded 6 frames 96x64" in err
    rec = read_video(pattern)
    assert rec.frame_count == 6 and (rec.width, rec.height) == (96, 64)
    from dnerv_codec.metrics import psnr_rgb
    stats = tiny_encoded.stats
    psnr = psnr_rgb(tiny_clip.frames, rec.frames)
    assert psnr["mean"] == pytest.approx(stats["psnr_rgb"], abs=0.1)
    # and that figure is a real decode: 3 dB over showing the clip's mean frame (22.78 dB)
    assert psnr["total"] > mean_frame_floor(tiny_clip.frames, 3)


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".y4m"])
def test_decode_to_video_keeps_count_size_and_rate(capsys, dnv, workdir, tiny_clip, ext):
    out_path = workdir / f"rec{ext}"
    code, _, _ = run(capsys, "decode", dnv, "-o", out_path)
    assert code == 0
    rec = read_video(out_path)
    assert rec.frame_count == 6 and (rec.width, rec.height) == (96, 64)
    assert rec.fps == tiny_clip.fps


def test_decode_a_frame_range(capsys, dnv, workdir):
    out_path = workdir / "part.y4m"
    code, _, _ = run(capsys, "decode", dnv, "-o", out_path, "--frames", "1:4")
    assert code == 0
    assert read_video(out_path).frame_count == 3


def test_info_prints_header_and_sections_and_json(capsys, dnv):
    code, out, _ = run(capsys, "info", dnv)
    assert code == 0
    for word in ("width", "frame_count", "content_strides", "HEAD", "WDEC", "ECON", "EDIF"):
        assert word in out
    code, out, _ = run(capsys, "info", dnv, "--json")
    assert code == 0
    desc = json.loads(out)
    assert desc["header"]["width"] == 96
    assert desc["file_bytes"] == dnv.stat().st_size


# ----------------------------------------------------------------------------- errors


def assert_one_line_error(code, out, err, needle):
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


def test_missing_input(capsys, workdir):
    code, out, err = run(capsys, "encode", workdir / "nope.mp4", "-o", workdir / "x.dnv")
    assert_one_line_error(code, out, err, "no such file")
    assert not (workdir / "x.dnv").exists()


def test_input_that_is_not_a_video(capsys, workdir):
    text = workdir / "notes.txt"
    text.write_text("hello, this is not a video\n" * 3)
    code, out, err = run(capsys, "encode", text, "-o", workdir / "x.dnv")
    assert_one_line_error(code, out, err, "not a video")
    assert not (workdir / "x.dnv").exists()


def test_output_in_a_missing_folder(capsys, workdir, source, dnv):
    code, out, err = run(capsys, "encode", source, "-o", workdir / "nodir" / "x.dnv")
    assert_one_line_error(code, out, err, "does not exist")
    code, out, err = run(capsys, "decode", dnv, "-o", workdir / "nodir" / "x.mp4")
    assert_one_line_error(code, out, err, "does not exist")
    assert not (workdir / "nodir").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_dnv_is_refused_and_leaves_no_output(capsys, workdir, dnv, damage):
    data = bytearray(dnv.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:
        data = bytearray()
    bad = workdir / f"bad-{damage}.dnv"
    bad.write_bytes(bytes(data))
    out_path = workdir / f"bad-{damage}.mp4"
    code, out, err = run(capsys, "decode", bad, "-o", out_path)
    assert_one_line_error(code, out, err, ".dnv")
    assert not out_path.exists()
    code, out, err = run(capsys, "info", bad)
    assert_one_line_error(code, out, err, ".dnv")
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []


def test_bad_frame_range(capsys, dnv, workdir):
    code, out, err = run(capsys, "decode", dnv, "-o", workdir / "r.y4m", "--frames", "4:99")
    assert_one_line_error(code, out, err, "--frames")
    assert not (workdir / "r.y4m").exists()


def test_output_equal_to_input_is_refused(capsys, dnv):
    code, out, err = run(capsys, "decode", dnv, "-o", dnv)
    assert code == 2 and "Traceback" not in err


def test_installed_console_script_runs(dnv):
    """The `dnerv` entry point itself (what the README runs), in a separate process."""
    exe = shutil.which("dnerv", path=str(Path(sys.executable).parent)) or shutil.which("dnerv")
    assert exe, "the dnerv console script is not installed"
    done = subprocess.run([exe, "info", str(dnv), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["header"]["frame_count"] == 6
    done = subprocess.run([exe, "decode", str(dnv) + ".missing", "-o", "x.mp4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such file" in done.stderr and "Traceback" not in done.stderr


def test_info_and_help_do_not_import_torch(dnv):
    code = ("import sys; from dnerv_codec.cli import main; "
            f"main(['info', {str(dnv)!r}]); main(['--help']); sys.exit('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, "torch was imported: " + done.stderr


# ----------------------------------------------------------------------------- the error contract


@pytest.mark.parametrize("option, value", [
    ("--bpp", "nan"), ("--bpp", "inf"), ("--bpp", "-inf"), ("--bpp", "0"),
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "5"),
    ("--min-prune", "nan"), ("--min-prune", "1"),
    ("--seed", str(2**70)), ("--seed", "-1"),
])
def test_an_impossible_option_value_is_a_usage_error_before_any_work(capsys, source, workdir,
                                                                    option, value):
    code, out, err = run(capsys, "encode", source, "-o", workdir / "never.dnv", option, value)
    assert code == 2 and out == ""
    assert f"Invalid value for '{option}'" in err and "Traceback" not in err, err
    assert not (workdir / "never.dnv").exists()


def test_an_empty_output_name_is_refused_before_training(capsys, source):
    code, _, err = run(capsys, "encode", source, "-o", "", "--epochs", "1")
    assert code == 2 and err == "dnerv: error: the output name is empty\n"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_cuda_without_cuda_is_a_user_error(capsys, source, dnv, workdir, command):
    argv = (["encode", source, "-o", workdir / "x.dnv"] if command == "encode"
            else ["decode", dnv, "-o", workdir / "x.y4m"])
    code, _, err = run(capsys, *argv, "--device", "cuda")
    assert code == 2 and err == "dnerv: error: --device cuda: no CUDA device is available to torch\n"


def test_a_rate_past_any_use_is_capped_with_a_note(capsys, source, workdir):
    """--bpp 1e9 on 96x64 frames: planned as the larger of 8 bpp and what the smallest decoder
    needs, with one note, instead of training the widest decoder into a huge file."""
    out_path = workdir / "capped.dnv"
    code, _, err = run(capsys, "encode", source, "-o", out_path, "--bpp", "1e9", "--epochs", "1")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("dnerv: note: --bpp 1e+09")]
    assert len(notes) == 1 and "planning for 8" in notes[0], err
    assert "target 8 bpp" in err
    assert 0.95 * 8 <= out_path.stat().st_size * 8 / (96 * 64 * 6) <= 8


def test_library_warnings_never_reach_the_user(capsys, dnv, monkeypatch):
    """A warning raised inside a command (numpy's, say) is not printed; DNERV_DEBUG shows it."""
    import numpy as np

    from dnerv_codec.decoding import describe as info_side  # where `info` reads the file
    real = info_side.describe

    def describe_with_a_warning(*args, **kwargs):
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        return real(*args, **kwargs)

    monkeypatch.setattr(info_side, "describe", describe_with_a_warning)
    code, _, err = run(capsys, "info", dnv)
    assert code == 0 and err == ""
    monkeypatch.setenv("DNERV_DEBUG", "1")
    with pytest.warns(RuntimeWarning, match="divide by zero"):  # shown (pytest records it)
        assert run(capsys, "info", dnv)[0] == 0


def test_info_prices_the_decode(capsys, dnv):
    code, out, _ = run(capsys, "info", dnv)
    assert code == 0
    assert "peak memory" in out and "MACs" in out and "rendering    4 frames a call, whole frames" in out
    assert "for writing frames and reading tensors" in out and "on 2 CPU cores)" in out
    code, out, _ = run(capsys, "info", "--json", dnv)
    desc = json.loads(out)
    cost = desc["decode_cost"]
    assert cost["within_limits"] and cost["frames"] == 6
    assert cost["band_rows"] == desc["header"]["padded_height"] and cost["halo_rows"] == 0
    assert cost["work_macs"] == cost["macs_per_frame"] * 6 + cost["overhead_macs"]
    assert cost["overhead_macs"] > 0 and cost["macs_per_frame"] > 0
    # a work limit that reading the tensors fits but rendering does not: described, and
    # reported over the limits (reading past it is refused: test_chunks.py)
    reading = cost["reading_work_macs"]
    code, out, _ = run(capsys, "info", "--json", "--max-work", str(reading), dnv)
    assert code == 0 and not json.loads(out)["decode_cost"]["within_limits"]


def test_info_refuses_to_read_past_the_memory_limit(capsys, dnv):
    """Priced from the header before a tensor is read: reading them needs more than 100 KiB."""
    code, out, err = run(capsys, "info", "--max-memory", "100K", dnv)
    assert code == 2 and out == ""
    assert err.startswith("dnerv: error: reading the file's tensors needs about ")
    assert err.rstrip().endswith("of memory (limit 100.0 KiB; raise it with --max-memory)")


@pytest.mark.parametrize("value", ["4G", "512M", "123", "2.5g", "1GiB"])
def test_memory_limits_take_suffixes(capsys, dnv, workdir, value):
    code, _, err = run(capsys, "decode", dnv, "-o", workdir / "limits.y4m", "--max-memory", value)
    from dnerv_codec.format.budget import GIB
    expected = {"4G": 4 * GIB, "512M": 512 << 20, "123": 123, "2.5g": int(2.5 * GIB), "1GiB": GIB}
    if expected[value] < 64 << 20:
        assert code == 2 and "is larger than --max-memory allows (123 bytes)" in err
    else:
        assert code == 0, err


def test_a_bad_limit_is_a_usage_error(capsys, dnv, workdir):
    for bad in ("lots", "-1", "0", "1e99"):
        code, _, err = run(capsys, "decode", dnv, "-o", workdir / "x.y4m", "--max-work", bad)
        assert code == 2 and "Invalid value for '--max-work'" in err


def test_info_shows_each_tensors_coding_and_share(capsys, dnv):
    """Per section: its share of the file and bits a value; per tensor: its size, bits a value
    and the entropy coding the writer chose."""
    code, out, _ = run(capsys, "info", dnv)
    assert code == 0
    econ = next(line for line in out.splitlines() if line.strip().startswith("ECON"))
    assert "%" in econ and "bits a value" in econ
    assert "temporal prediction" in out or "geometric" in out or "histogram" in out
    desc = json.loads(run(capsys, "info", "--json", dnv)[1])
    for s in desc["sections"]:
        if "tensor_details" in s:
            details = s["tensor_details"]
            assert len(details) == s["tensors"]
            assert sum(d["bytes"] for d in details) == s["length"] - 12 - 4  # framing, count
            assert all(d["models"] and d["bits_per_value"] > 0 for d in details)
            assert sum(d["share"] for d in details) == pytest.approx(
                (s["length"] - 16) / desc["file_bytes"])
    names = [d["name"] for s in desc["sections"] for d in s.get("tensor_details", [])]
    assert names[:2] == ["stem.weight", "stem.bias"] and names[-2:] == [
        "content embeddings", "diff embeddings"]
    stem = next(line for line in out.splitlines() if line.strip().startswith("stem.weight"))
    assert "%" in stem and "bits a value" in stem
