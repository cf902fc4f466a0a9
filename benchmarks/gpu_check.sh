#!/usr/bin/env bash
# The GPU run, ready to go: one script, under 8 minutes on one modern GPU.
#
#   bash benchmarks/gpu_check.sh             # on a machine with CUDA: results in benchmarks/results
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere: the same steps on the CPU, tiny, into a
#                                            # temporary folder (the test suite runs this)
#
# Steps (2-4 each write their JSON, CompressAI-shaped, with its command, to the results folder):
#   1. tests/test_devices.py with DNERV_TEST_DEVICE=cuda: a file trained on CUDA decodes on
#      the CPU within 2 levels of CUDA's render (the dry run: the same assertions on the CPU);
#   2. benchmarks/speed.py on CUDA, one frame a step and four (does batching pay there?);
#   3. benchmarks/cross_device.py: a CUDA encode, decoded on CUDA and on the CPU (largest
#      frame difference; the dry run: a CPU encode decoded with 2 torch threads and with 1);
#   4. a shortened paper-scale run: benchmarks/paper.py --scale full --arch paper, 10 epochs,
#      the 0.35M decoders (the paper trains 300: these PSNRs are a speed check, not its table).
# Then `python benchmarks/report.py` puts them into docs/benchmarks.md; commit both.
# Run it from the repository root's virtualenv (bin/setup makes one); PYTHON overrides python.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ "${1:-}" == "--dry-run" ]]; then
    DEVICE=cpu
    OUT=${OUT:-$(mktemp -d)}
    SPEED=(--widths 8 --epochs 1 --frames 4)
    CROSS=(--frames 4 --epochs 1 --bpp 2 --threads 2 --other-threads 1)
    PAPER=(--scale cpu --frames 4 --downscale 8 --epochs 1 --sizes 0.35 --clip dnerv_codec/data/bunny_320x180.mp4)
elif [[ -n "${1:-}" ]]; then
    echo "gpu_check.sh: unknown argument '$1' (the only one is --dry-run)" >&2
    exit 2
else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: torch sees no CUDA device here; run it on a GPU machine, or --dry-run" >&2
        exit 2
    fi
    DEVICE=cuda
    OUT=${OUT:-benchmarks/results}
    SPEED=(--widths 16 32 64 --epochs 3)
    CROSS=(--epochs 60)
    PAPER=(--scale full --arch paper --epochs 10 --sizes 0.35)
fi
step() { echo "gpu_check.sh: $*" >&2; }
start=$SECONDS
step "1/4 device tests on $DEVICE"
# The device is named, not left to CUDA's presence: the case runs (or fails), never skips.
DNERV_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py
step "2/4 speed on $DEVICE, 1 and 4 frames a step"
"$PY" benchmarks/speed.py --device "$DEVICE" "${SPEED[@]}" --out "$OUT"
"$PY" benchmarks/speed.py --device "$DEVICE" "${SPEED[@]}" --batch 4 --out "$OUT"
step "3/4 encode on $DEVICE, decode on $DEVICE and on the CPU"
"$PY" benchmarks/cross_device.py --device "$DEVICE" "${CROSS[@]}" --out "$OUT"
step "4/4 shortened paper-scale run on $DEVICE"
"$PY" benchmarks/paper.py --device "$DEVICE" "${PAPER[@]}" --out "$OUT"
step "done in $((SECONDS - start)) s; results in $OUT"
