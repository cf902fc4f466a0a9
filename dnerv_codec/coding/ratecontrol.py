"""Rate control: a bit budget in, a model width before training, a compression setting after.

`--bpp` is a target on the measured file size. Two steps land on it:

1. Before training, `plan` sizes the decoder (its width c2) from the budget left once the
   per-frame embeddings are paid for, using bits-per-value estimates measured on real runs.
   The plan deliberately leaves room for some pruning, because pruning is cheaper in quality
   than a narrower network.
2. After training, `fit` searches the real file size (every candidate is actually quantized,
   entropy-coded and packed) over the prune fraction and the bit depths, so the achieved
   rate is measured, never estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from dnerv_codec.errors import RateError
from dnerv_codec.format.architecture import MODELS, ModelConfig, make_config, with_width

PRESET_EPOCHS = {"fast": 60, "medium": 150, "slow": 300}
DEFAULT_PRESET = "fast"
"""What `dnerv encode` trains without --preset, --epochs or --time: the demo's budget and the
one the README's figures were made with (medium's 150 epochs took 2.5 times as long for
+1 to +2 dB)."""
DEFAULT_BPP = 0.05
# Past this a neural codec gains nothing (raw 8-bit RGB is 24 bpp; x264 is visually lossless far
# below): higher targets are planned as this, with a note, instead of training for minutes into
# a file of megabytes.
MAX_USEFUL_BPP = 8.0
# A quality target (--psnr) sizes the network for this rate, the most its file may cost; the
# rate search then finds the smallest file of that network that decodes at the target.
QUALITY_PLAN_BPP = 0.4
# Fine-tuning after pruning, as a fraction of the training epochs (HNeRV: 50 after 300).
FINETUNE_FRACTION = 0.15

# Estimates measured on trained models: entropy-coded bits per decoder weight and per embedding
# value (6-bit), temporal prediction included. Only the plan uses them; the file size itself is
# always measured. With learned steps (the default; `dnerv info` on the files of
# `benchmarks/rd.py --epochs 60 --lr 2e-3` on the embedded clip, 0.05-0.8 bpp): 4.8-5.6 bits a
# weight from 0.1 bpp up once the steps fill the budget (6.5 at 0.05, where the widths come in
# coarse steps and finer steps fill the rest), 1.2-2.0 bits a content value and 1.5-2.6 a diff
# value up to 0.4 bpp (3.6 at 0.8, where the embeddings are 2 % of the file). The embedding
# estimates are set for low rates, where they decide how much decoder is left.
EST_BITS_PER_LEARNED_WEIGHT = 4.8
EST_BITS_PER_CONTENT_VALUE = 1.6
EST_BITS_PER_DIFF_VALUE = 2.3
# With bit depths (--quantizer depth; calibrate_rate.py, c2 = 24, 60 epochs at lr 2e-3):
# 7.6 bits per 8-bit weight.
EST_BITS_PER_WEIGHT = 7.5
PLANNED_PRUNE = 0.2           # the plan leaves room for about this much pruning
# Header and section records, plus each tensor's record (shape, step, model parameters): a
# bias of a few values costs 30-45 bytes whole (dnerv info on the 0.05 bpp file above).
EST_OVERHEAD_BYTES = 60
EST_BYTES_PER_TENSOR = 32
MIN_WIDTH, MAX_WIDTH = 4, 512
# Embedding channels (content d, diff) the plan may choose, in order: the paper's (16, 2)
# wherever they fit, fewer only where they would not leave room for the smallest decoder.
# Fewer channels where 16 fit did not pay: at 0.05 bpp on the embedded clip (60 epochs, lr
# 2e-3) 16 content channels gave 22.85 dB and 8 gave 22.65 dB, both with a c2 = 9 decoder (the
# bytes 8 channels free buy finer steps, not a wider decoder, whose widths come in coarse
# steps there).
EMBED_CHANNEL_CHOICES = ((16, 2), (8, 2), (4, 2), (4, 1), (2, 1), (1, 1))

MAX_PRUNE = 0.95
# Bit depths (weights, embeddings) the search may use, the paper's (8, 6) among them. Measured
# on trained models, an 8-bit weight costs about 7-8 bits entropy-coded while a 6-bit one costs
# about 6; which of "fewer bits" or "more pruning" costs less quality depends on the video, so
# every pair that can meet the target is tried and the best decoded PSNR wins.
DEPTHS = ((10, 8), (8, 8), (8, 6), (7, 6), (6, 6), (8, 5), (6, 5), (6, 4), (5, 4), (4, 3))
TOLERANCE = 0.05
PRUNE_SEARCH_STEPS = 10


@dataclass(frozen=True)
class Setting:
    """How a trained model is compressed."""

    prune: float
    weight_bits: int       # 0 with learned steps
    embed_bits: int
    step_scale: float = 0.0  # > 0: the learned steps of rate-aware training, times this


def target_bytes(bpp: float, width: int, height: int, frames: int) -> int:
    return int(bpp * width * height * frames / 8)


def embedding_bits(config: ModelConfig, frames: int) -> float:
    bits = math.prod(config.embed_shape) * EST_BITS_PER_CONTENT_VALUE
    if config.diff_stream:
        bits += math.prod(config.diff_embed_shape) * EST_BITS_PER_DIFF_VALUE
    return bits * frames


def estimated_bytes(config: ModelConfig, frames: int, learned_steps: bool = True) -> float:
    """Expected file size of `config`: with learned steps, at the rate rate-aware training
    settles on; otherwise at the reference bit depths after PLANNED_PRUNE."""
    if learned_steps:
        weight_bits = config.parameter_count() * EST_BITS_PER_LEARNED_WEIGHT
    else:  # a pruned weight costs about one bit (zero becomes a frequent symbol)
        weight_bits = config.parameter_count() * (
            (1 - PLANNED_PRUNE) * EST_BITS_PER_WEIGHT + PLANNED_PRUNE * 1.0)
    overhead = EST_OVERHEAD_BYTES + EST_BYTES_PER_TENSOR * len(config.tensor_shapes())
    return overhead + (weight_bits + embedding_bits(config, frames)) / 8


@dataclass(frozen=True)
class RateRequest:
    """What a rate is planned for, built once per encode and passed down: the frame size and
    count, the target (None: the default, until `target_bpp` settles it), and the choices that
    change what a file of that size holds: the model (a key of architecture.MODELS), learned
    steps or fixed bit depths, the content embedding's channels (None: rate control chooses)
    and the stride layout (`--arch`)."""

    height: int
    width: int
    frames: int
    bpp: float | None
    model: str = "dnerv"
    learned_steps: bool = True
    embed_channels: int | None = None
    arch: str = "auto"

    @property
    def target_bytes(self) -> int:
        return target_bytes(self.bpp, self.width, self.height, self.frames)

    def for_frames(self, frames: int) -> RateRequest:
        return replace(self, frames=frames)

    def config(self, stem_channels: int, embed_channels: int, diff_channels: int) -> ModelConfig:
        """The architecture of the requested model at this frame size."""
        model = MODELS[self.model]
        return make_config(self.height, self.width, stem_channels, model.diff_stream,
                           embed_channels, diff_channels, arch=self.arch, family=model.family)


def floor_bpp(request: RateRequest) -> float:
    """The estimated rate of the smallest decoder with the narrowest embeddings `plan` may
    choose (or `embed_channels`): the lowest target `plan` accepts."""
    base = request.config(MIN_WIDTH, *_embedding_choices(request.embed_channels)[-1])
    pixels = request.width * request.height * request.frames
    return estimated_bytes(base, request.frames, request.learned_steps) * 8 / pixels


def bpp_for_kbps(kbps: float, width: int, height: int, fps: float) -> float:
    """A bitrate in kb/s (1000 bits) as bits per pixel at this frame size and rate."""
    return kbps * 1000 / (width * height * fps)


def target_bpp(request: RateRequest, for_quality: bool = False) -> tuple[float, list[str]]:
    """The rate to plan for, and a note for each way it differs from `request.bpp` (None: the
    default). The default must work on any clip: a short or small one needs more than
    DEFAULT_BPP for its embeddings and the smallest decoder, so it is raised to a quarter above
    that floor (given explicitly, such a target is refused later, naming the rate that works).
    Under a quality target (`for_quality`), the default is the most its file may cost:
    QUALITY_PLAN_BPP, or a quarter above the floor where that is more. A target past any use is capped at MAX_USEFUL_BPP, or a quarter above
    the floor on tiny frames (8x8 needs about 170 bpp for the smallest decoder)."""
    floor = floor_bpp(request)
    useful = max(MAX_USEFUL_BPP, 1.25 * floor)
    notes, bpp = [], request.bpp
    size = f"{request.width}x{request.height}, {request.frames} frames"
    if bpp is None and for_quality:
        bpp = max(QUALITY_PLAN_BPP, float(f"{1.25 * floor:.3g}"))
    if bpp is None:
        bpp = DEFAULT_BPP
        if 1.25 * floor > bpp:
            bpp = float(f"{1.25 * floor:.3g}")
            notes.append(f"the default --bpp {DEFAULT_BPP:g} is too low for {size} (the "
                         f"embeddings and the smallest decoder need about {floor:.3g}): "
                         f"targeting {bpp:g}")
    if bpp > useful:
        notes.append(f"--bpp {bpp:g} is more than {useful:.3g} bpp, past which a neural codec "
                     f"gains nothing here: planning for {useful:.3g}")
        bpp = useful
    return bpp, notes


def _embedding_choices(embed_channels: int | None) -> tuple[tuple[int, int], ...]:
    """(content, diff) channel pairs to try, most first; `embed_channels` fixes the first."""
    if embed_channels:
        return (embed_channels, 2), (embed_channels, 1)
    return EMBED_CHANNEL_CHOICES


def plan(request: RateRequest) -> ModelConfig:
    """The widest decoder whose estimated file fits the target; RateError if none does.

    The embeddings' channels are the first of EMBED_CHANNEL_CHOICES (content channels fixed
    to `embed_channels` when given) that leaves room for a decoder, so that a target below what
    the paper's embeddings cost gets a real decoder rather than a refusal."""
    target, frames, learned_steps = request.target_bytes, request.frames, request.learned_steps
    bases = [request.config(MIN_WIDTH, d, dd)
             for d, dd in _embedding_choices(request.embed_channels)]
    fitting = [c for c in bases if estimated_bytes(c, frames, learned_steps) <= target]
    if not fitting:
        raise RateError(
            f"--bpp {request.bpp:g} is too low for {request.width}x{request.height}, {frames} "
            f"frames: the embeddings and the smallest decoder need about "
            f"{floor_bpp(request):.3g} bpp")
    base = fitting[0]
    lo, hi = MIN_WIDTH, MAX_WIDTH
    while lo < hi:  # largest width that fits; the estimate grows with the width
        mid = (lo + hi + 1) // 2
        if estimated_bytes(with_width(base, mid), frames, learned_steps) <= target:
            lo = mid
        else:
            hi = mid - 1
    return with_width(base, lo)


