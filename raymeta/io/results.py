"""The one results schema: every evaluation (metamorphic networks, baselines, Tune trials) writes rows in it.

A results table is a Parquet file of tidy rows, one per run × phase × split × stage × epoch × γ. Tables are only
ever added (a new file, written under a temporary name and renamed), never rewritten, so an interrupted
write cannot corrupt what is already there; :func:`read_tables` reads any number of them in one call and
checks every file against the schema, naming the file, the column, the type found and the type expected.
"""

from __future__ import annotations

import functools
import glob
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from raymeta.errors import RaymetaError
from raymeta.io.files import StoragePath, atomic_write, location, readable

SCHEMA: dict[str, str] = {
    "run_id": "string",
    "method": "string",
    "config_hash": "string",
    "git_commit": "string",
    "dataset": "string",
    "architecture": "string",
    "phase": "string",
    "split": "string",
    "stage": "int",
    "epoch": "int",
    "gamma": "float",
    "seen": "bool",
    "samples": "int",
    "accuracy": "float",
    "loss": "float",
    "params": "int",
    "macs": "int",
    "wall_time_s": "float",
    "train_time_s": "float",
}
"""Column → kind. ``phase`` is "final" for an evaluation of a finished model and "train" for the per-epoch
monitor rows written during training (samples = 1, stage = stage index, epoch = global epoch count);
``split`` is the data the row was measured on: "validation" (held out of the training split; the monitor
rows, and the rows a sweep chooses its best trial by) or "test" (final evaluation only);
``seen`` says whether γ lies in the metamorphic training pool; ``samples`` is K, the number of noisy
weight samples averaged; ``params``/``macs`` are those of the inference network (BatchNorm folded);
``wall_time_s`` is the time of that evaluation (an evaluation of several γ at once shares its time evenly
among their rows) and ``train_time_s`` the training time spent to reach the evaluated model (its training cost,
not counting the prior's pretraining).

Beyond these, a table may carry the :data:`OPTIONAL_COLUMNS` and prefixed columns (:data:`PREFIXES`):
``param.<name>`` (a Tune trial's parameters), and on training-monitor rows the method's health signals of
the epoch, repeated on every γ row of it: ``alpha.<block>`` (α of each active block, e.g.
``alpha.stage3.block1``) and ``rec.<tensor>`` (the relative RMS reconstruction error of each active generated
tensor at γ = 0, e.g. ``rec.stages.2.1.conv1.weight``; see :mod:`raymeta.method.health`). A block not yet active
in an epoch (incremental training), or a table written before the signals existed, has NaN there."""

RESULT_COLUMNS = list(SCHEMA)
"""The required columns, in the order every table is written."""

OPTIONAL_COLUMNS: dict[str, str] = {
    "trial_id": "string",
    "trial_status": "string",
    "latency_ms": "float",
    "measured_latency_ms": "float",
    "search_kind": "string",
    "search_status": "string",
    "budget": "string",
    "train_budget_s": "float",
    "calibration": "float",
}
"""Columns a table may carry beyond the required ones (Ray Tune trials: the trial's id, and whether it
finished, was stopped early by the scheduler or errored; an unfinished trial is evaluated at its last
checkpoint). A deployment search (``raymeta deploy``, its ``pareto.parquet``) adds: ``latency_ms`` (the
latency table's estimate for the candidate, ms), ``measured_latency_ms`` (the exported network, measured;
the chosen row only), ``search_kind`` (uniform or per_block), ``search_status`` (chosen, within budget, over
budget) and ``budget`` (e.g. ``macs<=2e+07``); its rows also carry ``gamma.<block>`` and ``width.<block>``, and
``gamma`` is NaN on a per-block row (no single γ). A baseline trained for the metamorphic run's training time
(``raymeta baseline slimmable``, and the pruning fine-tune of ``--finetune-budget equal``) carries
``train_budget_s``: the seconds it was given. An evaluation with ``eval.calibration`` carries ``calibration``: the
number of training images whose statistics calibrated each network (:mod:`raymeta.method.calibration`)."""

PARAM_PREFIX = "param."
"""Tune writes one column per tuned parameter, ``param.<name>``, of any scalar type."""

ALPHA_PREFIX = "alpha."
"""Training-monitor rows: α of each active metamorphic block, ``alpha.<block name>``, float."""

REC_PREFIX = "rec."
"""Training-monitor rows: relative reconstruction error at γ = 0 of each active generated tensor,
``rec.<tensor module path>``, float."""

BALANCE_PREFIX = "balance."
"""Training-monitor rows: the reconstruction pull over the regulariser pull at γ = 0 of each active generated
tensor at the current weights (below 1 the regulariser wins), ``balance.<tensor module path>``, float."""

