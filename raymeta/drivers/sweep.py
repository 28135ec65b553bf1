"""Sweeps on Ray Tune: one Tune trial per configuration, each a distributed training run on Ray Train.

The driver trains (or reuses) the job config's prior once, then runs a Tune experiment whose function
trainable, :func:`run_trial`, builds the trial's configuration (job config + variant + sampled
parameters), trains it with :func:`raymeta.drivers.distributed.train_distributed` (a ``TorchTrainer`` whose
``TuneReportCallback`` forwards every epoch's report, so the scheduler sees ``score``, the mean validation
accuracy over the seen γ, after each epoch), evaluates the finished network on the job's γ grid on the
validation and the test split and writes the rows, with ``trial_id`` and ``param.*`` columns, to
``SWEEP_DIR/results/<trial>.parquet``. Trials the scheduler stopped early are evaluated at their last
checkpoint afterwards and marked so. The best finished trial, chosen on its validation rows only (the test
rows are reported, never used to choose), becomes ``SWEEP_DIR/best.yaml``, a complete job config, and
``SWEEP_DIR/report.html`` shows every trial. A job config without a validation split is refused.

Layout of a sweep folder (default ``RUN_DIR/sweeps/<space name>``)::

    sweep.yaml               the space and the job config this sweep was started with (resume check)
    tune/                    Ray Tune's experiment (restored when the same command runs again)
    trials/<trial>/          each trial's run folder: config.yaml, smoothed prior, checkpoints, Ray Train run
    results/<trial>.parquet  each trial's evaluation rows (phase final; split validation and test) and its
                             training-monitor rows (phase train, split validation)
    best.yaml, best/         the best trial's config, ready for ``raymeta train``/``run``, and its prior
    report.html
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml
from ray import tune

from raymeta.config.loading import config_from_dict
from raymeta.config.schema import Config, RayConfig, SweepConfig, method_name
from raymeta.drivers.distributed import ray_session, ray_storage, train_distributed
from raymeta.drivers.space import VARIANT_PARAM, SearchSpace, apply_overrides, check_search, max_total_epochs
from raymeta.errors import CheckpointError, ConfigError, RaymetaError
from raymeta.io.artifacts import EpochRecord, MetamorphicCheckpoint, SmoothedCheckpoint
from raymeta.io.files import (
    RunPaths,
    StoragePath,
    absolute,
    atomic_write,
    atomic_write_text,
    location,
    remove_tree,
    save_config,
)
from raymeta.io.progress import Progress
from raymeta.io.results import PARAM_PREFIX, is_seen, read_table, read_tables, write_table
from raymeta.io.tracking import resolve_tracking
from raymeta.stages.evaluate import evaluate_trained
from raymeta.stages.networks import load_trained
from raymeta.stages.pretrain import pretrain
from raymeta.stages.report import write_report
from raymeta.stages.smooth import smooth

METRIC, MODE = "score", "max"
"""What the scheduler and the search rank trials by: mean monitored validation accuracy over the seen γ, per
epoch."""
SELECTION_SPLIT = "validation"
"""The split a trial's final rows are ranked by (best.yaml, the trial table); test rows are only reported."""
TIME_ATTR = "global_epoch"
FINISHED, STOPPED, ERRORED = "finished", "stopped early", "errored"


def sweep_dir(config: Config, space: SearchSpace, options: SweepConfig) -> Path | StoragePath:
    """The sweep's folder, absolute (local) or a URI: every trial, on any node, names it the same."""
    return location(absolute(options.sweep_dir or RunPaths(config.run_dir).root / "sweeps" / space.name))


def effective_space(space: SearchSpace, options: SweepConfig) -> SearchSpace:
    """The space with the command line's overrides (search, scheduler, samples, concurrency) applied."""
    changes = {
        key: getattr(options, key)
        for key in ("num_samples", "search", "scheduler", "max_concurrent_trials")
        if getattr(options, key) is not None
    }
    if not changes:
        return space
    updated = dataclasses.replace(space, **changes)
    check_search(updated, f"--search={updated.search} cannot be used with {space.path}")
    return updated


