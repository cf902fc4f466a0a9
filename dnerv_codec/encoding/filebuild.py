"""A trained model's tensors as .dnv bytes: the header fields, one file under a compression
setting (`build_file`), and every chunk's file under any setting the rate search tries
(`Candidates`, measured on a `Sample` of frames)."""

from __future__ import annotations

import numpy as np

from dnerv_codec.coding.compress import (
    learned_step_quantize,
    prune_arrays,
    step_quantize_decoder,
    step_quantize_embeddings,
)
from dnerv_codec.coding.ratecontrol import Setting
from dnerv_codec.decoding.video import DecodedVideo
from dnerv_codec.format.architecture import ModelConfig, header_fields
from dnerv_codec.format.budget import UNLIMITED
from dnerv_codec.format.chunks import chunked_size
from dnerv_codec.format.container import DnvFile, pack
from dnerv_codec.io import Video
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.scaling.chunkwork import ChunkJob, ChunkModel

# The setting search compares decoded PSNR on this many evenly spaced frames.
QUALITY_SAMPLE_FRAMES = 8


def video_fields(video: Video, frame_count: int | None = None) -> dict:
    """The video's own header fields (format/chunks.VIDEO_FIELDS and a frame count: the
    video's, or `frame_count` for a chunk of it): one place builds them for HEAD and VHDR."""
    return {"width": video.width, "height": video.height,
            "frame_count": video.frame_count if frame_count is None else frame_count,
            "fps_num": video.fps.numerator, "fps_den": video.fps.denominator}


def header_for(video: Video, config: ModelConfig) -> dict:
    """The HEAD fields of a file: the video's own, then the architecture's
    (architecture.header_fields, the inverse of config_from_header)."""
    return {**video_fields(video), **header_fields(config)}


def build_file(header, arrays, content, diff, setting: Setting, steps=None) -> bytes:
    """A .dnv file of a trained model's tensors under one compression setting (public: the
    benchmarks pack models at fixed settings with it). `steps`: the learned step of each
    decoder tensor, used (times setting.step_scale) when the setting has a step scale."""
    pruned = prune_arrays(arrays, setting.prune)
    if setting.step_scale > 0:
        decoder = learned_step_quantize(pruned, steps, setting.step_scale)
    else:
        decoder = step_quantize_decoder(pruned, setting.weight_bits)
    groups = {
        "decoder": decoder,
        "content": [step_quantize_embeddings(content, setting.embed_bits)],
    }
    if diff is not None:
        groups["diff"] = [step_quantize_embeddings(diff, setting.embed_bits)]
    return pack(DnvFile(header=header, groups=groups))


class Candidates:
    """Every chunk's trained tensors, packed on demand under any compression Setting: what
    the rate search measures for the whole video (real file sizes, decoded PSNR on sampled
    frames). One setting for every chunk: the same scale on the steps each chunk learned
    under the same rate weight, so that busy chunks keep more bits and static ones fewer."""

    def __init__(self, video, jobs: list[ChunkJob], models: list[ChunkModel], sample, device):
        self.jobs, self.models, self.sample, self.device = jobs, models, sample, device
        self.headers = [chunk_header(video, job) for job in jobs]
        self._built: dict[Setting, list[bytes]] = {}

    def chunk_bytes(self, setting: Setting) -> list[bytes]:
        """Every chunk packed under `setting`; the last few are kept, because the search
        measures the size of a setting and then, for the candidates, its quality."""
        if setting not in self._built:
            if len(self._built) >= 8:
                self._built.pop(next(iter(self._built)))
            self._built[setting] = [build_file(h, m.arrays, m.content, m.diff, setting, m.steps)
                                    for h, m in zip(self.headers, self.models)]
        return self._built[setting]

    def size_of(self, setting: Setting) -> int:
        chunks = self.chunk_bytes(setting)
        return len(chunks[0]) if len(chunks) == 1 else chunked_size([len(c) for c in chunks])

    def quality_of(self, setting: Setting) -> float:
        refs, decoded = [], []
        for job, data in zip(self.jobs, self.chunk_bytes(setting)):
            local = [i - job.start for i in self.sample.indices if job.start <= i < job.stop]
            if local:
                video = DecodedVideo(data, device=self.device, limits=UNLIMITED)
                decoded += list(video.batches(local))
                refs += [self.sample.frames[job.start + i] for i in local]
        return psnr_rgb(np.stack(refs), np.concatenate(decoded))["total"]


class Sample:
    """The frames the rate search decodes, spread evenly over the video (at least one a
    chunk), kept as the chunks stream past."""

    def __init__(self, frame_count: int, bounds: list[tuple[int, int]]):
        count = min(frame_count, max(QUALITY_SAMPLE_FRAMES, len(bounds)))
        spread = np.linspace(0, frame_count - 1, count).round().astype(int)
        middles = [(a + b - 1) // 2 for a, b in bounds] if len(bounds) > QUALITY_SAMPLE_FRAMES else []
        self.indices = sorted(set(spread.tolist()) | set(middles))
        self.frames: dict[int, np.ndarray] = {}
        self.bounds = bounds

    def tap(self, chunks):
        """`chunks` (the video's frames a chunk at a time) unchanged, keeping the sample."""
        for (start, stop), frames in zip(self.bounds, chunks):
            for i in self.indices:
                if start <= i < stop and i not in self.frames:
                    self.frames[i] = np.array(frames[i - start])
            yield frames


def chunk_header(video, job: ChunkJob) -> dict:
    """The HEAD of one chunk: the video's size and rate, the chunk's frames and network."""
    return {**video_fields(video, job.stop - job.start), **header_fields(job.config)}
