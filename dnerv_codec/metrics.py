"""Quality metrics on uint8 RGB videos (T, H, W, 3): PSNR on RGB and YUV, MS-SSIM, and bpp.

Conventions (they matter when comparing with published figures):

- PSNR uses a peak of 255 and is capped at 100 dB; an identical frame (MSE 0) scores exactly
  100 dB, and a nearly identical one never scores more than an identical one.
- "mean" figures are the mean over frames of per-frame PSNRs; "total" is the PSNR of the MSE
  over the whole video. They differ when quality varies from frame to frame.
- YUV PSNR converts RGB to YCbCr with the BT.709 full-range matrix in float64, at 4:4:4 (no
  chroma subsampling, so it measures the codec, not a resampling filter). The combined figure
  is (6*Y + U + V) / 8, the weighting used by JVET/MPEG common test conditions.
- MS-SSIM is pytorch_msssim's 5-scale MS-SSIM (11x11 Gaussian window, sigma 1.5, the standard
  weights) on RGB at data range 255, averaged over frames. It needs frames whose smaller side
  exceeds 160 pixels; smaller frames use as many scales as fit (see `ms_ssim_rgb`).

Frames are processed one (or one chunk) at a time, so no float copy of a whole video is made.

Trivial baselines (`Baselines`, `trivial_baselines`): what a decoder that learned nothing
scores, as the PSNR of the total MSE: flat mid-grey, one flat colour (the clip's mean colour)
and the clip's mean frame (the best single image). A decode that does not clear the mean frame
has learned no motion at all; the encoder and the tests measure against it.

A reference may carry a fourth channel, "known" (255) or "unknown" (0): what `dnerv encode
--mask` trains on (tasks/masks.py). Its unknown pixels were never meant to be reproduced, so
they are left out: PSNR and YUV PSNR are over the known pixels only, and MS-SSIM (a windowed
measure that cannot skip pixels) sees the decoded pixels there, that is, no error.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

PEAK = 255.0
PSNR_CAP_DB = 100.0

# BT.709 full range: Y = Kr R + Kg G + Kb B, Cb = (B - Y) / 1.8556, Cr = (R - Y) / 1.5748.
# The +128 offsets of Cb and Cr cancel in a difference, so errors transform by this matrix alone.
_KR, _KG, _KB = 0.2126, 0.7152, 0.0722
_RGB_TO_YCBCR = np.array([
    [_KR, _KG, _KB],
    [-_KR / 1.8556, -_KG / 1.8556, (1 - _KB) / 1.8556],
    [(1 - _KR) / 1.5748, -_KG / 1.5748, -_KB / 1.5748],
])

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_MS_SSIM_CHUNK_VALUES = 1 << 22  # pixel values per MS-SSIM batch; bounds the float memory


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for a peak of 255, capped at 100 dB (so MSE 0 gives 100)."""
    if mse <= 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(PEAK * PEAK / mse))


def psnr_rgb(ref: np.ndarray, dist: np.ndarray) -> dict:
    """RGB PSNR: {"mean": mean of per-frame PSNRs, "total": PSNR of the whole video's MSE}."""
    _check_pair(ref, dist)
    ref, values = known_only(ref, dist)
    return _rgb_psnrs([_frame_sse(r, d) for r, d in zip(ref, dist)], values)


