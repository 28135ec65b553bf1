"""The checkpoints a run writes, as typed dataclasses with one ``save`` and one ``load`` each.

    PriorCheckpoint        RUN_DIR/prior.pt             the γ = 0 network with BatchNorm, and its training state
    SmoothedCheckpoint     RUN_DIR/smoothed.pt          the prior, BatchNorm folded and channels permuted
    MetamorphicCheckpoint  RUN_DIR/train/checkpoint.pt  the hypernetwork, its training state (Ray Train's too)

Every file is a ``torch.save`` of plain data (tensors, numbers, strings, lists and dicts) with its ``kind`` and
``format_version``, written atomically. Loading goes through ``torch.load(weights_only=True)`` only: a file
passed between people, or kept on shared storage, that holds anything else is refused before any of it runs.
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
from raymeta.io.files import atomic_write

FORMAT_VERSION = 1
"""Version of the file layout. 1: the fields below, as a flat mapping (unchanged since raymeta 0.1)."""

A = TypeVar("A", bound="Artifact")


@dataclass
class PretrainState:
    """Where pretraining stands: epochs done and one metrics record per epoch."""
    epoch: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainingState:
    """Where hypernetwork training stands: the stage, the epoch within it, the global optimiser step, and one
    record per finished epoch (losses, monitored accuracy, α and reconstruction errors, seconds)."""
    stage: int = 0
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class Artifact:
    """Base of the checkpoint kinds: ``kind`` names the file's kind; ``hash_field`` the field holding the hash of
    the configuration that made it (checked by ``load(..., expect_hash=...)``)."""
    kind: ClassVar[str] = ""
    hash_field: ClassVar[str | None] = None
    _state_types: ClassVar[dict[str, type]] = {}

    def to_payload(self) -> dict:
        payload = {"format_version": FORMAT_VERSION, "kind": self.kind}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            payload[item.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return payload

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint so that ``path`` is either the old or the new file, never half of one."""
        payload = self.to_payload()
        return atomic_write(path, lambda temporary: torch.save(payload, temporary))

    @classmethod
    def load(cls: type[A], path: str | Path, *, expect_hash: str | None = None) -> A:
        """Read a checkpoint of this kind; with ``expect_hash``, refuse one made by another configuration."""
        path = Path(path)
        payload = read_payload(path, cls.kind)
        names = {item.name: item for item in dataclasses.fields(cls)}
        required = [name for name, item in names.items()
                    if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
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
                known = {item.name for item in dataclasses.fields(state_type)}
                value = state_type(**{key: v for key, v in value.items() if key in known})
            values[name] = value
        artifact = cls(**values)
        if expect_hash is not None and cls.hash_field is not None:
            stored = getattr(artifact, cls.hash_field)
            if stored != expect_hash:
                raise ConfigError(f"the checkpoint {path} was made by another configuration ({cls.hash_field} "
                                  f"{stored}, now {expect_hash}): pass --restart to overwrite it or use another "
                                  f"run_dir")
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

    def require_done(self, path: str | Path) -> PriorCheckpoint:
        if not self.done:
            raise CheckpointError(f"the prior {path} is unfinished (epoch {self.state.epoch} of "
                                  f"{self.config['pretrain']['epochs']}): run raymeta pretrain to finish it")
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
    Train's checkpoints."""
    kind: ClassVar[str] = "metamorphic"
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
        return sum(record["seconds"] for record in self.state.history)


def read_payload(path: Path, kind: str) -> dict:
    """The raw mapping of a raymeta checkpoint of ``kind``, read without running anything from the file."""
    if not path.is_file():
        raise CheckpointError(f"{kind} checkpoint {path} does not exist")
    try:
        # weights_only: tensors and plain data only. A checkpoint is passed between people and kept on shared
        # storage; unpickling anything else could run code from the file.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(str(error))
        if reason.startswith("Unsupported global"):
            raise CheckpointError(f"{kind} checkpoint {path} is refused: it holds objects other than tensors and "
                                  f"plain data, and loading them could run code ({reason})") from None
        raise CheckpointError(f"{kind} checkpoint {path} is corrupt or not a raymeta checkpoint ({reason})") from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{kind} checkpoint {path} is corrupt or not a raymeta checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a raymeta checkpoint (format version {FORMAT_VERSION} expected)")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} checkpoint, expected {kind!r}")
    return payload


def _unpickler_reason(message: str) -> str:
    """The reason inside torch's long weights-only error (e.g. "Unsupported global: GLOBAL io.open …")."""
    _, found, rest = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    reason = lines[0] if lines else message.strip().splitlines()[0] if message.strip() else "unreadable"
    return reason.split(". Please use")[0]  # torch's advice to allowlist the global is not ours to give
