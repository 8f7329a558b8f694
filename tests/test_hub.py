"""The hub: token before the upgrade, one schema per message, routing by role, the HTTP API.

Every test runs a real aiohttp hub on 127.0.0.1 (a free port) and speaks to it
over real websockets with real msgpack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket

import aiohttp
import msgpack
import pytest

from bot.text import plain_text
from engine.app.hub import MAX_TAG_CHARS, WAITING_SETS, Hub
from engine.core.actions import Action
from engine.core.config import HubConfig
from engine.core.errors import DeviceError, UsageError
from engine.core.services import PROTOCOL_VERSION
from engine.core.store import (
    AppState,
    ConnectionChanged,
    ProcessChanged,
    ProcessState,
    VersionStreamed,
)
from engine.core.web import SECURITY_HEADERS
from engine.core.wire import (
    Alert,
    BufferFill,
    Checkpointed,
    CollectorReport,
    DriverStatus,
    Hello,
    ProtocolError,
    SwitchModel,
    TrainerStatus,
    decode,
    encode,
)
from engine.data.balance import BalanceStats
from tests.hub_helpers import (
    AUTH,
    TOKEN,
    node_socket,
    raw_exchange,
    running_hub,
    small_sets,
    wait_until,
    ws_frame,
)

POLICY_VIOLATION, TOO_BIG, PROTOCOL_ERROR = 1008, 1009, 1002


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the hub closes the connection; return its close code."""
    received = await asyncio.wait_for(ws.receive(), timeout=5)
    assert received.type is aiohttp.WSMsgType.CLOSE, received
    return received.data


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    received = await asyncio.wait_for(ws.receive(), timeout=5)
    assert received.type is aiohttp.WSMsgType.BINARY, received
    return received.data


async def round_trips(hub: Hub) -> bool:
    """A collector's set reaches a trainer, byte for byte."""
    data = encode(small_sets(7))
    async with node_socket(hub, "trainer", "trainer") as trainer:
        await wait_until(lambda: "trainer" in hub.state.nodes)
        async with node_socket(hub, "collector", "collector-0") as collector:
            await collector.send_bytes(data)
            return await next_message(trainer) == data


# -- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "logged"),
    [
        ({}, "no Authorization header"),
        ({"Authorization": f"Basic {TOKEN}"}, "scheme 'Basic' is not accepted"),
        ({"Authorization": "Bearer not-the-token"}, "wrong token"),
    ],
    ids=["no-header", "wrong-scheme", "wrong-token"],
)
async def test_node_without_the_token_gets_401_with_a_logged_reason(headers, logged, caplog):
    async with running_hub() as hub, aiohttp.ClientSession(headers=headers) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(hub.url())

        assert refused.value.status == 401
        assert any(
            "rejected node connection from 127.0.0.1" in record.message and logged in record.message
            for record in caplog.records
        )


async def test_hub_keeps_serving_after_rejecting_a_token():
    async with running_hub() as hub:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(hub.url())

        assert await round_trips(hub)


async def test_the_token_is_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    async with running_hub() as hub:
        assert await round_trips(hub)

    assert all(TOKEN not in record.getMessage() for record in caplog.records)


# -- malformed messages ----------------------------------------------------------------


async def test_a_first_message_other_than_hello_closes_with_1008(caplog):
    async with running_hub() as hub, node_socket(hub, role=None) as ws:
        await ws.send_bytes(encode(Alert(kind="x", text="y")))

        assert await close_code(ws) == POLICY_VIOLATION
        assert "the first message must be hello, got alert" in caplog.text


async def test_a_text_frame_closes_with_1008():
    async with running_hub() as hub, node_socket(hub, "driver") as ws:
        await ws.send_str('{"type": "hello"}')

        assert await close_code(ws) == POLICY_VIOLATION


