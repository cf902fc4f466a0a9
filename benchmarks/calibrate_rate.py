"""Measure the entropy-coded cost of decoder weights and embeddings on a trained model.

The rate-control plan (dnerv_codec/coding/ratecontrol.py, EST_BITS_*) sizes the network before
training from these figures; the file size itself is always measured. Re-run this when the
model, the quantizer or the entropy coder changes:

    python benchmarks/calibrate_rate.py dnerv_codec/data/bunny_320x180.mp4 --frames 16 --width 24 --epochs 60

Prints one JSON object on stdout: bits per weight at several prune fractions and bit depths,
and bits per content / diff embedding value at several bit depths, each as format 2.0 codes
it (step quantization, per-tensor models, temporal prediction: the real section bytes) and as
format 1.0 coded it (min-max quantization, one shared histogram: its ANS payload), on the same
trained model.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from dnerv_codec.format import entropy
from dnerv_codec.format import tensorcode
from dnerv_codec.coding.compress import (decoder_arrays, prune_arrays, quantize_decoder, quantize_embeddings,
                                  step_quantize_decoder, step_quantize_embeddings)
from dnerv_codec.io import read_video
from dnerv_codec.models.dnerv import DNeRV, make_config
from dnerv_codec.device import pick_device
from dnerv_codec.training.loop import FrameSource, compute_embeddings, train


def bits_per_value_v1(tensors) -> float:
    """Format 1.0: entropy-coded payload bits per value of a group coded with one shared
    histogram (the histogram and the records not counted)."""
    flat = np.concatenate([t.centred().ravel() for t in tensors])
    _, payload = entropy.encode(flat)
    return 8 * len(payload) / flat.size


def bits_per_value(tensors) -> float:
    """Format 2.0: bits per value of the whole coded section, models and steps included."""
    return 8 * len(tensorcode.pack_section(tensors)) / sum(t.q.size for t in tensors)


def costs(arrays, content, diff, measure, quantize_weights, quantize_embedding) -> dict:
    """Bits per weight (prune fractions x bit depths) and per embedding value (bit depths)."""
    return {
        "bits_per_weight": {f"prune{p}_bits{b}": measure(quantize_weights(prune_arrays(arrays, p), b))
                            for p in (0.0, 0.2, 0.4) for b in (8, 6)},
        "bits_per_content_value": {f"bits{b}": measure([quantize_embedding(content, b)])
                                   for b in (6, 5, 4)},
        "bits_per_diff_value": {f"bits{b}": measure([quantize_embedding(diff, b)])
                                for b in (6, 5, 4)},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=24, help="decoder width c2")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    video = read_video(args.video, max_frames=args.frames)
    config = make_config(video.height, video.width, args.width)
    torch.manual_seed(0)
    model = DNeRV(config)
    source = FrameSource(video.frames, config.padded_height, config.padded_width,
                         pick_device(args.device))
    stats = train(model, source, args.epochs, lr=args.lr)
    arrays = decoder_arrays(model.decoder)
    content, diff = compute_embeddings(model, source)
    result = {
        "command": " ".join(["python", "benchmarks/calibrate_rate.py", *(argv or sys.argv[1:])]),
        "video": args.video, "frames": video.frame_count, "size": [video.width, video.height],
        "decoder_params": config.parameter_count(), "epochs": args.epochs,
        "train_psnr": stats.final_psnr,
        **costs(arrays, content, diff, bits_per_value, step_quantize_decoder,
                step_quantize_embeddings),
        "format_1_0": costs(arrays, content, diff, bits_per_value_v1, quantize_decoder,
                            quantize_embeddings),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
