"""Crash-safe checkpoints of one model version: `<data_dir>/models/<version>/batch-<N>/`.

Example::

    from models.checkpoints import load_latest_checkpoint, save_checkpoint
    save_checkpoint(model, version_dir, batch=12500, keep=3)
    checkpoint = load_latest_checkpoint(model, version_dir)   # None when there is none yet
    checkpoint.batch                                           # 12500: resume counting here

A checkpoint is a directory holding `model.weights.h5` (Keras 3 weights format:
the model's weights, plus the optimizer's state when the model is compiled) and
`checkpoint.json` (batch counter, save time, SHA-256 of the weights file). The
architecture is not saved: it comes from the version's spec, so the driver loads
new weights into the model it already runs instead of rebuilding it.

Atomicity: a checkpoint is written into a hidden `.saving-*` directory, each file
fsynced, then renamed into place (a directory rename is atomic on POSIX) and the
parent fsynced. A crash or `kill -9` mid-save leaves only a hidden directory,
which loading ignores and the next save removes. Loading verifies the metadata
(a JSON object with a batch that matches the directory's name) and the checksum
before touching the model and falls back, with a warning, to the previous
checkpoint when the newest is damaged. `resumable_checkpoint` runs the same
checks without a model, so the app says the batch a trainer will really resume
from, not the newest directory's name.

This module never imports TensorFlow itself; it only calls the model it is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec

from engine.core.errors import ModelError
from engine.core.schema import Count, convert, parse_json_object

if TYPE_CHECKING:
    import keras

log = logging.getLogger("charles.models.checkpoints")

WEIGHTS_FILE = "model.weights.h5"
META_FILE = "checkpoint.json"
_NAME = re.compile(r"^batch-(\d{12})$")
_SAVING_PREFIX = ".saving-"
_REPLACED_PREFIX = ".replaced-"
# A checkpoint copied from elsewhere (the hub, a remote trainer) is assembled under this prefix.
_RECEIVING_PREFIX = ".receiving-"


class CheckpointError(ModelError):
    """Checkpoints exist, but none of them can be loaded."""


class _Damaged(Exception):
    """One checkpoint cannot be trusted (metadata or checksum); the one before it may be."""


class _Meta(msgspec.Struct, frozen=True):
    """`checkpoint.json`: what the loader trusts of a checkpoint before it touches the model.

    Unknown keys are ignored, so a newer saver's extra keys do not make a checkpoint damaged.
    """

    batch: Count
    saved_at: str
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


@dataclass(frozen=True)
class Checkpoint:
    """One saved state of a version: where it is and the batch counter it was saved at."""

    path: Path
    batch: int
    saved_at: datetime


def save_checkpoint(
    model: keras.Model, directory: str | Path, batch: int, *, keep: int
) -> Checkpoint:
    """Save `model` as the checkpoint of `batch` in `directory`, then keep only the newest `keep`.

    Saving a batch that already has a checkpoint replaces it (e.g. the shutdown
    save right after a periodic one).
    """
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    final = directory / _checkpoint_name(batch)
    staging = directory / f"{_SAVING_PREFIX}{final.name}-{os.getpid()}"
    staging.mkdir()
    model.save_weights(str(staging / WEIGHTS_FILE))
    saved_at = datetime.now(UTC)
    meta = {
        "batch": batch,
        "saved_at": saved_at.isoformat(),
        "sha256": _sha256(staging / WEIGHTS_FILE),
    }
    (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _move_into_place(staging, final, keep)
    log.info("saved checkpoint %s (batch %d)", final, batch)
    return Checkpoint(final, batch, saved_at)


def checkpoint_path(directory: str | Path, batch: int) -> Path:
    """Where the checkpoint of `batch` lives in a version's directory (whether or not it exists)."""
    return Path(directory) / _checkpoint_name(batch)


def staging_path(directory: str | Path, batch: int, tag: str) -> Path:
    """A hidden directory to assemble a checkpoint of `batch` in: loading never looks at it.

    It names this process, so `install_checkpoint` (and the next save) can tell
    one a killed process left behind from one still being written here.
    """
    return Path(directory) / f"{_RECEIVING_PREFIX}{_checkpoint_name(batch)}-{os.getpid()}-{tag}"


def install_checkpoint(staging: Path, batch: int, weights_sha256: str, *, keep: int) -> Checkpoint:
    """Move a checkpoint assembled in `staging` into place as `batch`, atomically; keep `keep`.

    Its `checkpoint.json` must name `batch` and the weights' SHA-256 (which the
    caller computed from the bytes it wrote): `CheckpointError` otherwise, and
    nothing is installed. Files are fsynced before the rename, so a crash
    leaves either the whole checkpoint or none.
    """
    try:
        meta = _read_meta(staging)
    except (_Damaged, OSError) as error:
        raise CheckpointError(f"{META_FILE} of batch {batch} is not usable: {error}") from None
    if meta.batch != batch:
        raise CheckpointError(f"{META_FILE} says batch {meta.batch}, not batch {batch}")
    if meta.sha256 != weights_sha256:
        raise CheckpointError(
            f"{META_FILE} gives {WEIGHTS_FILE} the SHA-256 {meta.sha256[:12]}..., "
            f"its bytes have {weights_sha256[:12]}..."
        )
    final = staging.parent / _checkpoint_name(batch)
    _move_into_place(staging, final, keep)
    log.info("installed checkpoint %s (batch %d)", final, batch)
    return Checkpoint(final, batch, datetime.fromisoformat(meta.saved_at))


def weights_sha256(checkpoint: str | Path) -> str:
    """The weights' SHA-256 a checkpoint's metadata records (`CheckpointError` if unreadable)."""
    try:
        return _read_meta(Path(checkpoint)).sha256
    except (_Damaged, OSError) as error:
        raise CheckpointError(f"{checkpoint}: {error}") from None


