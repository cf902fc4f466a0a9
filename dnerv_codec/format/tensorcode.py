"""Format 2.0 tensor sections: step-quantized tensors, each coded with its own entropy models.

A tensor holds integers q and means q * step (one step for the tensor, or one per slice along
`step_axis`): zero is always exact, so pruned weights cost one cheap symbol. How q is coded is
chosen per tensor by the writer, by the ideal code length (`entropy_models.best_model`):

- **temporal prediction** (embeddings): q[t] - q[t-1] along axis 0 instead of q[t], in the
  integer domain, so there is no drift: the decoder's running sum gives back q exactly. Frame
  to frame, an embedding changes little (a 176x144 content embedding at 5 bits: 4.83 -> 0.99
  bits a value);
- **segments**: one entropy model for the whole tensor, or one per slice along `model_axis`
  (the channels of an embedding have different spreads). Each segment is its own ANS stream.

No torch here: container.py reads these sections from untrusted files with `read_section`,
which bounds every count by the bytes that remain and by the header's own symbol count before
any symbol is decoded.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from dnerv_codec.errors import BitstreamError
from dnerv_codec.format import entropy
from dnerv_codec.format.entropy import ByteReader
from dnerv_codec.format.meter import ReadingMeter
from dnerv_codec.format.entropy_models import (
    GEOMETRIC,
    MAX_GEOMETRIC_MODELS,
    MODEL_NAMES,
    Model,
    best_model,
)

MAX_TENSORS = 65535
MAX_NDIM = 5
PREDICT_TEMPORAL = 1
MIN_SEGMENT_BYTES = 1 + 1 + 1 + 4  # model kind, two one-byte varints (or a histogram), word count
MAX_STEP_SYMBOL = 1 << 16
"""|q| of any tensor is below this; temporal residuals are below twice it."""


@dataclass
class StepTensor:
    """value = q * step, per tensor (`step_axis` None) or per slice along `step_axis`.

    `temporal` and `channel_axis` say which coding options the writer may try: prediction along
    axis 0, and one model per slice along `channel_axis`. The chosen ones are in the file."""

    shape: tuple[int, ...]
    step_axis: int | None
    step: np.ndarray      # float32, (1,) or (shape[step_axis],)
    q: np.ndarray         # int32 of `shape`
    temporal: bool = False
    channel_axis: int | None = None
    coding: dict = field(default_factory=dict)  # what the reader found: predict, model axis, ...

    def dequantize(self) -> np.ndarray:
        view = [1] * len(self.shape)
        if self.step_axis is not None:
            view[self.step_axis] = -1
        values = np.asarray(self.q, np.float32)
        values *= np.asarray(self.step, np.float32).reshape(view)
        return values


def _problem(t: StepTensor) -> str | None:
    shape = tuple(t.shape)
    if not 1 <= len(shape) <= MAX_NDIM or min(shape) < 1:
        return f"shape {shape} is not 1..{MAX_NDIM} dims of size >= 1"
    if t.step_axis is not None and not 0 <= t.step_axis < len(shape):
        return f"step axis {t.step_axis} is not a dimension of {shape}"
    m = 1 if t.step_axis is None else shape[t.step_axis]
    step = np.asarray(t.step)
    if step.shape != (m,) or not np.all(np.isfinite(step) & (step > 0)):
        return f"needs {m} finite positive steps, got {step.shape}"
    return None


# ----------------------------------------------------------------------------- writing


def pack_section(tensors: list[StepTensor]) -> bytes:
    """u32 tensor count, then each tensor: its record and its coded segments."""
    if len(tensors) > MAX_TENSORS:
        raise ValueError(f"{len(tensors)} tensors (limit {MAX_TENSORS})")
    return struct.pack("<I", len(tensors)) + b"".join(pack_tensor(t) for t in tensors)


# Packed tensors by content: the rate search packs the same tensor under many candidate
# settings (the embeddings are the same at every step scale of one bit depth), and choosing
# each one's entropy model is most of a pack. Keys are digests of everything the bytes depend
# on; the values are the small coded bytes.
_PACKED: OrderedDict[bytes, bytes] = OrderedDict()
_PACKED_ENTRIES = 512


def pack_tensor(t: StepTensor) -> bytes:
    """A tensor's record and coded segments (the same bytes for the same tensor, from a
    bounded cache of the recent ones)."""
    q = np.ascontiguousarray(t.q)
    if _problem(t) is not None or not np.issubdtype(q.dtype, np.integer):
        return _pack_tensor(t)  # refused there
    key = hashlib.blake2b(repr((tuple(t.shape), t.step_axis, t.temporal, t.channel_axis,
                                q.dtype.str, q.shape)).encode(), digest_size=32)
    key.update(q.data)
    key.update(np.asarray(t.step, "<f4").tobytes())
    key = key.digest()
    if key in _PACKED:
        _PACKED.move_to_end(key)
        return _PACKED[key]
    data = _pack_tensor(t)
    _PACKED[key] = data
    if len(_PACKED) > _PACKED_ENTRIES:
        _PACKED.popitem(last=False)
    return data


def _pack_tensor(t: StepTensor) -> bytes:
    problem = _problem(t)
    q = np.asarray(t.q)
    if problem is None and (q.shape != tuple(t.shape) or not np.issubdtype(q.dtype, np.integer)):
        problem = f"q must be an integer array of shape {tuple(t.shape)}"
    if problem is None and q.size and np.abs(q).max() >= MAX_STEP_SYMBOL:
        problem = f"|q| reaches {np.abs(q).max()} (limit {MAX_STEP_SYMBOL - 1})"
    if problem:
        raise ValueError(problem)
    predict, model_axis, segments = _best_coding(q.astype(np.int64), t)
    shape = tuple(int(d) for d in t.shape)
    step_axis = -1 if t.step_axis is None else t.step_axis
    parts = [struct.pack(f"<B{len(shape)}Ib", len(shape), *shape, step_axis),
             np.asarray(t.step, "<f4").tobytes(),
             struct.pack("<Bb", predict, -1 if model_axis is None else model_axis)]
    for symbols, model in segments:
        words = entropy.encode_with(symbols, model.histogram())  # none for a one-symbol model
        parts += [model.to_bytes(), struct.pack("<I", len(words) // 4), words]
    return b"".join(parts)


def _segments(r: np.ndarray, axis: int | None) -> list[np.ndarray]:
    if axis is None:
        return [r.reshape(-1)]
    return [np.take(r, i, axis=axis).reshape(-1) for i in range(r.shape[axis])]


def _best_coding(q: np.ndarray, t: StepTensor):
    """(predict, model axis, [(symbols, model)]) with the fewest estimated bits."""
    best = None
    for predict in ((0, PREDICT_TEMPORAL) if t.temporal and q.shape[0] > 1 else (0,)):
        r = temporal_residual(q) if predict else q
        for axis in ((None, t.channel_axis) if t.channel_axis is not None else (None,)):
            segs = []
            bits = 0.0
            for s in _segments(r, axis):
                model, b = best_model(s)
                segs.append((s, model))
                bits += b + 32  # the segment's word count, and about one word of ANS slack
            if best is None or bits < best[0]:
                best = (bits, predict, axis, segs)
    return best[1], best[2], best[3]


def temporal_residual(q: np.ndarray) -> np.ndarray:
    """q[0], q[1] - q[0], q[2] - q[1], ... along axis 0."""
    r = q.copy()
    r[1:] -= q[:-1]
    return r


# ----------------------------------------------------------------------------- reading


def read_section(r: ByteReader, expected: int | None, max_symbols: int,
                 shapes: list[tuple[int, ...]] | None = None,
                 meter: ReadingMeter | None = None) -> tuple[list[StepTensor], dict]:
    """Read a section's tensors. `expected` (the header's count, when given) bounds the symbols
    before each tensor is decoded, so no tensor is decoded past what the header implies;
    `shapes` (the header's tensors, when given) must be the tensors' count and shapes, each
    checked before it is decoded; `meter`, when given, is charged each segment beyond a
    tensor's first before its model's table is built (format/meter.py)."""
    start = r.pos
    count = r.u32("tensor count")
    if count > MAX_TENSORS or count * (1 + 4 + 1 + 4 + 2 + MIN_SEGMENT_BYTES) > r.remaining:
        raise r.error(f"tensor count {count} is impossible (limit {MAX_TENSORS}, "
                      f"{r.remaining} bytes left)", start)
    if shapes is not None and count != len(shapes):
        raise r.error(f"{count} tensors where the header describes {len(shapes)}", start)
    limit = max_symbols if expected is None else expected
    tensors, total, model_bytes, payload = [], 0, 0, 0
    models: dict[str, int] = {}
    details = []
    for i in range(count):
        t_start = r.pos
        t, stats = _read_tensor(r, i, limit - total,
                                MAX_GEOMETRIC_MODELS - models.get("geometric", 0),
                                None if shapes is None else tuple(shapes[i]), meter)
        total += math.prod(t.shape)
        model_bytes += stats["model_bytes"]
        payload += stats["payload_bytes"]
        for kind in stats["models"]:
            models[kind] = models.get(kind, 0) + 1
        tensors.append(t)
        size = math.prod(t.shape)
        details.append({"shape": list(t.shape), "bytes": r.pos - t_start,
                        "bits_per_value": 8 * (r.pos - t_start) / size,
                        "nonzero": int(np.count_nonzero(t.q)),
                        "prediction": t.coding["prediction"], "model_axis": t.coding["model_axis"],
                        "models": sorted(set(stats["models"]))})
    if expected is not None and total != expected:
        raise r.error(f"{count} tensors hold {total} values but the header implies {expected}",
                      start)
    return tensors, {"tensors": count, "symbols": total, "model_bytes": model_bytes,
                     "payload_bytes": payload, "models": models,
                     "bits_per_value": 8 * (r.pos - start) / max(total, 1),
                     "tensor_details": details}


def _read_tensor(r: ByteReader, index: int, room: int, geometric_left: int,
                 want: tuple[int, ...] | None = None,
                 meter: ReadingMeter | None = None) -> tuple[StepTensor, dict]:
    """One tensor; `room` values and `geometric_left` geometric models are what the section
    may still hold (each geometric model's table is built, so their number is bounded), and
    `want` the shape the header gives it, if known."""
    start = r.pos
    ndim = r.u8(f"tensor {index} ndim")
    if not 1 <= ndim <= MAX_NDIM:
        raise r.error(f"tensor {index}: ndim {ndim} outside 1..{MAX_NDIM}", start)
    shape = tuple(r.unpack(f"<{ndim}I", f"tensor {index} dims"))
    size = math.prod(shape)
    if min(shape) < 1 or size > room:
        raise r.error(f"tensor {index}: shape {shape} holds {size} values but the header "
                      f"implies at most {room} more", start)
    if want is not None and shape != want:
        raise r.error(f"tensor {index} has shape {shape} where the header describes {want}",
                      start)
    step_axis = r.i8(f"tensor {index} step axis")
    if not -1 <= step_axis < ndim:
        raise r.error(f"tensor {index}: step axis {step_axis} outside -1..{ndim - 1}", start)
    m = 1 if step_axis == -1 else shape[step_axis]
    r.need(4 * m, f"tensor {index}'s {m} steps")
    step = r.array("<f4", m, f"tensor {index} steps")
    if not np.all(np.isfinite(step) & (step > 0)):
        raise r.error(f"tensor {index}: a step is not finite and > 0", start)
    predict, model_axis = r.u8(f"tensor {index} prediction"), r.i8(f"tensor {index} model axis")
    if predict not in (0, PREDICT_TEMPORAL):
        raise r.error(f"tensor {index}: unknown prediction {predict}", start)
    if not -1 <= model_axis < ndim:
        raise r.error(f"tensor {index}: model axis {model_axis} outside -1..{ndim - 1}", start)
    n_segments = 1 if model_axis == -1 else shape[model_axis]
    if n_segments * MIN_SEGMENT_BYTES > r.remaining:
        raise r.error(f"tensor {index}: {n_segments} segments cannot fit the "
                      f"{r.remaining} bytes left", start)
    per_segment = size // n_segments
    # int32, entropy.decode's type (no wider copy is held); one segment is decoded in place
    symbols = np.empty(size if n_segments > 1 else 0, np.int32)
    model_bytes = payload = 0
    kinds = []
    for s in range(n_segments):
        m_start = r.pos
        model = Model.from_reader(r)
        if model.kind == GEOMETRIC:
            geometric_left -= 1
            if geometric_left < 0:
                raise r.error(f"more than {MAX_GEOMETRIC_MODELS} geometric models in the section",
                              m_start)
        model_bytes += r.pos - m_start
        kinds.append(MODEL_NAMES[model.kind])
        if meter is not None and s:  # a tensor's first model is priced from the header
            meter.segment(f"{r.where}, tensor {index}")
        hist = model.histogram()
        n_words = r.u32("ANS word count")
        words = r.take(4 * n_words, f"{n_words} ANS words")
        payload += 4 * n_words
        try:
            part = entropy.decode(hist, words, per_segment, max_count=per_segment)
        except BitstreamError as exc:
            raise BitstreamError(f"{exc} (in {r.where}, tensor {index})") from exc
        if n_segments == 1:
            symbols = part
        else:
            symbols[s * per_segment:(s + 1) * per_segment] = part
        del part
    q = _unsegment(symbols, shape, None if model_axis == -1 else model_axis)
    del symbols
    q = _running_sum(q) if predict else np.ascontiguousarray(q)
    if q.size and max(int(q.max()), -int(q.min())) >= 2 * MAX_STEP_SYMBOL:
        raise r.error(f"tensor {index} decodes to values beyond +-{2 * MAX_STEP_SYMBOL}", start)
    coding = {"prediction": "temporal" if predict else "none",
              "model_axis": None if model_axis == -1 else model_axis}
    tensor = StepTensor(shape, None if step_axis == -1 else step_axis, step, q, coding=coding)
    return tensor, {"model_bytes": model_bytes, "payload_bytes": payload, "models": kinds}


RUNNING_SUM_BLOCK = 1 << 20
"""Values summed in int64 at a time by _running_sum."""


def _running_sum(residual: np.ndarray) -> np.ndarray:
    """The inverse of temporal_residual, as int32: summed in int64 a block of frames at a time
    (so no int64 copy of the tensor is ever held), each block's sums clipped into int32's range
    so that a sum past it reads as out of range, never as a wrapped-around value."""
    out = np.empty(residual.shape, np.int32)
    per_frame = max(1, math.prod(residual.shape[1:]))
    rows = max(1, RUNNING_SUM_BLOCK // per_frame)
    carry = np.zeros(residual.shape[1:], np.int64)
    info = np.iinfo(np.int32)
    for t0 in range(0, residual.shape[0], rows):
        block = np.cumsum(residual[t0:t0 + rows], axis=0, dtype=np.int64)
        block += carry
        carry = block[-1].copy()
        np.clip(block, info.min, info.max, out=block)
        out[t0:t0 + rows] = block
    return out


def _unsegment(symbols: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """Inverse of _segments: symbols of slice 0, slice 1, ... back into `shape`."""
    if axis is None:
        return symbols.reshape(shape)
    moved = (shape[axis],) + tuple(d for i, d in enumerate(shape) if i != axis)
    return np.moveaxis(symbols.reshape(moved), 0, axis)
