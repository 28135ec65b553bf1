"""A run's folder and the one way raymeta writes a file: atomically (a temporary name in the same folder, then
a rename), so that a reader, or a run killed mid-write, sees the old file or the new one, never half of one.

A folder may be local (a path) or on object storage (a URI such as ``s3://bucket/runs/x``, through ``pyarrow.fs``):
:func:`location` gives a :class:`pathlib.Path` or a :class:`StoragePath`, which has the few ``Path`` operations
raymeta uses. On object storage a file is uploaded under a temporary name and then moved to its own (a server-side
copy, so the object under the real name appears whole or not at all).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import os
import shutil
import tempfile
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from raymeta.config.schema import STORAGE_SCHEMES, Config, uri_scheme
from raymeta.errors import ConfigError, RaymetaError


class StoragePath:
    """A file or folder named by a URI on a filesystem ``pyarrow.fs`` knows (s3://, gs://, abfs://, hdfs://):
    joined with ``/``, with ``name``/``parent``, tested with ``is_file``/``is_dir``, read whole, listed with
    ``rglob``. Writes go through :func:`atomic_write`. It has no ``__fspath__``: code that would open it as a local
    file fails at once instead of writing a local folder named ``s3:``."""

    def __init__(self, uri: str):
        scheme = uri_scheme(uri)
        if scheme is None:
            raise ConfigError(f"{uri!r} is not a URI (scheme://…)")
        if scheme not in STORAGE_SCHEMES:
            raise ConfigError(
                f"{uri!r} is not allowed: object storage is one of {', '.join(f'{s}://' for s in STORAGE_SCHEMES)}"
            )
        authority, _, key = uri[len(scheme) + 3 :].partition("/")
        if not authority:
            raise ConfigError(f"{uri!r} is not allowed: the URI names no bucket (or host): {scheme}://BUCKET/…")
        self.scheme, self.authority = scheme, authority
        self.key = "/".join(part for part in key.split("/") if part)  # no empty segments: s3://b//x is s3://b/x
        self.uri = f"{scheme}://{authority}" + (f"/{self.key}" if self.key else "")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoragePath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StoragePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __truediv__(self, part: str | Path) -> StoragePath:
        return StoragePath(f"{self.uri}/{part}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def parent(self) -> StoragePath:
        return StoragePath(f"{self.scheme}://{self.authority}/{self.key.rpartition('/')[0]}")

    @property
    def filesystem(self):
        """The ``pyarrow.fs.FileSystem`` holding this path (one per bucket and credentials, reused)."""
        return _filesystem(f"{self.scheme}://{self.authority}", _credentials())[0]

    @property
    def fs_path(self) -> str:
        """The path within :attr:`filesystem` (for s3://bucket/key, ``bucket/key``)."""
        root = _filesystem(f"{self.scheme}://{self.authority}", _credentials())[1].rstrip("/")
        return f"{root}/{self.key}" if self.key else root

    def _type(self):
        try:
            return self.filesystem.get_file_info(self.fs_path).type
        except OSError as error:
            raise RaymetaError(f"cannot read {self.uri}: {error}") from None

    def exists(self) -> bool:
        return self._type() != _pyarrow_fs().FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == _pyarrow_fs().FileType.File

    def is_dir(self) -> bool:
        return self._type() == _pyarrow_fs().FileType.Directory

    def resolve(self) -> StoragePath:
        return self

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no folders to make (a key's prefix is its folder); others get one."""
        if self.scheme not in OBJECT_STORES:
            self.filesystem.create_dir(self.fs_path, recursive=parents)

    def read_bytes(self) -> bytes:
        try:
            with self.filesystem.open_input_stream(self.fs_path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.uri} does not exist") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def stat(self):
        """The file's size and modification time (``st_size``, ``st_mtime``), as ``Path.stat`` gives them."""
        info = self.filesystem.get_file_info(self.fs_path)
        if info.type == _pyarrow_fs().FileType.NotFound:
            raise FileNotFoundError(f"{self.uri} does not exist")
        return types.SimpleNamespace(st_size=info.size, st_mtime=info.mtime.timestamp() if info.mtime else 0.0)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rglob(self, pattern: str) -> Iterator[StoragePath]:
        """Files below this folder whose name matches ``pattern`` (fnmatch), at any depth."""
        yield from self._files(pattern, recursive=True)

    def glob(self, pattern: str) -> Iterator[StoragePath]:
        """Files directly in this folder whose name matches ``pattern`` (fnmatch)."""
        yield from self._files(pattern, recursive=False)

    def _files(self, pattern: str, *, recursive: bool) -> Iterator[StoragePath]:
        selector = _pyarrow_fs().FileSelector(self.fs_path, allow_not_found=True, recursive=recursive)
        root = self.fs_path.rstrip("/")
        for info in self.filesystem.get_file_info(selector):
            if info.type == _pyarrow_fs().FileType.File and fnmatch.fnmatch(info.base_name, pattern):
                yield self / info.path[len(root) + 1 :]


OBJECT_STORES = ("s3", "gs", "gcs", "abfs", "abfss")
"""Schemes whose folders are only key prefixes: nothing to create, and a file is whole once written."""


def _credentials() -> tuple:
    """What a filesystem is made from besides its URI: the environment's credentials and endpoints, so that a
    change of them (another endpoint, other keys) gets a new filesystem, not a stale one."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "AZURE_"))))


def _pyarrow_fs():
    """pyarrow.fs, imported when object storage is first used (not by every command: it takes half a second)."""
    import pyarrow.fs

    return pyarrow.fs


@functools.lru_cache(maxsize=16)
def _filesystem(root: str, credentials: tuple):
    import pyarrow

    try:
        return _pyarrow_fs().FileSystem.from_uri(root)
    except (pyarrow.ArrowNotImplementedError, pyarrow.ArrowInvalid) as error:
        raise ConfigError(f"{root}: this pyarrow cannot open it ({error})") from None
    except OSError as error:
        raise RaymetaError(f"cannot reach {root}: {error}") from None


def location(path: str | Path | StoragePath) -> Path | StoragePath:
    """A folder or file as given: a URI (scheme://…) on object storage, else a local path. A scheme that is not one
    of the storage schemes is an error, never a local folder named after it."""
    if isinstance(path, (Path, StoragePath)):
        return path
    return StoragePath(path) if uri_scheme(str(path)) is not None else Path(path)


def absolute(path: str | Path | StoragePath) -> str:
    """The path as every process (on any node) names it: a URI as given, a local path resolved."""
    found = location(path)
    return str(found if isinstance(found, StoragePath) else found.resolve())


def is_remote(path: str | Path | StoragePath) -> bool:
    return isinstance(location(path), StoragePath)


def require_local(path: str | Path | StoragePath, what: str) -> Path:
    """``path`` as a local Path, or one clear error for a URI where object storage is not supported."""
    found = location(path)
    if isinstance(found, StoragePath):
        raise ConfigError(
            f"{what} {found} is not allowed: {what} must be a local path or one every node mounts; object storage "
            "(s3://, gs://, …) is supported by raymeta run, pretrain, smooth, train, evaluate, sweep and report"
        )
    return found


def readable(path: str | Path | StoragePath):
    """What ``torch.load`` or ``pandas.read_parquet`` reads: a local path as it is, a URI's bytes in memory."""
    found = location(path)
    return io.BytesIO(found.read_bytes()) if isinstance(found, StoragePath) else found


def remove_tree(path: str | Path | StoragePath) -> None:
    """Delete a folder and everything in it, if it exists."""
    found = location(path)
    if isinstance(found, StoragePath):
        if found.exists():
            found.filesystem.delete_dir(found.fs_path)
    else:
        shutil.rmtree(found, ignore_errors=True)


def copy_file(source: str | Path, target: str | Path | StoragePath) -> Path | StoragePath:
    """Copy the local file ``source`` to ``target`` (local or on object storage), atomically."""
    return atomic_write(target, lambda temporary: shutil.copyfile(source, temporary))


def _upload(target: StoragePath, write: Callable[[Path], object]) -> StoragePath:
    """:func:`atomic_write` on object storage: the file made locally, uploaded under a hidden temporary name
    beside ``target``, then moved onto it (a server-side copy: readers of ``target`` never see part of it)."""
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    filesystem = target.filesystem
    with tempfile.TemporaryDirectory(prefix="raymeta-upload-") as folder:
        local = Path(folder) / target.name
        local.touch()  # as mkstemp leaves it for a local write: the file exists, empty
        write(local)
        try:
            with local.open("rb") as source, filesystem.open_output_stream(temporary.fs_path) as stream:
                shutil.copyfileobj(source, stream, length=8 << 20)
            filesystem.move(temporary.fs_path, target.fs_path)
        except BaseException:
            with contextlib.suppress(Exception):  # the error that led here is the one to report
                filesystem.delete_file(temporary.fs_path)
            raise
    return target


def atomic_write(path: str | Path | StoragePath, write: Callable[[Path], object]) -> Path | StoragePath:
    """Call ``write(temporary)`` to fill a temporary local file, then rename it to ``path`` (on object storage:
    upload it, then move it there)."""
    path = location(path)
    if isinstance(path, StoragePath):
        return _upload(path, write)
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


def atomic_write_text(path: str | Path | StoragePath, text: str) -> Path | StoragePath:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_config(config: Config, path: str | Path | StoragePath) -> Path | StoragePath:
    """Write ``config`` as YAML (every key, in schema order): what ``load_config`` reads back to the same config."""
    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


class RunPaths:
    """Where a run keeps its files, all under ``config.run_dir``."""

    def __init__(self, run_dir: str | Path | StoragePath):
        self.root = location(run_dir)
        self.prior = self.root / "prior.pt"
        self.smoothed = self.root / "smoothed.pt"
        self.train_checkpoint = self.root / "train" / "checkpoint.pt"
        self.results = self.root / "results"
        self.config = self.root / "config.yaml"
        self.report = self.root / "report.html"
