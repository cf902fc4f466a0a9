"""Rate control: the plan before training and the search on real file sizes after it."""

import math

import numpy as np
import pytest
import torch

from dnerv_codec.coding import ratecontrol
from dnerv_codec.codec import build_file, header_for
from dnerv_codec.coding.compress import decoder_arrays
from dnerv_codec.errors import RateError
from dnerv_codec.io import Video
from dnerv_codec.models.dnerv import DNeRV, make_config
from dnerv_codec.coding.ratecontrol import RateRequest, Setting


def test_plan_widens_the_decoder_as_the_budget_grows():
    widths = [ratecontrol.plan(RateRequest(180, 320, 48, bpp)).stem_channels for bpp in (0.1, 0.2, 0.4, 0.8)]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_plan_refuses_a_budget_below_the_embeddings():
    with pytest.raises(RateError, match="too low for 320x180"):
        ratecontrol.plan(RateRequest(180, 320, 48, 0.005))


def test_plan_keeps_the_papers_embeddings_wherever_they_fit():
    for bpp in (0.05, 0.1, 0.8):
        assert ratecontrol.plan(RateRequest(180, 320, 48, bpp)).embed_channels == 16


def test_a_target_the_full_embeddings_cannot_meet_gets_narrower_ones_and_a_decoder():
    # 16 channels and the smallest decoder need more than 0.02 bpp here
    with pytest.raises(RateError, match="too low"):
        ratecontrol.plan(RateRequest(180, 320, 48, 0.02, embed_channels=16))
    config = ratecontrol.plan(RateRequest(180, 320, 48, 0.02))
    assert config.embed_channels < 16 and config.stem_channels >= ratecontrol.MIN_WIDTH
    chosen = ratecontrol.EMBED_CHANNEL_CHOICES.index((config.embed_channels, config.diff_channels))
    target = ratecontrol.target_bytes(0.02, 320, 180, 48)
    for content, diff in ratecontrol.EMBED_CHANNEL_CHOICES[:chosen]:  # none wider fits
        wider = make_config(180, 320, ratecontrol.MIN_WIDTH, True, content, diff)
        assert ratecontrol.estimated_bytes(wider, 48) > target
    # below what (4, 2) costs, the diff embedding narrows too
    lower = ratecontrol.plan(RateRequest(180, 320, 48, 0.015))
    assert (lower.embed_channels, lower.diff_channels) == (4, 1)
    assert ratecontrol.estimated_bytes(config, 48) <= ratecontrol.target_bytes(0.02, 320, 180, 48)


def test_the_refusal_names_a_rate_the_plan_accepts():
    with pytest.raises(RateError) as refused:
        ratecontrol.plan(RateRequest(180, 320, 48, 0.005))
    floor = float(str(refused.value).split("need about ")[1].split(" bpp")[0])
    assert floor == pytest.approx(ratecontrol.floor_bpp(RateRequest(180, 320, 48, None)), rel=1e-2)
    assert ratecontrol.plan(RateRequest(180, 320, 48, floor * 1.02)).stem_channels >= ratecontrol.MIN_WIDTH


@pytest.fixture(scope="module")
def untrained_file_parts():
    """A real (untrained) decoder and embeddings: sizes come from real packing."""
    torch.manual_seed(0)
    config = ratecontrol.plan(RateRequest(64, 96, 6, 2.0))
    model = DNeRV(config)
    video = Video(np.zeros((6, 64, 96, 3), np.uint8), fps=__import__("fractions").Fraction(25))
    rng = np.random.default_rng(0)
    content = rng.normal(size=(6,) + config.embed_shape).astype(np.float32)
    diff = rng.normal(size=(6,) + config.diff_embed_shape).astype(np.float32)
    return (header_for(video, config), decoder_arrays(model.decoder), content, diff,
            model.steps().detach().numpy())


def test_fit_lands_at_or_just_below_the_target(untrained_file_parts):
    header, arrays, content, diff, _ = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s))  # noqa: E731
    unpruned = size_of(Setting(0.0, 8, 6))
    for fraction in (0.9, 0.7, 0.5):
        target = int(fraction * unpruned)
        setting, size = ratecontrol.fit(size_of, target)
        assert size == size_of(setting) <= target
        assert size >= 0.9 * target


def test_fit_prefers_the_setting_with_better_quality(untrained_file_parts):
    header, arrays, content, diff, _ = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s))  # noqa: E731
    target = int(0.8 * size_of(Setting(0.0, 8, 6)))
    # A quality that rewards 6-bit weights must steer the choice to them.
    setting, _ = ratecontrol.fit(size_of, target, quality_of=lambda s: -abs(s.weight_bits - 6))
    assert setting.weight_bits == 6


