"""The overfitting loop: it learns, and it survives a collapse."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import mean_frame_floor, optimizer_classes
from dnerv_codec.metrics import trivial_baselines
from dnerv_codec.training import loop as training
from dnerv_codec.training.recipe import CODEC, FINETUNE_LR_FRACTION, PAPER, Recipe
from dnerv_codec.models.dnerv import DNeRV, make_config


# The guard tests damage a run a few dozen steps in, which must have learned by then: Adam's
# first steps are larger than Muon's (docs/training.md), so these short runs take Adam.
SHORT_RUNS = dataclasses.replace(CODEC, optimizer="adam")


def small_setup(tiny_clip):
    config = make_config(64, 96, 16)
    torch.manual_seed(0)
    model = DNeRV(config)
    source = training.FrameSource(tiny_clip.frames, config.padded_height, config.padded_width,
                                  torch.device("cpu"))
    return model, source


def after_step(monkeypatch, call: int, damage) -> None:
    """damage(optimizer), without gradients, right after the `call`-th optimizer step (of
    whichever optimizer the recipe names)."""
    calls = [0]

    def counted(real_step):
        def step(self, *args, **kwargs):
            out = real_step(self, *args, **kwargs)
            calls[0] += 1
            if calls[0] == call:
                with torch.no_grad():
                    damage(self)
            return out
        return step

    for kind in optimizer_classes():
        monkeypatch.setattr(kind, "step", counted(kind.step))


def test_frames_stay_uint8_and_padding_repeats_the_edge(tiny_clip):
    _, source = small_setup(tiny_clip)
    assert source.frames.dtype == torch.uint8
    assert source.frames.shape == (6, 3, 72, 96)
    edge = source.frames[:, :, 63, :]
    assert torch.equal(source.frames[:, :, 71, :], edge)


def test_paper_schedule_warms_up_then_decays_to_zero():
    total = 1000
    assert PAPER.factor(0, total) == 0.1
    assert PAPER.factor(200, total) == 1.0
    assert 0 < PAPER.factor(600, total) < 1
    assert PAPER.factor(total, total) < 1e-9


def test_codec_schedule_ends_on_its_floor_and_never_rises_after_the_warm_up():
    total = 500
    factors = [CODEC.factor(i, total) for i in range(total + 1)]
    warm = int(CODEC.warmup_fraction * total)
    assert factors[0] == CODEC.warmup_start
    assert max(factors) == factors[warm] == 1.0
    assert all(a >= b for a, b in zip(factors[warm:], factors[warm + 1:]))
    assert factors[-1] == pytest.approx(CODEC.floor)


def test_fine_tuning_anneals_from_a_tenth_of_the_peak_without_warm_up():
    total = 100
    factors = [CODEC.factor(i, total, "finetune") for i in range(total + 1)]
    assert factors == [PAPER.factor(i, total, "finetune") for i in range(total + 1)]
    assert factors[0] == FINETUNE_LR_FRACTION == 0.1
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert factors[-1] < 1e-9


def test_training_learns_more_than_the_mean_frame_and_reports_progress(tiny_clip):
    model, source = small_setup(tiny_clip)
    seen = []
    stats = training.train(model, source, 40, lr=4e-3, progress=seen.append)
    assert [p.epoch for p in seen] == list(range(1, 41))
    assert stats.iterations == 40 * 6
    # 25.3 dB after 240 steps; showing the clip's mean frame scores 22.78 dB and the untrained
    # network about 11.5 (flat grey: 11.4). 12 epochs at 2e-3 reached only 20.1, under it.
    assert stats.history[-1] > mean_frame_floor(tiny_clip.frames, 1.5)


def test_a_collapsed_run_is_restored_to_its_best_weights(tiny_clip, monkeypatch):
    model, source = small_setup(tiny_clip)

    def wreck(optimizer):  # as a divergence would
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.fill_(float("nan"))

    after_step(monkeypatch, 6 * 6 + 3, wreck)  # mid-epoch 7
    stats = training.train(model, source, 10, recipe=SHORT_RUNS, lr=2e-3)
    assert stats.recoveries >= 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(stats.final_psnr) and stats.final_psnr >= max(stats.history[:6]) - 0.5


def test_weights_that_die_in_an_epochs_last_step_never_become_the_best(tiny_clip, monkeypatch):
    """A network that dies at the very end of an epoch still shows that epoch's good mean PSNR
    (its steps ran on live weights); the weights it ended on must not be kept as the best,
    or every recovery restores a dead network (the unseen clip at 0.1 bpp, seed 3: 17.64 dB
    for the epoch, 13.37 for its last weights, and five recoveries to them)."""
    model, source = small_setup(tiny_clip)

    def kill_head(optimizer):  # the head outputs one flat colour
        model.decoder.head.weight.zero_()
        model.decoder.head.bias.zero_()

    after_step(monkeypatch, 8 * 6, kill_head)  # the last step of epoch 8
    seen = []
    stats = training.train(model, source, 12, recipe=SHORT_RUNS, lr=2e-3, progress=seen.append)
    flat = trivial_baselines(tiny_clip.frames)["flat_colour"]
    assert seen[7].psnr > flat + 3  # epoch 8's mean still looked alive...
    assert seen[7].recovered  # ...but its last weights were caught and rolled back
    assert stats.recoveries == 1 and stats.history[8] > flat + 3
    assert stats.final_psnr >= max(stats.history[:7]) - 0.5


def test_embeddings_have_the_configured_shapes(tiny_clip):
    model, source = small_setup(tiny_clip)
    content, diff = training.compute_embeddings(model, source)
    assert content.shape == (6,) + model.config.embed_shape and content.dtype == np.float32
    assert diff.shape == (6,) + model.config.diff_embed_shape


def test_several_frames_a_step_visit_every_frame_once_an_epoch(tiny_clip):
    model, source = small_setup(tiny_clip)
    stats = training.train(model, source, 30,
                           recipe=Recipe("b4", 5e-3, 0.2, 0.1, 0.0, batch=4))
    assert stats.iterations == 30 * 2  # 6 frames in steps of 4 and 2
    # 60 steps are far from the mean frame (22.78 dB); the floor is the flat mean colour (14.19
    # dB) + 3, which they clear (19.5 dB) and an optimizer that does nothing (11.5) does not.
    # 8 epochs (16 steps) stayed at the flat colour's level (14.2-14.6 dB at 2e-3 to 1e-2).
    assert stats.history[-1] > trivial_baselines(tiny_clip.frames)["flat_colour"] + 3
    assert training.steps_per_epoch(6, 4) == 2 and training.steps_per_epoch(6, 16) == 1



def dead_setup(tiny_clip, dead=True, head_bias=50.0):
    """A small network on a 48x32 crop of 3 frames, its output saturated when `dead` (head bias
    +50: sigmoid's gradient is 0): a network that cannot start learning, as the dead starts
    of wide decoders at a high learning rate. 400 steps take a few seconds. A smaller
    `head_bias` (+3) starts slowly instead: white, then climbing to the flat colour's level."""
    frames = np.ascontiguousarray(tiny_clip.frames[:3, 16:48, 24:72])
    config = make_config(32, 48, 8)
    torch.manual_seed(0)
    model = DNeRV(config)
    if dead:
        with torch.no_grad():
            model.decoder.head.bias.fill_(head_bias)
    source = training.FrameSource(frames, config.padded_height, config.padded_width,
                                  torch.device("cpu"))
    return model, source, frames


def test_a_dead_start_is_restarted_from_fresh_weights_and_resumes_exactly(tiny_clip,
                                                                          monkeypatch):
    # judged after 60 steps instead of 200, so that the test trains 180 steps, not 600
    monkeypatch.setattr(training, "DEAD_CHECK_STEPS", 60)
    model, source, frames = dead_setup(tiny_clip)
    seen, saved = [], []
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    stats = training.train(model, source, 60, recipe=SHORT_RUNS, lr=4e-3, progress=seen.append,
                           save=lambda s: saved.append(copy.deepcopy(s)), save_every=5)
    assert torch.equal(torch.rand(4), expected)  # the fresh weights left torch's numbers alone
    assert stats.restarts == 1
    restarted = [p.epoch for p in seen if p.restarted]
    assert restarted == [20]  # the first epoch (of 3 steps) that ends 60 steps in
    flat = trivial_baselines(frames)["flat_colour"]
    assert max(stats.history[:restarted[0]]) < flat + training.DEAD_MARGIN_DB  # dead until then
    # then a real start: the 120 steps left, at half the learning rate, learn the clip
    assert stats.final_psnr > flat + 3
    # a run resumed from a checkpoint taken after the restart ends on the same weights
    after = next(s for s in saved if s.loop.restarts == 1)
    resumed, source, _ = dead_setup(tiny_clip)
    training.train(resumed, source, 60, recipe=SHORT_RUNS, lr=4e-3, resume=after)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 resumed.state_dict().values()))


