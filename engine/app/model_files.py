"""The hub's model files: versions and checkpoints for nodes on other machines, over HTTP.

Example::

    files = ModelFiles(data_dir, token, state, keep=config.models.keep_checkpoints)
    files.add_routes(hub.app)            # before hub.start()

Routes (all need `Authorization: Bearer <hub token>`; errors are JSON
`{"error": ...}` naming the bad value and what is accepted):

- `GET /api/models/{version}`: the version's record (line, number, created,
  spec, parameter counts), which a remote node imports into its registry.
- `GET /api/models/{version}/checkpoints/latest` and `.../checkpoints/{batch}`:
  `{"batch", "files": [{"name", "size", "sha256"}]}` of the newest verified
  checkpoint (batch null: none yet) or of one batch (404 if absent).
- `GET /api/models/{version}/checkpoints/{batch}/{file}`: one file of it.
- `PUT /api/models/{version}/checkpoints/{batch}`: a remote trainer's
  checkpoint, the files end to end in the body, listed (name, size, SHA-256)
  in the `X-Charles-Checkpoint-Files` header. Written as it arrives into a
  hidden staging directory of `<data_dir>/models/<version>/`, each file
  hashed on the way, then installed atomically where a local trainer would
  have saved it (`models.transfer.CheckpointReceiver`). Bytes that differ
  from the list are refused (422), logged and alerted; a body cut short (the
  trainer killed mid-transfer) leaves nothing.
- `PUT /api/models/{version}/periods`: a remote trainer's training period,
  mirrored into the hub's registry (`models list`, the timeline).
- `PUT /api/models/{version}/curves/{file}`: one of a remote trainer's
  TensorBoard event files (`events.out.tfevents.*`, up to 256 MB), whole; it
  replaces the copy in `<data_dir>/tensorboard/<version>/` (event files only
  grow), written aside and renamed, so the model pages' loss charts never read
  half a file.

Files move on the hub's event loop only as bytes: writing, hashing, fsync
and registry writes run in worker threads, so the overlay and the node
sockets keep their pace while a checkpoint arrives.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from pathlib import Path

import msgspec
from aiohttp import web

from engine.core.auth import token_problem
from engine.core.errors import CharlesError, ProtocolError, UsageError
from engine.core.schema import convert, parse_json_object
from engine.core.store import AlertRaised, AppState
from engine.core.wire import Alert, CheckpointFile
from models.registry import VERSION_NAME, version_dir
from models.tensorboard_log import EVENT_FILE, tensorboard_dir
from models.transfer import (
    CHECKPOINT_FILES,
    CHUNK_BYTES,
    FILES_HEADER,
    MAX_CURVE_BYTES,
    CheckpointReceiver,
    PeriodRecord,
    TransferRefused,
    VersionRecord,
    checkpoint_manifest,
    mirror_period,
    version_record,
)

log = logging.getLogger("charles.model_files")

_BATCH = re.compile(r"^[0-9]{1,12}$")


class ModelFiles:
    """Serves the hub's versions and checkpoints to remote nodes and takes remote checkpoints."""

    def __init__(self, data_dir: str | Path, token: str, state: AppState, *, keep: int) -> None:
        self.data_dir = Path(data_dir)
        self.state = state
        self.keep = keep
        # Checkpoints refused on arrival (bytes unlike their list), for tests and the log.
        self.refused = 0
        # Transfers that ended without a checkpoint (cut short, refused, failed).
        self.dropped = 0
        self._token = token.encode()
        # One install per version at a time: two uploads of one version never interleave renames.
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    def add_routes(self, app: web.Application) -> None:
        """Serve the routes on the hub's application (before it starts)."""
        app.router.add_get("/api/models/{version}", self._version)
        app.router.add_get("/api/models/{version}/checkpoints/latest", self._latest)
        app.router.add_get("/api/models/{version}/checkpoints/{batch}", self._manifest)
        app.router.add_get("/api/models/{version}/checkpoints/{batch}/{file}", self._file)
        app.router.add_put("/api/models/{version}/checkpoints/{batch}", self._receive)
        app.router.add_put("/api/models/{version}/periods", self._period)
        app.router.add_put("/api/models/{version}/curves/{file}", self._curves)

    async def _version(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        return web.json_response(msgspec.to_builtins(await self._record(version)))

    async def _record(self, version: str) -> VersionRecord:
        try:
            return await asyncio.to_thread(version_record, self.data_dir, version)
        except UsageError as error:
            raise _error(404, str(error)) from None

    async def _latest(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        manifest = await asyncio.to_thread(
            checkpoint_manifest, version_dir(self.data_dir, version), None
        )
        return web.json_response(msgspec.to_builtins(manifest))

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        batch = _batch(request)
        manifest = await asyncio.to_thread(
            checkpoint_manifest, version_dir(self.data_dir, version), batch
        )
        if manifest is None:
            raise _error(404, f"the hub holds no checkpoint of {version} at batch {batch}")
        return web.json_response(msgspec.to_builtins(manifest))

    async def _file(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        batch = _batch(request)
        name = request.match_info["file"]
        if name not in CHECKPOINT_FILES:
            raise _error(
                404, f"file {name[:40]!r} is not accepted; accepted: {', '.join(CHECKPOINT_FILES)}"
            )
        manifest = await asyncio.to_thread(
            checkpoint_manifest, version_dir(self.data_dir, version), batch
        )
        if manifest is None:
            raise _error(404, f"the hub holds no checkpoint of {version} at batch {batch}")
        path = version_dir(self.data_dir, version) / f"batch-{batch:012d}" / name
        return web.FileResponse(path, chunk_size=CHUNK_BYTES)

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        batch = _batch(request)
        await self._record(version)  # a version of this hub's registry
        files = _files(request.headers.get(FILES_HEADER))
        where = f"batch {batch} of {version} from {request.remote}"
        async with self._locks[version]:
            try:
                receiver = await asyncio.to_thread(
                    CheckpointReceiver,
                    version_dir(self.data_dir, version),
                    batch,
                    files,
                    keep=self.keep,
                )
            except TransferRefused as error:
                raise _error(400, str(error)) from None
            try:
                await self._take_body(request, receiver)
                checkpoint = await asyncio.to_thread(receiver.finish)
            except TransferRefused as error:
                # finish() has dropped the partial copy; a refused write (too many bytes) has not.
                await asyncio.to_thread(receiver.abort)
                self.dropped += 1
                if receiver.received == receiver.expected:
                    self.refused += 1
                    log.error("refused checkpoint %s: %s", where, error)
                    self.state.apply(
                        AlertRaised(Alert(kind="error", text=f"checkpoint refused: {error}"))
                    )
                    raise _error(422, str(error)) from None
                log.warning("checkpoint %s not taken: %s", where, error)
                raise _error(400, str(error)) from None
            except BaseException as error:
                # Counted once the partial copy is gone: whoever reads `dropped` sees no leftover.
                await asyncio.to_thread(receiver.abort)
                self.dropped += 1
                log.warning("checkpoint %s cut short: %r", where, error)
                raise
        log.info("took checkpoint %s (%d bytes): %s", where, receiver.expected, checkpoint.path)
        return web.json_response({"stored": True, "batch": batch})

    async def _period(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        body = parse_json_object(await request.read(), where="the body", error=UsageError)
        record = convert(body, PeriodRecord, where="the period", error=UsageError)
        try:
            await asyncio.to_thread(mirror_period, self.data_dir, version, record)
        except (CharlesError, ValueError) as error:
            raise _error(400, str(error)) from None
        return web.json_response({"stored": True})

    async def _curves(self, request: web.Request) -> web.StreamResponse:
        version = self._check(request)
        name = request.match_info["file"]
        if not EVENT_FILE.match(name):
            raise _error(
                400,
                f"file {name[:60]!r} is not accepted; accepted: a TensorBoard event file "
                "(events.out.tfevents.*)",
            )
        await self._record(version)  # 404 for a version this hub does not hold
        directory = tensorboard_dir(self.data_dir, version)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        partial = directory / f".{name}.receiving"
        received = 0
        try:
            with await asyncio.to_thread(partial.open, "wb") as out:
                async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                    received += len(chunk)
                    if received > MAX_CURVE_BYTES:
                        raise _error(
                            400,
                            f"{name} is over {MAX_CURVE_BYTES} bytes; accepted: up to that",
                        )
                    await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(partial.replace, directory / name)
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        log.info("took %s of %s (%d bytes)", name, version, received)
        return web.json_response({"stored": True, "bytes": received})

    async def _take_body(self, request: web.Request, receiver: CheckpointReceiver) -> None:
        """Hand the body to the receiver in ~1 MiB pieces, written and hashed off the loop."""
        pending = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            pending += chunk
            if len(pending) >= CHUNK_BYTES:
                await asyncio.to_thread(receiver.write, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(receiver.write, bytes(pending))

    def _check(self, request: web.Request) -> str:
        """The request's version, after the token: 401, or 400 for a name of no version's shape."""
        problem = token_problem(request.headers.get("Authorization"), self._token)
        if problem is not None:
            log.warning(
                "rejected %s %s from %s: %s", request.method, request.path, request.remote, problem
            )
            raise _error(401, problem)
        version = request.match_info["version"]
        if not VERSION_NAME.match(version):
            raise _error(
                400,
                f"version {version[:60]!r} is not accepted; accepted: LINE_vN "
                "(e.g. 'model_0000_demo_v1')",
            )
        return version


class _FileList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    files: tuple[CheckpointFile, ...]


def _batch(request: web.Request) -> int:
    text = request.match_info["batch"]
    if not _BATCH.match(text):
        raise _error(
            400, f"batch {text[:40]!r} is not accepted; accepted: a whole number of 0 or more"
        )
    return int(text)


def _files(header: str | None) -> tuple[CheckpointFile, ...]:
    if header is None:
        raise _error(400, f"header {FILES_HEADER} is missing; accepted: the files' JSON list")
    try:
        data = msgspec.json.decode(header.encode())
        return convert({"files": data}, _FileList, where=FILES_HEADER, error=ProtocolError).files
    except (msgspec.DecodeError, ProtocolError) as error:
        raise _error(400, f"{FILES_HEADER}: {error}") from None


def _error(status: int, text: str) -> web.HTTPException:
    kinds = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        422: web.HTTPUnprocessableEntity,
    }
    return kinds[status](
        text=msgspec.json.encode({"error": text}).decode(), content_type="application/json"
    )
