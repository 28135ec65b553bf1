#!/usr/bin/env bash
# The Fashion-MNIST benchmark protocol (jobs/fashion_mnist_bench.yaml) for "metamorphosis that works":
# raymeta's method trained through Ray Train (raymeta run, 2 workers) for each seed, the skip reference,
# Individual ResNets at each γ of the training pool and the unseen 0.75, and pruning with and without
# fine-tune; the papers' recipe and NeuMeta rows come from the ablation (reports/fashion-ablation/make.sh),
# run on the same protocol and priors. → the tables under reports/fashion-bench/ and its page
# (reports/build/fashion-bench.html).
# A seed's prior is taken from runs/fashion-ablation/seedN when that exists (the same data, model, pretraining
# and seed), else pretrained. Everything resumes: run it again after an interruption. From the repository root:
#   bash reports/fashion-bench/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1"}
CONFIG=jobs/fashion_mnist_bench.yaml
for seed in $SEEDS; do
    run=runs/fashion-bench/seed$seed
    mkdir -p "$run"
    if [ -f "runs/fashion-ablation/seed$seed/prior.pt" ] && [ ! -f "$run/prior.pt" ]; then
        cp "runs/fashion-ablation/seed$seed/prior.pt" "$run/prior.pt"
    fi
    $RAYMETA run --config $CONFIG --run-dir "$run" --workers 2 seed=$seed
    $RAYMETA baseline skip --run-dir "$run"
    $RAYMETA baseline individual --config $CONFIG --run-dir "$run" --gammas=0.25,0.5,0.75 seed=$seed
    $RAYMETA baseline prune --run-dir "$run" --importance l1,taylor --gammas=0.25,0.5,0.75 --finetune-epochs 2
done
for seed in $SEEDS; do
    mkdir -p "reports/fashion-bench/seed$seed"
    cp runs/fashion-bench/seed$seed/results/*.parquet "reports/fashion-bench/seed$seed/"
done
$PYTHON reports/fashion-bench/bench_table.py reports/fashion-bench reports/fashion-ablation > reports/fashion-bench/table.md
$PYTHON reports/build.py fashion-bench