def score_gammas(config: Config, options: SweepConfig) -> list[float]:
    gammas = options.score_gammas
    if gammas is None:
        gammas = [g for g in config.eval.gammas if is_seen(g, config.train.gamma_pool)] or list(config.train.gamma_pool)
    if not any(is_seen(g, config.train.gamma_pool) for g in gammas):
        raise ConfigError(
            f"--score-gammas={','.join(f'{g:g}' for g in gammas)} has no γ inside the training pool "
            f"{config.train.gamma_pool}: the score is the mean accuracy over seen γ"
        )
    return sorted(set(gammas))


def trial_config(
    base: Config, space: SearchSpace, params: dict, run_dir: Path | StoragePath, gammas: list[float]
) -> Config:
    """The job config with the trial's variant and sampled parameters, training into ``run_dir``."""
    overrides = {**space.overrides(params), "train.monitor_gammas": list(gammas)}
    return dataclasses.replace(apply_overrides(base.to_dict(), overrides), run_dir=str(run_dir))


def param_columns(space: SearchSpace, params: dict) -> dict[str, object]:
    """``param.<name>`` → the trial's value (a list, e.g. a block list, as its text: Parquet wants scalars)."""
    out = {}
    for name in space.searched_params:
        value = params.get(name)
        out[PARAM_PREFIX + name] = str(list(value)) if isinstance(value, (list, tuple)) else value
    return out


def trial_method(space: SearchSpace, params: dict, config: Config) -> str:
    """A variant's name (so the report compares the ablation rows as methods), else the config's method."""
    return str(params[VARIANT_PARAM]) if space.variants else method_name(config)


def trial_frame(
    frame: pd.DataFrame, trial_id: str, status: str, columns: dict[str, object], method: str
) -> pd.DataFrame:
    frame = frame.assign(trial_id=trial_id, trial_status=status, method=method, run_id=trial_id)
    for column, value in columns.items():
        frame[column] = [value] * len(frame)
    return frame


def check_validation_split(config: Config) -> None:
    """A sweep scores and chooses trials on the validation split: a config without one is refused."""
    if config.data.validation_fraction <= 0:
        raise ConfigError(
            f"data.validation_fraction={config.data.validation_fraction:g} is not allowed for a "
            f"sweep: trials are stopped early and the best one chosen on the validation split, so "
            f"it needs one; use a fraction in (0, 1), e.g. data.validation_fraction=0.1 (the default)"
        )


def final_score(frame: pd.DataFrame, split: str = SELECTION_SPLIT) -> float:
    """Mean final accuracy over the seen γ of a trial's rows on ``split`` (by default the validation split,
    the one trials are chosen by); NaN when the trial has no such rows."""
    final = frame[(frame["phase"] == "final") & (frame["split"] == split) & frame["seen"]]
    return float(final["accuracy"].mean()) if len(final) else float("nan")


def rank_trials(trials: list[dict]) -> list[dict]:
    """Trials best first: finished before the rest, then by ``score`` (validation) descending, then by id.

    Only ``score`` ranks; a trial's ``test_score`` is reported beside it and never consulted.
    """
    return sorted(
        trials,
        key=lambda t: (t["status"] != FINISHED, -(t["score"] if math.isfinite(t["score"]) else -1), t["trial_id"]),
    )


def best_trial(trials: list[dict]) -> dict | None:
    """The best finished trial with a finite validation score (None when there is none)."""
    finished = [t for t in rank_trials(trials) if t["status"] == FINISHED and math.isfinite(t["score"])]
    return finished[0] if finished else None


