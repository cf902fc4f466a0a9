"""Long inputs: the encoder keeps frames as uint8 only, the decoder streams frames to the writer.

The peak-memory figures themselves (short clip versus 10x longer) come from
benchmarks/memory.py and are in docs/robustness.md; these tests pin the mechanisms behind them.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnerv_codec import codec, io
from dnerv_codec.decoding import video
from dnerv_codec.cli import main
from dnerv_codec.metrics import QualityReport, quality_report
from dnerv_codec.training.loop import FrameSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import memory  # noqa: E402  (benchmarks/memory.py)


def test_frames_are_held_once_as_uint8_and_padded_in_place(tiny_clip):
    source = FrameSource(tiny_clip.frames, 72, 96, torch.device("cpu"))
    assert source.frames.dtype == torch.uint8 and source.frames.shape == (6, 3, 72, 96)
    assert torch.equal(source.frames[:, :, :64].permute(0, 2, 3, 1),
                       torch.from_numpy(np.array(tiny_clip.frames)))


def test_quality_measured_a_batch_at_a_time_is_the_whole_videos(tiny_clip):
    rng = np.random.default_rng(0)
    noisy = np.clip(tiny_clip.frames + rng.integers(-9, 10, tiny_clip.frames.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    streamed = QualityReport()
    for start in range(0, 6, 4):
        streamed.add(tiny_clip.frames[start:start + 4], noisy[start:start + 4])
    whole = quality_report(tiny_clip.frames, noisy)
    result = streamed.result()
    assert result.keys() == whole.keys()
    for key, value in whole.items():
        assert result[key] == pytest.approx(value, rel=1e-6), key


def test_decode_writes_each_batch_before_rendering_the_next(small_dnv, tmp_path, monkeypatch):
    """The CLI hands frames to the writer as they are rendered: the decoded video is never
    collected in memory first."""
    events = []
    real_render, real_write = codec.DecodedVideo.render, io.VideoWriter.write

    def render(self, indices):
        events.append("render")
        return real_render(self, indices)

    def write(self, frame):
        events.append("write")
        return real_write(self, frame)

    monkeypatch.setattr(video, "RENDER_BATCH", 1)
    monkeypatch.setattr(codec.DecodedVideo, "render", render)
    monkeypatch.setattr(io.VideoWriter, "write", write)
    (tmp_path / "in.dnv").write_bytes(small_dnv)
    assert main(["decode", str(tmp_path / "in.dnv"), "-o", str(tmp_path / "out.y4m"), "-q"]) == 0
    assert events == ["render", "write"] * 4


def test_the_memory_benchmark_compares_equal_networks():
    size, short = (320, 180), memory.planned_width((320, 180), 24, 0.2)
    bpp = memory.same_width_bpp(size, 240, short, 0.2)
    assert memory.planned_width(size, 240, bpp) == short
    assert memory.planned_width(size, 240, 0.2) > short  # what equal bpp would have measured
