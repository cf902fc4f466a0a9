"""Model families: a second family, registered from one module (tests/toymodel.py), goes
through encode, the file and decode like DNeRV, and a reader that does not know it refuses
its file in one line."""

import math

import numpy as np
import pytest
import torch

import forge
from conftest import mean_frame_floor
from dnerv_codec.codec import DecodedFile, DecodedVideo, EncodeOptions, encode
from dnerv_codec.errors import BitstreamError
from dnerv_codec.format import architecture, budget
from dnerv_codec.format.chunks import DnvReader
from dnerv_codec.format.container import describe, unpack
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.models import registry
from toymodel import FAMILY, MODELS, ToyConfig


@pytest.fixture
def toy_registered():
    registry.register(FAMILY, MODELS)
    try:
        yield
    finally:
        registry.unregister("toy")


def test_a_registered_family_is_built_and_priced_from_its_own_config(toy_registered):
    config = architecture.make_config(64, 96, 8, False, family="toy")
    assert type(config) is ToyConfig and architecture.model_name(config) == "toy"
    decoder = registry.build_decoder(config)
    state = decoder.state_dict()
    # the file's shapes and the parameter count are the toy's, not DNeRV's
    assert [(n, tuple(t.shape)) for n, t in state.items()] == config.tensor_shapes()
    dnerv = architecture.make_config(64, 96, 8, False)
    assert config.parameter_count() < dnerv.parameter_count()
    # the MACs the budget charges are the ones its network does, counted by hooks
    counted = []
    for m in decoder.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, i, out: counted.append(
                out.numel() * mod.in_channels * math.prod(mod.kernel_size)))
    with torch.no_grad():
        decoder(torch.zeros(1, *config.embed_shape))
    pixels = config.padded_height * config.padded_width
    assert budget.macs_per_pixel(config) * pixels == pytest.approx(sum(counted), rel=1e-12)
    model = registry.build(config)
    assert isinstance(model, registry.VideoModel)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FAMILY, MODELS)


def test_a_toy_family_round_trips_through_encode_the_file_and_decode(tiny_clip, toy_registered):
    result = encode(tiny_clip, EncodeOptions(bpp=8, epochs=60, lr=1e-2, device="cpu",
                                             model="toy"))
    data = result.data
    f = unpack(data, architecture.symbol_counts, architecture.tensor_shapes)
    assert f.header["model"] == "toy" and set(f.groups) == {"decoder", "content"}
    assert [s["tag"] for s in describe(data)["sections"]] == ["HEAD", "MODL", "WDEC", "ECON"]
    assert result.stats["model"]["name"] == "Toy"
    decoded = DecodedFile(DnvReader(data), device="cpu")
    frames = np.stack(list(decoded.frames()))
    assert frames.shape == tiny_clip.frames.shape
    # the decoder rebuilt from the file alone gives what the encoder measured on its own file
    total = psnr_rgb(tiny_clip.frames, frames)["total"]
    assert total == pytest.approx(result.stats["psnr_rgb_total"], abs=1e-6)
    assert total > mean_frame_floor(tiny_clip.frames, 1.5)  # 25.48 dB where it scores 22.78

    registry.unregister("toy")  # a dnerv that does not know the family
    with pytest.raises(BitstreamError, match="unsupported .dnv: model family 'toy'"):
        DecodedFile(DnvReader(data), device="cpu")
    registry.register(FAMILY, MODELS)


def test_its_own_halo_lets_it_render_in_row_bands(toy_registered):
    """The band geometry is the family's (ToyConfig.halo_rows, which counts the row either
    side its bilinear upsampling reads): with it the banded rows are the whole frame's; without
    a margin the band edges show."""
    config = architecture.make_config(960, 96, 16, False, family="toy")
    decoded = DecodedVideo(forge.random_file(config, gain=4), device="cpu")
    whole = decoded.render([0, 2])
    unit, halo = config.band_unit(), config.halo_rows()
    assert halo < config.padded_height // 2  # bands that are not the whole frame
    decoded.plan = budget.RenderPlan(1, unit, halo)
    assert np.abs(decoded.render([0, 2]).astype(int) - whole).max() <= 1
    decoded.plan = budget.RenderPlan(1, unit, 0)
    assert np.abs(decoded.render([0, 2]).astype(int) - whole).max() > 1


def test_a_dnerv_file_carries_no_family_section(small_dnv):
    assert b"MODL" not in small_dnv
    assert "model" not in DnvReader(small_dnv).chunk_head(0)
    assert [s["tag"] for s in describe(small_dnv)["sections"]][:2] == ["HEAD", "WDEC"]
