"""Pruning and quantization of a trained decoder and its embeddings.

Pruning: global unstructured magnitude pruning over every decoder weight tensor (biases are
kept), as in HNeRV.

Quantization (format 2.0, what the encoder writes): by step size, q = round(x / step), so that
zero (and so every pruned weight) is exact and the symbols gather around it, where the entropy
models of tensorcode.py make them cheap. A bit depth b names the resolution: the step is the
largest magnitude over 2^(b-1) - 1, per tensor, or per output channel when that buys more than
its bytes (`step_quantize_best`). Embeddings get one step per channel, the one that leaves the
least squared error (clipping a channel's rare largest values), and are coded as differences
from the previous frame where that is smaller.

Format 1.0's min-max affine quantization (`quantize`, `quantize_best`) stays for its writer.
"""

from __future__ import annotations

import numpy as np
import torch

from dnerv_codec.coding.quantize import symbols
from dnerv_codec.format.container import QuantTensor
from dnerv_codec.format.tensorcode import StepTensor

# What a per-channel (scale, zero point) pair costs in the file: float32 + u16.
BITS_PER_CHANNEL_PARAMS = 48


def decoder_arrays(decoder: torch.nn.Module) -> list[tuple[str, np.ndarray]]:
    """The transmitted tensors, in state_dict order (the order of the WDEC section)."""
    return [(name, t.detach().float().cpu().numpy()) for name, t in decoder.state_dict().items()]


def magnitude_masks(arrays: list[tuple[str, np.ndarray]], fraction: float) -> dict[str, np.ndarray]:
    """Boolean keep-masks that zero the `fraction` smallest-magnitude decoder weights, chosen
    globally over every weight tensor (ndim > 1). Empty when nothing is pruned."""
    weights = [(n, a) for n, a in arrays if a.ndim > 1]
    magnitudes = np.concatenate([np.abs(a).ravel() for _, a in weights])
    k = min(int(fraction * magnitudes.size), magnitudes.size - 1)
    if k < 1:
        return {}
    threshold = np.partition(magnitudes, k - 1)[k - 1]
    return {n: np.abs(a) > threshold for n, a in weights}


def prune_arrays(arrays: list[tuple[str, np.ndarray]], fraction: float) -> list[tuple[str, np.ndarray]]:
    """The decoder tensors with the pruned weights set to exactly zero."""
    masks = magnitude_masks(arrays, fraction)
    return [(n, a * masks[n] if n in masks else a) for n, a in arrays]


def quantize(array: np.ndarray, bits: int, axis: int | None) -> QuantTensor:
    """Min-max affine quantization to `bits`, one scale per tensor (axis None) or per slice."""
    a = np.asarray(array, dtype=np.float32)
    levels = (1 << bits) - 1
    if axis is None:
        lo, hi = np.minimum(a.min(), 0.0).reshape(1), np.maximum(a.max(), 0.0).reshape(1)
    else:
        other = tuple(i for i in range(a.ndim) if i != axis)
        lo = np.minimum(a.min(axis=other), 0.0)
        hi = np.maximum(a.max(axis=other), 0.0)
    scale = ((hi - lo) / levels).astype(np.float32)
    scale[~(scale > 0)] = 1.0  # an all-zero slice: any positive scale represents it exactly
    zero_point = np.clip(np.round(-lo / scale), 0, levels).astype(np.int32)
    s, z = _broadcast(scale, a.ndim, axis), _broadcast(zero_point, a.ndim, axis)
    q = np.clip(np.round(a / s) + z, 0, levels).astype(np.int32)
    return QuantTensor(shape=tuple(a.shape), bits=bits, axis=axis, scale=scale,
                       zero_point=zero_point, q=q)


