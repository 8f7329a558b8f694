"""TLS for a hub beyond loopback (engine/core/tls.py) and the node's pinning of it.

Loopback only: a TLS server on 127.0.0.1 stands for the hub on another PC
(tests/test_several_pcs.py runs the real thing across namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from engine.app.hub import Hub
from engine.core.config import HubConfig
from engine.core.errors import ConfigError
from engine.core.store import AppState
from engine.core.tls import (
    HubIdentity,
    hub_identity,
    local_base_url,
    needs_tls,
    parse_fingerprint,
    peer_fingerprint,
)
from engine.core.wire import Hello
from engine.node.client import NodeClient, NodeError
from tests.hub_helpers import TOKEN, wait_until

HANG_S = 60.0


@pytest.mark.parametrize(
    ("host", "tls"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("", True),
        ("192.168.1.10", True),
        ("pc-a.lan", True),
    ],
)
def test_a_hub_serves_tls_exactly_when_it_listens_beyond_loopback(host, tls):
    assert needs_tls(host) is tls


def test_the_self_signed_certificate_is_made_once_private_and_reused(tmp_path):
    first = hub_identity("", "", tmp_path)
    again = hub_identity("", "", tmp_path)

    assert first == again  # nodes that pinned it stay valid across restarts
    assert first.key_path.stat().st_mode & 0o777 == 0o600
    assert first.key_path.parent.stat().st_mode & 0o777 == 0o700
    assert len(first.fingerprint) == 95 and first.fingerprint.count(":") == 31


def test_a_given_certificate_is_used_and_half_a_pair_is_refused(tmp_path):
    made = hub_identity("", "", tmp_path / "made")
    given = hub_identity(str(made.cert_path), str(made.key_path), tmp_path / "unused")
    assert given.fingerprint == made.fingerprint
    assert not (tmp_path / "unused").exists()

    with pytest.raises(ConfigError, match=r"'hub\.tls_cert' is set but 'hub\.tls_key' is not"):
        hub_identity(str(made.cert_path), "", tmp_path)
    with pytest.raises(ConfigError, match=r"'hub\.tls_key' = '/nowhere\.key' is not a readable"):
        hub_identity(str(made.cert_path), "/nowhere.key", tmp_path)


@pytest.mark.parametrize("text", ["abc", "zz" * 32, "AB:" * 31 + "A"])
def test_a_malformed_fingerprint_is_refused_naming_it(text):
    expected = re.escape(f"fingerprint {text!r} is not accepted; accepted: the 64")
    with pytest.raises(ValueError, match=expected):
        parse_fingerprint(text)


def test_a_fingerprint_is_read_in_any_case_with_or_without_colons():
    assert parse_fingerprint("ab" * 32) == ":".join(["AB"] * 32)
    assert parse_fingerprint(" " + ":".join(["ab"] * 32) + "\n") == ":".join(["AB"] * 32)


def test_local_consumers_of_a_tls_hub_use_its_plain_loopback_port():
    assert local_base_url("0.0.0.0", 8765, 8766) == "http://127.0.0.1:8766"
    assert local_base_url("127.0.0.1", 8765, 8766) == "http://127.0.0.1:8765"


async def test_a_node_learns_the_fingerprint_without_sending_anything(tmp_path):
    identity = hub_identity("", "", tmp_path)
    async with tls_hub(identity) as (port, _):
        seen = await asyncio.to_thread(peer_fingerprint, "127.0.0.1", port)
    assert seen == identity.fingerprint


async def test_a_node_pinned_to_another_certificate_is_refused_before_the_token_goes(tmp_path):
    identity = hub_identity("", "", tmp_path)
    pinned = ":".join(["AB"] * 32)
    async with tls_hub(identity) as (port, state):
        node = NodeClient(
            f"wss://127.0.0.1:{port}/ws/node",
            TOKEN,
            Hello(role="collector", name="collector-9"),
            fingerprint=pinned,
        )
        with pytest.raises(NodeError) as refused:
            await asyncio.to_thread(node.start, HANG_S)
        assert state.nodes == {}

    message = str(refused.value)
    assert f"fingerprint {identity.fingerprint}, but this node pinned {pinned}" in message
    assert "re-pin with charles-stream node ... --fingerprint NEW" in message


async def test_a_node_with_the_right_pin_joins_over_tls(tmp_path):
    identity = hub_identity("", "", tmp_path)
    async with tls_hub(identity) as (port, state):
        node = NodeClient(
            f"wss://127.0.0.1:{port}/ws/node",
            TOKEN,
            Hello(role="collector", name="collector-9", host="pc-b"),
            fingerprint=identity.fingerprint,
        )
        await asyncio.to_thread(node.start, HANG_S)
        try:
            await wait_until(lambda: "collector-9" in state.snapshot().node_links)
            assert state.nodes == {"collector-9": "collector"}
            assert state.snapshot().node_links["collector-9"]["host"] == "pc-b"
        finally:
            await asyncio.to_thread(node.close)


@contextlib.asynccontextmanager
async def tls_hub(identity: HubIdentity) -> AsyncIterator[tuple[int, AppState]]:
    """The hub's routes served with TLS on 127.0.0.1 (a real hub does so only beyond loopback)."""
    state = AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, state)
    runner = web.AppRunner(hub.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=identity.server_context())
    await site.start()
    try:
        yield runner.addresses[0][1], state
    finally:
        await hub.stop()
        await runner.cleanup()
