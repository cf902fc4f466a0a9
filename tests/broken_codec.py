"""A pytest plugin that breaks the codec on purpose, to show which tests catch each break.

    python -m pytest -p tests.broken_codec --break-codec mean-frame tests/test_codec.py ...

Breaks (docs/testing.md lists the tests that fail under each):
- no-training: the optimizer's step does nothing, so the network keeps its initial weights;
- mean-frame: the decoder shows the mean of the file's own decoded frames at every frame;
- first-candidate: the rate search stops at the coarsest setting that fits, without bisecting.

Patched in this process only: a subprocess or a Ray worker runs the real code.
"""

from __future__ import annotations

import numpy as np
import pytest

BREAKS = ("no-training", "mean-frame", "first-candidate")


def pytest_addoption(parser):
    parser.addoption("--break-codec", choices=BREAKS, default=None,
                     help="break the codec this way for the whole run (tests/broken_codec.py)")


def pytest_configure(config):
    """Patched before any fixture runs (module-scoped encodes included), undone at the end."""
    which = config.getoption("--break-codec")
    if which:
        config._broken_codec = pytest.MonkeyPatch()
        _break(which, config._broken_codec)


def pytest_unconfigure(config):
    if getattr(config, "_broken_codec", None):
        config._broken_codec.undo()


def _break(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if which == "no-training":
        from dnerv_codec.training import optimizers
        real = optimizers.make

        def idle_optimizer(*args):
            optimizer = real(*args)
            optimizer.step = lambda *args, **kwargs: None
            return optimizer

        monkeypatch.setattr(optimizers, "make", idle_optimizer)
    elif which == "mean-frame":
        from dnerv_codec.codec import DecodedVideo
        real = DecodedVideo.render

        def mean_frame(self, indices):
            if not hasattr(self, "_broken_mean"):
                every = real(self, range(self.frame_count))
                self._broken_mean = every.mean(axis=0).round().astype(np.uint8)
            return np.repeat(self._broken_mean[None], len(list(indices)), axis=0)

        monkeypatch.setattr(DecodedVideo, "render", mean_frame)
    elif which == "first-candidate":
        from dnerv_codec.coding import ratecontrol

        def first_fitting(size_of, target, setting_at, lo, hi, steps):
            for x in (lo, hi):
                if (size := size_of(setting_at(x))) <= target:
                    return setting_at(x), size
            return None

        monkeypatch.setattr(ratecontrol, "_least_fitting", first_fitting)