def link_prior(source_dir: Path | StoragePath, target_dir: Path | StoragePath) -> None:
    """Put the shared prior (prior.pt, smoothed.pt) into a run folder: a hard link where possible; on one object
    store, a server-side copy."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in ("prior.pt", "smoothed.pt"):
        source, target = source_dir / name, target_dir / name
        if not source.is_file():
            continue
        if isinstance(source, StoragePath) or isinstance(target, StoragePath):
            _copy_between(source, target)
            continue
        if target.is_file() and os.path.samefile(source, target):
            continue
        atomic_write(target, lambda temporary, source=source: _link_or_copy(source, temporary))


def _copy_between(source: Path | StoragePath, target: Path | StoragePath) -> None:
    """A copy where object storage is one side: within one store, server-side (the object under ``target``
    appears whole, as a move does); else through a local temporary file."""
    if isinstance(source, StoragePath) and isinstance(target, StoragePath) and source.authority == target.authority:
        source.filesystem.copy_file(source.fs_path, target.fs_path)
    else:
        atomic_write(target, lambda temporary: temporary.write_bytes(source.read_bytes()))


class TrialNames:
    """Tune's trial name and folder creator: a trial is named by a hash of its parameters (and, for a repeat of
    the same parameters, its count), and the name is its ``trial_id`` in every raymeta record. The search is
    seeded, so running the sweep again meets the same trials under the same names and each finds its files."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, trial) -> str:
        if trial.trial_id not in self.names:
            params = json.dumps(trial.config, sort_keys=True, default=repr)
            digest = hashlib.sha256(params.encode()).hexdigest()[:8]
            self.counts[digest] = self.counts.get(digest, 0) + 1
            count = self.counts[digest]
            self.names[trial.trial_id] = f"trial-{digest}" + (f"-{count}" if count > 1 else "")
        return self.names[trial.trial_id]


def _trial_results(sweep: Path | StoragePath, trial_id: str) -> tuple[Path | StoragePath, Path | StoragePath]:
    """A trial's finished table (written by the trial) and its partial one (written by the driver)."""
    return sweep / "results" / f"{trial_id}.parquet", sweep / "results" / f"{trial_id}.partial.parquet"


def _last_report(frame: pd.DataFrame, history: list[EpochRecord]) -> dict:
    """A trial's last report to Tune: its last epoch's metrics, its final validation score, done."""
    metrics = history[-1].metrics() if history else {}
    return {**metrics, "final_score": final_score(frame), "done": True}


def _link_or_copy(source: Path, temporary: Path) -> None:
    temporary.unlink()
    try:
        os.link(source, temporary)  # the prior is shared, not copied, by every trial
    except OSError:  # another file system
        shutil.copy(source, temporary)


def run_trial(params: dict, setup: dict) -> None:
    """Tune's function trainable: train one configuration on Ray Train, evaluate it, write its rows."""
    from ray.tune.integration.ray_train import TuneReportCallback

    space: SearchSpace = setup["space"]
    sweep = location(setup["sweep_dir"])
    trial_id = tune.get_context().get_trial_name()  # TrialNames: the same trial in every run of the sweep
    progress = Progress()
    run_dir = sweep / "trials" / trial_id
    config = trial_config(config_from_dict(setup["base"]), space, params, run_dir, setup["score_gammas"])
    finished, partial = _trial_results(sweep, trial_id)
    if finished.is_file():  # finished before the sweep was interrupted: report again, do not train again
        checkpoint = MetamorphicCheckpoint.load(RunPaths(run_dir).train_checkpoint)
        progress(f"sweep: trial {trial_id} finished earlier; reporting its results again")
        tune.report(_last_report(read_table(finished), checkpoint.state.history))
        return
    partial.unlink(missing_ok=True)
    link_prior(location(setup["prior_dir"]), run_dir)
    save_config(config, RunPaths(run_dir).config)
    overrides = ", ".join(f"{k}={v}" for k, v in space.overrides(params).items())
    progress(f"sweep: trial {trial_id}: {overrides}")
    # MLflow and W&B track the trial through Tune's logger callbacks (the driver's): not a second time here.
    # TensorBoard: the trial's own events, in its run folder or in a folder of its own under tensorboard_dir
    board = config.tracking.tensorboard_dir
    trial_tracking = dataclasses.replace(
        config.tracking, mlflow=False, wandb=False, tensorboard_dir=str(Path(board) / trial_id) if board else None
    )
    config = dataclasses.replace(config, ray=RayConfig(**setup["train_options"]), tracking=trial_tracking)
    checkpoint = train_distributed(config, progress=progress, callbacks=[TuneReportCallback()])
    trained = load_trained(checkpoint)
    frame = _evaluated_rows(config, trained, space, params, trial_id, FINISHED, progress)
    write_table(frame, finished.parent, name=finished.name)
    progress(
        f"sweep: trial {trial_id} finished: mean accuracy over seen γ, validation {final_score(frame):.4f} "
        f"(test {final_score(frame, 'test'):.4f}) → {finished}"
    )
    tune.report(_last_report(frame, trained.checkpoint.state.history))


