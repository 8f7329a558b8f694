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
which loading ignores and the next save removes. Loading verifies the checksum
before touching the model and falls back, with a warning, to the previous
checkpoint when the newest is damaged.

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
from typing import TYPE_CHECKING

from engine.core.errors import ModelError

if TYPE_CHECKING:
    import keras

log = logging.getLogger("charles.models.checkpoints")

WEIGHTS_FILE = "model.weights.h5"
META_FILE = "checkpoint.json"
_NAME = re.compile(r"^batch-(\d{12})$")
_SAVING_PREFIX = ".saving-"
_REPLACED_PREFIX = ".replaced-"


class CheckpointError(ModelError):
    """Checkpoints exist, but none of them can be loaded."""


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
    for path in (staging / WEIGHTS_FILE, staging / META_FILE, staging):
        _fsync(path)
    if final.exists():
        # A directory cannot be renamed over a non-empty one; move the old one aside first.
        final.rename(directory / f"{_REPLACED_PREFIX}{final.name}")
    staging.rename(final)
    _fsync(directory)
    _prune(directory, keep)
    log.info("saved checkpoint %s (batch %d)", final, batch)
    return Checkpoint(final, batch, saved_at)


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
            _load(model, checkpoint)
        except (OSError, ValueError, KeyError) as error:
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


def _load(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Verify, then load; the checksum keeps a torn or flipped file from reaching the model."""
    meta = json.loads((checkpoint.path / META_FILE).read_text(encoding="utf-8"))
    if meta.get("batch") != checkpoint.batch:
        raise ValueError(f"{META_FILE} says batch {meta.get('batch')!r}, its name says otherwise")
    actual = _sha256(checkpoint.path / WEIGHTS_FILE)
    if actual != meta.get("sha256"):
        raise ValueError(f"{WEIGHTS_FILE} checksum {actual[:12]}... does not match {META_FILE}")
    model.load_weights(str(checkpoint.path / WEIGHTS_FILE))


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


def _remove_replaced(directory: Path) -> None:
    for path in directory.iterdir():
        if path.name.startswith(_REPLACED_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


def _checkpoint_name(batch: int) -> str:
    # Zero-padded so names sort in batch order in a file browser too.
    return f"batch-{batch:012d}"


def _saved_at(path: Path) -> datetime:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        return datetime.fromisoformat(meta["saved_at"])
    except (OSError, ValueError, KeyError, TypeError):
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
