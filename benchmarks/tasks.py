"""The DNeRV paper's other tasks, frame interpolation and inpainting, for DNeRV and the HNeRV
ablation, as the paper measures them and as the codec offers them.

Four parts (--parts picks some; all by default):

- interp-paper: fit on the even frames, evaluate on the odd frames between them (PSNR,
  MS-SSIM), DNeRV and HNeRV at equal decoder size and epochs, before any compression. A held-out
  frame's embeddings come two ways. "hybrid", the paper's protocol: the (trained) encoders are
  fed the held-out frame itself, and for DNeRV its true neighbours (frames t-1 and t+1, both
  training frames) for the difference stream. "codec": the midpoint of the embeddings of the
  two training frames either side, what a decoder holding only the stored frames can do. Against
  frame repetition (frame t-1) and linear blending of frames t-1 and t+1.
- interp-decoder: `dnerv decode --fps-scale 2` on a file of the even frames (encoded at --bpp,
  as `dnerv encode` does, at half the frame rate): its in-betweens against the true odd frames,
  and against repeating or blending the file's own decoded even frames.
- inpaint-paper: the paper's masks (tasks/masks.py: "disperse", five squares; "central", a
  quarter of each side), the masked pixels left out of the loss and hidden from the encoders;
  PSNR inside the mask (what was filled) and outside it (what was fitted) against the true
  frames, before any compression; "mean fill" is the PSNR inside of the flat colour the
  encoders saw there.
- logo: a static logo drawn onto the clip, encoded at --bpp with `--mask` on the logo (and once
  without, for comparison): PSNR inside the logo's region against the clean clip.

Writes tasks-<clip>.json to --out, a picture of each task to --figures, and prints the tables.

    python benchmarks/tasks.py                 # the embedded clip, DNeRV and HNeRV
    python benchmarks/tasks.py CLIP --no-diff  # another clip, the HNeRV ablation only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import benchlib
from dnerv_codec.codec import DecodedFile, EncodeOptions, encode
from dnerv_codec.format.architecture import make_config, with_width
from dnerv_codec.format.chunks import DnvReader
from dnerv_codec.io import Video, default_clip_path, write_png
from dnerv_codec.metrics import PSNR_CAP_DB, psnr_from_mse, quality_report
from dnerv_codec.models.dnerv import DNeRV
from dnerv_codec.tasks import interpolate, masks
from dnerv_codec.device import pick_device
from dnerv_codec.training.loop import FrameSource, compute_embeddings, train

SCRIPT = "tasks"
PARTS = ("interp-paper", "interp-decoder", "inpaint-paper", "logo")
PROTOCOL_PARTS = ("interp-paper", "inpaint-paper")
MODELS = {"DNeRV": True, "HNeRV": False}  # name -> diff_stream
DEFAULT_FIGURES = benchlib.BENCH_DIR.parent / "docs" / "images"
# The logo: a 20 % wide, 16 % high badge near the top-right corner, in a colour the clip
# does not have, with stripes so that it is not a flat patch a network would fill for free.
LOGO_WIDTH, LOGO_HEIGHT, LOGO_MARGIN = 0.20, 0.16, 0.04
LOGO_DILATION = 2  # pixels of the mask beyond the logo (a real mask is drawn generously)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", nargs="?", default=None,
                   help="video (default: the embedded clip, dnerv_codec/data/bunny_320x180.mp4)")
    p.add_argument("--no-diff", action="store_true", help="the HNeRV ablation only")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="which tasks to run (default: all)")
    p.add_argument("--frames", type=int, default=None, help="the clip's first N frames")
    p.add_argument("--c2", type=int, default=20,
                   help="DNeRV's decoder width in the protocol parts; HNeRV gets the width of "
                        "the nearest decoder size (default: 20)")
    p.add_argument("--bpp", type=float, default=0.2,
                   help="target rate of the encodes in interp-decoder and logo (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--figures", type=Path, default=DEFAULT_FIGURES,
                   help="folder for the pictures (default: docs/images)")
    p.add_argument("--name", default=None, help="result name (default: tasks-<clip>)")
    benchlib.add_common_args(p, epochs=30, lr=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    device = pick_device(args.device)
    clip = benchlib.load_clip(args.clip or default_clip_path(), args.frames)
    if clip.video.frame_count < 3:
        raise SystemExit(f"{SCRIPT}: the clip needs at least 3 frames (even, odd, even)")
    # The protocol parts compare DNeRV with its HNeRV ablation, as the paper does; the
    # feature parts run the codec's default (DNeRV), or HNeRV alone under --no-diff.
    models = {"HNeRV": False} if args.no_diff else MODELS
    benchlib.log(SCRIPT, f"{clip.description}; {args.epochs} epochs on {device.type}; "
                         f"{', '.join(models)}")
    args.figures.mkdir(parents=True, exist_ok=True)
    results, figures = {}, []
    for part in args.parts:
        chosen = models if part in PROTOCOL_PARTS else dict([next(iter(models.items()))])
        rows, figure = RUNNERS[part](clip, chosen, args, device)
        results[part] = benchlib.columns(rows)
        if figure is not None:
            path = args.figures / f"tasks-{part}.png"
            write_png(path, figure)
            figures.append(_shown(path))
            benchlib.log(SCRIPT, f"wrote {path}")
    v = benchlib.versions()
    data = {"name": args.name or f"tasks-{clip.name}",
            "description": description(clip, args, device, v),
            "command": benchlib.command_line(SCRIPT, argv),
            "clip": {"name": clip.name, "source": clip.description},
            "budget": {"epochs": args.epochs, "c2": args.c2, "bpp": args.bpp,
                       "device": device.type, "seed": args.seed},
            "figures": figures, "total_seconds": time.perf_counter() - start,
            "versions": v, "results": results}
    benchlib.publish(SCRIPT, args.out, data["name"], data, markdown(data))
    return data


def _shown(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (result files travel)."""
    root = benchlib.BENCH_DIR.parent
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def description(clip, args, device, v: dict) -> str:
    return (f"The DNeRV paper's interpolation and inpainting tasks: {args.epochs} epochs with "
            f"the codec's recipe on {device.type}, seed {args.seed}; protocol parts at DNeRV "
            f"c2 = {args.c2} and HNeRV at the nearest decoder size, unquantized; encodes at "
            f"--bpp {args.bpp:g} with the same epochs. {benchlib.tool_text(v)}. Clip "
            f"{clip.name}: {clip.description}. {benchlib.PER_FRAME_NOTE}.")


