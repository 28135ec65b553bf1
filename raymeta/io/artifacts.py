"""The checkpoints a run writes, as typed dataclasses with one ``save`` and one ``load`` each.

    PriorCheckpoint        RUN_DIR/prior.pt             the γ = 0 network with BatchNorm, and its training state
    SmoothedCheckpoint     RUN_DIR/smoothed.pt          the prior, BatchNorm folded and channels permuted
    MetamorphicCheckpoint  RUN_DIR/train/checkpoint.pt  the hypernetwork, its training state (Ray Train's too)

Every file is a ``torch.save`` of plain data (tensors, numbers, strings, lists and dicts) with its ``kind`` and
``format_version`` (the layout of that kind: each class's ``format_version``), written atomically. Loading goes
through ``torch.load(weights_only=True)`` only: a file passed between people, or kept on shared storage, that
holds anything else is refused before any of it runs.
``load`` checks the kind, the format version and the fields, and (given one) the configuration hash the file
was made with, each failure one :class:`~raymeta.errors.CheckpointError` (or ConfigError for another
configuration) naming the file.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from raymeta.errors import CheckpointError, ConfigError
from raymeta.io.files import StoragePath, atomic_write, location, readable

A = TypeVar("A", bound="Artifact")

_FORMAT_1_LOSSES = ("loss", "task", "distill", "feature", "rec", "reg", "correct")
"""The loss parts a format-1 epoch record held as top-level keys."""


@dataclass
class PretrainState:
    """Where pretraining stands: epochs done and one metrics record per epoch."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_plain(cls, value: dict) -> PretrainState:
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: v for key, v in value.items() if key in known})


