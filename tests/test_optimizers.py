"""The optimizers a recipe may name: Muon's half does what Muon does, Adam's half what Adam
does, and a run with them checkpoints and resumes exactly."""

import copy
import dataclasses

import pytest
import torch

from dnerv_codec.models.dnerv import DNeRV, make_config
from dnerv_codec.training import checkpoint
from dnerv_codec.training import loop as training
from dnerv_codec.training import optimizers
from dnerv_codec.training.recipe import CODEC


def test_newton_schulz_flattens_every_singular_value_towards_one():
    torch.manual_seed(0)
    # singular values spread over a decade (and scaled by 100): the update keeps the
    # directions, not the scales
    u, _, v = torch.linalg.svd(torch.randn(3, 12, 40), full_matrices=False)
    spread = 100 * torch.logspace(-1, 0, 12)
    matrices = u @ torch.diag_embed(spread.expand(3, 12)) @ v
    values = torch.linalg.svdvals(optimizers.orthogonalised(matrices))
    assert values.shape == (3, 12)
    # the quintic iteration lands near 1, not on it (0.7-1.2 here, by design)
    assert values.min() > 0.6 and values.max() < 1.2


def model_with_gradients():
    torch.manual_seed(0)
    model = DNeRV(make_config(64, 96, 8)).to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def test_muon_moves_dense_kernels_by_an_orthogonal_step_and_the_rest_as_adam_does():
    model, twin = model_with_gradients(), model_with_gradients()
    before = copy.deepcopy(model.state_dict())
    optimizers.make("muon", model, 1e-2, training.BETAS).step()
    optimizers.make("adam", twin, 1e-2, training.BETAS).step()
    kernels = {id(p) for p in optimizers.dense_kernels(model)}
    names = dict(model.named_parameters())
    assert {n for n, p in names.items() if id(p) in kernels} >= {
        "decoder.stem.weight", "decoder.head.weight", "decoder.blocks.0.conv.weight"}
    assert "content_encoder.stages.2.dwconv.weight" not in {
        n for n, p in names.items() if id(p) in kernels}  # depthwise: not a matrix
    for (name, p), q in zip(names.items(), twin.parameters()):
        step = (p.detach() - before[name]).reshape(p.shape[0], -1)
        if id(p) in kernels:
            # an orthogonal step, scaled to the size of Adam's (0.2 sqrt(larger side) x lr)
            values = torch.linalg.svdvals(step) / (1e-2 * 0.2 * max(step.shape) ** 0.5)
            assert 0.4 < values.min() and values.max() < 1.3, name
        else:
            assert torch.allclose(p, q, atol=1e-7), name


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_every_optimizer_learns_and_a_resumed_checkpoint_ends_on_the_same_bits(name, tiny_clip,
                                                                              tmp_path):
    config = make_config(64, 96, 8)
    recipe = dataclasses.replace(CODEC, optimizer=name)
    frames = tiny_clip.frames[:3]

    def run(resume=None, save=None, epochs=30):
        torch.manual_seed(0)
        model = DNeRV(config)
        source = training.FrameSource(frames, config.padded_height, config.padded_width,
                                      torch.device("cpu"))
        stats = training.train(model, source, epochs, recipe=recipe, resume=resume, save=save,
                               rate=training.RateTerm(3 * 64 * 96, 0.5))
        return model, stats

    saved = []
    whole, stats = run(save=lambda s: saved.append(copy.deepcopy(s)))
    assert stats.final_psnr > stats.history[0] + 3  # it learns
    halfway = next(s for s in saved if s.loop.epoch == 16)
    path = str(tmp_path / "run.ckpt")  # through the file: its optimizer state is checked
    checkpoint.save(path, checkpoint.Checkpoint({}, "train", halfway))
    stored = checkpoint.load(path)
    checkpoint.check_resumable(path, stored, {}, DNeRV(config))
    resumed, _ = run(resume=stored.snapshot)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values()))


def test_muon_falls_back_to_the_multi_tensor_adam_where_torch_has_no_fused_one(monkeypatch):
    """torch before 2.4 has no fused Adam on a CPU (setup.cfg admits 2.2): the Adam half then
    takes the multi-tensor kernel, from the first step on."""
    real = optimizers.adam_step

    def without_fused(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(*args, fused=fused, **kwargs)

    monkeypatch.setattr(optimizers, "adam_step", without_fused)
    model, twin = model_with_gradients(), model_with_gradients()
    muon = optimizers.make("muon", model, 1e-2, training.BETAS)
    muon.step()
    assert muon.fused is False
    torch.optim.Adam(twin.parameters(), lr=1e-2, betas=training.BETAS, foreach=True).step()
    kernels = {id(p) for p in optimizers.dense_kernels(model)}
    for p, q in zip(model.parameters(), twin.parameters()):
        if id(p) not in kernels:
            assert torch.allclose(p, q, atol=1e-7)
