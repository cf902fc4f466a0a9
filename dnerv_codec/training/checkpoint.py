"""Training checkpoints: what `dnerv encode --checkpoint PATH` saves and `--resume` continues.

A checkpoint is a safetensors file: named tensors plus a JSON header, no pickle, so loading one
runs no code. It is written atomically (temporary file, fsync, rename): a run killed at any
moment, even in the middle of a save, leaves the previous checkpoint whole and usable.

It holds one stage of training ("train", or "finetune" with the compression setting and the
pruning masks that fine-tuning keeps), that stage's `train.Snapshot`, and a fingerprint of the
input and of every option the result depends on. Resuming refuses a checkpoint whose
fingerprint differs from the run's, naming the first difference.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import safetensors.torch
import torch

from dnerv_codec.errors import InputError
from dnerv_codec.io import atomic_write_bytes
from dnerv_codec.training.loop import LoopState, Snapshot

FORMAT = "dnerv-checkpoint/1"
STAGES = ("train", "finetune")


@dataclass
class Checkpoint:
    fingerprint: dict  # what must match for a resume to continue to the same result
    stage: str  # one of STAGES
    snapshot: Snapshot
    setting: dict | None = None  # finetune: the ratecontrol.Setting being fine-tuned for
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # finetune: keep-masks
    train_stats: dict = field(default_factory=dict)  # finetune: the train stage's figures
    environment: dict = field(default_factory=dict)  # threads and torch version (see notes)
    fit: dict | None = None  # finetune: the Setting rate control chose for the whole video


def environment() -> dict:
    """What changes the last bits of a CPU run without changing its meaning."""
    return {"threads": torch.get_num_threads(), "torch": torch.__version__}


def save(path: str, ck: Checkpoint) -> None:
    """Write `ck` to `path` atomically."""
    tensors = {f"model.{k}": v for k, v in ck.snapshot.model.items()}
    tensors.update(_optimizer_tensors("optim", ck.snapshot.optimizer))
    tensors["rng"] = ck.snapshot.rng
    if ck.snapshot.best is not None:
        tensors.update({f"best.model.{k}": v for k, v in ck.snapshot.best[0].items()})
        tensors.update(_optimizer_tensors("best.optim", ck.snapshot.best[1]))
    tensors.update({f"mask.{k}": v.bool() for k, v in ck.masks.items()})
    meta = {"format": FORMAT, "fingerprint": ck.fingerprint, "stage": ck.stage,
            "loop": asdict(ck.snapshot.loop), "has_best": ck.snapshot.best is not None,
            "setting": ck.setting, "train_stats": ck.train_stats, "environment": ck.environment,
            "fit": ck.fit}
    # safetensors wants plain contiguous CPU tensors; channels_last weights become a copy.
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata={"dnerv": json.dumps(meta)}))


def _optimizer_tensors(prefix: str, state: dict[int, dict[str, torch.Tensor]]) -> dict:
    return {f"{prefix}.{index}.{key}": value
            for index, entries in state.items() for key, value in entries.items()}


def load(path: str) -> Checkpoint:
    """Read a checkpoint; InputError (one line) for a missing, foreign or damaged file."""
    if not os.path.isfile(path):
        raise InputError(f"cannot resume: no checkpoint at '{path}'")
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("dnerv", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors reports damage with assorted exception types
        raise InputError(f"cannot resume from '{path}': not a readable checkpoint "
                         f"({' '.join(str(e).split())})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"cannot resume from '{path}': not a dnerv checkpoint ({FORMAT})")
    try:
        return _checkpoint(meta, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"cannot resume from '{path}': damaged checkpoint ({e!r})") from None


def _checkpoint(meta: dict, tensors: dict[str, torch.Tensor]) -> Checkpoint:
    if meta["stage"] not in STAGES:
        raise ValueError(f"stage {meta['stage']!r}")
    best = None
    if meta["has_best"]:
        best = (_prefixed(tensors, "best.model."), _optimizer_state(tensors, "best.optim."))
    snapshot = Snapshot(_loop_state(meta["loop"]), _prefixed(tensors, "model."),
                        _optimizer_state(tensors, "optim."), tensors["rng"], best)
    masks = {k: v.float() for k, v in _prefixed(tensors, "mask.").items()}
    return Checkpoint(meta["fingerprint"], meta["stage"], snapshot, meta["setting"], masks,
                      meta["train_stats"], meta["environment"], meta.get("fit"))


def _loop_state(fields: dict) -> LoopState:
    """LoopState from JSON, type-checked: the loop would fail obscurely on a wrong type."""
    loop = LoopState(**fields)
    numbers = (loop.mse_sum, loop.sample_mse, loop.lr_scale, loop.best_psnr, loop.quarter_sum,
               loop.rise_from, *loop.history)
    counters = (loop.epoch, loop.position, loop.iteration, loop.recoveries, loop.restarts,
                loop.born, loop.next_look, loop.quarter_steps, *loop.order)
    if not (all(isinstance(x, (int, float)) for x in numbers)
            and all(isinstance(x, int) and x >= 0 for x in counters)
            and isinstance(loop.judged, bool)):
        raise ValueError("loop state has values of the wrong type")
    return loop


def _prefixed(tensors: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict, prefix: str) -> dict[int, dict[str, torch.Tensor]]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in _prefixed(tensors, prefix).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return state


def check_resumable(path: str, ck: Checkpoint, fingerprint: dict, model: torch.nn.Module) -> None:
    """Refuse, in one line, a checkpoint made for another input or other options, or whose
    tensors do not fit `model` (a damaged or edited file)."""
    for key, value in fingerprint.items():
        stored = ck.fingerprint.get(key)
        if stored != value:
            what = ("a different input video" if key == "input"
                    else f"{key} = {stored} (this run: {value})")
            raise InputError(f"cannot resume from '{path}': it was made for {what}; "
                             f"start again without --resume")
    problem = _fit_problem(ck, model)
    if problem:
        raise InputError(f"cannot resume from '{path}': damaged checkpoint ({problem})")


def _fit_problem(ck: Checkpoint, model: torch.nn.Module) -> str | None:
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    params = [tuple(p.shape) for p in model.parameters()]
    snap = ck.snapshot
    weights = [snap.model] + ([snap.best[0]] if snap.best else [])
    if any({k: tuple(v.shape) for k, v in w.items()} != shapes for w in weights):
        return "its weights do not fit the network"
    for state in [snap.optimizer] + ([snap.best[1]] if snap.best else []):
        for index, entries in state.items():
            if not 0 <= index < len(params) or any(
                    k != "step" and tuple(v.shape) != params[index] for k, v in entries.items()):
                return "its optimizer state does not fit the network"
    if tuple(snap.rng.shape) != tuple(torch.Generator().get_state().shape):
        return "its random generator state is not one"
    decoder = {k.removeprefix("decoder."): s for k, s in shapes.items() if k.startswith("decoder.")}
    if any(decoder.get(k) != tuple(v.shape) for k, v in ck.masks.items()):
        return "its pruning masks do not fit the decoder"
    return None


def peek(path: str) -> dict | None:
    """A checkpoint's stage, epoch, rate-control fit, planned epochs (of training and of the
    fine-tune), decoder width (a --time budget may have narrowed it) and model (--model auto
    chose it), reading only its JSON
    header; None when there is no file at `path` (a damaged one is refused, in one line, by
    `load`)."""
    if not os.path.isfile(path):
        return None
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("dnerv", "null"))
        planned = meta.get("fingerprint", {})
        return {"stage": meta["stage"], "epoch": meta["loop"]["epoch"], "fit": meta.get("fit"),
                "epochs": planned.get("epochs"), "finetune_epochs": planned.get("finetune_epochs"),
                "stem_channels": planned.get("stem_channels"),
                "diff_stream": planned.get("diff_stream")}
    except Exception as e:  # safetensors and a foreign header fail in assorted ways
        raise InputError(f"cannot resume from '{path}': not a readable checkpoint "
                         f"({' '.join(str(e).split())})") from None


def remove(path: str) -> None:
    """Delete a checkpoint that is no longer needed (the .dnv it was for is written)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
