"""Decode budgets: what a file costs is priced from its header, bounded, and true.

The forged files (tests/forge.py) are CRC-valid and legal, a few hundred bytes each, with every
tensor a constant: the shape of a hostile file that asks for memory and time it does not pay for.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import forge
from dnerv_codec.format import budget
from dnerv_codec.format.architecture import (MAX_DECODER_PARAMS, make_config, symbol_counts,
                                              tensor_shapes, with_width)
from dnerv_codec.format.meter import SEGMENT_MACS
from dnerv_codec.format.container import describe
from dnerv_codec.format.budget import Limits, RenderPlan, decode_cost
from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedVideo, header_for
from dnerv_codec.errors import BitstreamError, BudgetError
from dnerv_codec.models.dnerv import Decoder

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [make_config(180, 320, 24), make_config(180, 320, 24, diff_stream=False),
           make_config(144, 176, 40), make_config(96, 480, 12)]


# ----------------------------------------------------------------------------- the arithmetic


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.padded_width}x{c.padded_height}"
                         f"-c{c.stem_channels}-{'dnerv' if c.diff_stream else 'hnerv'}")
def test_macs_per_pixel_is_what_the_network_computes(config):
    """Every convolution's MACs, counted by hooks on the real network, add up to the formula."""
    decoder, counted = Decoder(config).eval(), []

    def count(module, inputs, output):
        counted.append(output.numel() * module.in_channels * math.prod(module.kernel_size))

    for m in decoder.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(count)
    content = torch.zeros(1, *config.embed_shape)
    diff = torch.zeros(1, *config.diff_embed_shape) if config.diff_stream else None
    with torch.no_grad():
        decoder(content, diff)
    pixels = config.padded_height * config.padded_width
    assert budget.macs_per_pixel(config) * pixels == pytest.approx(sum(counted), rel=1e-12)


@pytest.mark.parametrize("diff_stream", [True, False])
def test_rows_rendered_in_bands_are_the_whole_frames_rows(diff_stream):
    config = make_config(240, 216, 16, diff_stream=diff_stream)
    decoded = DecodedVideo(forge.random_file(config), device="cpu")
    assert decoded.plan.band_rows == config.padded_height  # small: whole frames by default
    whole = decoded.render([0, 2])
    unit, halo = config.band_unit(), config.halo_rows()
    decoded.plan = RenderPlan(1, unit, halo)
    banded = decoded.render([0, 2])
    assert banded.shape == whole.shape
    assert np.abs(banded.astype(int) - whole).max() <= 1   # float rounding of other kernel sizes
    assert np.mean(banded == whole) > 0.999
    decoded.plan = RenderPlan(1, unit, 0)  # no margin: the band edges show
    assert np.abs(decoded.render([0, 2]).astype(int) - whole).max() > 1


# ----------------------------------------------------------------------------- through the CLI


def assert_refused(status: int, err: str, *words: str) -> None:
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("dnerv: error: "), err
    for w in words:
        assert w in err, err


def test_a_huge_frame_is_refused_for_h264_and_decoded_in_bands_for_y4m(tmp_path, main_capture):
    """8192x8192 in 685 bytes: libx264's buffers alone would need 10 GiB, so .mp4 is refused in
    one line naming the figure and the limit; Y4M needs no such buffers and is rendered in row
    bands, within the limit."""
    dnv = tmp_path / "big.dnv"
    dnv.write_bytes(forge.huge_frame(8192))
    status, _, err = main_capture(["decode", dnv, "-o", tmp_path / "big.mp4"])
    assert_refused(status, err, "of memory (limit 4.0 GiB; raise it with --max-memory)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.dnv"]
    status, out, err = main_capture(["info", dnv, "--json"])
    assert status == 0, err
    cost = json.loads(out)["decode_cost"]
    assert cost["peak_memory_bytes"] > 4 << 30 and not cost["within_limits"]


@pytest.fixture
def main_capture(capsys):
    """main() in-process: (status, stdout, stderr)."""
    def run(argv):
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err
    return run


