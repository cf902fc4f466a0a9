"""The DNeRV architecture: sizes, strides for any frame size, the HNeRV ablation."""

import math

import pytest
import torch

from dnerv_codec.models.dnerv import (DNeRV, Decoder, ModelConfig, choose_strides, decoder_channels,
                               frame_differences, make_config)


def reference_config() -> ModelConfig:
    """The paper's 960x1920 setting: strides 5,4,4,3,2, kernels 1,3,5,5,5, c2 = 92."""
    return ModelConfig(960, 1920, (5, 4, 4, 3, 2), (1, 3, 5, 5, 5), decoder_channels(92, 5), 92,
                       ccu_block=2)


def test_reference_decoder_has_about_3_4m_parameters():
    config = reference_config()
    config.validate()
    built = sum(p.numel() for p in Decoder(config).parameters())
    assert built == config.parameter_count()
    assert 3.3e6 < built < 3.5e6  # c2 = 92: about 3.4M parameters with the diff branch and CCU


def test_channels_follow_the_official_floor_division():
    assert decoder_channels(92, 5) == (76, 63, 52, 43, 35)


@pytest.mark.parametrize("height,width", [(180, 320), (720, 1280), (1080, 1920), (37, 65),
                                          (144, 176), (1, 1), (8, 8), (1, 300)])
def test_strides_cover_any_size_by_padding(height, width):
    strides, ph, pw = choose_strides(height, width)
    assert strides[-2:] == (3, 2)  # the CCU meets the diff stream at 1/6 of the frame
    assert ph >= height and pw >= width
    assert ph % math.prod(strides) == 0 and pw % math.prod(strides) == 0
    assert ph % 24 == 0 and pw % 24 == 0
    assert ph < height + math.lcm(math.prod(strides), 24)


@pytest.mark.parametrize("diff", [True, False])
def test_forward_gives_a_padded_frame_in_unit_range(diff):
    config = make_config(37, 65, 12, diff_stream=diff)
    model = DNeRV(config)
    x = torch.rand(2, 3, config.padded_height, config.padded_width)
    content, d = model.embed(x, x, x)
    assert tuple(content.shape[1:]) == config.embed_shape
    assert (d is not None) == diff
    if diff:
        assert tuple(d.shape[1:]) == config.diff_embed_shape
    out = model(x, x, x)
    assert out.shape == x.shape
    assert 0 <= out.min() and out.max() <= 1


def test_hnerv_ablation_is_dnerv_without_the_diff_branch():
    dnerv = make_config(180, 320, 32, diff_stream=True)
    hnerv = make_config(180, 320, 32, diff_stream=False)
    names = {n for n, _ in Decoder(dnerv).named_parameters()}
    ablation = {n for n, _ in Decoder(hnerv).named_parameters()}
    assert ablation < names
    assert {n.split(".")[0] for n in names - ablation} == {"diff_stem", "diff_block", "ccu"}


def test_diff_input_is_backward_and_forward_difference_per_colour():
    prev, cur, nxt = (torch.full((1, 3, 2, 2), v) for v in (0.1, 0.5, 0.7))
    d = frame_differences(prev, cur, nxt)
    assert d.shape == (1, 6, 2, 2)
    assert torch.allclose(d[:, 0::2], torch.full((1, 3, 2, 2), 0.4))
    assert torch.allclose(d[:, 1::2], torch.full((1, 3, 2, 2), 0.2))


def test_ccu_blends_content_and_diff_as_the_paper_says():
    config = make_config(48, 48, 12)
    ccu = Decoder(config).ccu
    o, d = torch.randn(1, ccu.p_content.in_channels, 4, 4), torch.randn(1, ccu.p_diff.in_channels, 4, 4)
    p = torch.tanh(ccu.p_content(o) + ccu.p_diff(d))
    s = torch.sigmoid(ccu.s_content(o) + ccu.s_diff(d))
    assert torch.allclose(ccu(o, d), s * p + (1 - s) * o)


@pytest.mark.parametrize("change", [
    dict(strides=(4, 2, 3)),                     # lengths differ
    dict(kernels=(1, 3, 4, 5)),                  # even kernel
    dict(padded_height=190),                     # not a multiple of the stride product
    dict(ccu_block=0),                           # diff stream would land at the wrong size
])
def test_validate_refuses_inconsistent_configs(change):
    base = make_config(180, 320, 16)
    fields = {**base.__dict__, **change}
    with pytest.raises(ValueError):
        ModelConfig(**fields).validate()


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_encoders_depthwise_backward_matches_torchs(channels_last):
    """The encoders' depthwise 7x7 has its own backward on CPU (two plain convolutions, for
    speed): its gradients are torch's own, for a batch and in either memory layout."""
    from dnerv_codec.models.dnerv import depthwise_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 5, 7, padding=3, groups=5).double()
    x = torch.randn(3, 5, 11, 14, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    target = torch.randn(3, 5, 11, 14, dtype=torch.float64)
    grads = []
    for forward in (depthwise_conv, lambda c, t: c(t)):
        xi = x.clone().requires_grad_()
        conv.zero_grad()
        ((forward(conv, xi) - target) ** 2).sum().backward()
        grads.append([xi.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
    for ours, torchs in zip(*grads):
        assert ours.shape == torchs.shape
        assert torch.allclose(ours, torchs, atol=1e-10, rtol=1e-10)


def test_the_depthwise_backward_runs_under_bf16_autocast():
    """Training autocasts to bf16 on CPUs that run it natively: the custom backward must take
    bf16 gradients and hand float32 ones back to the float32 weights."""
    from dnerv_codec.models.dnerv import depthwise_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 7, padding=3, groups=4)
    x = torch.randn(1, 4, 9, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = depthwise_conv(conv, x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16
    assert conv.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    reference = torch.nn.grad.conv2d_weight(x.detach(), conv.weight.shape, 2 * y.float().detach(),
                                            padding=3, groups=4)
    assert torch.allclose(conv.weight.grad, reference, rtol=0.05, atol=0.05 * reference.abs().max())