def known_only(ref: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(ref as RGB, the values compared in each frame). A reference with a fourth "known"
    channel gets the decoded pixels where it is unknown, so that they add no error, and each
    frame counts its known values only."""
    if ref.shape[3] == 3:
        return ref, [ref[0].size] * len(ref)
    known = ref[..., 3:] >= 128
    counts = [3 * int(k.sum()) for k in known]
    if 0 in counts:
        raise ValueError("a reference frame has no known pixels")
    return np.where(known, ref[..., :3], dist), counts


def _rgb_psnrs(sse: list[int], values: list[int]) -> dict:
    """{"mean", "total"} from per-frame sums of squared errors (exact ints: no rounding before
    the logarithm) over `values` compared values a frame."""
    per_frame = [psnr_from_mse(s / v) for s, v in zip(sse, values)]
    total_mse = float(sum(sse)) / sum(values)
    return {"mean": float(np.mean(per_frame)), "total": psnr_from_mse(total_mse)}


def _frame_sse(ref_frame: np.ndarray, dist_frame: np.ndarray) -> int:
    diff = ref_frame.astype(np.int64) - dist_frame.astype(np.int64)
    return int(np.sum(diff * diff))


def psnr_yuv(ref: np.ndarray, dist: np.ndarray) -> dict:
    """YUV PSNR, mean of per-frame values: {"y", "u", "v", "yuv": (6*y + u + v) / 8}."""
    _check_pair(ref, dist)
    ref, values = known_only(ref, dist)
    return _yuv_psnrs([_frame_yuv_mse(r, d) * (r.size / v) for r, d, v in zip(ref, dist, values)])


def _yuv_psnrs(per_frame_mse: list[np.ndarray]) -> dict:
    """{"y", "u", "v", "yuv"} from per-frame (Y, U, V) MSEs: means of per-frame PSNRs."""
    per_frame = np.array(per_frame_mse)  # (T, 3)
    y, u, v = (float(np.mean([psnr_from_mse(m) for m in per_frame[:, c]])) for c in range(3))
    return {"y": y, "u": u, "v": v, "yuv": (6 * y + u + v) / 8}


def _frame_yuv_mse(ref_frame: np.ndarray, dist_frame: np.ndarray) -> np.ndarray:
    """Per-component MSE of one frame in BT.709 full-range YCbCr (float64)."""
    diff = ref_frame.astype(np.float64) - dist_frame.astype(np.float64)
    yuv_diff = diff @ _RGB_TO_YCBCR.T
    return np.mean(yuv_diff * yuv_diff, axis=(0, 1))


def ms_ssim_rgb(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean over frames of the MS-SSIM of each RGB frame (1.0 for identical frames).

    Frames whose smaller side is 160 pixels or less cannot be pooled down 5 times with an 11x11
    window: they use the first k scales that fit (smaller side > 10 * 2**(k-1)) with the first
    k standard weights renormalised to sum to 1. Below 11 pixels a single scale is used with the
    window shrunk to the largest odd size that fits. Such figures are not comparable with
    5-scale MS-SSIM of larger frames.
    """
    _check_pair(ref, dist)
    return _ms_ssim_sum(known_only(ref, dist)[0], dist) / len(ref)


def _ms_ssim_sum(ref: np.ndarray, dist: np.ndarray) -> float:
    """Sum over frames of their MS-SSIM, a bounded chunk of frames in float at a time."""
    height, width = ref.shape[1:3]
    scales = _ms_ssim_scales(min(height, width))
    chunk = max(1, _MS_SSIM_CHUNK_VALUES // ref[0].size)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(ref), chunk):
            x = _to_nchw(ref[start:start + chunk])
            y = _to_nchw(dist[start:start + chunk])
            total += float(_ms_ssim_per_frame(x, y, scales, min(height, width)).sum())
    return total


def _ms_ssim_scales(smaller_side: int) -> int:
    """How many scales fit: the coarsest must still be larger than the window minus one."""
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and smaller_side > (_WIN_SIZE - 1) * 2 ** scales:
        scales += 1
    return scales


def _to_nchw(frames: np.ndarray) -> torch.Tensor:
    # The float32 copy is made by numpy, so read-only input frames are fine for torch.
    return torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)


def _ms_ssim_per_frame(x: torch.Tensor, y: torch.Tensor, scales: int,
                       smaller_side: int) -> torch.Tensor:
    """MS-SSIM of each frame of a (N, 3, H, W) batch, shape (N,)."""
    if scales == len(MS_SSIM_WEIGHTS):
        return ms_ssim(x, y, data_range=PEAK, size_average=False)
    weights = MS_SSIM_WEIGHTS[:scales]
    weights = [w / sum(weights) for w in weights]
    win_size = _WIN_SIZE if smaller_side >= _WIN_SIZE else smaller_side - (1 - smaller_side % 2)
    return _reduced_ms_ssim(x, y, weights, win_size)


def _reduced_ms_ssim(x: torch.Tensor, y: torch.Tensor, weights, win_size: int = _WIN_SIZE):
    """MS-SSIM with len(weights) scales, as pytorch_msssim.ms_ssim computes it, per frame (N,).

    pytorch_msssim.ms_ssim asserts a smaller side above 160 pixels whatever the number of
    weights, so fewer scales need this copy of its loop (on its own `_ssim`). With the 5
    standard weights it gives the same value as ms_ssim (checked by the tests).
    """
    win = _fspecial_gauss_1d(win_size, _WIN_SIGMA).repeat([x.shape[1], 1, 1, 1])
    factors = []
    for level in range(len(weights)):
        ssim_per_channel, cs = _ssim(x, y, win=win, data_range=PEAK, size_average=False,
                                     K=(0.01, 0.03))
        if level < len(weights) - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(factors, dim=0)  # (levels, N, channels)
    exponents = torch.tensor(weights, dtype=stacked.dtype).view(-1, 1, 1)
    return torch.prod(stacked ** exponents, dim=0).mean(dim=1)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - value), capped at 100 dB like PSNR."""
    if value >= 1.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, -10.0 * math.log10(1.0 - value))


def bpp(num_bytes: int, width: int, height: int, frames: int) -> float:
    """Bits per pixel: 8 * bytes / (width * height * frames)."""
    pixels = width * height * frames
    if pixels <= 0:
        raise ValueError(f"bpp needs a positive pixel count, got {width}x{height}x{frames}")
    return 8.0 * num_bytes / pixels


def quality_report(ref: np.ndarray, dist: np.ndarray) -> dict:
    """All quality figures of a decoded video, as plain floats (JSON-ready)."""
    report = QualityReport()
    report.add(ref, dist)
    return report.result()


class QualityReport:
    """`quality_report` of a video handed over a few frames at a time, as a streaming decoder
    renders it, so that no copy of the whole decoded video has to exist."""

    def __init__(self):
        self._sse: list[int] = []                 # per frame, RGB
        self._values: list[int] = []              # per frame, the values compared
        self._yuv_mse: list[np.ndarray] = []      # per frame, (3,)
        self._ms_ssim = 0.0                       # summed over frames
        self._frame_size = 0
        self._baselines = Baselines()

    def add(self, ref: np.ndarray, dist: np.ndarray) -> None:
        """Add the frames `dist` decoded for the reference frames `ref` (the next ones)."""
        _check_pair(ref, dist)
        if self._frame_size and dist[0].size != self._frame_size:
            raise ValueError("frames differ in size from the ones added before")
        self._frame_size = dist[0].size
        ref, values = known_only(ref, dist)
        self._values += values
        self._sse += [_frame_sse(r, d) for r, d in zip(ref, dist)]
        self._yuv_mse += [_frame_yuv_mse(r, d) * (r.size / v) for r, d, v in zip(ref, dist, values)]
        self._ms_ssim += _ms_ssim_sum(ref, dist)
        self._baselines.add(ref)

    @classmethod
    def merged(cls, reports: list["QualityReport"]) -> "QualityReport":
        """One report of the videos `reports` measured, one after another (the chunks of a
        file: their frames are measured once, not again for the whole)."""
        whole = cls()
        for r in reports:
            if whole._frame_size and r._frame_size != whole._frame_size:
                raise ValueError("frames differ in size from the ones added before")
            whole._frame_size = r._frame_size
            whole._sse += r._sse
            whole._values += r._values
            whole._yuv_mse += r._yuv_mse
            whole._ms_ssim += r._ms_ssim
        whole._baselines = Baselines.merged([r._baselines for r in reports])
        return whole

    def result(self) -> dict:
        if not self._sse:
            raise ValueError("no frames were added")
        rgb = _rgb_psnrs(self._sse, self._values)
        yuv = _yuv_psnrs(self._yuv_mse)
        return {
            "psnr_rgb": rgb["mean"],
            "psnr_rgb_total": rgb["total"],
            "psnr_y": yuv["y"],
            "psnr_u": yuv["u"],
            "psnr_v": yuv["v"],
            "psnr_yuv": yuv["yuv"],
            "ms_ssim_rgb": self._ms_ssim / len(self._sse),
            "baselines": self._baselines.result(),
        }


class Baselines:
    """The trivial decoders' PSNR-RGB (of the total MSE, over known pixels) on a video handed
    over a few frames at a time: {"flat_grey", "flat_colour", "mean_frame"}.

    Exact integer sums, so that the mean frame's error needs no second pass over the video:
    per pixel, the known values' sum S1 and count S0, and over the video the sum of squares
    S2; the error of the best constant (the mean) is S2 - S1^2 / S0, summed over pixels."""

    def __init__(self):
        self._s1 = self._s0 = None          # per pixel value: sum and count of known values
        self._s2 = 0                        # sum of squared known values
        self._grey_sse = 0                  # error of mid-grey (128)

    def add(self, ref: np.ndarray) -> None:
        rgb = ref[..., :3].astype(np.int64)
        known = (np.broadcast_to(ref[..., 3:] >= 128, rgb.shape) if ref.shape[3] == 4
                 else np.ones(rgb.shape, dtype=bool))
        rgb = rgb * known
        if self._s1 is None:
            self._s1 = np.zeros(rgb.shape[1:], dtype=np.int64)
            self._s0 = np.zeros(rgb.shape[1:], dtype=np.int64)
        self._s1 += rgb.sum(axis=0)
        self._s0 += known.sum(axis=0)
        self._s2 += int(np.sum(rgb * rgb))
        self._grey_sse += int(np.sum(((rgb - 128) * known) ** 2))

    @classmethod
    def merged(cls, parts: list["Baselines"]) -> "Baselines":
        """The baselines of the frames of all `parts` (exact: every field is a sum)."""
        whole = cls()
        for p in (p for p in parts if p._s1 is not None):
            if whole._s1 is None:
                whole._s1, whole._s0 = p._s1.copy(), p._s0.copy()
            else:
                whole._s1 += p._s1
                whole._s0 += p._s0
            whole._s2 += p._s2
            whole._grey_sse += p._grey_sse
        return whole

    def result(self) -> dict:
        if self._s1 is None:
            raise ValueError("no frames were added")
        values = int(self._s0.sum())
        if values == 0:
            raise ValueError("no known pixels")
        seen = self._s0 > 0
        mean_frame = self._s2 - float(np.sum(self._s1[seen].astype(np.float64) ** 2 / self._s0[seen]))
        colour_s1 = self._s1.reshape(-1, 3).sum(axis=0).astype(np.float64)
        colour_s0 = self._s0.reshape(-1, 3).sum(axis=0)
        flat_colour = self._s2 - float(np.sum(colour_s1 ** 2 / np.maximum(colour_s0, 1)))
        return {"flat_grey": psnr_from_mse(self._grey_sse / values),
                "flat_colour": psnr_from_mse(max(flat_colour, 0.0) / values),
                "mean_frame": psnr_from_mse(max(mean_frame, 0.0) / values)}


def trivial_baselines(frames: np.ndarray) -> dict:
    """`Baselines` of a whole video (T, H, W, 3 or 4) at once."""
    baselines = Baselines()
    for start in range(0, len(frames), 64):  # bounded int64 copies
        baselines.add(frames[start:start + 64])
    return baselines.result()


def _check_pair(ref: np.ndarray, dist: np.ndarray) -> None:
    for name, a, channels in (("ref", ref, (3, 4)), ("dist", dist, (3,))):
        if not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 4
                and a.shape[3] in channels and a.shape[0] > 0):
            raise ValueError(f"{name} must be a non-empty uint8 array of shape (T, H, W, "
                             f"{' or '.join(map(str, channels))}), got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    if ref.shape[:3] != dist.shape[:3]:
        raise ValueError(f"ref and dist differ in shape: {ref.shape} vs {dist.shape}")