@pytest.mark.slow
def test_banded_decoding_keeps_memory_under_the_limit(tmp_path):
    """A 4096x4096 frame decoded to Y4M under --max-memory 600M: rendered in bands, and the
    process's peak memory grows by less than the limit over a process that decodes a tiny file
    (the interpreter, torch and the libraries)."""
    big, tiny = tmp_path / "big.dnv", tmp_path / "tiny.dnv"
    big.write_bytes(forge.huge_frame(4096))
    tiny.write_bytes(forge.huge_frame(48))
    peaks = {}
    for name, path in (("tiny", tiny), ("big", big)):
        code = ("import resource, sys; from dnerv_codec.cli import main; "
                f"s = main(['decode', {str(path)!r}, '-o', {str(tmp_path / (name + '.y4m'))!r}, "
                "'--max-memory', '600M']); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(s)")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 0, p.stderr
        peaks[name] = int(p.stdout.split()[-1]) * 1024
    growth = peaks["big"] - peaks["tiny"]
    assert (tmp_path / "big.y4m").stat().st_size > 4096 * 4096 * 1.5
    assert growth < 600 << 20, f"{growth / 2**20:.0f} MiB"


def test_a_huge_decoder_is_refused_by_its_work_before_decoding(tmp_path, main_capture):
    """50M parameters at 256x256 and 8192 frames (601 bytes): 1.4e15 MACs, refused from the
    header in one line, before the decoder is entropy-decoded or built; --frames 0:1 of it is
    within the limits."""
    dnv = tmp_path / "deep.dnv"
    dnv.write_bytes(forge.huge_decoder(frames=8192))
    t = time.perf_counter()
    status, _, err = main_capture(["decode", dnv, "-o", tmp_path / "deep.y4m"])
    assert time.perf_counter() - t < 1.0
    assert_refused(status, err, "decoding 8192 frames needs 1.42e+15 multiply-accumulates",
                   "limit 1e+15; raise it with --max-work")
    status, _, err = main_capture(["decode", dnv, "-o", tmp_path / "deep.y4m", "--max-work", "1e9",
                                   "--frames", "0:1"])
    assert_refused(status, err, "decoding 1 frames needs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.dnv"]


def test_entropy_models_the_headers_cannot_price_are_metered_against_the_work_limit(
        tmp_path, main_capture):
    """Four chunks of 64 frames, each frame's embedding under its own geometric model over
    +-4,096 (7.6 KB, 256 tables of 8,193 entries): the headers price one model a tensor, so the
    reader charges each further one as it meets it (63 a chunk). Under a --max-work that leaves
    room for 100 models beyond the priced work, decode and info stop in one line at the 101st
    (no output left); at exactly the priced work plus the 252 the file decodes whole."""
    from dnerv_codec.codec import DecodedFile
    from dnerv_codec.format.budget import file_cost
    from dnerv_codec.format.chunks import DnvReader
    from dnerv_codec.format.meter import SEGMENT_MACS

    data = forge.model_flood(64, chunks=4)
    dnv = tmp_path / "flood.dnv"
    dnv.write_bytes(data)
    reader = DnvReader(data)
    decode_work = DecodedFile.cost_of(reader, writer="y4m").work
    reading_work = file_cost(reader, writer="h264").reading_work
    out = tmp_path / "out.y4m"
    status, _, err = main_capture(["decode", dnv, "-o", out, "--max-work",
                                   str(decode_work + 100 * SEGMENT_MACS)])
    assert_refused(status, err, "101 entropy models beyond one a tensor cost more than the "
                   "work limit leaves", "raise it with --max-work")
    assert not out.exists()
    status, _, err = main_capture(["info", dnv, "--max-work",
                                   str(reading_work + 100 * SEGMENT_MACS)])
    assert_refused(status, err, "101 entropy models beyond one a tensor")
    status, _, err = main_capture(["info", dnv, "--max-work",
                                   str(reading_work + 252 * SEGMENT_MACS)])
    assert status == 0, err
    status, _, err = main_capture(["decode", dnv, "-o", out, "-q", "--max-work",
                                   str(decode_work + 252 * SEGMENT_MACS)])
    assert status == 0, err
    assert out.read_bytes().count(b"FRAME") == 256


