"""A run's folder and the one way raymeta writes a file: atomically (a temporary name in the same folder, then
a rename), so that a reader, or a run killed mid-write, sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from raymeta.config.schema import Config


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` to fill a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # files to share and ship: not mkstemp's private 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_config(config: Config, path: str | Path) -> Path:
    """Write ``config`` as YAML (every key, in schema order): what ``load_config`` reads back to the same config."""
    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


class RunPaths:
    """Where a run keeps its files, all under ``config.run_dir``."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)
        self.prior = self.root / "prior.pt"
        self.smoothed = self.root / "smoothed.pt"
        self.train_checkpoint = self.root / "train" / "checkpoint.pt"
        self.results = self.root / "results"
        self.config = self.root / "config.yaml"
        self.report = self.root / "report.html"