async def test_a_message_over_max_message_mb_closes_with_1009(caplog):
    async with running_hub(max_message_mb=0.1) as hub, node_socket(hub, "collector") as ws:
        await ws.send_bytes(b"\x00" * 120_000)

        assert await close_code(ws) == TOO_BIG
        assert "closed node connection node (collector)" in caplog.text


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (encode(Hello(role="driver", name="again")), "hello was already sent"),
        (encode(SwitchModel(version="m_v2")), "switch_model is sent by the hub"),
        (msgpack.packb({"type": "driver_status", "version": "v", "fps": "fast"}), "fps"),
    ],
    ids=["second-hello", "switch-model-from-a-node", "bad-field"],
)
async def test_a_bad_message_after_hello_closes_with_1008_and_names_the_problem(
    message, reason, caplog
):
    async with running_hub() as hub, node_socket(hub, "driver") as ws:
        await ws.send_bytes(message)

        assert await close_code(ws) == POLICY_VIOLATION
        assert reason in caplog.text


async def close_reason(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    received = await asyncio.wait_for(ws.receive(), timeout=5)
    assert received.type is aiohttp.WSMsgType.CLOSE, received
    return received.data, received.extra


async def test_a_hello_without_a_protocol_version_is_told_to_upgrade_the_node():
    old_hello = msgpack.packb({"type": "hello", "role": "collector", "name": "old", "pid": 1})
    async with running_hub() as hub, node_socket(hub, role=None) as ws:
        await ws.send_bytes(old_hello)

        code, reason = await close_reason(ws)
        assert code == POLICY_VIOLATION
        assert reason == (
            f"node speaks protocol 1, this hub speaks {PROTOCOL_VERSION}: "
            "upgrade the node (pip install -U charles-stream)"
        )
        assert hub.state.nodes == {}


async def test_a_newer_nodes_hello_is_told_to_upgrade_the_hub():
    newer = PROTOCOL_VERSION + 1
    hello = {"type": "hello", "role": "pilot", "name": "new", "protocol": newer, "gpus": 8}
    async with running_hub() as hub, node_socket(hub, role=None) as ws:
        await ws.send_bytes(msgpack.packb(hello))

        code, reason = await close_reason(ws)
        assert code == POLICY_VIOLATION
        assert f"node speaks protocol {newer}, this hub speaks {PROTOCOL_VERSION}" in reason
        assert reason.endswith("upgrade the hub (pip install -U charles-stream)")


@pytest.mark.parametrize(
    ("role", "message", "reason"),
    [
        ("driver", small_sets(1), "sample_sets is not accepted from a driver; it is sent by: "),
        (
            "collector",
            DriverStatus(version="v"),
            "driver_status is not accepted from a collector; it is sent by: driver",
        ),
        ("chat", TrainerStatus(version="v", status="training"), "not accepted from a chat"),
    ],
)
async def test_a_message_type_the_services_table_does_not_let_a_role_send_closes_1008(
    role, message, reason, caplog
):
    async with running_hub() as hub, node_socket(hub, role) as ws:
        await ws.send_bytes(encode(message))

        code, said = await close_reason(ws)
        assert code == POLICY_VIOLATION and reason in said
        assert hub.state.trainer is None and hub.state.driver is None


async def test_sample_sets_are_forwarded_on_their_header_and_validated_by_the_trainer():
    # The hub reads only "type" of what it forwards without keeping: the trainer's own
    # decode refuses this body (engine.node.client logs and drops it), the hub does not.
    junk = msgpack.packb({"type": "sample_sets", "sets": "not sets"})
    async with running_hub() as hub, node_socket(hub, "trainer", "trainer") as trainer:
        await wait_until(lambda: "trainer" in hub.state.nodes)
        async with node_socket(hub, "collector", "collector-0") as collector:
            await collector.send_bytes(junk)
            await collector.send_bytes(encode(small_sets(2)))

            assert await next_message(trainer) == junk
            assert decode(await next_message(trainer)) == small_sets(2)
            with pytest.raises(ProtocolError, match=r"'sample_sets\.sets' must be a list"):
                decode(junk)


async def test_thousands_of_malformed_messages_each_close_only_their_connection():
    rng = random.Random(6)
    hello = ws_frame(encode(Hello(role="collector", name="fuzz")))
    valid = [encode(message) for message in (small_sets(1), Alert(kind="a", text="b"))]
    cases: list[tuple[bytes, set[int | None]]] = []
    for index in range(3000):
        kind = index % 6
        if kind == 0:  # random bytes
            payload = rng.randbytes(rng.randrange(0, 300))
        elif kind == 1:  # a valid message cut short
            message = rng.choice(valid)
            payload = message[: rng.randrange(0, len(message))]
        elif kind == 2:  # msgpack of the wrong shape or with wrong fields
            payload = msgpack.packb(
                rng.choice(
                    [
                        {
                            "type": rng.choice(["hello", "sample_sets", "frames", "nope"]),
                            "role": rng.randrange(9),
                            "sets": [rng.random()],
                        },
                        [1, 2, 3],
                        {
                            "type": "trainer_status",
                            "version": "v",
                            "status": "training",
                            "batch": -rng.randrange(1, 99),
                        },
                        rng.random(),
                    ]
                )
            )
        elif kind == 3:  # valid msgpack but not a hello first
            payload = rng.choice(valid)
        elif kind == 4:  # random bytes after a good hello
            payload = rng.randbytes(rng.randrange(1, 300))
        else:  # frames no client may send: reserved bits, unknown opcodes, fragments
            frame = rng.choice(
                [
                    ws_frame(b"x", rsv=rng.randrange(1, 8)),
                    ws_frame(b"x", opcode=rng.choice([0x3, 0x7, 0xB, 0xF])),
                    ws_frame(b"x", opcode=0x0),
                    ws_frame(b"x" * 200, opcode=0x9),  # a ping over 125 bytes
                ]
            )
            cases.append((frame, {PROTOCOL_ERROR, None}))
            continue
        frames = (hello if kind == 4 else b"") + ws_frame(payload)
        cases.append((frames, {POLICY_VIOLATION}))
    oversized = [(hello + ws_frame(b"\x00" * 120_000), {TOO_BIG})] * 3

    async with running_hub(max_message_mb=0.1) as hub:

        async def send_all(share: list[tuple[bytes, set[int | None]]]) -> list[str]:
            wrong = []
            for frames, expected in share:
                code = await raw_exchange(hub.port, frames)
                if code not in expected:
                    wrong.append(f"{frames[:40]!r}: close code {code}, expected {expected}")
            return wrong

        everything = cases + oversized
        shares = await asyncio.gather(*(send_all(everything[i::8]) for i in range(8)))

        assert [problem for share in shares for problem in share] == []
        assert await round_trips(hub)


# -- routing ---------------------------------------------------------------------------


async def test_sample_sets_reach_every_trainer_as_the_very_bytes_sent():
    # Keys in an unusual order: a hub that re-encoded would change the bytes.
    data = msgpack.packb({"sets": [], "type": "sample_sets"})
    assert encode(decode(data)) != data
    async with (
        running_hub() as hub,
        node_socket(hub, "trainer", "t1") as first,
        node_socket(hub, "trainer", "t2") as second,
    ):
        await wait_until(lambda: len(hub.state.nodes) == 2)
        async with node_socket(hub, "collector", "collector-0") as collector:
            await collector.send_bytes(data)

            assert await next_message(first) == data
            assert await next_message(second) == data


async def test_sets_sent_while_no_trainer_is_connected_wait_for_one_up_to_64():
    state = AppState()
    extra = 6
    async with running_hub(state=state) as hub, node_socket(hub, "collector") as collector:
        for number in range(WAITING_SETS + extra):
            await collector.send_bytes(encode(small_sets(number)))
        await collector.send_bytes(encode(Alert(kind="marker", text="all sent")))
        await wait_until(lambda: len(state.alerts) == 1)

        async with node_socket(hub, "trainer") as trainer:
            times = [
                decode(await next_message(trainer)).sets[0].samples[0].time
                for _ in range(WAITING_SETS)
            ]
            await collector.send_bytes(encode(small_sets(1000)))
            after = decode(await next_message(trainer)).sets[0].samples[0].time

    assert times == [float(number) for number in range(extra, WAITING_SETS + extra)]
    assert after == 1000.0


async def test_a_multi_worker_follower_is_sent_no_sets_and_they_wait_for_the_chief():
    """A trainer other than the chief (Hello.follows_chief) would only drop sets and reports."""
    state = AppState()
    follower_hello = Hello(role="trainer", name="trainer-1", follows_chief=True)
    async with (
        running_hub(state=state) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.ws_connect(hub.url()) as follower,
    ):
        await follower.send_bytes(encode(follower_hello))
        await wait_until(lambda: "trainer-1" in state.nodes)
        async with node_socket(hub, "collector", "collector-0") as collector:
            await collector.send_bytes(encode(small_sets(1)))
            report = CollectorReport(source="collector-0", balance=BalanceStats(strategy="v3"))
            await collector.send_bytes(encode(report))
            await collector.send_bytes(encode(Alert(kind="marker", text="all sent")))
            await wait_until(lambda: len(state.alerts) == 1)
            await hub.send("trainer", SwitchModel(version="m_v2"))
            # Its first message is the switch: nothing the collector sent came before it.
            assert decode(await next_message(follower)) == SwitchModel(version="m_v2")
            async with node_socket(hub, "trainer", "trainer") as chief:
                # The set waited for a trainer that takes it (reports are not kept for later).
                assert decode(await next_message(chief)).sets[0].samples[0].time == 1.0


async def test_collector_reports_reach_trainers_and_app_state():
    state = AppState()
    report = CollectorReport(source="collector-3", balance=BalanceStats(strategy="v3"), episodes=2)
    async with running_hub(state=state) as hub, node_socket(hub, "trainer") as trainer:
        await wait_until(lambda: "node" in state.nodes)
        async with node_socket(hub, "collector", "collector-3") as collector:
            await collector.send_bytes(encode(report))

            assert decode(await next_message(trainer)) == report
    assert state.collectors["collector-3"] == report


async def test_checkpoints_reach_drivers_and_app_state_but_not_trainers():
    state = AppState()
    checkpoint = encode(Checkpointed(version="m_v1", batch=500, path="data/models/m_v1/batch-500"))
    async with (
        running_hub(state=state) as hub,
        node_socket(hub, "driver", "driver") as driver,
        node_socket(hub, "trainer", "trainer") as trainer,
    ):
        await wait_until(lambda: len(state.nodes) == 2)
        await trainer.send_bytes(checkpoint)

        assert await next_message(driver) == checkpoint
        assert state.checkpoint.batch == 500
        # The next thing the trainer receives is what the hub sends it, not the checkpoint.
        await hub.send("trainer", SwitchModel(version="m_v2"))
        assert decode(await next_message(trainer)) == SwitchModel(version="m_v2")


async def test_hub_send_reaches_every_node_of_the_role_and_counts_them():
    async with (
        running_hub() as hub,
        node_socket(hub, "driver", "d1") as first,
        node_socket(hub, "driver", "d2") as second,
    ):
        await wait_until(lambda: len(hub.state.nodes) == 2)

        assert await hub.send("driver", SwitchModel(version="m_v2")) == 2
        assert await hub.send("trainer", SwitchModel(version="m_v2")) == 0
        for ws in (first, second):
            assert decode(await next_message(ws)) == SwitchModel(version="m_v2")


async def test_connections_and_departures_are_events_in_app_state():
    state = AppState()
    async with running_hub(state=state) as hub:
        async with node_socket(hub, "driver", "driver"):
            await wait_until(lambda: state.nodes == {"driver": "driver"})
        await wait_until(lambda: state.nodes == {})

    assert state.events[0].startswith("driver (driver) connected from 127.0.0.1")
    assert state.events[1] == "driver (driver) disconnected"


# -- HTTP API --------------------------------------------------------------------------


def api(hub: Hub, path: str) -> str:
    return hub.url().replace("ws://", "http://").replace("/ws/node", path)


async def test_statuses_sent_by_nodes_show_in_api_status():
    state = AppState()
    state.apply(VersionStreamed("m_v1", "2024-05-01T10:00:00"))
    state.apply(ProcessChanged(ProcessState(name="trainer", state="running", pid=1234)))
    state.apply(ConnectionChanged("obs", "off"))
    state.apply(ConnectionChanged("twitch", "connected"))
    trainer_status = TrainerStatus(
        version="m_v1",
        status="training",
        batch=42,
        loss={"total": 0.25},
        buffers={"steering": BufferFill(fill=5, capacity=10)},
    )
    async with running_hub(state=state) as hub:
        async with node_socket(hub, "trainer") as trainer, node_socket(hub, "driver") as driver:
            await trainer.send_bytes(encode(trainer_status))
            await driver.send_bytes(encode(DriverStatus(version="m_v1", fps=30.0, pps=28.0)))
            await wait_until(lambda: state.trainer is not None and state.driver is not None)
        async with aiohttp.ClientSession() as session, session.get(api(hub, "/api/status")) as got:
            body = await got.json()

    assert got.status == 200
    assert (body["version"], body["created"], body["batch"]) == ("m_v1", "2024-05-01T10:00:00", 42)
    assert body["loss"] == {"total": 0.25}
    assert body["buffers"]["steering"]["fill"] == 5
    assert (body["fps"], body["pps"]) == (30.0, 28.0)
    assert body["processes"]["trainer"]["state"] == "running"
    assert body["processes"]["trainer"]["pid"] == 1234
    assert body["connections"] == {"obs": "off", "twitch": "connected"}


async def test_a_diverged_loss_reaches_api_status_as_null_in_valid_json():
    state = AppState()
    state.apply(VersionStreamed("m_v1", "2024-05-01T10:00:00"))
    diverged = TrainerStatus(
        version="m_v1", status="training", batch=43, loss={"total": math.nan, "steering": math.inf}
    )
    async with running_hub(state=state) as hub:
        async with node_socket(hub, "trainer") as trainer:
            await trainer.send_bytes(encode(diverged))
            await wait_until(lambda: state.trainer is not None)
        async with aiohttp.ClientSession() as session, session.get(api(hub, "/api/status")) as got:
            text = await got.text()

    assert got.headers["Content-Type"].startswith("application/json")
    assert "NaN" not in text and "Infinity" not in text  # what Python's json would have written
    assert json.loads(text)["loss"] == {"total": None, "steering": None}


class ActionRecorder:
    """An on_action that remembers what it was asked."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    async def __call__(self, action: Action) -> dict:
        self.actions.append(action)
        if action.model == "unknown_model":
            raise UsageError("no model line or version 'unknown_model'")
        return {"ok": True, "kind": action.kind}


@pytest.mark.parametrize("path", ["/api/switch", "/api/tag"])
async def test_actions_require_the_token(path):
    recorder = ActionRecorder()
    async with running_hub(on_action=recorder) as hub, aiohttp.ClientSession() as session:
        bearer = {"Authorization": "Bearer wrong"}
        async with session.post(api(hub, path), json={"text": "x", "model": "m"}) as none:
            assert none.status == 401
        async with session.post(api(hub, path), json={"model": "m"}, headers=bearer) as wrong:
            assert wrong.status == 401
            assert "wrong token" in (await wrong.json())["error"]

    assert recorder.actions == []


async def test_switch_calls_on_action_and_replies_with_its_dict():
    recorder = ActionRecorder()
    body = {"model": "model_0003_xception", "new": True}
    async with (
        running_hub(on_action=recorder) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(api(hub, "/api/switch"), json=body) as reply,
    ):
        assert reply.status == 200
        assert await reply.json() == {"ok": True, "kind": "switch"}

    assert recorder.actions == [Action(kind="switch", model="model_0003_xception", new=True)]


async def test_tag_calls_on_action_with_the_text():
    recorder = ActionRecorder()
    async with (
        running_hub(on_action=recorder) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(api(hub, "/api/tag"), json={"text": " first lap! "}) as reply,
    ):
        assert reply.status == 200

    assert recorder.actions == [Action(kind="tag", text="first lap!")]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/switch", "not json", "the body is not JSON"),
        ("/api/switch", "[1]", "the body is a JSON list; accepted: a JSON object"),
        ("/api/switch", b"\xff\xfe\xfd", "the body is not JSON"),
        ("/api/tag", '{"text": ' + "[" * 5000 + "]" * 5000 + "}", "the body is nested too deeply"),
        ("/api/tag", '{"text": ' + "[" * 40 + "]" * 40 + "}", "accepted: at most 32 levels"),
        ("/api/tag", '{"text": "\\u202e\\u0000\\u200b"}', "not only spaces or control characters"),
        ("/api/switch", "{}", "field 'model' is missing; accepted: a model line or version"),
        ("/api/switch", '{"model": 3}', "field 'model' = 3 is not accepted"),
        ("/api/switch", '{"model": "../../etc"}', "field 'model' = \"../../etc\" is not accepted"),
        (
            "/api/switch",
            '{"model": "m", "new": "yes"}',
            "field 'new' = \"yes\" is not accepted; accepted: true or false",
        ),
        (
            "/api/switch",
            '{"model": "m", "force": true}',
            "unknown field 'force'; accepted: model, new",
        ),
        ("/api/tag", '{"text": "   "}', "field 'text' = \"   \" is not accepted"),
        ("/api/tag", '{"text": "' + "x" * 201 + '"}', "a string of 1-200 characters"),
    ],
    ids=[
        "not-json",
        "not-object",
        "not-utf-8",
        "nested-thousands-deep",
        "nested-40-deep",
        "only-control-characters",
        "no-model",
        "model-type",
        "model-path",
        "new-type",
        "unknown-field",
        "blank-tag",
        "long-tag",
    ],
)
async def test_bad_action_bodies_get_400_naming_the_field(path, body, message):
    recorder = ActionRecorder()
    async with (
        running_hub(on_action=recorder) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(api(hub, path), data=body) as reply,
    ):
        assert reply.status == 400
        assert message in (await reply.json())["error"]

    assert recorder.actions == []


async def test_a_tag_is_cleaned_of_control_and_bidi_characters_as_chat_cleans_it():
    recorder = ActionRecorder()
    text = "first\u202e lap\x00!\u200b\n\u2066ok\u2069"
    async with (
        running_hub(on_action=recorder) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(api(hub, "/api/tag"), json={"text": text}) as reply,
    ):
        assert reply.status == 200

    assert recorder.actions == [Action(kind="tag", text=plain_text(text, MAX_TAG_CHARS))]
    assert recorder.actions[0].text == "first lap! ok"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/status", {}, 200),
        ("GET", "/no/such/page", {}, 404),
        ("POST", "/api/status", {}, 405),
        ("POST", "/api/tag", {}, 401),
        ("POST", "/api/tag", AUTH, 400),
        ("GET", "/ws/node", {}, 401),
    ],
)
async def test_every_response_carries_the_pages_security_headers(method, path, headers, status):
    async with (
        running_hub(on_action=ActionRecorder()) as hub,
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, api(hub, path), data="not json") as reply,
    ):
        assert reply.status == status
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers[name] == value


async def test_even_a_route_that_fails_answers_with_the_security_headers():
    async def broken(request):
        raise RuntimeError("a bug in some route")

    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, AppState())
    hub.app.router.add_get("/broken", broken)  # other parts add their routes like this
    await hub.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(api(hub, "/broken")) as reply,
        ):
            assert reply.status == 500
            assert (
                reply.headers["Content-Security-Policy"]
                == SECURITY_HEADERS["Content-Security-Policy"]
            )
    finally:
        await hub.stop()


async def test_an_action_the_app_refuses_gets_400_with_its_reason():
    async with (
        running_hub(on_action=ActionRecorder()) as hub,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(api(hub, "/api/switch"), json={"model": "unknown_model"}) as reply,
    ):
        assert reply.status == 400
        assert (await reply.json())["error"] == "no model line or version 'unknown_model'"


async def test_a_port_in_use_is_a_config_error_naming_host_and_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hub = Hub(HubConfig(host="127.0.0.1", port=port), TOKEN, AppState())

        with pytest.raises(DeviceError, match=rf"host = '127.0.0.1', port = {port}"):
            await hub.start()