def fit(size_of: Callable[[Setting], int], target: int,
        quality_of: Callable[[Setting], float] | None = None,
        start: Setting | None = None, min_prune: float = 0.0) -> tuple[Setting, int]:
    """The setting whose file is at most `target` bytes with the best quality, and its size.

    For each bit-depth pair, the least pruning that fits is found by bisection on the real
    file size; `quality_of` (decoded PSNR) then picks among the pairs. With `start` (the
    setting a fine-tune used) only its depths are tried first, never with less pruning, and
    lower depths only if they cannot fit. `min_prune` is the least pruning any candidate gets
    (the user's --min-prune). Raises RateError when nothing fits.
    """
    if start:
        first = (start.weight_bits, start.embed_bits)
        depths = (first,) + tuple(d for d in DEPTHS if d < first)
        for wb, eb in depths:
            found = _least_pruning(size_of, target, wb, eb, start.prune)
            if found:
                return found
    else:
        found = [f for wb, eb in DEPTHS if (f := _least_pruning(size_of, target, wb, eb, min_prune))]
        if best := _best_of(found, target, quality_of):
            return best
    raise RateError(f"the target of {target} bytes cannot be reached even at {MAX_PRUNE:.0%} "
                    f"pruning and {DEPTHS[-1][0]}-bit weights; raise --bpp")