def _evaluated_rows(
    config: Config, trained, space: SearchSpace, params: dict, trial_id: str, status: str, progress: Progress
) -> pd.DataFrame:
    """A trial's final evaluation rows (of ``trained``, a loaded checkpoint) on the validation split (which
    ranks it) and the test split (reported only), plus its training-monitor rows, with the trial's columns."""
    columns = param_columns(space, params)
    method = trial_method(space, params, config)
    frames = [evaluate_trained(config, trained, progress, split=(SELECTION_SPLIT, "test"))]
    monitor = RunPaths(config.run_dir).results / "train-monitor.parquet"
    if monitor.is_file():
        frames.append(read_table(monitor))
    return trial_frame(pd.concat(frames, ignore_index=True), trial_id, status, columns, method)


def ensure_prior(config: Config, progress: Progress) -> Path | StoragePath:
    """Train (or reuse) the job config's prior and smooth it; the folder every trial links its prior from."""
    paths = RunPaths(config.run_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    pretrain(config, progress)
    smoothed = None
    if paths.smoothed.is_file():
        try:
            smoothed = SmoothedCheckpoint.load(paths.smoothed)
        except CheckpointError:
            smoothed = None
    same = smoothed is not None and (
        config_from_dict(smoothed.config).prior_hash() == config.prior_hash()
        and smoothed.config["smooth"] == config.to_dict()["smooth"]
        and paths.smoothed.stat().st_mtime >= paths.prior.stat().st_mtime
    )
    if same:
        progress(f"sweep: reusing the smoothed prior {paths.smoothed}")
    else:
        smooth(config, progress)
    return paths.root.resolve()


def _check_same_sweep(folder: Path | StoragePath, space: SearchSpace, base: Config, resume: bool | None) -> bool:
    """Whether ``folder`` holds this sweep already (False: a new one). A different sweep there is an error."""
    record = folder / "sweep.yaml"
    if resume is False:
        remove_tree(folder)
        return False
    if not record.is_file():
        if resume:
            raise ConfigError(f"--resume: {folder} holds no sweep to continue (run without --resume to start one)")
        return False
    saved = yaml.safe_load(record.read_text()) or {}
    if saved.get("space") != space.fingerprint() or saved.get("config_hash") != base.hash():
        what = "search space" if saved.get("space") != space.fingerprint() else "job config"
        raise ConfigError(
            f"{folder} holds a sweep started with another {what}: use --restart to replace it, "
            f"or --sweep-dir to start this one elsewhere"
        )
    return True


def _plan_trials(options: SweepConfig, resources: dict, wanted: int | None) -> int:
    """How many trials run at once: each needs its driver's CPUs plus its workers'."""
    cpus = options.trial_cpus + options.workers * options.cpus_per_worker
    gpus = options.workers * options.gpus_per_worker
    have_cpus, have_gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    fit = math.floor(have_cpus / cpus + 1e-9)
    if gpus > 0:
        fit = min(fit, math.floor(have_gpus / gpus + 1e-9))
    if fit < 1:
        raise ConfigError(
            f"one trial needs {cpus:g} CPUs ({options.trial_cpus:g} for its driver + {options.workers} "
            f"worker(s) × {options.cpus_per_worker:g})"
            + (f" and {gpus:g} GPUs" if gpus else "")
            + f", but the Ray cluster has {have_cpus:g} CPUs and {have_gpus:g} GPUs: lower --workers, "
            f"--cpus-per-worker or --trial-cpus"
        )
    return min(fit, wanted) if wanted else fit


def _block_count(config: Config) -> int:
    from raymeta.method.models import resolve_blocks
    from raymeta.stages.runtime import model_architecture

    arch = model_architecture(config, 3, 10)
    return len(resolve_blocks(config.train.blocks, arch))


def _searcher(space: SearchSpace, concurrent: int):
    """The search algorithm, limited to ``concurrent`` trials at once (Tune ignores
    ``TuneConfig.max_concurrent_trials`` for a generator it did not build itself)."""
    if space.search == "optuna":
        try:
            import optuna  # noqa: F401
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise ConfigError(
                "search=optuna needs Optuna: pip install 'raymeta[optuna]' (or optuna), or use --search random"
            ) from None
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(OptunaSearch(seed=space.seed), max_concurrent=concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=space.seed, max_concurrent=concurrent)


def _scheduler(space: SearchSpace, max_t: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        max_t=max(max_t, space.grace_period),
        grace_period=space.grace_period,
        reduction_factor=space.reduction_factor,
    )


_DRIVER: dict = {"progress": Progress(), "total": 0, "ended": 0}
"""The running driver's progress printer and trial count. Tune pickles its callbacks into the experiment
state and restores them on resume, so the callback looks these up instead of holding them."""


class SweepProgress(tune.Callback):
    """One line per trial that ends, with the count so far (printed by the running driver)."""

    def _line(self, trial, what: str) -> None:
        _DRIVER["ended"] += 1
        score = (trial.last_result or {}).get(METRIC)
        epoch = (trial.last_result or {}).get(TIME_ATTR)
        detail = f" at epoch {epoch}, score {score:.4f}" if isinstance(score, float) and epoch else ""
        _DRIVER["progress"](
            f"sweep: trial {trial.custom_trial_name or trial.trial_id} {what}{detail} "
            f"({_DRIVER['ended']} of {_DRIVER['total']} ended in this session)"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, "ended")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "errored")


