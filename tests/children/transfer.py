"""A node's side of a checkpoint transfer that stops halfway, for the kill -9 tests.

    python -m tests.children.transfer upload URL TOKEN VERSION BATCH CHECKPOINT_DIR
    python -m tests.children.transfer fetch URL TOKEN DATA_DIR VERSION BATCH FILES_JSON

Both use the real `HubFiles` and `models.transfer` code; after the first
chunk has gone out (upload) or been written (fetch) they print "halfway" and
wait on stdin, so the test kills them mid-transfer at a known point.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import msgspec

from engine.core.wire import CheckpointFile
from engine.node.hub_files import HubFiles
from models.transfer import FILES_HEADER, checkpoint_files, fetch_checkpoint, read_files


def _halfway() -> None:
    print("halfway", flush=True)
    sys.stdin.readline()  # the test kills this process meanwhile


class _StallingHub(HubFiles):
    """Downloads that stop after their first chunk."""

    @contextlib.contextmanager
    def download(self, path: str) -> Iterator[Iterator[bytes]]:
        with super().download(path) as chunks:

            def first_then_wait() -> Iterator[bytes]:
                for chunk in chunks:
                    yield chunk
                    _halfway()

            yield first_then_wait()


def upload(url: str, token: str, version: str, batch: str, path: str) -> None:
    files = checkpoint_files(path)

    def body() -> Iterator[bytes]:
        for number, chunk in enumerate(read_files(path, files)):
            yield chunk
            if number == 1:
                _halfway()

    HubFiles(url, token).request(
        "PUT",
        f"/api/models/{version}/checkpoints/{batch}",
        chunks=body(),
        headers={FILES_HEADER: msgspec.json.encode(files).decode()},
    )


def fetch(url: str, token: str, data_dir: str, version: str, batch: str, files: str) -> None:
    listed = msgspec.json.decode(files.encode(), type=tuple[CheckpointFile, ...])
    fetch_checkpoint(_StallingHub(url, token), data_dir, version, int(batch), listed, keep=3)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"upload": upload, "fetch": fetch}[command](*arguments)