def _least_pruning(size_of, target: int, wb: int, eb: int, floor: float):
    """(setting, size) with the least pruning >= floor that fits in `target`, or None."""
    return _least_fitting(size_of, target, lambda p: Setting(p, wb, eb), floor, MAX_PRUNE,
                          PRUNE_SEARCH_STEPS)


def _least_fitting(size_of, target: int, setting_at: Callable[[float], Setting], lo: float,
                   hi: float, steps: int):
    """(setting_at(x), size) for the least x in [lo, hi] whose file fits in `target` (bisection
    on the real size, which falls as x grows), or None when even setting_at(hi) does not."""
    least = setting_at(lo)
    size = size_of(least)
    if size <= target:
        return least, size
    most = setting_at(hi)
    size_most = size_of(most)
    if size_most > target:
        return None
    best = (most, size_most)
    for _ in range(steps):
        mid = (lo + hi) / 2
        setting = setting_at(mid)
        size = size_of(setting)
        if size <= target:
            hi, best = mid, (setting, size)
        else:
            lo = mid
    return best


def _best_of(found: list, target: int, quality_of):
    """The (setting, size) to use among candidates that fit: one far below the target would
    miss the rate, so those within tolerance when there are any; then the best decoded
    quality. None when there is no candidate."""
    found = [f for f in found if f[1] >= (1 - TOLERANCE) * target] or found
    if not found:
        return None
    if quality_of is None or len(found) == 1:
        return found[0]
    return max(found, key=lambda f: quality_of(f[0]))