BALANCE_AT_ZERO_PREFIX = "balance_at_zero."
"""Training-monitor rows: the same ratio at W = 0 (at or below 1, zero is the minimiser of reconstruction +
regulariser), ``balance_at_zero.<tensor module path>``, float."""

GAMMA_PREFIX = "gamma."
"""Deployment-search rows: the γ of each metamorphic block, ``gamma.<block name>``, float."""

WIDTH_PREFIX = "width."
"""Deployment-search rows: the hidden width of each metamorphic block, ``width.<block name>`` (a whole number,
stored as float so that tables without the column concatenate with NaN)."""

PREFIXES: dict[str, str | None] = {
    PARAM_PREFIX: None,
    ALPHA_PREFIX: "float",
    REC_PREFIX: "float",
    BALANCE_PREFIX: "float",
    BALANCE_AT_ZERO_PREFIX: "float",
    GAMMA_PREFIX: "float",
    WIDTH_PREFIX: "float",
}
"""Column-name prefix → kind of every column carrying it (None: any scalar type, kept as it is)."""

PHASES = ("final", "train")

SPLITS = ("validation", "test")
"""Values of the ``split`` column. Tables written before the column existed are read as "test" throughout:
their monitor rows too were measured on the test split."""

_DTYPES = {"string": "str", "int": "int64", "float": "float64", "bool": "bool"}


class ResultsError(RaymetaError):
    """A results table is missing, unreadable, or does not follow the results schema."""


def _kind_of(series: pd.Series) -> str:
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_integer_dtype(dtype):
        return "int"
    if ptypes.is_float_dtype(dtype):
        return "float"
    if ptypes.is_string_dtype(dtype) or (
        ptypes.is_object_dtype(dtype) and series.map(lambda v: isinstance(v, str)).all()
    ):
        return "string"
    return str(dtype)


def validate_frame(frame: pd.DataFrame, source: str | Path = "<frame>") -> pd.DataFrame:
    """Check a table against the schema; return it with canonical dtypes and column order.

    Integers are accepted where a float is expected (a lossless widening); anything else that differs is an
    error naming ``source``, the column, the type found and the type expected.
    """
    missing = [column for column in RESULT_COLUMNS if column not in frame.columns]
    if missing:
        raise ResultsError(
            f"results table {source} lacks column(s) {', '.join(missing)}; "
            f"required columns: {', '.join(RESULT_COLUMNS)}"
        )
    extra = [c for c in frame.columns if c not in SCHEMA and c not in OPTIONAL_COLUMNS and _prefix(c) is None]
    if extra:
        prefixed = ", ".join(f"{prefix}<name>" for prefix in PREFIXES)
        raise ResultsError(
            f"results table {source} has unknown column(s) {', '.join(map(str, extra))}; allowed "
            f"beyond the required ones: {', '.join(OPTIONAL_COLUMNS)} and {prefixed}"
        )
    expected = {**SCHEMA, **{c: k for c, k in OPTIONAL_COLUMNS.items() if c in frame.columns}}
    out = {}
    for column, kind in expected.items():
        series = frame[column]
        found = _kind_of(series)
        if column in OPTIONAL_COLUMNS and series.isna().all():
            found = kind  # present in some tables of a concatenation, absent (all missing) in these rows
        if found == "int" and kind == "float":
            found = "float"
        if found != kind:
            raise ResultsError(
                f"results table {source}: column {column!r} has type {found} (dtype {series.dtype}), expected {kind}"
            )
        if kind != "float" and column in SCHEMA and series.isna().any():
            raise ResultsError(
                f"results table {source}: column {column!r} has missing values; only float columns may hold NaN"
            )
        out[column] = series.astype(_DTYPES[kind])
    bad_phase = sorted(set(out["phase"]) - set(PHASES))
    if bad_phase:
        raise ResultsError(f"results table {source}: phase {bad_phase[0]!r} is not allowed: use {' or '.join(PHASES)}")
    bad_split = sorted(set(out["split"]) - set(SPLITS))
    if bad_split:
        raise ResultsError(f"results table {source}: split {bad_split[0]!r} is not allowed: use {' or '.join(SPLITS)}")
    for prefix, kind in PREFIXES.items():
        for column in sorted(c for c in frame.columns if _prefix(c) == prefix):
            series = frame[column]
            if kind is None:
                out[column] = series
                continue
            found = kind if series.isna().all() else _kind_of(series)
            if found not in (kind, "int" if kind == "float" else kind):
                raise ResultsError(
                    f"results table {source}: column {column!r} has type {found} "
                    f"(dtype {series.dtype}), expected {kind}"
                )
            out[column] = series.astype(_DTYPES[kind])
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


def _prefix(column) -> str | None:
    """The prefix of :data:`PREFIXES` that ``column`` carries, followed by a name (None: it carries none)."""
    if not isinstance(column, str):
        return None
    return next((p for p in PREFIXES if column.startswith(p) and len(column) > len(p)), None)