# ----------------------------------------------------------------------------- models


def configs(video: Video, models: dict, c2: int) -> dict:
    """Each model's config: DNeRV at c2, HNeRV at the width nearest DNeRV's parameter count
    (the paper compares at equal size)."""
    dnerv = make_config(video.height, video.width, c2, True)
    out = {}
    for name, diff in models.items():
        base = make_config(video.height, video.width, 1, diff)
        out[name] = min((with_width(base, c) for c in range(1, 4 * c2 + 1)),
                        key=lambda c: abs(c.parameter_count() - dnerv.parameter_count()))
    return out


def fit(config, frames: np.ndarray, args, device, label: str):
    """A DNeRV (or HNeRV) trained on `frames` (RGB, or RGB + known channel) for args.epochs."""
    torch.manual_seed(args.seed)
    model = DNeRV(config)
    source = FrameSource(frames, config.padded_height, config.padded_width, device)
    train(model, source, args.epochs, lr=args.lr, seed=args.seed,
          progress=benchlib.epoch_printer(SCRIPT, label))
    return model, source


def render(model: DNeRV, content: np.ndarray, diff: np.ndarray | None, video_shape, device):
    """uint8 frames from fp32 embeddings, one a call, cropped to the video's size."""
    return benchlib.render_embeddings(model, content, diff, *video_shape, device, batch=1)


def scores(ref: np.ndarray, dist: np.ndarray) -> dict:
    q = quality_report(ref, dist)
    return {"psnr-rgb": q["psnr_rgb"], "ms-ssim-rgb": q["ms_ssim_rgb"]}