@dataclass
class EpochRecord:
    """One finished epoch of hypernetwork training.

    ``stage`` is the stage's index, ``epoch`` the epoch's number within it (from 1) and ``global_epoch`` within
    the run; ``step`` the global optimiser step after it; ``seconds`` its training and monitoring time and
    ``finished`` the wall-clock time it ended. ``losses`` holds the mean over its steps of each loss part
    (``loss``, ``task``, ``distill``, ``feature``, ``rec``, ``reg``, ``correct``; see
    :mod:`raymeta.method.objective`) and ``step_losses`` each part at every step, in step order (empty in a
    record from format 1). ``monitor`` holds the monitored accuracy rows (one per γ, on the validation split)
    and ``score`` their mean over the γ inside the training pool; ``alphas``, ``rec_errors``, ``balance`` and
    ``balance_at_zero`` the health signals (:mod:`raymeta.method.health`; the last two are
    :class:`~raymeta.method.health.LossBalance`'s) of the evaluated weights.
    """

    stage: int
    epoch: int
    global_epoch: int
    step: int
    seconds: float
    finished: float
    losses: dict[str, float]
    step_losses: dict[str, list[float]] = field(default_factory=dict)
    monitor: list[dict] = field(default_factory=list)
    score: float = float("nan")
    alphas: dict[str, float] = field(default_factory=dict)
    rec_errors: dict[str, float] = field(default_factory=dict)
    balance: dict[str, float] = field(default_factory=dict)
    balance_at_zero: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The epoch's numbers, flat (what each epoch reports to Ray Train and Tune): the placement, the mean loss
        parts, ``acc@<γ>`` per monitored γ and the ``score``."""
        placement = {
            "stage": self.stage,
            "epoch": self.epoch,
            "global_epoch": self.global_epoch,
            "finished": self.finished,
            "step": self.step,
            "seconds": self.seconds,
        }
        accuracies = {f"acc@{row['gamma']:g}": row["accuracy"] for row in self.monitor}
        return {**placement, **self.losses, **accuracies, "score": self.score}

    @classmethod
    def from_plain(cls, value: dict) -> EpochRecord:
        """A record as stored: this class's fields, or format 1's flat mapping (the loss parts as keys)."""
        if "losses" not in value:
            value = {**value, "losses": {key: value[key] for key in _FORMAT_1_LOSSES if key in value}}
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: v for key, v in value.items() if key in known})


@dataclass
class TrainingState:
    """Where hypernetwork training stands: the stage, the epoch within it, the global optimiser step, and one
    :class:`EpochRecord` per finished epoch."""

    stage: int = 0
    epoch: int = 0
    step: int = 0
    history: list[EpochRecord] = field(default_factory=list)

    @classmethod
    def from_plain(cls, value: dict) -> TrainingState:
        return cls(
            stage=value.get("stage", 0),
            epoch=value.get("epoch", 0),
            step=value.get("step", 0),
            history=[EpochRecord.from_plain(record) for record in value.get("history", [])],
        )


@dataclass
class Artifact:
    """Base of the checkpoint kinds: ``kind`` names the file's kind; ``format_version`` the layout it is written
    in (``load`` reads that one and every earlier one); ``hash_field`` the field holding the hash of the
    configuration that made it (checked by ``load(..., expect_hash=...)``)."""

    kind: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    hash_field: ClassVar[str | None] = None
    _state_types: ClassVar[dict[str, type]] = {}

    def to_payload(self) -> dict:
        payload = {"format_version": self.format_version, "kind": self.kind}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            payload[item.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return payload

    def save(self, path: str | Path | StoragePath) -> Path | StoragePath:
        """Write the checkpoint so that ``path`` is either the old or the new file, never half of one."""
        payload = self.to_payload()
        return atomic_write(path, lambda temporary: torch.save(payload, temporary))

    @classmethod
    def load(cls: type[A], path: str | Path | StoragePath, *, expect_hash: str | None = None) -> A:
        """Read a checkpoint of this kind; with ``expect_hash``, refuse one made by another configuration."""
        path = location(path)
        return cls.from_payload(path, read_payload(path, cls.kind, cls.format_version), expect_hash=expect_hash)

    @classmethod
    def from_payload(cls: type[A], path: Path, payload: dict, *, expect_hash: str | None = None) -> A:
        """The checkpoint read from ``path`` as :func:`read_payload` returned it (see :meth:`load`)."""
        names = {item.name: item for item in dataclasses.fields(cls)}
        required = [
            name
            for name, item in names.items()
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in payload]
        if missing:
            raise CheckpointError(f"{cls.kind} checkpoint {path} lacks {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name in names:
            if name not in payload:
                continue
            value = payload[name]
            state_type = cls._state_types.get(name)
            if state_type is not None:
                if not isinstance(value, dict):
                    raise CheckpointError(f"{cls.kind} checkpoint {path}: {name} is not a mapping")
                value = state_type.from_plain(value)
            values[name] = value
        artifact = cls(**values)
        if expect_hash is not None and cls.hash_field is not None:
            stored = getattr(artifact, cls.hash_field)
            if stored != expect_hash:
                raise ConfigError(
                    f"the checkpoint {path} was made by another configuration ({cls.hash_field} "
                    f"{stored}, now {expect_hash}): pass --restart to overwrite it or use another "
                    f"run_dir"
                )
        return artifact


@dataclass
class PriorCheckpoint(Artifact):
    """The prior: an ordinary ResNet (with BatchNorm) at γ = 0, with what resuming its training needs."""

    kind: ClassVar[str] = "prior"
    hash_field: ClassVar[str | None] = "prior_hash"
    _state_types: ClassVar[dict[str, type]] = {"state": PretrainState}

    config: dict
    prior_hash: str
    arch: dict
    dataset: dict
    state_dict: dict
    state: PretrainState
    metrics: dict = field(default_factory=dict)
    optimizer: dict | None = None
    scheduler: dict | None = None
    rng: torch.Tensor | None = None
    done: bool = False
    batchnorm: bool = True
    source: dict | None = None
    """Where the prior's starting weights came from (``pretrain.init_from``: its value, kind, URL, repository or
    file); None for a prior trained from a random start."""

    def require_done(self, path: str | Path) -> PriorCheckpoint:
        if not self.done:
            raise CheckpointError(
                f"the prior {path} is unfinished (epoch {self.state.epoch} of "
                f"{self.config['pretrain']['epochs']}): run raymeta pretrain to finish it"
            )
        return self


@dataclass
class SmoothedCheckpoint(Artifact):
    """The prior with BatchNorm folded into its convs and its channels permuted: what the INRs learn from."""

    kind: ClassVar[str] = "smoothed"

    config: dict
    arch: dict
    dataset: dict
    state_dict: dict
    batchnorm: bool = False
    total_variation_before: float | None = None
    total_variation_after: float | None = None
    prior_metrics: dict = field(default_factory=dict)


@dataclass
class MetamorphicCheckpoint(Artifact):
    """A metamorphic network (the smoothed prior's ``state_dict`` and the network's ``net_state``) and what
    resuming its training needs. Written after every epoch by the single process, or by rank 0 into Ray
    Train's checkpoints.

    Format 2: each epoch of ``state.history`` is an :class:`EpochRecord` (with its per-step losses), and the
    run's random streams come from :func:`raymeta.seeds.derive_seed`. A format-1 checkpoint was made with other
    streams: it loads (to evaluate or export it), but an unfinished one cannot be resumed exactly
    (:meth:`load_to_resume` refuses it).
    """

    kind: ClassVar[str] = "metamorphic"
    format_version: ClassVar[int] = 2
    hash_field: ClassVar[str | None] = "config_hash"
    _state_types: ClassVar[dict[str, type]] = {"state": TrainingState}

    config: dict
    config_hash: str
    arch: dict
    dataset: dict
    state_dict: dict
    net_state: dict
    active_blocks: int
    state: TrainingState
    optimizer: dict | None = None
    ema: dict | None = None
    rng: torch.Tensor | None = None
    done: bool = False

    @property
    def train_time_s(self) -> float:
        return sum(record.seconds for record in self.state.history)

    @classmethod
    def load_to_resume(cls, path: str | Path | StoragePath, *, expect_hash: str) -> MetamorphicCheckpoint:
        """:meth:`load` for continuing the training: an unfinished checkpoint of an earlier format is refused, since
        its run drew its random numbers otherwise and could not go on as it began."""
        path = location(path)
        payload = read_payload(path, cls.kind, cls.format_version)
        written = payload["format_version"]
        if written < cls.format_version and not payload.get("done", False):
            raise CheckpointError(
                f"the training checkpoint {path} is of format {written}, made by an earlier raymeta "
                f"whose random streams differ from format {cls.format_version}'s: it cannot be "
                f"resumed exactly. Pass --restart to train this run afresh"
            )
        return cls.from_payload(path, payload, expect_hash=expect_hash)


def read_payload(path: Path | StoragePath, kind: str, newest: int = 1) -> dict:
    """The raw mapping of a raymeta checkpoint of ``kind`` in format 1 to ``newest``, read without running anything
    from the file."""
    if not path.is_file():
        raise CheckpointError(f"{kind} checkpoint {path} does not exist")
    try:
        # weights_only: tensors and plain data only. A checkpoint is passed between people and kept on shared
        # storage; unpickling anything else could run code from the file.
        payload = torch.load(readable(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(str(error))
        if reason.startswith("Unsupported global"):
            raise CheckpointError(
                f"{kind} checkpoint {path} is refused: it holds objects other than tensors and "
                f"plain data, and loading them could run code ({reason})"
            ) from None
        raise CheckpointError(f"{kind} checkpoint {path} is corrupt or not a raymeta checkpoint ({reason})") from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{kind} checkpoint {path} is corrupt or not a raymeta checkpoint ({error})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a raymeta checkpoint (it has no format_version)")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} checkpoint, expected {kind!r}")
    version = payload["format_version"]
    if not isinstance(version, int) or not 1 <= version <= newest:
        raise CheckpointError(
            f"{path} is of format version {version!r}; this raymeta reads {kind} checkpoints of format 1 to {newest}"
        )
    return payload


def _unpickler_reason(message: str) -> str:
    """The reason inside torch's long weights-only error (e.g. "Unsupported global: GLOBAL io.open …")."""
    _, found, rest = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    reason = lines[0] if lines else message.strip().splitlines()[0] if message.strip() else "unreadable"
    return reason.split(". Please use")[0]  # torch's advice to allowlist the global is not ours to give
