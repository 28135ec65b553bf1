#!/usr/bin/env bash
# Issue 22's arms: the papers' recipe (--method recipe) on one block (stage3.block1) of the Fashion-MNIST
# benchmark (jobs/fashion_mnist_bench.yaml: its data, ResNet-20 and prior, shared by every arm), K = 1, test
# split; A as is, B without the regulariser, D with α starting at 0.1, E at HTTY's rates for 30 epochs, and the
# 256 × 8 INR → reports/recipe-arms/table.md (README.md beside this script says what the columns mean).
# Finished arms are skipped and an interrupted one continues: run it again after an interruption. ARMS="A E"
# trains only those; RESTART=1 trains them afresh (a checkpoint of other settings is refused without it). RECIPE_ARMS_SMOKE=1 runs every arm for one step on synthetic data (the scripts' test) and
# writes its table under the runs folder instead. From the repository root:
#   bash reports/recipe-arms/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs/recipe-arms}
ARMS=${ARMS:-"A B D E INR256x8"}
CONFIG=jobs/fashion_mnist_bench.yaml
TABLE=reports/recipe-arms/table.md
FLAGS=()
[ "${RESTART:-0}" = 1 ] && FLAGS+=(--restart)
if [ "${RECIPE_ARMS_SMOKE:-0}" = 1 ]; then
    TABLE=$RUNS/table.md
    FLAGS+=(--smoke)
fi
# Training and the table (reports/recipe-arms/arms_table.py) in one process.
$PYTHON reports/recipe-arms/arms.py "$RUNS" --config $CONFIG --only "${ARMS// /,}" --table "$TABLE" \
    ${FLAGS[@]+"${FLAGS[@]}"}
cat "$TABLE"
