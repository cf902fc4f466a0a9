"""A file trained on one device decodes on the CPU.

The device under test is CUDA, and the case is skipped where torch sees none. The environment
variable DNERV_TEST_DEVICE names the device instead and runs the case wherever it is set:
`benchmarks/gpu_check.sh --dry-run` sets it to cpu, so the assertions the GPU run makes have
already run (CPU against CPU) before a GPU first runs them; its real run sets it to cuda, so
that a missing CUDA fails instead of skipping.
"""

import os

import numpy as np
import pytest
import torch

from conftest import mean_frame_floor
from dnerv_codec.codec import DecodedVideo, EncodeOptions, encode
from dnerv_codec.metrics import psnr_rgb

FORCED_DEVICE = os.environ.get("DNERV_TEST_DEVICE")


def device_params() -> list:
    if FORCED_DEVICE:
        marks = [] if FORCED_DEVICE == "cpu" else [pytest.mark.gpu]
        return [pytest.param(FORCED_DEVICE, marks=marks, id=FORCED_DEVICE)]
    needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                    reason="needs CUDA (DNERV_TEST_DEVICE=cpu runs it on the CPU)")
    return [pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda], id="cuda")]


@pytest.mark.parametrize("device", device_params())
def test_a_file_trained_on_the_device_decodes_on_the_cpu(tiny_clip, device):
    """Trained on the device, the file decodes anywhere: the CPU render matches the device's
    closely, and both are a real decode."""
    # 8 bpp and 80 epochs at 5e-3: at the old 2 bpp, 40 epochs, 2e-3 this clip scored 20.5-21.7
    # dB total on the CPU, under its mean frame's 22.78 dB, so no floor could tell a working
    # decoder from one that shows the mean frame.
    result = encode(tiny_clip, EncodeOptions(bpp=8.0, epochs=80, lr=5e-3, device=device))
    assert result.stats["device"] == device
    on_cpu = np.stack(list(DecodedVideo(result.data, device="cpu").frames()))
    on_device = np.stack(list(DecodedVideo(result.data, device=device).frames()))
    assert on_cpu.shape == tiny_clip.frames.shape
    # Devices round differently (CPU against CPU: identical at any thread count).
    assert np.abs(on_cpu.astype(int) - on_device.astype(int)).max() <= 2
    # On the CPU this encode scored 28.7-28.9 dB total (seeds 0-2, one torch thread) and 30.0
    # (two threads); showing the clip's mean frame scores 22.78 dB: 3 dB over it leaves about
    # 3 dB of room, and a decoder that learned no motion fails.
    assert psnr_rgb(tiny_clip.frames, on_cpu)["total"] > mean_frame_floor(tiny_clip.frames, 3)
