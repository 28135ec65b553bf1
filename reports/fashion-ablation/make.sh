#!/usr/bin/env bash
# The paper-Table-1 ablation (tune_spaces/ablation.yaml, leave-one-out rows) on the Fashion-MNIST benchmark
# protocol (jobs/fashion_mnist_bench.yaml), as Ray Tune sweeps for seeds 0 and 1 → the tables under
# reports/fashion-ablation/ and its page (reports/build/fashion-ablation.html: mean ± std over the seeds per variant). Each seed pretrains its
# own prior. Two trials at a time on two CPU cores. A sweep cut off part-way continues when this script is run
# again (finished trials are not trained again). Run from the repository root:
#   bash reports/fashion-ablation/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1"}
# Two trials at once on two cores: each trial's driver mostly waits, so it gets a sliver of a CPU.
FLAGS="--trial-cpus 0.01 --cpus-per-worker 0.99 --max-concurrent-trials 2"
for seed in $SEEDS; do
    $RAYMETA sweep --space tune_spaces/ablation.yaml --config jobs/fashion_mnist_bench.yaml \
        --run-dir runs/fashion-ablation/seed$seed $FLAGS seed=$seed threads=1
    mkdir -p "reports/fashion-ablation/seed$seed"
    cp runs/fashion-ablation/seed$seed/sweeps/ablation/results/*.parquet "reports/fashion-ablation/seed$seed/"
done
$PYTHON reports/build.py fashion-ablation