def _tracking_callbacks(base: Config, folder: Path) -> list:
    if not base.tracking.enabled():
        return []
    from raymeta.drivers.tune_tracking import tracking_callbacks  # imports the trackers' packages: only when asked

    return tracking_callbacks(base, folder)


def run_sweep(
    space: SearchSpace, base: Config, progress: Progress | None = None, *, resume: bool | None = None
) -> dict:
    """Run (or continue) a sweep as ``base.sweep`` says; returns a summary with the sweep folder, trial table
    and best config. ``resume``: None continues the sweep in the folder if there is one; True requires one;
    False starts over."""
    import ray

    options = base.sweep
    progress = progress or Progress()
    space = effective_space(space, options)
    check_validation_split(base)
    base = resolve_tracking(dataclasses.replace(base, run_dir=absolute(base.run_dir)))
    gammas = score_gammas(base, options)
    folder = sweep_dir(base, space, options)
    resuming = _check_same_sweep(folder, space, base, resume)
    prior_dir = ensure_prior(base, progress)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        folder / "sweep.yaml",
        yaml.safe_dump(
            {
                "space_file": str(space.path),
                "space": space.fingerprint(),
                "config_hash": base.hash(),
                "config": base.to_dict(),
            },
            sort_keys=False,
        ),
    )

    with ray_session(base.ray.address, progress, "sweep"):
        concurrent = _plan_trials(options, ray.cluster_resources(), space.max_concurrent_trials)
        # ASHA stops a trial whose time reaches max_t: one past the longest trial lets it evaluate itself
        max_t = space.max_t or max_total_epochs(space, base, _block_count) + 1
        total = space.trial_count()
        _DRIVER.update(progress=progress, total=total, ended=0)
        progress(
            f"sweep: {space.name}: {total} trial(s), {space.search} search, {space.scheduler} scheduler"
            + (
                f" (ASHA on {METRIC} by {TIME_ATTR}, grace {space.grace_period}, max {max_t})"
                if space.scheduler == "asha"
                else ""
            )
            + f"; {concurrent} at a time, each {options.workers} worker(s) × {options.cpus_per_worker:g} CPU"
            + (f" + {options.gpus_per_worker:g} GPU" if options.gpus_per_worker else "")
            + f" + {options.trial_cpus:g} CPU driver; score γ {', '.join(f'{g:g}' for g in gammas)}; {folder}"
        )
        train_options = {
            "workers": options.workers,
            "cpus_per_worker": options.cpus_per_worker,
            "gpus_per_worker": options.gpus_per_worker,
            "max_failures": 1,
        }
        setup = {
            "space": space,
            "base": base.to_dict(),
            "sweep_dir": str(folder),
            "prior_dir": str(prior_dir),
            "score_gammas": gammas,
            "train_options": train_options,
        }
        trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), {"CPU": options.trial_cpus})
        experiment = folder / "tune"
        # Continuing a sweep never restores Tune's own state (Tuner.restore unpickles it, and a crafted file in
        # the sweep folder could run code): the same seeded search runs again from the start, and each trial,
        # named by its place in the search and its parameters, picks up its own plain files (results table,
        # YAML config, weights-only checkpoint): a finished trial reports its result again, a stopped one
        # continues from its last checkpoint.
        if resuming and experiment.is_dir():
            progress(f"sweep: continuing the sweep in {folder} (finished trials are not run again)")
        remove_tree(experiment)
        names = TrialNames()
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                search_alg=_searcher(space, concurrent),
                scheduler=_scheduler(space, max_t),
                num_samples=space.num_samples,
                trial_name_creator=names,
                trial_dirname_creator=names,
            ),
            run_config=tune.RunConfig(
                name="tune",
                **ray_storage(folder),
                verbose=options.verbose,
                failure_config=tune.FailureConfig(max_failures=options.trial_retries),
                callbacks=[SweepProgress(), *_tracking_callbacks(base, folder)],
            ),
        )
        grid = tuner.fit()
        unfinished = max(total, len(grid)) - grid.num_terminated - grid.num_errors
        if unfinished:  # Ctrl-C: Tune saved the experiment and returned early
            raise RaymetaError(
                f"the sweep stopped with {unfinished} of {max(total, len(grid))} trial(s) unfinished; run the "
                f"same command again to continue it ({folder})"
            )
        return collect(grid, space, base, folder, gammas, progress)