# Learned steps (rate-aware training): the search scales every step by one factor, from a
# grid 8x finer than training's to one 1024x coarser, and tries these embedding depths.
STEP_SCALE_RANGE = (1 / 8, 1024.0)
STEP_SCALE_SEARCH_STEPS = 14
LEARNED_EMBED_DEPTHS = (6, 5, 4, 3)


def fit_steps(size_of: Callable[[Setting], int], target: int,
              quality_of: Callable[[Setting], float] | None = None,
              start: Setting | None = None, min_prune: float = 0.0) -> tuple[Setting, int]:
    """fit() for learned steps: for each embedding depth, the finest step scale whose file is at
    most `target` bytes (bisection on the real size, in the log domain); `quality_of` picks
    among the depths. With `start` (the setting a hard fine-tune trained for, its steps
    already folded into the model) its own grid (scale 1, at the first depth from its own
    down where that fits) competes with the least re-gridding at the first depth where one
    fits; the grid is kept when it lands within tolerance and decodes at least as well."""
    if start:
        depths = (start.embed_bits,) + tuple(d for d in LEARNED_EMBED_DEPTHS
                                             if d < start.embed_bits)
        grids = [Setting(start.prune, 0, eb, 1.0) for eb in depths]
        # The grid fine-tuned on, at the first depth where it fits. Another grid, even 0.2 %
        # coarser, re-rounds every weight and throws away what the fine-tune adapted to its
        # own rounding (HNeRV on bikes at 0.4 bpp: 38.07 dB on the fine-tuned grid with
        # 5-bit embeddings, 34.92 in the file on 1.002 x its steps); a lower embedding depth
        # may cost less. Between the two, the decoded quality says (the fine-tuned grid on a
        # tie); without it, the fine-tune's depth is re-gridded as before.
        kept = next(((g, n) for g in grids if (n := size_of(g)) <= target), None)
        regridded = next(filter(None, (_least_scale(size_of, target, g, STEP_SCALE_RANGE[0])
                                       for g in grids)), None)
        found = [f for f in (kept if quality_of else None, regridded) if f]
        if best := _best_of(found, target, quality_of):
            return best
    else:
        found = [f for eb in LEARNED_EMBED_DEPTHS
                 if (f := _least_scale(size_of, target, Setting(min_prune, 0, eb, 1.0),
                                       STEP_SCALE_RANGE[0]))]
        if best := _best_of(found, target, quality_of):
            return best
    raise RateError(f"the target of {target} bytes cannot be reached even with steps "
                    f"{STEP_SCALE_RANGE[1]:g}x coarser and {LEARNED_EMBED_DEPTHS[-1]}-bit "
                    f"embeddings; raise --bpp")


