"""A node's HTTP calls to the hub (model versions and checkpoints), for synchronous code.

Example::

    hub = HubFiles.from_environment()          # CHARLES_HUB_URL / CHARLES_HUB_TOKEN, as the link
    status, body = hub.request("GET", "/api/models/model_0000_demo_v1")
    with hub.download("/api/models/.../checkpoints/1500/model.weights.h5") as chunks:
        for chunk in chunks: ...

The same address as the node's websocket (`ws://` -> `http://`, `wss://` ->
`https://`) and the same token. One short-lived connection per call
(`http.client`, no event loop), made from the thread that needs it (a
trainer's uploader, a driver's model loader), so a large transfer never
holds up the node's hub link. Bodies stream in both directions: memory
stays at one chunk whatever the checkpoint's size. What the calls mean is
`models.transfer`'s; the hub's side is `engine/app/model_files.py`.

`shares_hub_data(data_dir)`: whether this node writes into the hub's own
data directory (the app's children: `CHARLES_HUB_DATA_DIR`), where nothing
needs copying.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import ssl
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.core.tls import fingerprint_bytes, needs_tls, parse_fingerprint
from engine.node.client import HUB_FINGERPRINT_ENV, HUB_TOKEN_ENV, HUB_URL_ENV, NodeError

# Set by the app for the processes it starts: its data directory, which they share.
HUB_DATA_DIR_ENV = "CHARLES_HUB_DATA_DIR"
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20


class HubFiles:
    """HTTP requests to the hub with its token; see the module docstring."""

    def __init__(self, url: str, token: str, *, fingerprint: bytes | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        schemes = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
        if parts.scheme not in schemes or not parts.hostname:
            raise NodeError(
                f"hub URL {url!r} is not accepted: use ws://HOST:PORT/ws/node (or wss://)"
            )
        self.scheme = schemes[parts.scheme]
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self._token = token
        if self.scheme == "http" and needs_tls(self.host):
            raise NodeError(
                f"hub URL {url!r} is not accepted: the token would cross the network in clear; "
                "use wss:// with the hub's pinned fingerprint (charles-stream node ...)"
            )
        if self.scheme == "https" and fingerprint is None:
            raise NodeError(
                f"the hub at {url} is wss:// but no certificate fingerprint is pinned: set "
                f"{HUB_FINGERPRINT_ENV} (as for the node's link)"
            )
        self._fingerprint = fingerprint

    @classmethod
    def from_environment(cls) -> HubFiles:
        """The hub the node's link talks to (`CHARLES_HUB_URL`, `_TOKEN`, `_FINGERPRINT`)."""
        url, token = os.environ.get(HUB_URL_ENV, ""), os.environ.get(HUB_TOKEN_ENV, "")
        if not url or not token:
            raise NodeError(f"{HUB_URL_ENV} and {HUB_TOKEN_ENV} must be set to reach the hub")
        pinned = os.environ.get(HUB_FINGERPRINT_ENV, "")
        return cls(url, token, fingerprint=_digest(pinned) if pinned else None)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        chunks: Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request (a JSON body, or a streamed one); the status and the reply's JSON.

        A streamed body goes out chunked, as it is read. OSError when the hub
        cannot be reached or the connection breaks.
        """
        connection = self._connect()
        try:
            sent = {"Authorization": f"Bearer {self._token}", **(headers or {})}
            try:
                if chunks is not None:
                    connection.request(method, path, body=chunks, headers=sent, encode_chunked=True)
                elif json_body is not None:
                    sent["Content-Type"] = "application/json"
                    connection.request(method, path, body=json.dumps(json_body), headers=sent)
                else:
                    connection.request(method, path, headers=sent)
                response = connection.getresponse()
                data = response.read()
            except http.client.HTTPException as error:
                raise ConnectionError(f"{method} {path}: {error!r}") from None
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = data.decode("utf-8", "replace")[:200]
            return response.status, body
        finally:
            connection.close()

    @contextlib.contextmanager
    def download(self, path: str) -> Iterator[Iterator[bytes]]:
        """The bytes of `path` in chunks; OSError naming the status unless it is 200."""
        connection = self._connect()
        try:
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {self._token}"})
                response = connection.getresponse()
            except http.client.HTTPException as error:
                raise ConnectionError(f"GET {path}: {error!r}") from None
            if response.status != 200:
                detail = response.read()[:300].decode("utf-8", "replace")
                raise FileNotFoundError(f"GET {path}: {response.status} {detail}")
            yield _chunks(response, path)
        finally:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            assert self._fingerprint is not None
            return _PinnedHTTPSConnection(self.host, self.port, self._fingerprint)
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to the hub trusted by its certificate's SHA-256 fingerprint, as the node's link is.

    The hub's certificate is self-signed, so no CA vouches for it; the pinned
    fingerprint does, checked before a byte of the request (and the token) goes out.
    """

    def __init__(self, host: str, port: int, fingerprint: bytes) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=TIMEOUT_S, context=context)
        self._pinned = fingerprint

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).digest() != self._pinned:
            self.close()
            raise ConnectionRefusedError(
                f"the hub at {self.host}:{self.port} presents a certificate whose fingerprint "
                "is not the pinned one: refusing to send the token"
            )


def _digest(fingerprint: str) -> bytes:
    """'AB:CD:...' (or plain hex) -> the 32 bytes of a SHA-256 fingerprint; NodeError if not."""
    try:
        return fingerprint_bytes(parse_fingerprint(fingerprint))
    except ValueError as error:
        raise NodeError(f"{HUB_FINGERPRINT_ENV}: {error}") from None


def shares_hub_data(data_dir: str | Path) -> bool:
    """Whether the hub said (`CHARLES_HUB_DATA_DIR`) that its data directory is `data_dir`."""
    theirs = os.environ.get(HUB_DATA_DIR_ENV, "")
    return bool(theirs) and Path(theirs).resolve() == Path(data_dir).resolve()


def _chunks(response: http.client.HTTPResponse, path: str) -> Iterator[bytes]:
    expected = response.length
    received = 0
    try:
        while chunk := response.read(CHUNK_BYTES):
            received += len(chunk)
            yield chunk
    except http.client.HTTPException as error:
        raise ConnectionError(f"GET {path}: {error!r}") from None
    if expected is not None and received < expected:
        raise ConnectionError(f"GET {path}: ended after {received} bytes")
