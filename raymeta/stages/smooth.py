"""The smooth stage: fold the prior's BatchNorm into its convs and (if enabled) permute its channels so that its
weights vary slowly along the channel axes (NeuMeta's intra-network smoothing); writes RUN_DIR/smoothed.pt."""

from __future__ import annotations

from pathlib import Path

from raymeta.config.schema import Config
from raymeta.io.artifacts import PriorCheckpoint, SmoothedCheckpoint
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.method.models import fold_batchnorm
from raymeta.method.smoothing import smooth_network, total_variation
from raymeta.stages.networks import prior_network


def smooth(config: Config, progress: Progress) -> Path:
    """Fold the prior's BatchNorm into its convs and (if enabled) permute channels; save smoothed.pt."""
    paths = RunPaths(config.run_dir)
    prior = PriorCheckpoint.load(paths.prior).require_done(paths.prior)
    folded = fold_batchnorm(prior_network(prior))
    if config.smooth.enabled:
        smoothed, report = smooth_network(folded, restarts=config.smooth.restarts, seed=config.seed)
        before, after = report.total_variation_before, report.total_variation_after
        progress(
            f"smooth: {report.groups} channel groups; total variation {before:.1f} → {after:.1f} "
            f"({100 * (1 - after / before):.1f}% lower)"
        )
    else:
        smoothed, before = folded, total_variation(folded)
        after = before
        progress("smooth: permutation disabled (smooth.enabled=false); BatchNorm folded only")
    SmoothedCheckpoint(
        config=config.to_dict(),
        arch=prior.arch,
        dataset=prior.dataset,
        state_dict=smoothed.state_dict(),
        total_variation_before=before,
        total_variation_after=after,
        prior_metrics=prior.metrics,
    ).save(paths.smoothed)
    progress(f"smooth: saved {paths.smoothed}")
    return paths.smoothed
