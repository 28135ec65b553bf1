#!/usr/bin/env bash
# "Deploy to a budget" measured on the Fashion-MNIST benchmark protocol (jobs/fashion_mnist_bench.yaml, seed 0,
# metamorphic blocks stage3.block1 and stage2.block2): the uniformly trained network of reports/fashion-bench/make.sh
# (runs/fashion-bench/seed0, with its Individual and pruning rows) against one trained from the same prior with
# train.gamma_sampling=per_block; a front search over every per-block configuration of the default γ grid on each
# (validation chooses, test reported); a deployment under a latency budget. → reports/deploy-fashion/
# (fronts.md, levels4.md, the front tables under tables/; the uniform run's own rows are fashion-bench/seed0's) and
# its page (reports/build/deploy-fashion.html). From the repository root:
#   bash reports/deploy-fashion/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=jobs/fashion_mnist_bench.yaml
UNIFORM=runs/fashion-uniform
PERBLOCK=runs/fashion-perblock
if [ ! -d "$UNIFORM" ]; then
    cp -r runs/fashion-bench/seed0 "$UNIFORM"  # needs reports/fashion-bench/make.sh's seed 0 (and its baselines)
    rm -rf "$UNIFORM/ray" "$UNIFORM/deploy"
fi
mkdir -p "$PERBLOCK"
cp -n "$UNIFORM/prior.pt" "$UNIFORM/smoothed.pt" "$PERBLOCK/"
$RAYMETA run --config $CONFIG --run-dir "$PERBLOCK" --workers 0 train.gamma_sampling=per_block threads=2
$PYTHON benchmarks/deploy_search.py --run uniform=$UNIFORM --run per_block=$PERBLOCK --budget macs=1G \
    --candidates 90 --paired --markdown reports/deploy-fashion/fronts.md
$RAYMETA deploy --run-dir "$PERBLOCK" --max-latency-ms 2.3 --candidates 60
# Four metamorphic blocks (a wider MAC range: 20-35M), uniform and per-block training from the same prior, then
# deployments at three MAC budgets with 40 candidates each (the per-block space, 9^4, is searched evolutionarily)
BLOCKS='train.blocks=[stage3.block1,stage2.block2,stage2.block1,stage1.block2]'
for mode in uniform per_block; do
    run=runs/fashion4-${mode/_/}
    mkdir -p "$run" && cp -n "$UNIFORM/prior.pt" "$UNIFORM/smoothed.pt" "$run/"
    $RAYMETA run --config $CONFIG --run-dir "$run" --workers 0 "$BLOCKS" train.gamma_sampling=$mode threads=2
done
$PYTHON benchmarks/deploy_search.py --run uniform=runs/fashion4-uniform --run per_block=runs/fashion4-perblock \
    --budgets macs=22M,macs=25M,macs=28M --candidates 40 --markdown reports/deploy-fashion/levels4.md
$RAYMETA deploy --run-dir runs/fashion4-uniform --max-macs 22M --candidates 60 -o 'runs/fashion4-uniform/deploy/macs=22M-c60'
TABLES=reports/deploy-fashion/tables
mkdir -p $TABLES
cp 'runs/fashion4-uniform/deploy/macs=22M-c60/pareto.parquet' $TABLES/uniform4-macs22M.parquet
cp "$UNIFORM/deploy/front/pareto.parquet" $TABLES/uniform-front.parquet
cp "$PERBLOCK/deploy/front/pareto.parquet" $TABLES/per_block-front.parquet
cp "$PERBLOCK/deploy/latency=2.3ms/pareto.parquet" $TABLES/per_block-latency.parquet
# (The uniform run's own result tables are fashion-bench/seed0's: reports/build.py reads them from there.)
$PYTHON reports/build.py deploy-fashion
