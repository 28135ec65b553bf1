#!/usr/bin/env bash
# bf16 against fp32 on a short Fashion-MNIST run: for two seeds, one prior each (pretrained and smoothed once),
# trained in fp32 and in bf16 from it, evaluated on the test split. The fp32 runs of the two seeds give the
# run-to-run noise that the bf16 run's difference from fp32 is read against.
#   bash benchmarks/precision_check.sh [RUN_ROOT]      (default runs/precision; ~15 min on two cores here)
set -euo pipefail
root=${1:-runs/precision}
raymeta=${RAYMETA:-.venv/bin/raymeta}
small=(data.limit_train=2048 data.limit_test=2000 data.batch_size=32 pretrain.epochs=3
       inr.hidden_width=64 inr.depth=3 inr.fourier_frequencies=8 'train.blocks=[stage3.block1]'
       train.epochs_per_stage=3 train.configs_per_step=2 train.warmup_epochs=1
       eval.samples=1 'eval.gammas=[0.0,0.25,0.5,0.75]')
for seed in 0 1; do
  for precision in fp32 bf16; do
    dir="$root/s$seed-$precision"
    mkdir -p "$dir"
    if [ "$precision" = bf16 ]; then cp "$root/s$seed-fp32/prior.pt" "$root/s$seed-fp32/smoothed.pt" "$dir/"; fi
    /usr/bin/time -f "$dir: %e s" "$raymeta" run --workers 0 --config jobs/fashion_mnist_resnet20.yaml \
      --run-dir "$dir" seed=$seed train.precision=$precision "${small[@]}" >"$dir.log" 2>&1
    tail -n 12 "$dir.log"
  done
done