def collect(
    grid, space: SearchSpace, base: Config, folder: Path | StoragePath, gammas: list[float], progress: Progress
) -> dict:
    """After Tune: evaluate stopped trials, pick the best finished one, write best.yaml and the report."""
    trials = []
    for result in grid:
        trial_id = Path(result.path).name
        params = result.config or {}
        finished, partial = _trial_results(folder, trial_id)
        run_dir = folder / "trials" / trial_id
        checkpoint = RunPaths(run_dir).train_checkpoint
        status = FINISHED if finished.is_file() else (ERRORED if result.error else STOPPED)
        if status != FINISHED and checkpoint.is_file() and not partial.is_file():
            config = trial_config(base, space, params, run_dir, gammas)
            trained = load_trained(checkpoint)
            if trained.checkpoint.done:  # trained to the end; stopped before its own evaluation (e.g. at max_t)
                status = FINISHED
            progress(f"sweep: evaluating trial {trial_id} ({status}) at its last checkpoint")
            frame = _evaluated_rows(config, trained, space, params, trial_id, status, Progress(stream=_devnull()))
            target = finished if status == FINISHED else partial
            write_table(frame, target.parent, name=target.name)
        table = finished if finished.is_file() else (partial if partial.is_file() else None)
        frame = read_table(table) if table else None
        epochs = int(frame.loc[frame["phase"] == "final", "epoch"].max()) if frame is not None else 0
        nan = float("nan")
        trials.append(
            {
                "trial_id": trial_id,
                "status": status,
                "params": params,
                "epochs": epochs,
                "score": final_score(frame) if frame is not None else nan,
                "test_score": final_score(frame, "test") if frame is not None else nan,
                "error": _error_line(result.error),
            }
        )
    trials = rank_trials(trials)
    _print_trials(trials, space, progress)
    best = best_trial(trials)
    if best is None:
        errors = "; ".join(f"{t['trial_id']}: {t['error']}" for t in trials if t["error"])
        raise RaymetaError(
            f"no trial of the sweep finished{(': ' + errors) if errors else ''} "
            f"(run the same command again to retry; the trials' logs are under {folder / 'tune'})"
        )
    best_path = write_best(base, space, best, folder, gammas)
    progress(
        f"sweep: best trial {best['trial_id']} (mean validation accuracy over seen γ {best['score']:.4f}; "
        f"test {best['test_score']:.4f}, not used to choose) → {best_path}"
    )
    report = None
    results = folder / "results"
    if results.is_dir() and any(results.glob("*.parquet")):
        report = write_report(read_tables(results), folder / "report.html", title=f"raymeta sweep {space.name}")
        progress(f"sweep: report {report}")
    errored = [t for t in trials if t["status"] == ERRORED]
    if errored:
        reasons = "".join(f"\n  {t['trial_id']}: {t['error']}" for t in errored)
        progress(
            f"sweep: {len(errored)} trial(s) errored (logs under {folder / 'tune'}); run the same command "
            f"again to retry them:{reasons}"
        )
    return {"sweep_dir": folder, "trials": trials, "best": best, "best_config": best_path, "report": report}


