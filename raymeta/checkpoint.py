"""Checkpoint files: written atomically (temporary name, then rename), read with clear errors."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from raymeta.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` (plus a format version) so that ``path`` is either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"format_version": FORMAT_VERSION, **payload}, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, kind: str, required: tuple[str, ...] = ()) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and check it is of the expected ``kind``."""
    path = Path(path)
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
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"{kind} checkpoint {path} lacks {', '.join(missing)}")
    return payload


def _unpickler_reason(message: str) -> str:
    """The reason inside torch's long weights-only error (e.g. "Unsupported global: GLOBAL io.open …")."""
    _, found, rest = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    reason = lines[0] if lines else message.strip().splitlines()[0] if message.strip() else "unreadable"
    return reason.split(". Please use")[0]  # torch's advice to allowlist the global is not ours to give