def _move_into_place(staging: Path, final: Path, keep: int) -> None:
    """fsync the files of `staging`, rename it to `final` (replacing one), prune to `keep`."""
    for path in (*sorted(staging.iterdir()), staging):
        _fsync(path)
    directory = final.parent
    if final.exists():
        # A directory cannot be renamed over a non-empty one; move the old one aside first.
        aside = directory / f"{_REPLACED_PREFIX}{final.name}-{os.getpid()}-{id(staging)}"
        final.rename(aside)
    staging.rename(final)
    _fsync(directory)
    _prune(directory, keep)
    _remove_abandoned(directory)


def load_latest_checkpoint(model: keras.Model, directory: str | Path) -> Checkpoint | None:
    """Load the newest readable checkpoint into `model`; None if `directory` has none.

    A damaged checkpoint (missing file, bad checksum, unreadable weights) is
    skipped with a warning in favour of the one before it. If every checkpoint is
    damaged this raises `CheckpointError` rather than let training restart from
    scratch and overwrite them.
    """
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        return None
    _build_optimizer(model)
    problems = []
    for checkpoint in reversed(checkpoints):
        try:
            _verify(checkpoint)
            model.load_weights(str(checkpoint.path / WEIGHTS_FILE))
        except (_Damaged, OSError, ValueError, KeyError) as error:
            problems.append(f"{checkpoint.path.name}: {error}")
            log.warning(
                "checkpoint %s is unreadable (%s); falling back to the previous one",
                checkpoint.path,
                error,
            )
            continue
        log.info("loaded checkpoint %s (batch %d)", checkpoint.path, checkpoint.batch)
        return checkpoint
    raise CheckpointError(f"{directory}: no checkpoint could be loaded; " + "; ".join(problems))


def resumable_checkpoint(directory: str | Path) -> Checkpoint | None:
    """The checkpoint `load_latest_checkpoint` would resume from, checked without a model.

    None when `directory` has no checkpoint; `CheckpointError` when it has some
    and none passes (the trainer refuses those too). The weights file is read
    for its checksum, so this costs a read of each checkpoint it checks.
    """
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        return None
    problems = []
    for checkpoint in reversed(checkpoints):
        try:
            _verify(checkpoint)
        except (_Damaged, OSError) as error:
            problems.append(f"{checkpoint.path.name}: {error}")
            continue
        return checkpoint
    raise CheckpointError(f"{directory}: no checkpoint could be loaded; " + "; ".join(problems))


def list_checkpoints(directory: str | Path) -> list[Checkpoint]:
    """The complete checkpoints in `directory`, oldest first (unverified: see `load_latest`)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    checkpoints = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            checkpoints.append(Checkpoint(path, int(match.group(1)), _saved_at(path)))
    return sorted(checkpoints, key=lambda checkpoint: checkpoint.batch)


def _verify(checkpoint: Checkpoint) -> None:
    """Raise `_Damaged` unless the metadata is sound and the weights file has its checksum.

    The checksum keeps a torn or flipped file from reaching the model.
    """
    meta = _read_meta(checkpoint.path)
    if meta.batch != checkpoint.batch:
        raise _Damaged(f"{META_FILE} says batch {meta.batch}, its name says {checkpoint.batch}")
    actual = _sha256(checkpoint.path / WEIGHTS_FILE)
    if actual != meta.sha256:
        raise _Damaged(f"{WEIGHTS_FILE} checksum {actual[:12]}... does not match {META_FILE}")


def _read_meta(path: Path) -> _Meta:
    """A checkpoint's `checkpoint.json`, validated: `_Damaged` says what is wrong (or OSError)."""
    data = (path / META_FILE).read_bytes()
    table = parse_json_object(data, where=META_FILE, error=_Damaged)
    return convert(table, _Meta, where=META_FILE, error=_Damaged)


def _build_optimizer(model: keras.Model) -> None:
    """Create a compiled model's optimizer slots, or Keras skips loading the saved ones."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)


def _prune(directory: Path, keep: int) -> None:
    for checkpoint in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(checkpoint.path)
        log.debug("removed old checkpoint %s", checkpoint.path)
    _remove_replaced(directory)


def _remove_leftovers(directory: Path) -> None:
    """Drop what an interrupted save left behind (one saver per version directory)."""
    for path in directory.iterdir():
        if path.name.startswith(_SAVING_PREFIX):
            log.warning("removing %s, left by an interrupted save", path)
            shutil.rmtree(path, ignore_errors=True)
    _remove_replaced(directory)
    _remove_abandoned(directory)


def _remove_abandoned(directory: Path) -> None:
    """Drop staging directories of copies whose process is gone (killed mid-transfer)."""
    for path in directory.iterdir():
        if path.name.startswith(_RECEIVING_PREFIX) and not _writer_alive(path.name):
            log.warning("removing %s, left by an interrupted transfer", path)
            shutil.rmtree(path, ignore_errors=True)


def _writer_alive(name: str) -> bool:
    parts = name.split("-")
    try:
        pid = int(parts[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True  # this process's own transfers clean up after themselves
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_replaced(directory: Path) -> None:
    for path in directory.iterdir():
        if path.name.startswith(_REPLACED_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


def _checkpoint_name(batch: int) -> str:
    # Zero-padded so names sort in batch order in a file browser too.
    return f"batch-{batch:012d}"


def _saved_at(path: Path) -> datetime:
    try:
        return datetime.fromisoformat(_read_meta(path).saved_at)
    except (_Damaged, OSError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or directory entry to disk, so a rename never exposes unwritten data."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
