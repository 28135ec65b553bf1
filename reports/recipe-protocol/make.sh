#!/usr/bin/env bash
# The recipe's CPU reproduction protocol (jobs/fashion_mnist_recipe.yaml; issue 22): per seed, one prior
# (pretrained and smoothed once, shared), the papers' recipe (--method recipe) and NeuMeta (--method neumeta) on
# it, the skip floor, then the Table 1 leave-one-out rows (the sweep of tune_spaces/ablation.yaml, two trials at
# a time) → the tables under reports/recipe-protocol/seedN/{recipe,neumeta,ablation}/ and
# reports/recipe-protocol/table.md (reports/recipe-protocol/protocol_table.py: accuracy per γ against skip, the
# prior and NeuMeta; per block |α| and the accuracy with each generated block removed; α against steps; the
# leave-one-out rows).
# Everything resumes: a finished run (its report.html) or baseline is skipped, an interrupted training or sweep
# continues. SEEDS="0" runs one seed; ABLATION=0 leaves the sweep out (it repeats the recipe and NeuMeta runs'
# configurations as its first two rows, and trains five more: about seven runs' time per seed).
# From the repository root:
#   bash reports/recipe-protocol/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYMETA=${RAYMETA:-.venv/bin/raymeta}
PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1"}
ABLATION=${ABLATION:-1}
CONFIG=jobs/fashion_mnist_recipe.yaml
# Two trials at once on two cores: each trial's driver mostly waits, so it gets a sliver of a CPU.
FLAGS="--trial-cpus 0.01 --cpus-per-worker 0.99 --max-concurrent-trials 2"
for seed in $SEEDS; do
    root=runs/recipe-protocol/seed$seed
    $RAYMETA pretrain --config $CONFIG --run-dir "$root/prior" seed=$seed
    [ -f "$root/prior/smoothed.pt" ] || $RAYMETA smooth --config $CONFIG --run-dir "$root/prior" seed=$seed
    for method in recipe neumeta; do
        run=$root/$method
        mkdir -p "$run"
        for file in prior.pt smoothed.pt; do
            [ -f "$run/$file" ] || cp "$root/prior/$file" "$run/$file"
        done
        [ -f "$run/report.html" ] || $RAYMETA run --config $CONFIG --run-dir "$run" --method $method seed=$seed
    done
    compgen -G "$root/recipe/results/skip-*.parquet" > /dev/null || $RAYMETA baseline skip --run-dir "$root/recipe"
    if [ "$ABLATION" = 1 ]; then
        mkdir -p "$root/ablation"
        [ -f "$root/ablation/prior.pt" ] || cp "$root/prior/prior.pt" "$root/ablation/prior.pt"
        $RAYMETA sweep --space tune_spaces/ablation.yaml --config $CONFIG --run-dir "$root/ablation" $FLAGS \
            seed=$seed threads=1
    fi
    out=reports/recipe-protocol/seed$seed
    for method in recipe neumeta; do
        mkdir -p "$out/$method"
        cp "$root/$method"/results/*.parquet "$out/$method/"
    done
    if [ "$ABLATION" = 1 ]; then
        mkdir -p "$out/ablation"
        cp "$root"/ablation/sweeps/ablation/results/*.parquet "$out/ablation/"
    fi
done
$PYTHON reports/recipe-protocol/protocol_table.py reports/recipe-protocol --runs runs/recipe-protocol \
    > reports/recipe-protocol/table.md.tmp
mv reports/recipe-protocol/table.md.tmp reports/recipe-protocol/table.md
cat reports/recipe-protocol/table.md
