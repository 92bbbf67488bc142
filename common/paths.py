"""Paths that are local or on a bucket (gs://, s3://, az://), for workdirs, data dirs and outputs.

    path = resolve(flag_value, what="--workdir")  # pathlib.Path (absolute) or etils.epath.Path (a URL)
    with Mirror(path) as out:                     # a local directory standing for `path`
        write files under out.local; out.push()   # uploads what changed since the last push
    local = local_copy(path)                      # a local copy of a remote file or directory

Orbax reads and writes buckets itself, so checkpoints go to the URL directly. The rest cannot:
array_record opens only local files (google/array_record#120), a bucket has no append, and
atomic renames do not exist there. So small outputs (metrics, samples, reports) are written to a
local mirror and uploaded file by file: an object on a bucket appears whole or not at all, so an
upload never half-writes a file, and a run killed between pushes loses only what it wrote since.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from etils import epath

# The URL schemes etils.epath serves, and the fsspec package each one needs.
REMOTE_SCHEMES = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs"}
CLOUD_REQUIREMENTS = "pip install -r requirements-cloud.txt"


class PathError(ValueError):
    """A path that cannot be used here; the message names it and how to fix it."""


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def resolve(path: str | os.PathLike, *, what: str = "path") -> Path | epath.Path:
    """A local path made absolute (Orbax needs absolute paths; users type relative ones), or a bucket URL."""
    text = os.fspath(path)
    if not is_remote(text):
        return Path(text).absolute()
    scheme = text.split("://", 1)[0]
    if scheme not in REMOTE_SCHEMES:
        raise PathError(f"{what} '{text}': '{scheme}://' is not a storage this code can use; "
                        f"pass a local path or a {', '.join(s + '://' for s in REMOTE_SCHEMES)} URL")
    package = REMOTE_SCHEMES[scheme]
    if importlib.util.find_spec(package) is None:
        raise PathError(f"{what} '{text}': {scheme}:// paths need the '{package}' package; {CLOUD_REQUIREMENTS}")
    return epath.Path(text)


def require_local(path: str | os.PathLike, *, what: str, instead: str) -> Path:
    """`path` for a command that handles local files only; a URL is refused in one line saying what to do `instead`."""
    if is_remote(path):
        raise PathError(f"{what} '{os.fspath(path)}' is a URL, but this command reads and writes local files only; {instead}")
    return Path(path)


def walk_files(root: Path | epath.Path) -> Iterator[epath.Path]:
    """Every file under `root`, at any depth (epath refuses '**' on buckets, where it means one RPC per level)."""
    for child in root.iterdir():
        if child.is_dir():
            yield from walk_files(child)
        else:
            yield child


def copy_tree(source: Path | epath.Path, target: Path | epath.Path, *, last: tuple[str, ...] = ()) -> None:
    """Copies every file under `source` to the same place under `target`; files named in `last` go
    after all others, so a reader that waits for them (TFDS's dataset_info.json) never sees a partial tree."""
    files = sorted(walk_files(source), key=lambda f: f.name in last)
    for file in files:
        destination = target / os.path.relpath(os.fspath(file), os.fspath(source))
        destination.parent.mkdir(parents=True, exist_ok=True)
        epath.Path(file).copy(destination, overwrite=True)


def local_copy(path: Path | epath.Path) -> Path:
    """`path` itself when local; otherwise a fresh copy (a bucket may have changed since the last
    one) in a temporary directory removed when the process exits."""
    if not is_remote(path):
        return Path(path)
    scratch = Path(tempfile.mkdtemp(prefix="remote-copy-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    local = scratch / path.name
    if path.is_dir():
        copy_tree(path, local)
    else:
        path.copy(local)
    return local


def local_source(source: str, *, what: str = "path") -> str:
    """A bucket URL as a fresh local copy; anything else (a local path, a Hugging Face hub id) as is.
    For what opens local files only: safetensors checkpoints, tokenizers."""
    return os.fspath(local_copy(resolve(source, what=what))) if is_remote(source) else source


class Mirror:
    """A local directory standing for `target`: the directory itself when local; for a URL, a
    temporary directory filled with `target`'s files and uploaded by push().

    skip: top-level names neither downloaded nor uploaded, e.g. the checkpoints Orbax writes to the
    bucket itself. fresh: top-level names the run rewrites, so uploaded but never downloaded (a
    build's TFDS mixes). last: file names uploaded after all others in a push, so a reader that
    waits for them (TFDS's dataset_info.json) never finds a partial directory.
    """

    def __init__(self, target: Path | epath.Path, *, skip: tuple[str, ...] = (), fresh: tuple[str, ...] = (),
                 last: tuple[str, ...] = ()):
        self.target = target
        self.remote = is_remote(target)
        self._skip, self._last = set(skip), set(last)
        self._pushed: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) when uploaded
        if not self.remote:
            self.local = Path(target)
            return
        self.local = Path(tempfile.mkdtemp(prefix="mirror-"))
        if target.exists():
            for file in walk_files(target):
                relative = os.path.relpath(os.fspath(file), os.fspath(target))
                if relative.split(os.sep, 1)[0] in self._skip | set(fresh):
                    continue
                (self.local / relative).parent.mkdir(parents=True, exist_ok=True)
                file.copy(self.local / relative)
                self._pushed[relative] = self._signature(self.local / relative)

    @staticmethod
    def _signature(file: Path) -> tuple[int, int]:
        stat = file.stat()
        return stat.st_size, stat.st_mtime_ns

    def published(self, local_path: str | os.PathLike) -> Path | epath.Path:
        """Where a file written under `local` lives in `target` (itself when the target is local)."""
        return self.target / os.path.relpath(local_path, self.local)

    def push(self) -> None:
        """Uploads every local file new or changed since the last push (nothing to do when local)."""
        if not self.remote:
            return
        changed = []
        for directory, _, names in os.walk(self.local):
            for name in names:
                file = Path(directory) / name
                relative = os.path.relpath(file, self.local)
                if relative.split(os.sep, 1)[0] in self._skip or name.startswith("."):
                    continue  # our atomic writers name a file in flight ".<name>.<random>"
                if self._pushed.get(relative) != self._signature(file):
                    changed.append(relative)
        for relative in sorted(changed, key=lambda r: os.path.basename(r) in self._last):
            signature = self._signature(self.local / relative)
            destination = self.target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            epath.Path(self.local / relative).copy(destination, overwrite=True)
            self._pushed[relative] = signature

    def close(self) -> None:
        """Pushes, then removes the local directory of a remote target."""
        if self.remote:
            try:
                self.push()
            finally:
                shutil.rmtree(self.local, ignore_errors=True)

    def __enter__(self) -> "Mirror":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