def strip(frames: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Frames side by side, white gaps between them: the pictures in docs/tasks.md."""
    h = frames[0].shape[0]
    white = np.full((h, gap, 3), 255, np.uint8)
    parts = []
    for f in frames:
        parts += [f, white]
    return np.ascontiguousarray(np.concatenate(parts[:-1], axis=1))


# ----------------------------------------------------------------------------- interpolation


def held_out(count: int) -> list[int]:
    """The odd frames that lie between two even frames."""
    return list(range(1, count - 1, 2))


def interp_paper(clip, models: dict, args, device):
    v = clip.video
    frames, odd = v.frames, held_out(v.frame_count)
    truth = frames[odd]
    rows = [{"model": "repeat", "embeddings": "-", **scores(truth, frames[[t - 1 for t in odd]])},
            {"model": "blend", "embeddings": "-",
             **scores(truth, np.stack([interpolate.blend(frames[t - 1], frames[t + 1], 0.5)
                                       for t in odd]))}]
    figure = None
    for name, config in configs(v, models, args.c2).items():
        model, source = fit(config, frames[0::2], args, device, f"interp-paper {name}")
        # hybrid: the encoders see the held-out frame (and its true neighbours)
        full = FrameSource(frames, config.padded_height, config.padded_width, device)
        model.eval()
        with torch.no_grad():
            embedded = [model.embed(*full.triplet(t)) for t in odd]
        content = torch.cat([c for c, _ in embedded]).float().cpu().numpy()
        diff = (torch.cat([d for _, d in embedded]).float().cpu().numpy()
                if config.diff_stream else None)
        hybrid = render(model, content, diff, (v.height, v.width), device)
        # codec: the midpoint of the stored neighbours' embeddings
        c_even, d_even = compute_embeddings(model, source)
        positions = np.array([t / 2 for t in odd])
        mid_c = interpolate.embedding_rows(c_even, positions, 0, c_even.shape[2])
        mid_d = (None if d_even is None
                 else interpolate.embedding_rows(d_even, positions, 0, d_even.shape[2]))
        codec = render(model, mid_c, mid_d, (v.height, v.width), device)
        stored = render(model, c_even, d_even, (v.height, v.width), device)
        common = {"model": name, "stem-channels": config.stem_channels,
                  "decoder-params": config.parameter_count()}
        rows.append({**common, "embeddings": "hybrid", **scores(truth, hybrid),
                     "fit-psnr-rgb": scores(frames[0::2], stored)["psnr-rgb"]})
        rows.append({**common, "embeddings": "codec", **scores(truth, codec),
                     "fit-psnr-rgb": scores(frames[0::2], stored)["psnr-rgb"]})
        benchlib.log(SCRIPT, f"interp-paper {name}: odd frames {rows[-2]['psnr-rgb']:.2f} dB "
                             f"(hybrid), {rows[-1]['psnr-rgb']:.2f} dB (codec)")
    return rows, figure


def interp_decoder(clip, models: dict, args, device):
    """--fps-scale 2 on a file of the even frames."""
    v = clip.video
    evens = Video(np.ascontiguousarray(v.frames[0::2]), v.fps / 2)
    odd = held_out(v.frame_count)
    truth = v.frames[odd]
    rows, figure = [], None
    for name, diff in models.items():
        options = EncodeOptions(bpp=args.bpp, epochs=args.epochs, device=args.device,
                                seed=args.seed, model="dnerv" if diff else "hnerv",
                                lr=args.lr)
        result = encode(evens, options, progress=benchlib.epoch_printer(SCRIPT, f"interp-decoder {name}"))
        decoded = DecodedFile(DnvReader(result.data), device=args.device, fps_scale=2)
        frames = np.stack(list(decoded.frames()))
        assert len(frames) == interpolate.output_count(evens.frame_count, 2)
        assert decoded.fps == v.fps
        stored = frames[0::2]
        made = frames[odd]
        common = {"model": name, "bytes": len(result.data), "bpp": result.stats["bpp"],
                  "stored-psnr-rgb": result.stats["psnr_rgb"]}
        rows.append({**common, "in-betweens": "fps-scale 2", **scores(truth, made)})
        rows.append({**common, "in-betweens": "repeat",
                     **scores(truth, interpolate.repeated(stored, 2)[odd])})
        rows.append({**common, "in-betweens": "blend",
                     **scores(truth, interpolate.blended(stored, 2)[odd])})
        benchlib.log(SCRIPT, f"interp-decoder {name}: odd frames {rows[-3]['psnr-rgb']:.2f} dB "
                             f"(fps-scale 2), {rows[-2]['psnr-rgb']:.2f} (repeat), "
                             f"{rows[-1]['psnr-rgb']:.2f} (blend)")
        if figure is None:
            t = odd[len(odd) // 2]
            figure = strip([stored[t // 2], made[odd.index(t)], truth[odd.index(t)],
                            stored[t // 2 + 1]])
    return rows, figure


# ----------------------------------------------------------------------------- inpainting


def masked_psnr(ref: np.ndarray, dist: np.ndarray, where: np.ndarray) -> float:
    """PSNR (of the total MSE) over the pixels `where` (H, W) of every frame."""
    if not where.any():
        return PSNR_CAP_DB
    err = ref[:, where].astype(np.float64) - dist[:, where].astype(np.float64)
    return psnr_from_mse(float(np.mean(err * err)))


def inpaint_paper(clip, models: dict, args, device):
    v = clip.video
    rows, figure = [], None
    for mask_name, unknown in (("disperse", masks.disperse(v.height, v.width)),
                               ("central", masks.central(v.height, v.width))):
        frames = masks.with_mask(v.frames, unknown)
        fill = np.stack([FrameSource(frames[i:i + 1], v.height, v.width, "cpu").frames[0]
                         .permute(1, 2, 0).numpy() for i in range(v.frame_count)])
        for name, config in configs(v, models, args.c2).items():
            model, source = fit(config, frames, args, device, f"inpaint {mask_name} {name}")
            c, d = compute_embeddings(model, source)
            out = render(model, c, d, (v.height, v.width), device)
            rows.append({"mask": mask_name, "model": name,
                         "masked-fraction": float(unknown.mean()),
                         "psnr-inside": masked_psnr(v.frames, out, unknown),
                         "psnr-outside": masked_psnr(v.frames, out, ~unknown),
                         "mean-fill-psnr-inside": masked_psnr(v.frames, fill, unknown)})
            benchlib.log(SCRIPT, f"inpaint {mask_name} {name}: inside {rows[-1]['psnr-inside']:.2f} "
                                 f"dB, outside {rows[-1]['psnr-outside']:.2f} dB")
            if figure is None and mask_name == "central":
                t = v.frame_count // 2
                shown = np.where(unknown[..., None], fill[t], v.frames[t])
                figure = strip([shown, out[t], v.frames[t]])
    return rows, figure


def logo_region(height: int, width: int) -> tuple[slice, slice]:
    w, h = max(4, round(LOGO_WIDTH * width)), max(4, round(LOGO_HEIGHT * height))
    m = max(1, round(LOGO_MARGIN * min(height, width)))
    return slice(m, m + h), slice(width - m - w, width - m)


def draw_logo(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames with the logo drawn on, the mask: the logo's pixels plus LOGO_DILATION)."""
    t, height, width, _ = frames.shape
    ys, xs = logo_region(height, width)
    out = frames.copy()
    badge = np.zeros((ys.stop - ys.start, xs.stop - xs.start, 3), np.uint8)
    badge[:] = (235, 30, 120)
    badge[:, ::4] = (255, 255, 255)  # vertical stripes
    badge[::5, :] = (20, 20, 20)     # and horizontal ones
    out[:, ys, xs] = badge
    unknown = np.zeros((height, width), bool)
    d = LOGO_DILATION
    unknown[max(0, ys.start - d):ys.stop + d, max(0, xs.start - d):xs.stop + d] = True
    return out, unknown


def logo(clip, models: dict, args, device):
    v = clip.video
    drawn, unknown = draw_logo(v.frames)
    logo_video = Video(np.ascontiguousarray(drawn), v.fps)
    inside = unknown
    rows = [{"model": "-", "encode": "logo left in (input)", "bytes": None, "bpp": None,
             "psnr-logo-region": masked_psnr(v.frames, drawn, inside),
             "psnr-elsewhere": masked_psnr(v.frames, drawn, ~inside)}]
    figure = None
    for name, diff in models.items():
        for masked in (True, False):
            options = EncodeOptions(bpp=args.bpp, epochs=args.epochs, device=args.device,
                                    seed=args.seed, model="dnerv" if diff else "hnerv",
                                    lr=args.lr)
            source = (masks.MaskedVideo(logo_video, masks.Mask(unknown[None])) if masked
                      else logo_video)
            label = f"logo {name} {'--mask' if masked else 'no mask'}"
            result = encode(source, options, progress=benchlib.epoch_printer(SCRIPT, label))
            out = np.stack(list(DecodedFile(DnvReader(result.data), device=args.device).frames()))
            rows.append({"model": name, "encode": "--mask" if masked else "no mask",
                         "bytes": len(result.data), "bpp": result.stats["bpp"],
                         "psnr-logo-region": masked_psnr(v.frames, out, inside),
                         "psnr-elsewhere": masked_psnr(v.frames, out, ~inside)})
            benchlib.log(SCRIPT, f"{label}: logo region {rows[-1]['psnr-logo-region']:.2f} dB "
                                 f"against the clean clip, elsewhere {rows[-1]['psnr-elsewhere']:.2f} dB")
            if masked and figure is None:
                t = v.frame_count // 2
                figure = strip([drawn[t], out[t], v.frames[t]])
    return rows, figure


RUNNERS = {"interp-paper": interp_paper, "interp-decoder": interp_decoder,
           "inpaint-paper": inpaint_paper, "logo": logo}


# ----------------------------------------------------------------------------- tables


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


# Each part's table: its caption, then (heading, alignment, cell) for every column.
TABLES = {
    "interp-paper": (
        "Interpolation, the paper's protocol (fit on even frames, scored on the odd frames "
        "between them; unquantized):",
        [("model", "---", lambda r: r["model"]),
         ("decoder params", "---:", lambda r: _f(r.get("decoder-params"), ",")),
         ("held-out embeddings", "---", lambda r: r["embeddings"]),
         ("PSNR-RGB (dB)", "---:", lambda r: f"{r['psnr-rgb']:.2f}"),
         ("MS-SSIM", "---:", lambda r: f"{r['ms-ssim-rgb']:.4f}"),
         ("fit on even frames (dB)", "---:", lambda r: _f(r.get("fit-psnr-rgb"), ".2f"))]),
    "interp-decoder": (
        "Interpolation in the decoder (`dnerv decode --fps-scale 2` on a file of the even "
        "frames; scored on the odd frames):",
        [("model", "---", lambda r: r["model"]),
         ("file (bytes)", "---:", lambda r: f"{r['bytes']:,}"),
         ("bpp", "---:", lambda r: f"{r['bpp']:.4f}"),
         ("stored frames (dB)", "---:", lambda r: f"{r['stored-psnr-rgb']:.2f}"),
         ("in-betweens", "---", lambda r: r["in-betweens"]),
         ("PSNR-RGB (dB)", "---:", lambda r: f"{r['psnr-rgb']:.2f}"),
         ("MS-SSIM", "---:", lambda r: f"{r['ms-ssim-rgb']:.4f}")]),
    "inpaint-paper": (
        "Inpainting, the paper's protocol (masked pixels out of the loss; unquantized; PSNR of "
        "the total MSE inside and outside the mask):",
        [("mask", "---", lambda r: r["mask"]),
         ("masked", "---:", lambda r: f"{100 * r['masked-fraction']:.1f} %"),
         ("model", "---", lambda r: r["model"]),
         ("PSNR inside (dB)", "---:", lambda r: f"{r['psnr-inside']:.2f}"),
         ("PSNR outside (dB)", "---:", lambda r: f"{r['psnr-outside']:.2f}"),
         ("mean fill inside (dB)", "---:", lambda r: f"{r['mean-fill-psnr-inside']:.2f}")]),
    "logo": (
        "Logo removal (`dnerv encode --mask`; PSNR against the clean clip):",
        [("model", "---", lambda r: r["model"]),
         ("encode", "---", lambda r: r["encode"]),
         ("file (bytes)", "---:", lambda r: _f(r["bytes"], ",")),
         ("bpp", "---:", lambda r: _f(r["bpp"], ".4f")),
         ("logo region (dB)", "---:", lambda r: f"{r['psnr-logo-region']:.2f}"),
         ("elsewhere (dB)", "---:", lambda r: f"{r['psnr-elsewhere']:.2f}")]),
}


def markdown(data: dict) -> str:
    """One table per part that ran."""
    out = []
    for part, (caption, columns) in TABLES.items():
        if part not in data["results"]:
            continue
        out += [caption, "", *benchlib.markdown_table(columns, data["results"][part]), ""]
    return "\n".join(out)


if __name__ == "__main__":
    main()
