#!/usr/bin/env bash
# The full-network benchmark protocol (jobs/fashion_mnist_full.yaml), the headline comparison: every block the
# papers make metamorphic, Fashion-MNIST, the full test set, seen γ and unseen γ on both sides. For each seed:
# raymeta's method trained through Ray Train (raymeta run, 2 workers), then every row that says what the INR
# adds: skip (the blocks removed), merge (the smoothed prior resampled by the prior base, untrained), inr-off (the
# trained run with its INRs' correction switched off), Individual ResNets at each deployed width (8 epochs),
# L1 pruning without fine-tune, with a 2-epoch fine-tune and with a fine-tune at equal total training cost (the
# run's training time over the deployed widths), and US-Nets' slimmable network trained for the run's training
# time. → the tables under reports/fashion-full/, table.md and the page (reports/build/fashion-full.html).
# Everything resumes: run it again after an interruption (finished stages and rows are skipped). From the
# repository root:
#   bash reports/fashion-full/make.sh                 SEEDS="0 1 2" WIDTHS=0.25,0.5,0.75 bash reports/fashion-full/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1"}
WIDTHS=${WIDTHS:-"0.25,0.5,0.625,0.75"}
CALIBRATION=${CALIBRATION:-512}  # images of the training split whose statistics calibrate each width  # the widths a user deploys: Individual, pruning and its equal-cost share
CONFIG=jobs/fashion_mnist_full.yaml
for seed in $SEEDS; do
    run=runs/fashion-full/seed$seed
    mkdir -p "$run"
    $RAYMETA run --config $CONFIG --run-dir "$run" --workers 2 seed=$seed
    # the same network calibrated on $CALIBRATION unlabelled training images (eval.calibration), and the merge and
    # INR-off rows calibrated alike: what calibration adds, and what the INR adds once it is there
    $RAYMETA evaluate --config $CONFIG --run-dir "$run" seed=$seed eval.calibration=$CALIBRATION
    $RAYMETA baseline skip --run-dir "$run"
    $RAYMETA baseline merge --run-dir "$run"
    $RAYMETA baseline merge --run-dir "$run" eval.calibration=$CALIBRATION
    $RAYMETA baseline inr-off --run-dir "$run"
    $RAYMETA baseline inr-off --run-dir "$run" eval.calibration=$CALIBRATION
    $RAYMETA baseline prune --run-dir "$run" --importance l1 --gammas=$WIDTHS --finetune-epochs 2 --finetune-budget equal
    $RAYMETA baseline slimmable --run-dir "$run"
    $RAYMETA baseline individual --config $CONFIG --run-dir "$run" --gammas=$WIDTHS --epochs 8 seed=$seed
done
for seed in $SEEDS; do
    mkdir -p "reports/fashion-full/seed$seed"
    cp runs/fashion-full/seed$seed/results/*.parquet "reports/fashion-full/seed$seed/"
done
$PYTHON reports/fashion-full/full_table.py reports/fashion-full > reports/fashion-full/table.md
$PYTHON reports/build.py fashion-full
