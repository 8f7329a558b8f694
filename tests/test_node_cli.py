"""`charles-stream node KIND --hub HOST:PORT` (engine/node/cli.py): the token and the pin.

The cross-machine run is tests/test_several_pcs.py; here, in-process and on
loopback, what the command keeps under <data_dir>/secrets and what it refuses.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.errors import UsageError
from engine.core.tls import hub_identity
from engine.node.cli import node_token, pinned_fingerprint
from engine.node.client import HUB_TOKEN_ENV, NodeError


@pytest.mark.parametrize("hub", ["nope", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", ":8765"])
def test_a_bad_hub_address_is_refused_naming_it(capsys, hub):
    with pytest.raises(SystemExit) as exit_info:
        main(["node", "collector", "--hub", hub, "--index", "5"])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --hub: {hub!r} is not accepted; accepted: HOST:PORT" in err


def test_a_given_token_is_stored_private_and_used_thereafter(tmp_path, monkeypatch):
    monkeypatch.delenv(HUB_TOKEN_ENV, raising=False)
    given = tmp_path / "hub_token"
    given.write_text("the-token\n")
    data = tmp_path / "data"

    assert node_token(data, "10.0.0.1", 8765, given) == "the-token"
    stored = data / "secrets" / "hub-10.0.0.1-8765.token"
    assert stored.read_text() == "the-token\n"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert (data / "secrets").stat().st_mode & 0o777 == 0o700

    assert node_token(data, "10.0.0.1", 8765, None) == "the-token"  # no flag: the stored one
    monkeypatch.setenv(HUB_TOKEN_ENV, "a-new-token")
    assert node_token(data, "10.0.0.1", 8765, None) == "a-new-token"  # given anew: replaced
    assert stored.read_text() == "a-new-token\n"


def test_without_any_token_the_command_says_where_to_find_one(tmp_path, monkeypatch):
    monkeypatch.delenv(HUB_TOKEN_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="no hub token: give --token-file FILE"):
        node_token(tmp_path, "10.0.0.1", 8765, None)

    monkeypatch.setattr("sys.stdin", io.StringIO("typed-token\n"))
    assert node_token(tmp_path, "10.0.0.1", 8765, None) == "typed-token"

    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty; accepted: the hub token"):
        node_token(tmp_path, "10.0.0.1", 8765, empty)


def test_the_first_contact_pins_and_a_changed_certificate_is_refused(tmp_path):
    first = hub_identity("", "", tmp_path / "hub-a")
    second = hub_identity("", "", tmp_path / "hub-b")  # the hub made a new certificate
    data = tmp_path / "node"

    with tls_server(first.server_context()) as port:
        assert pinned_fingerprint(data, "127.0.0.1", port, None) == first.fingerprint
        pin = data / "secrets" / f"hub-127.0.0.1-{port}.fingerprint"
        assert pin.read_text().strip() == first.fingerprint
        assert pin.stat().st_mode & 0o777 == 0o600
        assert pinned_fingerprint(data, "127.0.0.1", port, None) == first.fingerprint

    with tls_server(second.server_context(), port) as port:
        with pytest.raises(NodeError) as refused:
            pinned_fingerprint(data, "127.0.0.1", port, None)
        message = str(refused.value)
        assert f"fingerprint {second.fingerprint}, but this node expects {first.fingerprint}" in (
            message
        )
        assert f"re-pin with --fingerprint {second.fingerprint}" in message

        # The operator checked the streaming PC's log line and re-pins.
        assert pinned_fingerprint(data, "127.0.0.1", port, second.fingerprint) == (
            second.fingerprint
        )
        assert pin.read_text().strip() == second.fingerprint


def test_an_unreachable_hub_is_named_with_what_to_check(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(NodeError, match=f"cannot reach the hub's TLS port at 127.0.0.1:{port}"):
        pinned_fingerprint(tmp_path, "127.0.0.1", port, None)


@contextlib.contextmanager
def tls_server(context: ssl.SSLContext, port: int = 0) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that completes handshakes and hangs up (a hub's TLS port)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError), socket.create_connection(listener.getsockname()):
            pass  # wakes accept(): closing a socket another thread accepts on would not
        thread.join(5)
        listener.close()


@pytest.mark.tf
def test_a_trainer_nodes_worker_index_reaches_the_trainer_process(tmp_path):
    """`--worker-index` goes through to the node, which checks it against the config's cluster."""
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "engine.cli", "node", "trainer", "--hub", "127.0.0.1:9"),
            *("--model", "model_0000_demo_v1", "--worker-index", "1", "--config", str(config)),
        ],
        env=os.environ | {HUB_TOKEN_ENV: "a-token", "CUDA_VISIBLE_DEVICES": ""},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--worker-index 1 is given, but 'trainer.strategy' = 'default'" in done.stderr
