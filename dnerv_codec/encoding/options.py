"""What an encode is asked for (`EncodeOptions`) and what it gives back (`EncodeResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dnerv_codec.coding.ratecontrol import DEFAULT_PRESET, RateRequest
from dnerv_codec.io import Video
from dnerv_codec.training.modelchoice import DEFAULT_MODEL
from dnerv_codec.training.recipe import DEFAULT_RECIPE


@dataclass
class EncodeOptions:
    bpp: float = 0.05
    preset: str = DEFAULT_PRESET
    epochs: int | None = None       # overrides the preset
    device: str = "auto"
    seed: int = 0
    model: str = DEFAULT_MODEL       # "dnerv", "hnerv" (the ablation: no difference stream)
                                     # or "auto" (a trial of both: training/modelchoice.py)
    lr: float | None = None          # peak learning rate; None: the recipe's
    recipe: str = DEFAULT_RECIPE     # training/recipe.py: "codec" (short runs) or "paper"
    min_prune: float = 0.0           # prune at least this fraction of decoder weights
    checkpoint: str | None = None    # save the training state here (the caller removes it
                                     # once the result is safely stored)
    checkpoint_every: int = 1        # epochs between checkpoint saves
    resume: bool = False             # continue from `checkpoint` instead of starting afresh
    learned_steps: bool = True       # rate-aware training with learned quantization steps;
                                     # False: plain training, bit-depth search and pruning
    embed_channels: int | None = None  # content embedding channels; None: rate control picks
    chunk: int | None = None         # frames a chunk at most; None: coding/chunkplan.py's rule
    arch: str = "auto"               # "auto": strides from the frame size; "paper": 5,4,4,3,2
    time_budget: float | None = None  # seconds the whole encode may take; replaces the epochs
    started: float | None = None     # time.perf_counter() when the user's command began (the
                                     # budget counts from there); None: when encode() is called
    threads: int | None = None       # torch threads a chunk trains with; None: torch's count
    psnr: float | None = None        # a quality target (PSNR-RGB of the whole video, dB): the
                                     # smallest file up to `bpp` that decodes at it
    warm_start: bool = False         # a chunk starts from the previous chunk's trained network

    def rate_request(self, video: Video) -> RateRequest:
        """What the rate is planned for: this video and the model `model` names."""
        return RateRequest(video.height, video.width, video.frame_count, self.bpp, self.model,
                           self.learned_steps, self.embed_channels, self.arch)


@dataclass
class EncodeResult:
    data: bytes
    stats: dict = field(default_factory=dict)