def test_a_slow_start_still_rising_at_the_judgement_is_not_restarted(tiny_clip, monkeypatch):
    """Under the flat colour + 1 dB when judged, but rising: looked at again, never restarted
    (a restart would throw away the climb, as it did to Muon's thinnest decoders)."""
    monkeypatch.setattr(training, "DEAD_CHECK_STEPS", 60)
    model, source, frames = dead_setup(tiny_clip, head_bias=3.0)
    seen = []
    stats = training.train(model, source, 60, recipe=SHORT_RUNS, lr=4e-3, progress=seen.append)
    flat = trivial_baselines(frames)["flat_colour"]
    assert max(stats.history[:20]) < flat + training.DEAD_MARGIN_DB  # judged on the level: dead
    assert stats.restarts == 0 and not any(p.restarted for p in seen)
    assert stats.final_psnr > flat + 3


def test_a_run_too_short_to_judge_is_never_restarted(tiny_clip, monkeypatch):
    """Healthy starts are checked by the realistic encode (test_first_run.py: no restart)."""
    monkeypatch.setattr(training, "DEAD_CHECK_STEPS", 60)
    model, source, _ = dead_setup(tiny_clip)  # dead, but 117 steps cannot spare 60 twice
    stats = training.train(model, source, 39, lr=4e-3)
    assert stats.restarts == 0 and stats.history[-1] == stats.history[0]