def _error_line(error) -> str:
    """The line of a trial's (remote, chained) exception that says what went wrong."""
    if not error:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    ours = [line for line in lines if "RaymetaError" in line or "ConfigError" in line]
    return (ours or [line for line in lines if "Error" in line] or lines or [""])[-1][:500]


def _devnull():
    return open(os.devnull, "w")


def _print_trials(trials: list[dict], space: SearchSpace, progress: Progress) -> None:
    """The ranked trial table: status, epochs, validation score (the ranking), test score, parameters."""
    names = space.searched_params
    head = f"{'trial':<14} {'status':<14} {'epochs':>6} {'score':>7} {'test':>7}  " + "  ".join(names)
    lines = [head]
    for t in trials:
        values = "  ".join(_short(t["params"].get(name)) for name in names)
        score, test = (
            f"{t[key]:.4f}" if math.isfinite(t.get(key, float("nan"))) else "–" for key in ("score", "test_score")
        )
        lines.append(f"{t['trial_id']:<14} {t['status']:<14} {t['epochs']:>6} {score:>7} {test:>7}  {values}")
    progress(
        "sweep: trials (score: mean validation accuracy over the seen γ of eval.gammas, which ranks the "
        "trials; test: the same on the test split, reported only)\n" + "\n".join(lines)
    )


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_best(
    base: Config, space: SearchSpace, best: dict, folder: Path | StoragePath, gammas: list[float]
) -> Path | StoragePath:
    """The best trial's full configuration as a job YAML whose run folder already holds the shared prior."""
    run_dir = folder / "best"
    config = trial_config(base, space, best["params"], run_dir, gammas)
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, monitor_gammas=base.train.monitor_gammas)
    )
    link_prior(location(base.run_dir), run_dir)
    chosen = ", ".join(f"{k}={_short(v)}" for k, v in space.overrides(best["params"]).items())
    header = (
        f"# Best trial {best['trial_id']} of sweep {space.name} ({time.strftime('%Y-%m-%d %H:%M')}): mean final\n"
        f"# validation accuracy over the seen γ {best['score']:.4f} after {best['epochs']} epochs (chosen on\n"
        f"# the validation split; test {best.get('test_score', float('nan')):.4f}, reported only).\n"
        f"# Chosen: {chosen}\n"
        f"# {run_dir} holds the sweep's prior, so training starts at once:\n"
        f"#   raymeta run --config {folder / 'best.yaml'}\n"
    )
    path = atomic_write_text(folder / "best.yaml", header + yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