def is_seen(gamma: float, pool: list[float]) -> bool:
    return pool[0] - 1e-9 <= gamma <= pool[1] + 1e-9


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's short commit (asked once per process: a run's rows all carry the code it started with)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class RunIdentity:
    """Whose rows these are: the identity columns every row of one run (or one baseline network) repeats, and the
    γ pool its ``seen`` column is measured against. A record of plain values, so that the schema does not depend
    on the configuration's classes; :func:`raymeta.stages.identity.run_identity` builds one from a config."""

    run_id: str
    method: str
    config_hash: str
    dataset: str
    architecture: str
    """E.g. ``resnet20-16-32-64``: depth, then the three stage widths."""
    gamma_pool: tuple[float, float]
    """The metamorphic training pool [low, high] of γ (``train.gamma_pool``)."""

    def seen(self, gamma: float) -> bool:
        """Whether ``gamma`` lies in the training pool."""
        return is_seen(gamma, list(self.gamma_pool))


def result_frame(
    rows: list[dict],
    identity: RunIdentity,
    *,
    stage: int,
    epoch: int,
    split: str,
    phase: str = "final",
    train_time_s: float = float("nan"),
) -> pd.DataFrame:
    """Rows (gamma, samples, accuracy, loss, params, macs, wall_time_s) with the run's identity columns: the one
    builder of result rows.

    ``split`` ("validation" or "test") is the data the rows were measured on; it has no default, so that
    every writer says which. ``seen`` is ``identity.seen(gamma)``. A row's own keys win over these common ones
    (a deployment's rows carry their split, and ``seen`` of a per-block configuration, which has no single γ), and
    a row may carry the schema's optional and prefixed columns; anything else is an error of the schema.
    """
    common = {
        "run_id": identity.run_id,
        "method": identity.method,
        "config_hash": identity.config_hash,
        "git_commit": git_commit(),
        "dataset": identity.dataset,
        "architecture": identity.architecture,
        "phase": phase,
        "split": split,
        "stage": stage,
        "epoch": epoch,
        "train_time_s": float(train_time_s),
    }
    frame = pd.DataFrame(
        [{**common, "seen": identity.seen(row["gamma"]), **row} for row in rows],
        columns=list(dict.fromkeys([*RESULT_COLUMNS, *(key for row in rows for key in row)])),
    )
    return validate_frame(frame, f"rows of run {identity.run_id}")


def write_table(frame: pd.DataFrame, folder: str | Path | StoragePath, name: str | None = None) -> Path | StoragePath:
    """Validate and write a new Parquet file atomically; existing tables are never touched."""
    folder = location(folder)
    path = folder / (name or f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.parquet")
    frame = validate_frame(frame, path)
    atomic_write(path, lambda temporary: frame.to_parquet(temporary, index=False))
    return path


def table_paths(sources: list[str | Path] | str | Path | StoragePath) -> list[Path | StoragePath]:
    """Parquet files named by paths, folders (searched recursively) or glob patterns, sorted, de-duplicated. A
    file or folder may be a URI on object storage (s3://bucket/runs/x/results); glob patterns are local only.

    Hidden files (temporary names of writes in progress) are skipped.
    """
    if isinstance(sources, (str, Path, StoragePath)):
        sources = [sources]
    found: list[Path | StoragePath] = []
    for source in sources:
        text = str(source)
        where = location(source)
        if where.is_dir():
            matches = sorted(where.rglob("*.parquet"), key=lambda p: str(p).split("/"))  # as Paths sort
        elif where.is_file():
            matches = [where]
        elif isinstance(where, StoragePath):
            raise ResultsError(
                f"results table {text} does not exist (on object storage give Parquet files or folders; glob "
                "patterns are for local paths)"
            )
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise ResultsError(f"results table {text} does not exist (give Parquet files, folders or glob patterns)")
        matches = [p for p in matches if not p.name.startswith(".")]
        if not matches:
            raise ResultsError(f"{text} holds no results table (*.parquet)")
        found += matches
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def read_table(path: str | Path | StoragePath) -> pd.DataFrame:
    """One results table, validated. A table written before the ``split`` column existed gets split = "test"
    on every row (its monitor rows too were measured on the test split then)."""
    try:
        frame = pd.read_parquet(readable(path))
    except Exception as error:  # pyarrow raises several types for truncated or foreign files
        raise ResultsError(f"results table {path} is not a readable Parquet file ({error})") from None
    if "split" not in frame.columns:
        frame = frame.assign(split="test")
    return validate_frame(frame, path)


def read_tables(sources: list[str | Path] | str | Path | StoragePath) -> pd.DataFrame:
    """Every row of every table named by ``sources`` (files, folders, globs), validated, as one DataFrame."""
    frames = [read_table(path) for path in table_paths(sources)]
    return pd.concat(frames, ignore_index=True)