def test_the_fine_tune_trains_the_decoder_alone_on_the_files_embeddings(tiny_clip):
    """finetune_chunk freezes the encoders and rounds their outputs to the grid the file will
    hold (compress.step_quantize_embeddings at the setting's depth): the encoders come out as
    they went in, the decoder does not, and the model's own embeddings are left unrounded
    afterwards (what the writer quantizes, once)."""
    from dnerv_codec.coding.ratecontrol import Setting
    from dnerv_codec.format.architecture import make_config as plain_config
    from dnerv_codec.scaling.chunkwork import ChunkJob, finetune_chunk, train_chunk
    job = ChunkJob(index=0, chunks=1, start=0, stop=6, config=plain_config(64, 96, 16), bpp=2.0,
                   epochs=2, lr=2e-3, seed=0, device="cpu", learned_steps=True, min_prune=0.0,
                   threads=1, recipe="paper", finetune_epochs=2)
    trained = train_chunk(job, tiny_clip.frames)
    tuned = finetune_chunk(job, tiny_clip.frames, trained, Setting(0.0, 0, 4, 1.0))
    for name, value in trained.state.items():
        same = np.array_equal(value, tuned.state[name])
        if name.startswith(("content_encoder.", "diff_encoder.")):
            assert same, name
        elif name.startswith("decoder.") and name.endswith("weight"):
            assert not same, name
    assert np.array_equal(tuned.content, trained.content)  # unrounded, from the same encoders


def test_decoder_only_gives_the_encoders_no_gradient_and_rounds_to_the_grid(tiny_clip):
    from dnerv_codec.models.dnerv import EmbeddingGrid
    model, source = small_setup(tiny_clip)
    c = model.config
    grid = EmbeddingGrid(torch.full((c.embed_channels,), 0.25), torch.full((2,), 0.5), 7)
    prev, cur, nxt = source.triplets([2])
    with training.decoder_only(model, grid):
        content, diff = model.embed(prev, cur, nxt)
        assert torch.equal(content, torch.round(content / 0.25) * 0.25)
        assert content.abs().max() <= 7 * 0.25 and diff.abs().max() <= 7 * 0.5
        model(prev, cur, nxt).mean().backward()
        assert all(p.grad is None for n, p in model.named_parameters() if "encoder" in n)
        assert all(p.grad is not None for n, p in model.decoder.named_parameters())
    assert model.embedding_grid is None
    assert all(p.requires_grad for p in model.parameters())


def test_a_cheaper_fine_tune_leaves_more_epochs_to_training():
    """plan_training prices a fine-tuning epoch at `finetune_share` of a training one (the
    encoders frozen: measured under --time by timing fine-tuning steps)."""
    from dnerv_codec.training import timeplan
    full = timeplan.plan_training(300, 10, 0.05, 48)
    half = timeplan.plan_training(300, 10, 0.05, 48, finetune_share=0.5)
    assert half.epochs > full.epochs
    for plan, share in ((full, 1.0), (half, 0.5)):
        from dnerv_codec.coding.ratecontrol import finetune_epochs
        work = (plan.epochs + share * finetune_epochs(plan.epochs)) * 0.05 * 48
        assert plan.expected_seconds == pytest.approx(10 + work + 300 * timeplan.AFTER_TRAINING_SHARE)
        assert plan.expected_seconds <= 300
