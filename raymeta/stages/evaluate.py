"""Evaluation: accuracy and loss of a generated network at every γ of a grid, as Parquet result rows."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from raymeta.config.schema import Config, method_name
from raymeta.errors import ConfigError
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.progress import Bar, Progress
from raymeta.io.results import SPLITS, result_frame, write_table
from raymeta.io.tracking import log_run_files
from raymeta.method.calibration import calibrate_many
from raymeta.method.scoring import accuracies_and_losses
from raymeta.stages.identity import calibrated_method, run_identity
from raymeta.stages.networks import TrainedNetwork, load_trained
from raymeta.stages.runtime import calibration_images, load_data, select_device


@torch.no_grad()
def evaluate_gammas(
    net,
    loader,
    device,
    gammas: list[float],
    *,
    samples: int,
    noise: float,
    seed: int,
    image_size: int,
    every_sample: bool = False,
    calibration: torch.Tensor | None = None,
) -> list[dict]:
    """One row per γ: accuracy, loss, parameters and MACs of the network generated at that γ (calibrated on the
    ``calibration`` images first when given: :mod:`raymeta.method.calibration`).

    With K = ``samples`` > 1 the K noisy weight sets are generated and averaged; K = 1 is the noise-free weights
    unless ``every_sample`` (``eval.noise: every_sample``: one noisy set). Each γ's noise comes from its own
    generator seeded with ``seed``, so a row does not depend on which other γ are evaluated with it.

    All γ are evaluated together: their weights come from shared INR passes (:meth:`generate_many`) and each batch
    of images goes through the frozen prefix once for every γ (:meth:`frozen_prefix`). The rows equal a γ-by-γ
    evaluation (``generate`` then :func:`raymeta.method.scoring.accuracy_and_loss`) up to float rounding, in much
    less time (``benchmarks/eval_time.py``; its figures in ``benchmarks/RESULTS.md``). Their common time is shared
    evenly: ``wall_time_s`` of a row is the evaluation's total over the number of γ.
    """
    if not gammas:
        return []
    net.eval()
    start = time.perf_counter()
    generators = [torch.Generator().manual_seed(seed) for _ in gammas]
    weight_sets = net.generate_many(
        gammas, samples=samples, noise=noise if samples > 1 or every_sample else 0.0, generators=generators
    )
    if calibration is not None:
        weight_sets = calibrate_many(net, weight_sets, gammas, calibration)
    models = [lambda x, weights=weights: net.forward_after_prefix(x, weights) for weights in weight_sets]
    scores = accuracies_and_losses(models, loader, device, prepare=net.frozen_prefix)
    seconds = (time.perf_counter() - start) / len(gammas)
    rows = []
    for gamma, (accuracy, loss) in zip(gammas, scores, strict=True):
        params, macs = net.params_macs(gamma, image_size)
        rows.append(
            {
                "gamma": float(gamma),
                "samples": samples,
                "accuracy": accuracy,
                "loss": loss,
                "params": params,
                "macs": macs,
                "wall_time_s": seconds,
                **({} if calibration is None else {"calibration": len(calibration)}),
            }
        )
    return rows


def evaluate_run(config, checkpoint, progress, split: str = "test") -> pd.DataFrame:
    """The final rows of a trained run: every γ of ``config.eval.gammas`` with K = ``eval.samples``, on
    ``split`` ("test", the default, or "validation"; the rows' ``split`` column says which).

    ``config`` supplies the evaluation settings and the run's identity; the network and what it was
    trained with (its data settings, so its validation split too) come from the checkpoint.
    """
    return evaluate_trained(config, load_trained(checkpoint), progress, split)


def check_split(split: str) -> str:
    """``split`` if it is one of ``SPLITS``, else a ConfigError naming it and the allowed values."""
    if split not in SPLITS:
        raise ConfigError(f"--split={split!r} is not allowed: use {' or '.join(SPLITS)}")
    return split


def evaluate_trained(
    config: Config, trained: TrainedNetwork, progress: Progress, split: str | tuple[str, ...] = "test"
) -> pd.DataFrame:
    """:func:`evaluate_run` for a checkpoint already loaded: ``trained`` is what ``load_trained`` returns.

    ``split`` may also be several splits (a sweep's trial: validation and test), evaluated in that order
    from one load of the data; the rows of each carry its name.
    """
    splits = (split,) if isinstance(split, str) else tuple(split)
    for name in splits:
        check_split(name)
    net, trained_config, checkpoint = trained
    if not checkpoint.done:
        progress("evaluate: note — the checkpoint is from an unfinished run")
    device = select_device(config)
    net.to(device)
    bundle = load_data(trained_config, augment=False)
    if "validation" in splits and bundle.validation is None:
        raise ConfigError(
            f"cannot evaluate on the validation split: the run was trained with "
            f"data.validation_fraction={trained_config.data.validation_fraction:g}, so it has none; "
            f"use --split test"
        )
    samples = config.eval.samples
    state = checkpoint.state
    identity = run_identity(
        trained_config,
        run_id=RunPaths(config.run_dir).root.name,
        dataset=bundle.info.name,
        method=calibrated_method(method_name(trained_config), config),
    )
    frames = []
    for name in splits:
        dataset = bundle.test if name == "test" else bundle.validation
        loader = make_loader(dataset, config.data.eval_batch_size, shuffle=False)
        progress(f"evaluate: {len(config.eval.gammas)} γ values, K={samples} sample(s), {len(dataset)} {name} images")
        label = f"evaluate {name}: {len(config.eval.gammas)} γ × K={samples}"
        with Bar(len(loader), label, unit="batch", progress=progress) as bar:  # each batch runs every γ × K
            rows = evaluate_gammas(
                net,
                bar.iterate(loader),
                device,
                config.eval.gammas,
                samples=samples,
                noise=trained_config.inr.coordinate_noise,
                seed=config.seed,
                image_size=bundle.info.image_size,
                every_sample=config.eval.noise == "every_sample",
                calibration=calibration_images(bundle, config.eval.calibration, config.seed),
            )
        frames.append(
            result_frame(
                rows,
                identity,
                split=name,
                stage=state.stage,
                epoch=len(state.history),
                train_time_s=checkpoint.train_time_s,
            )
        )
    return pd.concat(frames, ignore_index=True)


def format_rows(frame: pd.DataFrame) -> str:
    """A plain-text table of accuracy against γ for the terminal (the split of each row in its last column)."""
    lines = [f"{'gamma':>7} {'seen':>6} {'accuracy':>9} {'loss':>8} {'params':>9} {'MACs':>12}  split"]
    for row in frame.itertuples():
        lines.append(
            f"{row.gamma:7.3f} {('seen' if row.seen else 'unseen'):>6} {row.accuracy:9.4f} "
            f"{row.loss:8.4f} {row.params:9d} {row.macs:12d}  {row.split}"
        )
    return "\n".join(lines)


def run_evaluate(config: Config, progress: Progress, checkpoint: str | Path | None = None, split: str = "test") -> Path:
    """The evaluate stage: the trained network of ``config.run_dir`` (or ``checkpoint``) at every γ of
    ``eval.gammas`` on ``split``; prints the rows and writes them to RUN_DIR/results as Parquet."""
    check_split(split)
    paths = RunPaths(config.run_dir)
    frame = evaluate_run(config, checkpoint or paths.train_checkpoint, progress, split)
    path = write_table(frame, paths.results)
    print(format_rows(frame), flush=True)
    progress(f"evaluate: wrote {path}")
    log_run_files(config, [path], "results")
    return path