def _least_scale(size_of, target: int, base: Setting, finest: float):
    """(setting, size) with the smallest step scale >= finest that fits, or None."""
    return _least_fitting(size_of, target,
                          lambda t: Setting(base.prune, 0, base.embed_bits, math.exp(t)),
                          math.log(finest), math.log(STEP_SCALE_RANGE[1]),
                          STEP_SCALE_SEARCH_STEPS)


# The byte targets a quality target tries: between the ceiling and QUALITY_FLOOR_FRACTION of it,
# bisected in the log domain this many times (each a whole setting search on real sizes, then a
# decode of the sampled frames): 64^(1/2^7), about 3 % apart at the end.
QUALITY_SEARCH_STEPS = 7
QUALITY_FLOOR_FRACTION = 1 / 64


def bytes_for_quality(fit, size_of: Callable[[Setting], int],
                      quality_of: Callable[[Setting], float], ceiling: int, quality: float,
                      min_prune: float = 0.0) -> tuple[int, float]:
    """The fewest bytes, up to `ceiling`, whose best setting (`fit`, as rate control runs it)
    decodes at `quality` dB or more (`quality_of`: PSNR of the sampled frames), and the
    quality there: a bisection on the byte target, in the log domain, since a smaller target
    never decodes better. The ceiling and what it reaches when even it falls short."""
    def reached(target: float) -> float:
        try:
            setting, _ = fit(size_of, int(target), quality_of, min_prune=min_prune)
        except RateError:
            return -math.inf  # no setting is that small
        return quality_of(setting)

    best = (ceiling, reached(ceiling))
    if best[1] < quality:
        return best
    lo, hi = math.log(ceiling * QUALITY_FLOOR_FRACTION), math.log(ceiling)
    for _ in range(QUALITY_SEARCH_STEPS):
        mid = (lo + hi) / 2
        found = reached(math.exp(mid))
        if found >= quality:
            hi, best = mid, (int(math.exp(mid)), found)
        else:
            lo = mid
    return best


def shortfall(size: int, target: int, setting: Setting) -> str | None:
    """Why a file of `size` bytes missed its `target` by more than TOLERANCE (one line for the
    user), or None when it landed within it. The search never goes over the target, so only a
    file that is too small needs an explanation: the setting it stopped at says which limit
    held it back."""
    if size >= (1 - TOLERANCE) * target:
        return None
    miss = f"the file is {100 * (1 - size / target):.0f} % under its target of {target} bytes"
    if setting.step_scale > 0 and setting.step_scale <= STEP_SCALE_RANGE[0] * 1.0001:
        return (f"{miss}: even the finest steps the search may use (1/{1 / STEP_SCALE_RANGE[0]:g} "
                f"of the trained grid) with {setting.embed_bits}-bit embeddings fill only "
                f"{size} bytes, so the network holds less than the rate pays for (too narrow "
                f"for the rate, or its training learned little)")
    if setting.step_scale == 0 and setting.prune <= 0 and (setting.weight_bits,
                                                           setting.embed_bits) == DEPTHS[0]:
        return (f"{miss}: even unpruned at {DEPTHS[0][0]}-bit weights and {DEPTHS[0][1]}-bit "
                f"embeddings the network fills only {size} bytes (too narrow for the rate)")
    return f"{miss}: no setting between the two nearest the search tried lands closer"


def epochs_for(preset: str, epochs: int | None) -> int:
    return epochs if epochs is not None else PRESET_EPOCHS[preset]


def finetune_epochs(epochs: int) -> int:
    return max(1, round(FINETUNE_FRACTION * epochs))
