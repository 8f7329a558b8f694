"""Checkpoints and versions between machines, through the hub; no TensorFlow.

Example::

    files = checkpoint_files(path)              # name, size and SHA-256 of each file
    upload_checkpoint(hub, "model_0000_demo_v1", 1500, path)    # a remote trainer -> the hub
    fetch_checkpoint(hub, data_dir, "model_0000_demo_v1", 1500, files, keep=3)  # -> a driver
    sync_version(hub, data_dir, "model_0000_demo_v1", keep=3)   # record + newest checkpoint

A node whose data directory is not the hub's (a trainer on a GPU box, a
driver on another PC) keeps copies: the hub's version records (imported
under the same name, `Registry.import_version`) and checkpoints under the
same layout as a local trainer writes them (`<data_dir>/models/<version>/
batch-<N>/`), so the loaders cannot tell a copy from an original. The hub
side is `engine/app/model_files.py`; `hub` here is anything with its two
calls (`HubHttp`: `engine.node.hub_files.HubFiles` over HTTP with the hub
token).

Every hop verifies: `CheckpointReceiver` hashes each file as its bytes
arrive and compares size and SHA-256 with the sender's list (the trainer's,
carried by `Checkpointed.files`), then checks that `checkpoint.json` names
the batch and the weights' checksum; a difference is `TransferRefused` and
nothing is installed. The files are assembled in a hidden staging directory
and renamed into place after an fsync, so a transfer killed halfway (either
end, `kill -9`) leaves no checkpoint that a later load could take; its
staging directory is removed by the next save or install there.

A remote trainer also tells the hub its training periods (`send_period`),
which the hub mirrors into its registry (`Registry.mirror_period`): `models
list`, the model pages and the timeline's "continuing training" read the
hub's registry and see a version trained elsewhere as one trained here.
Its TensorBoard event files follow (`send_curves`: each file that grew, whole)
into the hub's `<data_dir>/tensorboard/<version>/`, where the model pages'
loss charts read them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec

from engine.core.errors import ModelError, ProtocolError
from engine.core.schema import Count, convert
from engine.core.wire import CheckpointFile
from models.checkpoints import (
    META_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    install_checkpoint,
    resumable_checkpoint,
    staging_path,
    weights_sha256,
)
from models.registry import VERSION_NAME, ModelVersion, Registry, TrainingPeriod, version_dir
from models.spec import ParameterCounts
from models.tensorboard_log import EVENT_FILE, tensorboard_dir

log = logging.getLogger("charles.models.transfer")

# The files of a checkpoint, in the order they travel (one upload body is them end to end).
CHECKPOINT_FILES = (WEIGHTS_FILE, META_FILE)
# Larger than any model line's checkpoint with its optimizer state (Xception: ~0.27 GB); a
# peer announcing more is refused before a byte is written.
MAX_CHECKPOINT_BYTES = 16 * 1024**3
CHUNK_BYTES = 1 << 20
# One TensorBoard event file from a remote trainer (a run's file grows ~0.25 MB an hour).
MAX_CURVE_BYTES = 256 << 20
# The upload's header that lists the files of the body (JSON: name, size, sha256 of each).
FILES_HEADER = "X-Charles-Checkpoint-Files"


class TransferError(ModelError):
    """A checkpoint or version could not be copied between this node and the hub."""


class TransferRefused(TransferError):
    """What arrived is not what the sender listed (size, checksum, metadata): nothing installed."""


class HubHttp(Protocol):
    """The hub's HTTP side as a node sees it (`engine.node.hub_files.HubFiles`).

    Both raise OSError when the hub cannot be reached or the link breaks.
    """

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        chunks: Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request; the status and the reply's JSON (None if it had none)."""
        ...

    def download(self, path: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """A file's bytes in chunks (OSError naming the status unless 200)."""
        ...


class VersionRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A version as the hub's registry has it, for a remote node's copy."""

    name: str
    line: str
    number: Annotated[int, msgspec.Meta(ge=1)]
    created: str
    spec_toml: str
    parameters: tuple[Count, Count, Count] | None = None


class CheckpointManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which checkpoint the hub holds (batch None: none yet) and its files."""

    batch: Count | None
    files: tuple[CheckpointFile, ...] = ()


class PeriodRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A remote trainer's training period (and the parameter counts it made), for the hub."""

    started: str
    start_batch: Count
    end_batch: Count
    streamed: bool
    ended: str | None = None
    parameters: tuple[Count, Count, Count] | None = None


def checkpoint_files(path: str | Path) -> tuple[CheckpointFile, ...]:
    """Name, size and SHA-256 of a checkpoint's files, as a `Checkpointed` message lists them.

    The weights' checksum is the one `checkpoint.json` records (the saver hashed
    the bytes it wrote); only the small metadata file is hashed here.
    """
    path = Path(path)
    weights = CheckpointFile(
        WEIGHTS_FILE, (path / WEIGHTS_FILE).stat().st_size, weights_sha256(path)
    )
    meta_bytes = (path / META_FILE).read_bytes()
    meta = CheckpointFile(META_FILE, len(meta_bytes), hashlib.sha256(meta_bytes).hexdigest())
    return (weights, meta)


def local_copy(directory: str | Path, batch: int, files: Sequence[CheckpointFile]) -> Path | None:
    """The checkpoint of `batch` in `directory` if it is the one `files` lists; else None.

    Cheap (sizes and the small metadata file's checksum, which holds the
    weights' checksum): a trainer and a driver sharing a data directory load
    the trainer's files where they are, as before.
    """
    path = checkpoint_path(directory, batch)
    try:
        for file in files:
            if (path / file.name).stat().st_size != file.size:
                return None
            if (
                file.name == META_FILE
                and hashlib.sha256((path / META_FILE).read_bytes()).hexdigest() != file.sha256
            ):
                return None
    except OSError:
        return None
    return path if {file.name for file in files} == set(CHECKPOINT_FILES) else None


class CheckpointReceiver:
    """Writes a checkpoint's files as their bytes arrive, verifies them, installs them atomically.

    `write` takes the files' bytes end to end in the listed order, in chunks
    of any size; `finish` checks every size and SHA-256 and the metadata, then
    renames the staging directory into place; `abort` (or any failure) removes
    it. Not thread-safe: one caller at a time.
    """

    def __init__(
        self, directory: str | Path, batch: int, files: Sequence[CheckpointFile], *, keep: int
    ) -> None:
        check_files(files)
        self.batch = batch
        self.files = tuple(files)
        self.expected = sum(file.size for file in files)
        self.received = 0
        self._keep = keep
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self.staging = staging_path(self._directory, batch, secrets.token_hex(4))
        self.staging.mkdir()
        self._index = 0
        self._left = files[0].size
        self._digest = hashlib.sha256()
        self._digests: list[str] = []
        self._file = (self.staging / files[0].name).open("wb")
        self._skip_empty()

    def write(self, data: bytes) -> None:
        """The next bytes of the body; `TransferRefused` when more arrive than were listed."""
        view = memoryview(data)
        while view:
            if self._index >= len(self.files):
                raise TransferRefused(
                    f"more than the {self.expected:,} bytes listed for batch {self.batch} arrived"
                )
            part = view[: self._left]
            self._file.write(part)
            self._digest.update(part)
            self._left -= len(part)
            self.received += len(part)
            view = view[len(part) :]
            self._skip_empty()

    def finish(self) -> Checkpoint:
        """Verify what arrived and install it; `TransferRefused` (nothing installed) if not."""
        try:
            if self._index < len(self.files):
                raise TransferRefused(
                    f"the transfer of batch {self.batch} ended after {self.received:,} of "
                    f"{self.expected:,} bytes"
                )
            for file, actual in zip(self.files, self._digests, strict=True):
                if actual != file.sha256:
                    raise TransferRefused(
                        f"{file.name} of batch {self.batch} arrived with SHA-256 {actual[:16]}..., "
                        f"the sender listed {file.sha256[:16]}...: refused"
                    )
            weights = next(file for file in self.files if file.name == WEIGHTS_FILE)
            try:
                return install_checkpoint(self.staging, self.batch, weights.sha256, keep=self._keep)
            except CheckpointError as error:
                raise TransferRefused(f"batch {self.batch} refused: {error}") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop what arrived (any time; again is harmless)."""
        self._file.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def _skip_empty(self) -> None:
        """Close finished files and open the next, passing over empty ones."""
        while self._left == 0 and self._index < len(self.files):
            self._file.close()
            self._digests.append(self._digest.hexdigest())
            self._index += 1
            if self._index < len(self.files):
                self._digest = hashlib.sha256()
                self._left = self.files[self._index].size
                self._file = (self.staging / self.files[self._index].name).open("wb")


def check_files(files: Sequence[CheckpointFile]) -> None:
    """Refuse a file list that is not one checkpoint's files, naming what is accepted."""
    names = [file.name for file in files]
    if sorted(names) != sorted(CHECKPOINT_FILES):
        raise TransferRefused(
            f"checkpoint files {names} are not accepted; accepted: exactly "
            f"{', '.join(CHECKPOINT_FILES)}"
        )
    total = sum(file.size for file in files)
    if total > MAX_CHECKPOINT_BYTES:
        raise TransferRefused(
            f"a checkpoint of {total:,} bytes is not accepted; accepted: at most "
            f"{MAX_CHECKPOINT_BYTES:,}"
        )


def read_files(path: str | Path, files: Sequence[CheckpointFile]) -> Iterator[bytes]:
    """A checkpoint's files end to end, in the listed order, in chunks (an upload's body)."""
    for file in files:
        with (Path(path) / file.name).open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk


# -- a remote node's side ------------------------------------------------------------------


def upload_checkpoint(hub: HubHttp, version: str, batch: int, path: str | Path) -> bool:
    """Give the hub a checkpoint this node saved; whether bytes travelled (False: it had it).

    `TransferRefused` when the hub found the bytes different from the list
    (it logs and alerts too), `TransferError` for any other refusal, OSError
    when the link breaks.
    """
    files = checkpoint_files(path)
    where = f"/api/models/{_checked(version)}/checkpoints/{batch}"
    status, body = hub.request("GET", where)
    if status == 200 and _manifest(body).files == files:
        return False
    header = msgspec.json.encode(files).decode()
    status, body = hub.request(
        "PUT", where, chunks=read_files(path, files), headers={FILES_HEADER: header}
    )
    if status == 422:
        raise TransferRefused(f"the hub refused batch {batch} of {version}: {_error(body)}")
    if status != 200:
        raise TransferError(
            f"the hub did not take batch {batch} of {version} ({status}): {_error(body)}"
        )
    return True


def send_period(hub: HubHttp, data_dir: str | Path, version: str) -> None:
    """Tell the hub this node's newest training period of `version` (and its parameter counts)."""
    with Registry(data_dir) as registry:
        periods = registry.periods(version)
        counts = registry.version(version).parameters
    if not periods:
        return
    period = periods[-1]
    record = PeriodRecord(
        started=period.started.isoformat(),
        start_batch=period.start_batch,
        end_batch=period.end_batch,
        streamed=period.streamed,
        ended=period.ended.isoformat() if period.ended else None,
        parameters=(counts.total, counts.trainable, counts.non_trainable) if counts else None,
    )
    status, body = hub.request(
        "PUT", f"/api/models/{version}/periods", json_body=msgspec.to_builtins(record)
    )
    if status != 200:
        raise TransferError(
            f"the hub did not take a period of {version} ({status}): {_error(body)}"
        )


def send_curves(hub: HubHttp, data_dir: str | Path, version: str, sent: dict[str, int]) -> int:
    """Give the hub each TensorBoard event file of `version` that grew since `sent`; count them.

    An event file only grows, so the whole file goes and replaces the hub's
    copy (a run's file is ~0.25 MB an hour). `sent` (file name -> bytes the
    hub has) is the caller's memory across calls.
    """
    directory = tensorboard_dir(data_dir, version)
    if not directory.is_dir():
        return 0
    count = 0
    for path in sorted(directory.iterdir()):
        if not EVENT_FILE.match(path.name) or sent.get(path.name) == path.stat().st_size:
            continue
        data = path.read_bytes()
        if len(data) > MAX_CURVE_BYTES:
            log.warning(
                "%s: %d bytes, over %d: not given to the hub", path, len(data), MAX_CURVE_BYTES
            )
            continue
        status, body = hub.request(
            "PUT", f"/api/models/{_checked(version)}/curves/{path.name}", chunks=[data]
        )
        if status != 200:
            raise TransferError(
                f"the hub did not take {path.name} of {version} ({status}): {_error(body)}"
            )
        sent[path.name] = len(data)
        count += 1
    return count


def fetch_checkpoint(
    hub: HubHttp,
    data_dir: str | Path,
    version: str,
    batch: int,
    files: Sequence[CheckpointFile],
    *,
    keep: int,
) -> Path:
    """The checkpoint `files` lists, in this node's data directory: here already, or copied.

    `TransferRefused` when the hub's bytes differ from the list (nothing is
    installed: the node keeps the weights it has), OSError when the link breaks.
    """
    directory = version_dir(data_dir, _checked(version))
    here = local_copy(directory, batch, files)
    if here is not None:
        return here
    receiver = CheckpointReceiver(directory, batch, files, keep=keep)
    try:
        for file in receiver.files:
            with hub.download(f"/api/models/{version}/checkpoints/{batch}/{file.name}") as chunks:
                for chunk in chunks:
                    receiver.write(chunk)
        installed = receiver.finish()
    except BaseException:
        receiver.abort()
        raise
    log.info("copied %s batch %d from the hub (%d bytes)", version, batch, receiver.expected)
    return installed.path


def sync_version(hub: HubHttp, data_dir: str | Path, version: str, *, keep: int) -> int | None:
    """Make `version` usable here as on the hub: its record, and the hub's newest checkpoint.

    Returns the batch of the checkpoint it copied (None: this node's own
    newest is as new, or the hub has none). `UsageError` for a version the hub
    does not know; `TransferRefused`/`TransferError`/OSError as the copies fail.
    """
    status, body = hub.request("GET", f"/api/models/{_checked(version)}")
    if status != 200:
        raise TransferError(f"the hub has no version {version!r} ({status}): {_error(body)}")
    record = convert(body, VersionRecord, where="the hub's version record", error=TransferError)
    with Registry(data_dir) as registry:
        if registry.import_version(_model_version(record)):
            log.info("imported %s from the hub's registry", version)
    status, body = hub.request("GET", f"/api/models/{version}/checkpoints/latest")
    if status != 200:
        raise TransferError(
            f"the hub did not list checkpoints of {version} ({status}): {_error(body)}"
        )
    manifest = _manifest(body)
    if manifest.batch is None:
        return None
    try:
        mine = resumable_checkpoint(version_dir(data_dir, version))
    except CheckpointError:
        mine = None
    if mine is not None and mine.batch >= manifest.batch:
        return None
    fetch_checkpoint(hub, data_dir, version, manifest.batch, manifest.files, keep=keep)
    return manifest.batch


# -- the hub's side (engine/app/model_files.py) ---------------------------------------------


def version_record(data_dir: str | Path, version: str) -> VersionRecord:
    """A version of the hub's registry as a remote node imports it (`UsageError` if unknown)."""
    with Registry(data_dir) as registry:
        stored = registry.version(version)
    counts = stored.parameters
    return VersionRecord(
        name=stored.name,
        line=stored.line,
        number=stored.number,
        created=stored.created.isoformat(),
        spec_toml=stored.spec_toml,
        parameters=(counts.total, counts.trainable, counts.non_trainable) if counts else None,
    )


def checkpoint_manifest(directory: str | Path, batch: int | None) -> CheckpointManifest | None:
    """The files of a version's checkpoint of `batch` (None: its newest verified one).

    None when it has no such checkpoint; for `batch=None`, a manifest with
    batch None when it has none at all.
    """
    if batch is None:
        try:
            newest = resumable_checkpoint(directory)
        except CheckpointError:
            newest = None
        if newest is None:
            return CheckpointManifest(batch=None)
        batch = newest.batch
    path = checkpoint_path(directory, batch)
    try:
        return CheckpointManifest(batch=batch, files=checkpoint_files(path))
    except (CheckpointError, OSError):
        return None


def mirror_period(data_dir: str | Path, version: str, record: PeriodRecord) -> TrainingPeriod:
    """Record a remote trainer's period (and parameter counts) in the hub's registry."""
    period = TrainingPeriod(
        id=0,
        version=version,
        started=_when(record.started, "started"),
        ended=_when(record.ended, "ended") if record.ended else None,
        start_batch=record.start_batch,
        end_batch=record.end_batch,
        streamed=record.streamed,
    )
    with Registry(data_dir) as registry:
        mirrored = registry.mirror_period(period)
        if record.parameters is not None:
            registry.record_parameters(version, ParameterCounts(*record.parameters))
    return mirrored


def _checked(version: str) -> str:
    """A version name from a message, before it becomes a path or a URL here."""
    if not VERSION_NAME.match(version):
        raise TransferError(
            f"version {version[:60]!r} is not accepted; accepted: LINE_vN "
            "(e.g. 'model_0000_demo_v1')"
        )
    return version


def _model_version(record: VersionRecord) -> ModelVersion:
    return ModelVersion(
        name=record.name,
        line=record.line,
        number=record.number,
        created=_when(record.created, "created"),
        batches_trained=0,
        parameters=ParameterCounts(*record.parameters) if record.parameters else None,
        spec_toml=record.spec_toml,
    )


def _manifest(body: Any) -> CheckpointManifest:
    return convert(body, CheckpointManifest, where="the hub's checkpoint list", error=ProtocolError)


def _when(text: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise TransferError(
            f"{name!r} = {text[:40]!r} is not accepted; accepted: an ISO 8601 time"
        ) from None


def _error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return repr(body)[:200]