def test_fit_after_finetune_never_prunes_less(untrained_file_parts):
    header, arrays, content, diff, _ = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s))  # noqa: E731
    target = int(0.8 * size_of(Setting(0.0, 8, 6)))
    start = Setting(0.3, 8, 6)
    setting, size = ratecontrol.fit(size_of, target, start=start)
    assert setting.prune >= 0.3 and size <= target


def test_fit_raises_when_nothing_fits(untrained_file_parts):
    header, arrays, content, diff, _ = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s))  # noqa: E731
    with pytest.raises(RateError, match="cannot be reached"):
        ratecontrol.fit(size_of, 100)


def test_fit_steps_lands_within_tolerance_below_the_target(untrained_file_parts):
    """Learned steps: one scale on every step, bisected on the real file size."""
    header, arrays, content, diff, steps = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s, steps))  # noqa: E731
    at_training_steps = size_of(Setting(0.0, 0, 6, 1.0))
    for fraction in (1.2, 0.8, 0.5):
        target = int(fraction * at_training_steps)
        setting, size = ratecontrol.fit_steps(size_of, target)
        assert size == size_of(setting) <= target
        assert size >= (1 - ratecontrol.TOLERANCE) * target
        assert (setting.step_scale < 1) == (fraction > 1)


def test_fit_steps_after_finetune_keeps_its_grid_only_when_it_is_on_target(untrained_file_parts):
    header, arrays, content, diff, steps = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s, steps))  # noqa: E731
    trained = Setting(0.0, 0, 5, 1.0)
    near = int(size_of(trained) / 0.97)
    setting, _ = ratecontrol.fit_steps(size_of, near, lambda s: -abs(s.step_scale - 1),
                                       start=trained)
    assert setting == trained  # within tolerance and decodes better: kept
    roomy = int(1.15 * size_of(trained))
    setting, size = ratecontrol.fit_steps(size_of, roomy, lambda s: -abs(s.step_scale - 1),
                                          start=trained)
    assert setting.step_scale < 1 and size >= (1 - ratecontrol.TOLERANCE) * roomy
    tight = int(0.7 * size_of(Setting(0.0, 0, 5, 1.0)))
    setting, size = ratecontrol.fit_steps(size_of, tight, start=Setting(0.0, 0, 5, 1.0))
    assert setting.step_scale > 1 and size <= tight


def test_fit_steps_after_finetune_may_keep_its_grid_at_a_lower_embedding_depth(
        untrained_file_parts):
    """The fine-tuned grid no longer fits at its depth: one fewer embedding bit that keeps it
    competes with a re-gridding of every weight, and the decoded quality chooses."""
    header, arrays, content, diff, steps = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s, steps))  # noqa: E731
    trained, lower = Setting(0.0, 0, 6, 1.0), Setting(0.0, 0, 5, 1.0)
    target = size_of(lower) + 1
    assert size_of(trained) > target
    on_grid = lambda s: -abs(math.log(s.step_scale))  # noqa: E731  (the grid decodes best)
    setting, size = ratecontrol.fit_steps(size_of, target, on_grid, start=trained)
    assert setting == lower and size == size_of(lower)
    more_bits = lambda s: s.embed_bits  # noqa: E731  (embedding bits decode best)
    setting, size = ratecontrol.fit_steps(size_of, target, more_bits, start=trained)
    assert setting.embed_bits == 6 and setting.step_scale > 1 and size <= target


def test_fit_steps_raises_when_nothing_fits(untrained_file_parts):
    header, arrays, content, diff, steps = untrained_file_parts
    size_of = lambda s: len(build_file(header, arrays, content, diff, s, steps))  # noqa: E731
    with pytest.raises(RateError, match="cannot be reached"):
        ratecontrol.fit_steps(size_of, 100)


def test_a_file_under_its_target_is_explained_in_one_line():
    target = 10_000
    assert ratecontrol.shortfall(int(0.95 * target), target, Setting(0.0, 0, 6, 1.0)) is None
    finest = Setting(0.0, 0, 6, ratecontrol.STEP_SCALE_RANGE[0])
    text = ratecontrol.shortfall(3_000, target, finest)
    assert text.startswith("the file is 70 % under its target of 10000 bytes: even the finest")
    assert "too narrow for the rate, or its training learned little" in text
    unpruned = Setting(0.0, *ratecontrol.DEPTHS[0])
    assert "even unpruned at 10-bit weights" in ratecontrol.shortfall(3_000, target, unpruned)
    assert "\n" not in ratecontrol.shortfall(3_000, target, Setting(0.3, 8, 6))