def test_sigterm_stops_a_decode_inside_a_huge_layer_within_a_second(tmp_path):
    """One frame of a 50M-parameter decoder takes seconds in one layer call; SIGTERM lands in
    well under a second anyway (the call runs in a worker thread), with status 143 and no
    temporary file left behind."""
    dnv = tmp_path / "deep.dnv"
    dnv.write_bytes(forge.huge_decoder(frames=30))
    proc = subprocess.Popen([sys.executable, "-m", "dnerv_codec", "decode", str(dnv), "-o",
                             str(tmp_path / "out.y4m")], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.y4m.tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # the writer is open: rendering is under way
    assert proc.poll() is None, "decoded too fast to be interrupted mid-layer"
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 1.0
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "dnerv: stopped by SIGTERM", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.dnv"]


def test_every_need_the_tool_prints_is_accepted_back_as_its_limit(tmp_path, main_capture,
                                                                    small_dnv):
    """The figures a refusal prints are rounded up, and read back by --max-work and
    --max-memory as printed: the copy-paste a user makes works (`1e+15` was once refused)."""
    from dnerv_codec.text import bytes_text, figure_up
    assert (figure_up(1.231e15), figure_up(1.23e15), figure_up(999.6)) == (
        "1.24e+15", "1.23e+15", "1e+03")
    assert bytes_text(1.04 * 2**30, up=True) == "1.1 GiB" and bytes_text(900, up=True) == "900 bytes"
    dnv = tmp_path / "small.dnv"
    dnv.write_bytes(small_dnv)
    status, _, err = main_capture(["info", dnv, "--max-work", "1e+3"])
    assert_refused(status, err, "needs", "limit 1e+03")
    need = err.split("tensors needs ")[1].split(" ")[0]  # e.g. 2.01e+08
    assert main_capture(["info", dnv, "--max-work", need])[0] == 0
    status, _, err = main_capture(["info", dnv, "--max-memory", "4K"])  # the file fits: 3.4 KB
    assert_refused(status, err, "needs about")
    need = err.split("needs about ")[1].split(" of memory")[0]  # e.g. 9.3 KiB
    assert main_capture(["info", dnv, "--max-memory", need])[0] == 0
    # the defaults as --help and `info` print them, and the sizes as errors print them
    for work, memory in (("1e+15", "4G"), ("1.42e+15", "4.0 GiB"), ("2e15", "900 bytes")):
        status, _, err = main_capture(["info", dnv, "--max-work", work, "--max-memory", memory])
        assert "is not an amount" not in err, err


def test_an_ancillary_flood_is_refused_at_once(tmp_path, main_capture):
    """A valid file followed by 2 million empty ancillary sections (24 MB)."""
    config = make_config(48, 48, 4)
    dnv = tmp_path / "flood.dnv"
    dnv.write_bytes(forge.forged(config, 48, 48, 2, ancillary=2_000_000))
    t = time.perf_counter()
    status, _, err = main_capture(["info", dnv, "--json"])
    assert time.perf_counter() - t < 1.0
    assert_refused(status, err, "more than 64 ancillary sections")
    few = forge.forged(config, 48, 48, 2, ancillary=64)
    assert len([s for s in describe(few)["sections"] if s.get("ancillary")]) == 64


def test_info_prices_a_file_before_reading_its_tensors(tmp_path, main_capture):
    """2^23 frames of 24x24 in a few hundred bytes, 2^27 content values under temporal
    prediction: `info` refuses from the header, before one tensor is decoded (it used to
    entropy-decode everything first, 1.8 GB under --max-memory 512M)."""
    import tracemalloc
    dnv = tmp_path / "long.dnv"
    dnv.write_bytes(forge.forged(make_config(24, 24, 4), 24, 24, 1 << 23, temporal=True))
    assert dnv.stat().st_size < 1000
    tracemalloc.start()
    try:
        t = time.perf_counter()
        status, out, err = main_capture(["info", dnv, "--max-memory", "512M"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t < 1.0 and peak < 32 << 20
    assert_refused(status, err, "reading the file's tensors needs about 2.3 GiB of memory "
                                "(limit 512.0 MiB; raise it with --max-memory)")
    assert out == ""


@pytest.mark.parametrize("temporal", [False, True])
def test_unpacking_holds_no_more_than_it_is_priced(temporal):
    """The reader holds int32 symbols and sums temporal prediction a block at a time: its
    peak, and the decoder's once it has dequantized the embeddings, stay within the
    UNPACK_BYTES_PER_VALUE the budget charges (24.9 bytes a value with temporal prediction
    before: int64 symbols, an int64 running sum and an int64 absolute value)."""
    import tracemalloc
    from dnerv_codec.format.container import read_head, unpack
    data = forge.forged(make_config(24, 24, 4), 24, 24, 1 << 18, temporal=temporal)
    cost = budget.header_cost(read_head(data), len(data))
    assert cost.coded_values > 4_000_000
    for build in (unpack, lambda d: DecodedVideo(d, device="cpu", limits=budget.UNLIMITED)):
        tracemalloc.start()
        try:
            kept = build(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= cost.unpack_bytes, (peak / cost.coded_values, build)
        del kept


def test_writing_tiny_frames_is_priced_by_its_time(tmp_path, main_capture):
    """10^7 frames of 2x2 price 6e4 MACs a frame (a file of the issue: 113), but a decode writes
    about a thousand frames a second: the work counts FRAME_MACS a frame written, so 16x as
    many (--fps-scale 16) are refused from the header, in one line that says where the work
    is."""
    config = make_config(2, 2, 4)
    dnv = tmp_path / "many.dnv"
    dnv.write_bytes(forge.forged(config, 2, 2, 10**7))
    t = time.perf_counter()
    status, _, err = main_capture(["decode", dnv, "-o", tmp_path / "o.y4m", "--fps-scale", "16"])
    assert time.perf_counter() - t < 5.0
    assert_refused(status, err, "the time of writing frames and reading tensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.dnv"]
    header = describe(forge.forged(config, 2, 2, 1))["header"]
    header["frame_count"] = 10**7
    cost = budget.header_cost(header, 1000, writer="y4m")
    assert cost.macs_per_frame < budget.FRAME_MACS["y4m"] / 100  # the writing is the work
    assert cost.work == ((cost.macs_per_frame + budget.FRAME_MACS["y4m"]) * 10**7
                         + cost.fixed_overhead)
    hours = cost.work / budget.RENDER_MACS_PER_SECOND / 3600
    assert 1 < hours < 10  # about 2.5 h at the 1,090 frames a second the issue measured


def test_each_chunk_is_priced_by_its_decoder_build_and_its_values(tmp_path):
    """A chunk costs time to read and build however few MACs it renders: 200 one-pixel chunks
    with a 67M-parameter decoder each took minutes at a price of 1.3e10 MACs. The work counts
    CHUNK_MACS, PARAMETER_MACS a weight, VALUE_MACS a coded value and SEGMENT_MACS a tensor's
    entropy model per chunk."""
    from dnerv_codec.format.chunks import DnvReader, pack_chunked
    from dnerv_codec.format.container import read_head
    config = with_width(make_config(8, 8, 4), 64)
    one = forge.forged(config, 8, 8, 1)
    video = dict(read_head(one), frame_count=3)
    path = tmp_path / "three.dnv"
    path.write_bytes(pack_chunked(video, [(one, None)] * 3))
    with DnvReader.open(str(path)) as reader:
        cost = budget.file_cost(reader)
    chunk = cost.chunks[0]
    values = sum(symbol_counts(read_head(one)).values())
    tensors = sum(len(s) for s in tensor_shapes(read_head(one)).values())
    # a weight and a bias a convolution, the content and the diff embeddings
    assert tensors == 2 * len(config.convolutions()) + 2
    assert chunk.fixed_overhead == (budget.CHUNK_MACS + budget.PARAMETER_MACS
                                    * config.parameter_count() + budget.VALUE_MACS * values
                                    + SEGMENT_MACS * tensors)
    assert cost.work == 3 * chunk.work and cost.overhead == 3 * chunk.overhead


def test_info_refuses_a_spliced_file_as_decode_does(tmp_path, main_capture):
    """A diff embedding of the right size in the wrong shape: `info` used to pass it (exit 0)
    while decode refused it; both now read every tensor against the header's shapes
    (architecture.tensor_shapes), before decoding it."""
    config = make_config(48, 96, 4)
    frames, (c, h, w) = 3, config.diff_embed_shape
    assert h != w
    dnv = tmp_path / "spliced.dnv"
    dnv.write_bytes(forge.forged(config, 96, 48, frames, diff_shape=(frames, c, w, h)))
    why = f"tensor 0 has shape {(frames, c, w, h)} where the header describes {(frames, c, h, w)}"
    for argv in (["info", dnv], ["info", dnv, "--json"], ["decode", dnv, "-o", tmp_path / "o.y4m"]):
        status, out, err = main_capture(argv)
        assert_refused(status, err, why)
        assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spliced.dnv"]


@pytest.mark.parametrize("kind", ["fifo", "device", "sparse", "folder"])
def test_only_a_regular_file_of_legal_size_is_read(tmp_path, kind, main_capture):
    path = tmp_path / "in.dnv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(4 << 30)  # 4 GiB, no blocks: costs nothing until read
    else:
        path.mkdir()
    for command in (["info", path], ["decode", path, "-o", tmp_path / "out.y4m"]):
        t = time.perf_counter()
        status, _, err = main_capture(command)
        assert time.perf_counter() - t < 1.0
        words = {"fifo": "not a regular file", "device": "not a regular file",
                 "sparse": "larger than a .dnv file can be", "folder": "it is a folder"}[kind]
        assert_refused(status, err, words)


def test_a_frame_rate_no_container_can_store_is_a_user_error(tmp_path, main_capture):
    config = make_config(48, 48, 4)
    dnv = tmp_path / "fast.dnv"
    dnv.write_bytes(forge.forged(config, 48, 48, 2, fps=4294967295))
    for out in ("out.mp4", "out.y4m"):
        status, _, err = main_capture(["decode", dnv, "-o", tmp_path / out])
        assert_refused(status, err, "4294967295")
    status, _, err = main_capture(["decode", dnv, "-o", tmp_path / "%03d.png"])
    assert status == 0, err  # PNGs do not store a rate


# ----------------------------------------------------------------------------- fuzzing the header

TIGHT = Limits(memory=512 << 20, work=2 * 10**9)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(side=st.tuples(st.integers(1, 65535), st.integers(1, 65535)),
       width=st.integers(1, 4096), frames=st.integers(1, 10_000_000),
       diff_stream=st.booleans())
def test_any_legal_header_is_priced_and_refused_or_decoded_within_the_limits(
        side, width, frames, diff_stream):
    """Frame sizes, decoder widths and frame counts drawn from the whole legal range, multiplied
    into memory and work: the file is refused from its header (BudgetError, or the format's own
    bounds) or it decodes, and then its priced cost fits the limits and its first frame renders
    fast. Every example checks one of these; only sizes no header can hold are filtered."""
    h, w = side
    config = with_width(make_config(h, w, 4, diff_stream), width)
    config.validate()  # the strides are chosen to fit any size: a ValueError is a failure
    # A side above 65520 pads past what the u16 padded_width/height fields hold (pack() refuses
    # such a header too): no legal header exists for it.
    assume(max(config.padded_width, config.padded_height) <= 0xFFFF)
    header = header_for(forge._Shape(w, h, frames, 25), config)
    if config.parameter_count() > MAX_DECODER_PARAMS:  # refused by the format, before any budget
        with pytest.raises(BitstreamError, match="parameters exceeds the limit"):
            DecodedVideo(forge.forged(config, w, h, frames), device="cpu", limits=TIGHT)
        return
    cost = decode_cost(config, header, 1000, sum(symbol_counts(header).values()), TIGHT)
    if cost.peak_bytes > TIGHT.memory or cost.work > TIGHT.work:
        with pytest.raises(BudgetError, match="raise it with --max-"):
            budget.check(cost, TIGHT)
        return
    # Within TIGHT's 512 MiB every section holds under 2**27 float32 values, so the format's
    # own bound (MAX_GROUP_SYMBOLS) cannot refuse it: a BitstreamError here is a failure.
    data = forge.forged(config, w, h, frames)
    t = time.perf_counter()
    decoded = DecodedVideo(data, device="cpu", limits=TIGHT)
    frame = decoded.render([0])
    assert frame.shape == (1, h, w, 3)
    assert time.perf_counter() - t < 10