def _broadcast(values: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if axis is None:
        return values.reshape((1,) * ndim)
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def quantize_best(array: np.ndarray, bits: int, channel_axis: int) -> QuantTensor:
    """Per-tensor, or per-channel along `channel_axis` when that is worth its bytes.

    Per-channel parameters add BITS_PER_CHANNEL_PARAMS * channels bits, i.e. `extra` bits per
    value. Spending `extra` more bits on every value of a per-tensor quantizer would divide its
    MSE by 4**extra, so per-channel must beat that ratio to be chosen.
    """
    return _per_channel_if_it_pays(array, channel_axis, BITS_PER_CHANNEL_PARAMS,
                                   lambda axis: quantize(array, bits, axis))


def _per_channel_if_it_pays(array: np.ndarray, channel_axis: int, bits_per_channel: int,
                            quantizer):
    """quantizer(None), or quantizer(channel_axis) when its smaller error beats the bits its
    per-channel parameters add: `extra` more bits on every value of the per-tensor quantizer
    would divide its MSE by 4**extra."""
    whole = quantizer(None)
    if array.ndim < 2 or array.shape[channel_axis] < 2:
        return whole
    split = quantizer(channel_axis)
    err_whole = float(np.mean((whole.dequantize() - array) ** 2))
    err_split = float(np.mean((split.dequantize() - array) ** 2))
    extra = bits_per_channel * array.shape[channel_axis] / array.size
    return split if err_split * 4.0**extra < err_whole else whole


def quantize_decoder(arrays: list[tuple[str, np.ndarray]], bits: int) -> list[QuantTensor]:
    """Every decoder tensor; conv weights may be per output channel (axis 0)."""
    return [quantize_best(a, bits, 0) for _, a in arrays]


def quantize_embeddings(embeddings: np.ndarray, bits: int) -> QuantTensor:
    """(T, C, h, w) embeddings; per-channel scales are along axis 1."""
    return quantize_best(embeddings, bits, 1)


# What a per-channel step costs in the file: one float32.
BITS_PER_CHANNEL_STEP = 32


def step_quantize(array: np.ndarray, bits: int, axis: int | None, **coding) -> StepTensor:
    """q = round(x / step), step = max |x| / (2^(bits-1) - 1) per tensor or per slice along
    `axis`; `coding` (temporal, channel_axis) says which coding options the writer may try."""
    a = np.asarray(array, dtype=np.float32)
    top = (1 << (bits - 1)) - 1
    if axis is None:
        peak = np.abs(a).max(initial=0.0).reshape(1)
    else:
        peak = np.abs(a).max(axis=tuple(i for i in range(a.ndim) if i != axis), initial=0.0)
    step = (peak / top).astype(np.float32)
    step[~(step > 0)] = 1.0  # an all-zero slice: any positive step represents it exactly
    q = np.clip(np.round(a / _broadcast(step, a.ndim, axis)), -top, top).astype(np.int32)
    return StepTensor(tuple(a.shape), axis, step, q, **coding)


def step_quantize_best(array: np.ndarray, bits: int, channel_axis: int, **coding) -> StepTensor:
    """One step, or one per channel along `channel_axis` when its smaller error is worth the
    steps' bytes (the rule of `quantize_best`)."""
    return _per_channel_if_it_pays(array, channel_axis, BITS_PER_CHANNEL_STEP,
                                   lambda axis: step_quantize(array, bits, axis, **coding))


def step_quantize_decoder(arrays: list[tuple[str, np.ndarray]], bits: int) -> list[StepTensor]:
    """Every decoder tensor (format 2.0); conv weights may take a step per output channel."""
    return [step_quantize_best(a, bits, 0) for _, a in arrays]


# The embeddings' step, per channel, is the one of these fractions of max |x| / (2^(b-1) - 1)
# whose rounding (values beyond the grid's ends clipped to them) leaves the least squared error.
# A channel's largest values are rare outliers: the step that spans them leaves the rest of the
# channel a few levels at 5 bits. Measured on bikes (40 frames, 2x down, 0.1 bpp, --preset
# fast, HNeRV): the file decoded at 32.61 dB with the step of max |x| and 34.22 with this
# choice, the training the same (docs/training.md).
EMBED_STEP_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def step_quantize_embeddings(embeddings: np.ndarray, bits: int) -> StepTensor:
    """(T, C, h, w) embeddings: a step per channel, chosen for the least squared error
    (`embedding_steps`); the writer may code each frame as its difference from the previous
    one, and each channel with its own model."""
    a = np.asarray(embeddings, dtype=np.float32)
    top = (1 << (bits - 1)) - 1
    step = embedding_steps(a, bits)
    grid = _broadcast(step, a.ndim, 1)
    q = np.clip(np.round(a / grid), -top, top).astype(np.int32)
    return StepTensor(tuple(a.shape), 1, step, q, temporal=True, channel_axis=1)


def embedding_steps(embeddings: np.ndarray, bits: int) -> np.ndarray:
    """The float32 step of each channel (axis 1) of `embeddings` at `bits`: the one of
    EMBED_STEP_FRACTIONS x max |x| / (2^(bits-1) - 1) whose rounding leaves the least squared
    error, values beyond the grid's ends clipped to them."""
    a = np.asarray(embeddings, dtype=np.float32)
    top = (1 << (bits - 1)) - 1
    others = tuple(i for i in range(a.ndim) if i != 1)
    peak = np.abs(a).max(axis=others, initial=0.0)
    best_step, best_error = None, None
    for fraction in EMBED_STEP_FRACTIONS:
        step = (peak * np.float32(fraction) / top).astype(np.float32)
        step[~(step > 0)] = 1.0  # an all-zero channel: any positive step represents it exactly
        grid = _broadcast(step, a.ndim, 1)
        error = ((np.clip(np.round(a / grid), -top, top) * grid - a) ** 2).sum(axis=others)
        if best_step is None:
            best_step, best_error = step, error
        else:  # a finer step only where it is strictly better
            better = error < best_error
            best_step = np.where(better, step, best_step).astype(np.float32)
            best_error = np.where(better, error, best_error)
    return best_step


def learned_step_quantize(arrays: list[tuple[str, np.ndarray]], steps: np.ndarray,
                          scale: float) -> list[StepTensor]:
    """Every decoder tensor at its learned step times `scale`, with the quantizer training used
    (coding/quantize.py); the step is rounded to the float32 the file stores before use."""
    out = []
    for (_, a), s in zip(arrays, steps):
        step = np.asarray([s * scale], np.float32)
        out.append(StepTensor(tuple(a.shape), None, step, symbols(a, step[0])))
    return out
