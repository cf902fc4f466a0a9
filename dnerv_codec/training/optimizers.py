"""The optimizers a recipe may train with, by name.

`adam` is the paper's choice (and the codec's until measured otherwise). `muon` orthogonalises
the momentum of every dense convolution kernel (Muon: Jordan et al. 2024, the kernel taken as
an out x (in*k*k) matrix) and keeps Adam for the rest: biases, norms, depthwise kernels, the
learned quantization steps. Its update is scaled to Adam's typical size (0.2 * sqrt(max side),
the "match_rms_adamw" rule of torch.optim.Muon), so that one learning rate serves both halves
and the recipes' schedules carry over.

torch.optim.Muon takes 2-D parameters only, and a convolution's kernel is 4-D and kept
channels_last here: `MuonAdam` is one torch Optimizer holding both halves, so that its state
is per-parameter tensors like Adam's and checkpoints, `--resume` and the collapse guard's
restore work on it unchanged.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim.adam import adam as adam_step

# The quintic Newton-Schulz iteration of Muon (its coefficients maximise the slope at zero;
# the result is U S' V^T with S' near 1, which is what Muon wants, not an exact U V^T).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
MUON_MOMENTUM = 0.95
ADAM_EPS = 1e-8


def orthogonalised(matrices: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """The nearest semi-orthogonal matrices to a batch of wide (rows <= columns) `matrices`,
    approximately (Newton-Schulz, batched: one set of calls for all kernels of a shape)."""
    a, b, c = NS_COEFFICIENTS
    x = matrices / matrices.norm(dim=(1, 2), keepdim=True).clamp(min=1e-7)  # spectral <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


class MuonAdam(torch.optim.Optimizer):
    """Muon on the dense convolution kernels among `params`, Adam on the others. One group,
    in the model's parameter order, and each parameter's state is tensors only: a checkpoint
    stores and checks it as it does Adam's."""

    def __init__(self, params, kernels, lr: float, betas: tuple[float, float]):
        super().__init__(list(params), {"lr": lr, "betas": betas})
        self.kernels = {id(p) for p in kernels}
        self.fused: bool | None = None  # whether fused Adam runs here; None: not tried yet

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            kernels = [p for p in params if id(p) in self.kernels]
            rest = [p for p in params if id(p) not in self.kernels]
            if kernels:
                self._muon(kernels, group["lr"])
            if rest:
                self._adam(rest, group["lr"], group["betas"])

    def _muon(self, params: list[torch.Tensor], lr: float) -> None:
        # Kernels of one shape are orthogonalised together: per-kernel calls cost more in
        # Python than in arithmetic at these sizes (12 ms a step for the 35 kernels at c2 = 14).
        by_shape: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in params:
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - MUON_MOMENTUM)
            update = p.grad.lerp(buf, MUON_MOMENTUM).reshape(p.shape[0], -1)  # Nesterov
            wide = update if update.shape[0] <= update.shape[1] else update.T
            by_shape.setdefault(tuple(wide.shape), []).append((p, wide))
        for shape, members in by_shape.items():
            matrices = orthogonalised(torch.stack([m.float() for _, m in members]))
            scale = 0.2 * math.sqrt(max(shape))
            for (p, wide), matrix in zip(members, matrices):
                if wide.shape[0] != p.shape[0]:
                    matrix = matrix.T
                p.add_(matrix.reshape(p.shape).to(p.dtype), alpha=-lr * scale)

    def _adam(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float]) -> None:
        for p in params:
            if not self.state[p]:
                # fused kernels want the step count on the parameter's device
                self.state[p].update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                                     exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        states = [self.state[p] for p in params]
        lists = (params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states])
        options = dict(amsgrad=False, beta1=betas[0], beta2=betas[1], lr=lr, weight_decay=0.0,
                       eps=ADAM_EPS, maximize=False)
        if self.fused is not False:
            try:  # the fused kernel refuses a device it lacks before it changes anything
                adam_step(*lists, fused=True, **options)
                self.fused = True
                return
            except (RuntimeError, TypeError):
                if self.fused:
                    raise
                self.fused = False  # no fused Adam for this device in this torch (CPU < 2.4)
        adam_step(*lists, foreach=True, **options)


def dense_kernels(model: nn.Module) -> list[nn.Parameter]:
    """The weights of every convolution that is not depthwise and has more than one input
    value per output: the matrices Muon is for."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.weight[0].numel() > 1]


def adam(model: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the fused kernel where this torch has it for the device (one kernel for all
    parameters instead of a few per tensor: 7 % of a step at c2 = 20 on 2 CPU cores,
    docs/training.md); the multi-tensor one otherwise. The two differ in the last bits."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, foreach=True)


def muon(model: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return MuonAdam(model.parameters(), dense_kernels(model), lr, betas)


OPTIMIZERS: dict[str, Callable[[nn.Module, float, tuple[float, float]], torch.optim.Optimizer]] = {
    "adam": adam, "muon": muon}


def make(name: str, model: nn.Module, lr: float,
         betas: tuple[float, float]) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](model, lr, betas)
