#!/usr/bin/env bash
# The digits example from real runs on scikit-learn's digits (ResNet-20, jobs/quickstart.yaml): its result tables
# → reports/digits-resnet20/tables/ and its page → reports/build/digits-resnet20.html (python reports/build.py).
# About 30 minutes on two CPU cores. Run from the repository root:  bash reports/digits-resnet20/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
# 1. The metamorphic network (raymeta's method), the papers' recipe and the original NeuMeta baseline, from the
#    same prior; the skip reference (the prior without its metamorphic blocks, head fine-tuned as long).
$RAYMETA run --config jobs/quickstart.yaml --run-dir runs/digits/metamorphic
$RAYMETA baseline skip --run-dir runs/digits/metamorphic
for method in recipe neumeta; do
    mkdir -p runs/digits/$method
    cp -n runs/digits/metamorphic/prior.pt runs/digits/metamorphic/smoothed.pt runs/digits/$method/ || true
done
$RAYMETA run --config jobs/quickstart.yaml --run-dir runs/digits/recipe --method recipe
# NeuMeta at the recipe's lr 0.002 collapses to one class (9.75 %) within two epochs (no α, six random INR blocks
# at once); at 5e-4 it trains. M = 1, so one worker: train in this process.
$RAYMETA run --config jobs/quickstart.yaml --run-dir runs/digits/neumeta --method neumeta --workers 0 train.lr=0.0005
# 2. Individually trained ResNets at every γ of eval.gammas, and the prior pruned to every γ ≥ 0.
$RAYMETA baseline individual --config jobs/quickstart.yaml --run-dir runs/digits/individual threads=1
$RAYMETA baseline prune --run-dir runs/digits/metamorphic --importance all --finetune-epochs 3 threads=1
# (Training writes its per-epoch monitor rows itself: runs/digits/*/results/train-monitor.parquet.)
# 3. The tables (kept, a few hundred KB) and the page, a pure function of them.
for run in metamorphic recipe neumeta individual; do
    mkdir -p reports/digits-resnet20/tables/$run
    cp runs/digits/$run/results/*.parquet reports/digits-resnet20/tables/$run/
done
$PYTHON reports/build.py digits-resnet20
