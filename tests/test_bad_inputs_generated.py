"""Generated bad input at every boundary: a clean refusal each time, never a traceback.

Hypothesis writes the inputs a hostile or careless user would (valid TOML with
the wrong types, NaN and infinity, huge and negative numbers, values nested
thousands deep, unknown keys, any Unicode; mutated and random msgpack; random
JSON) and shrinks a failure to its smallest form. Each target's contract:

- config files (`load_config`, `config check`): a `Config` or one line of
  `ConfigError` (exit 2); a config that loads holds only finite numbers;
- model specs and game profiles: a spec or profile, or `ModelError` /
  `ConfigError`;
- wire messages (`decode`, `header_type`; and through a real hub): a message or
  `ProtocolError`; through the hub, a closed connection (1008, 1009) at worst,
  and the hub keeps serving;
- checkpoint metadata: the loader takes the newest sound checkpoint, falls back
  from a damaged one, or raises `CheckpointError` when none is sound;
- API bodies (`/api/tag`, `/api/switch`, `/api/chat` on a real hub with the
  token): 200 or 400, never 5xx, every response with the security headers;
  paths and queries of pages and `/api/status`: never 5xx, the same headers;
- chat text (the bot's router): a reply of plain text, or nothing.

Examples per target are EXAMPLES_* below; `derandomize` makes every run (and
CI) try the same inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import math
import tempfile
import threading
import tomllib
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.commands import Router
from bot.messages import ChatMessage
from bot.permissions import roles_from_badges
from bot.service import ChatBot
from engine.app.hub import Hub
from engine.cli import main
from engine.core.config import AppConfig, ChatConfig, Config, HubConfig, load_config
from engine.core.errors import ConfigError, ModelError
from engine.core.web import SECURITY_HEADERS
from engine.core.wire import MESSAGE_TYPES, ProtocolError, WireMessage, decode, encode, header_type
from engine.games.profile import GameProfile, load_profile, shipped_profiles
from models.checkpoints import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_latest_checkpoint,
    resumable_checkpoint,
)
from models.spec import ModelSpec, parse_spec, spec_path
from overlays.server import OverlayServer
from tests.bot_helpers import Clock, streaming_actions
from tests.hub_helpers import AUTH, TOKEN
from tests.test_protocol import EXAMPLES

EXAMPLES_CONFIG = 300
EXAMPLES_SPEC = 200
EXAMPLES_PROFILE = 200
EXAMPLES_WIRE = 300
EXAMPLES_WIRE_HUB = 100
EXAMPLES_CHECKPOINT = 200
EXAMPLES_API = 300
EXAMPLES_GET = 100
EXAMPLES_CHAT = 300

# Same inputs on every run; no example database; a busy machine is slow, not wrong.
GENERATED = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Floats that may be NaN on purpose: a diverged model is shown to viewers as it is.
NAN_ON_PURPOSE = {"TrainerStatus.loss", "DriverStatus.predictions"}
DEEP = 3000


# -- generated values ------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A value already written as TOML text (one nested deeper than any parser recurses)."""

    text: str


# Any text a TOML file can hold (UTF-8 cannot encode a lone surrogate).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324]),
)
SCALARS = st.one_of(
    NUMBERS,
    TEXT,
    st.booleans(),
    st.sampled_from(["auto", "on", "steering", "model_0000_demo", "", " ", "\u202e", "\x00"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)
# JSON has null too.
JSON_VALUES = st.recursive(
    SCALARS | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)
DEEP_VALUES = st.sampled_from(
    [Raw("[" * DEEP + "]" * DEEP), Raw("{a=" * 40 + "1" + "}" * 40), Raw("[" * 40 + "]" * 40)]
)
# TOML has dates and times too (JSON and msgpack do not).
TOML_VALUES = st.one_of(
    VALUES, DEEP_VALUES, st.just(datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.UTC))
)


def toml_value(value: Any) -> str:
    """`value` as TOML text: inline tables and arrays, so a whole file is `key = value` lines."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{toml_string(str(key))} = {toml_value(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def toml_document(table: dict[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in table.items())


@st.composite
def mutated(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any]) -> Any:
    """`base` (a parsed file or message) with one value replaced, one key added or removed."""
    if not isinstance(base, dict | list):
        return draw(values)
    copy: Any = dict(base) if isinstance(base, dict) else list(base)
    keys = list(copy) if isinstance(copy, dict) else list(range(len(copy)))
    what = draw(st.sampled_from(["replace", "descend", "add", "remove"] if keys else ["add"]))
    if what == "add":
        key = draw(TEXT) if isinstance(copy, dict) else len(copy)
        if isinstance(copy, dict):
            copy[key] = draw(values)
        else:
            copy.append(draw(values))
    elif what == "remove":
        del copy[draw(st.sampled_from(keys))]
    else:
        key = draw(st.sampled_from(keys))
        copy[key] = draw(values) if what == "replace" else draw(mutated(copy[key], values))
    return copy


# -- config files, model specs, game profiles --------------------------------------------


def config_keys() -> list[tuple[str, str]]:
    """Every (section, key) of config.toml, so generated files reach every key's checks."""
    keys = []
    for section in msgspec.structs.fields(Config):
        if isinstance(section.type, type) and issubclass(section.type, msgspec.Struct):
            keys += [(section.name, key.name) for key in msgspec.structs.fields(section.type)]
    return keys


CONFIG_KEYS = st.one_of(st.sampled_from(config_keys()), st.tuples(TEXT, TEXT))


@st.composite
def config_files(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))  # mostly not TOML at all
    sections: dict[str, dict[str, Any]] = {}
    for section, key in draw(st.lists(CONFIG_KEYS, min_size=1, max_size=4)):
        sections.setdefault(section, {})[key] = draw(TOML_VALUES)
    return toml_document({name: Raw(toml_value(keys)) for name, keys in sections.items()})


def one_clear_line(message: str) -> bool:
    """A refusal as it should read: one line, no control or bidi character from the input."""
    return bool(message) and message.isprintable() and "Traceback" not in message


def finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(finite_everywhere(item) for item in value)
    return True


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder the examples of this module write their files into (one file at a time)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@settings(GENERATED, max_examples=EXAMPLES_CONFIG)
@given(text=config_files())
def test_a_generated_config_file_loads_or_is_refused_in_one_line(scratch, text):
    path = scratch / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and one_clear_line(message), message
        event("refused")
    else:
        assert finite_everywhere(msgspec.to_builtins(config))
        event("loaded")


@settings(GENERATED, max_examples=50)
@given(text=config_files())
def test_config_check_of_a_generated_file_exits_0_or_2(scratch, text):
    path = scratch / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["config", "check", str(path)]) in (0, 2)


DEMO_SPEC_TEXT = spec_path("model_0000_demo").read_text(encoding="utf-8")
DEMO_SPEC = tomllib.loads(DEMO_SPEC_TEXT)


@settings(GENERATED, max_examples=EXAMPLES_SPEC)
@given(table=mutated(DEMO_SPEC, TOML_VALUES))
def test_a_generated_model_spec_parses_or_is_refused(table):
    try:
        spec = parse_spec(toml_document(table), line="model_9999_generated", source="gen.toml")
    except ModelError as error:
        assert str(error).startswith("gen.toml: ") and one_clear_line(str(error)), str(error)
        event("refused")
    else:
        event("parsed")
        assert isinstance(spec, ModelSpec)
        assert finite_everywhere(msgspec.to_builtins(spec))


PROFILES = {
    name: tomllib.loads(path.read_text(encoding="utf-8"))
    for name, path in shipped_profiles().items()
}


@settings(GENERATED, max_examples=EXAMPLES_PROFILE)
@given(table=st.sampled_from(sorted(PROFILES)).flatmap(lambda n: mutated(PROFILES[n], TOML_VALUES)))
def test_a_generated_game_profile_loads_or_is_refused(scratch, table):
    path = scratch / "generated.toml"
    path.write_text(toml_document(table), encoding="utf-8")
    try:
        profile = load_profile(str(path))
    except ConfigError as error:
        assert str(error).startswith(f"{path}: ") and one_clear_line(str(error)), str(error)
        event("refused")
    else:
        event("loaded")
        assert isinstance(profile, GameProfile)
        assert finite_everywhere(msgspec.to_builtins(profile))


def test_every_float_of_every_schema_is_bounded_so_nan_is_refused():
    """The class, not the instances: a float field without a range would let NaN through."""
    unbounded = []
    seen: set[type] = set()

    def walk(info: Any, where: str) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls not in seen:
                seen.add(info.cls)
                for field in info.fields:
                    walk(field.type, f"{info.cls.__name__}.{field.encode_name}")
        elif isinstance(info, msgspec.inspect.FloatType):
            if (info.ge is None and info.gt is None) or (info.le is None and info.lt is None):
                unbounded.append(where)
        elif isinstance(info, msgspec.inspect.DictType):
            walk(info.value_type, where)
        elif isinstance(info, msgspec.inspect.UnionType | msgspec.inspect.TupleType):
            for member in info.types if hasattr(info, "types") else info.item_types:
                walk(member, where)
        elif hasattr(info, "item_type"):
            walk(info.item_type, where)

    for schema in (Config, ModelSpec, GameProfile, *MESSAGE_TYPES.values()):
        walk(msgspec.inspect.type_info(schema), schema.__name__)
    assert {"Config", "ModelSpec", "GameProfile", "DriverStatus"} <= {c.__name__ for c in seen}
    assert sorted(set(unbounded) - NAN_ON_PURPOSE) == []


# -- wire messages ----------------------------------------------------------------------


def plain_message(message: WireMessage) -> dict[str, Any]:
    return msgpack.unpackb(encode(message), raw=False)


# What msgpack holds: integers of 64 bits at most, bytes as bin, nil.
WIRE_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([-1, 2**63, 2**64 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.booleans(),
    st.none(),
    st.binary(max_size=20),
    st.sampled_from(sorted(MESSAGE_TYPES)),
)
WIRE_VALUES = st.recursive(
    WIRE_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)


def deep_message(depth: int, kind: str) -> bytes:
    """{"type": kind, "text": [[[...1...]]]} `depth` deep, packed by hand (packers stop at 512)."""
    head = msgpack.packb({"type": kind}, use_bin_type=True)
    return b"\x82" + head[1:] + msgpack.packb("text") + b"\x91" * depth + b"\x01"


@st.composite
def flipped(draw: st.DrawFn, data: bytes) -> bytes:
    changed = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(changed) - 1))
        changed[index] = draw(st.integers(0, 255))
    return bytes(changed[: draw(st.integers(1, len(changed)))])


WIRE_BYTES = st.one_of(
    st.sampled_from(EXAMPLES).flatmap(
        lambda m: mutated(plain_message(m), WIRE_VALUES).map(
            lambda table: msgpack.packb(table, use_bin_type=True)
        )
    ),
    st.sampled_from(EXAMPLES).flatmap(lambda m: flipped(encode(m))),
    st.binary(max_size=64),
    st.builds(deep_message, st.sampled_from([40, DEEP, 100_000]), st.sampled_from(["alert", "x"])),
)


def finite_unless_on_purpose(message: WireMessage) -> bool:
    fields = msgspec.to_builtins(message, builtin_types=(bytes,))
    for name in ("loss", "predictions"):
        if f"{type(message).__name__}.{name}" in NAN_ON_PURPOSE:
            fields.pop(name, None)
    return finite_everywhere(fields)


@settings(GENERATED, max_examples=EXAMPLES_WIRE)
@given(data=WIRE_BYTES)
def test_a_generated_wire_message_decodes_or_is_a_protocol_error(data):
    try:
        message = decode(data)
    except ProtocolError as error:
        assert one_clear_line(str(error)), str(error)
        event("refused")
    else:
        event("decoded")
        assert isinstance(message, WireMessage)
        assert finite_unless_on_purpose(message)
    with contextlib.suppress(ProtocolError):
        assert header_type(data) in MESSAGE_TYPES


# -- a real hub in a thread: API bodies, chat, wire messages over its socket -------------


class HubThread:
    """A started hub (StreamActions, the chat route) on its own event loop in a thread.

    Hypothesis runs examples synchronously; each example talks to the hub over
    real sockets, or runs a coroutine on the hub's loop and waits for it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hub", daemon=True)
        self.thread.start()
        self.clock = Clock()  # the router's: each example moves it past every cooldown
        self.hub, self.actions, self.router = self.run(self._start(data_dir))

    def run(self, work: Any) -> Any:
        """Run a coroutine on the hub's loop; the timeout only ends a hung test."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.hub.port}{path}"

    def stop(self) -> None:
        self.run(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        self.loop.close()

    async def _start(self, data_dir: Path) -> tuple[Hub, Any, Router]:
        actions = await streaming_actions(data_dir)
        config = Config(app=AppConfig(data_dir=str(data_dir)), hub=HubConfig(port=0))
        hub = Hub(config.hub, TOKEN, actions.state, on_action=actions)
        ChatBot(config, actions, hub_token=TOKEN).add_routes(hub.app)
        OverlayServer(config.overlay, actions.state).add_routes(hub.app)
        await hub.start()
        router = Router(ChatConfig(), actions, clock=self.clock)
        return hub, actions, router


@pytest.fixture(scope="module")
def hub_thread(scratch: Path) -> Iterator[HubThread]:
    running = HubThread(scratch / "data")
    try:
        yield running
        status, _, _ = post(running, "GET", "/api/status", None)
        assert status == 200, "the hub stopped serving after the generated input"
    finally:
        running.stop()


def post(hub: HubThread, method: str, path: str, body: bytes | None) -> tuple[int, Any, Any]:
    """(status, parsed JSON reply, headers) of one real HTTP request with the token."""
    status, reply, headers = fetch(hub, method, path, body)
    return status, json.loads(reply), headers


def fetch(hub: HubThread, method: str, path: str, body: bytes | None) -> tuple[int, bytes, Any]:
    """(status, body, headers) of one real HTTP request with the token; the timeout ends a hang."""
    request = urllib.request.Request(hub.url(path), data=body, method=method, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            return error.code, error.read(), error.headers


API_PATHS = st.sampled_from(["/api/tag", "/api/switch", "/api/chat"])
API_FIELDS = st.sampled_from(["text", "model", "new", "user", "roles", ""])
MODEL_NAMES = st.sampled_from(["model_0000_demo", "model_0003_xception_v1", "no_such", "a/../b"])
API_FIELD_VALUES = st.one_of(JSON_VALUES, MODEL_NAMES, st.sampled_from(["!stats", "ab_c"]))
ANY_BODY = st.one_of(
    st.dictionaries(API_FIELDS | TEXT, API_FIELD_VALUES, max_size=3),
    JSON_VALUES,
)
COMMANDS = st.sampled_from(
    ["!tag", "!water", "!vote", "!switch", "!stats", "!model", "!help", "!timeline", "!", ""]
)
# Bodies of the right shape with generated values: these reach the actions behind the API.
SHAPED_BODIES = {
    "/api/tag": st.fixed_dictionaries({"text": TEXT}),
    "/api/switch": st.fixed_dictionaries({"model": MODEL_NAMES | TEXT}, optional={"new": VALUES}),
    "/api/chat": st.fixed_dictionaries(
        {"text": st.builds("{} {}".format, COMMANDS, TEXT)},
        optional={"user": st.sampled_from(["viewer_1", "mod"]) | TEXT},
    ),
}
RAW_BODIES = st.sampled_from(
    [b"[" * DEEP + b"]" * DEEP, b'{"text": ' + b"[" * 40 + b"]" * 40 + b"}", b"", b"NaN"]
)


@st.composite
def api_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    path = draw(API_PATHS)
    kind = draw(st.sampled_from(["shaped", "any", "bytes", "raw"]))
    if kind == "bytes":
        return path, draw(st.binary(max_size=64))
    if kind == "raw":
        return path, draw(RAW_BODIES)
    body = draw(SHAPED_BODIES[path] if kind == "shaped" else ANY_BODY)
    return path, json.dumps(body).encode()


@settings(GENERATED, max_examples=EXAMPLES_API)
@given(request=api_requests())
def test_a_generated_api_body_gets_200_or_400_never_5xx(hub_thread, request):
    path, body = request
    status, reply, headers = post(hub_thread, "POST", path, body)
    event(f"{path} {status}")
    assert status in (200, 400), (status, reply)
    if status == 400:
        assert one_clear_line(reply["error"]), reply["error"]
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    for moment in hub_thread.actions.moments.list()[-1:]:
        assert is_plain(moment.note) and is_plain(moment.user)


GET_PREFIXES = ["/overlay/", "/overlay/static/", "/api/", "/", "/ws/overlay?cameras="]
GET_PATHS = st.one_of(
    st.sampled_from(
        [
            "/api/status",
            "/overlay/",
            "/overlay/loss.json",
            "/overlay/hood",
            "/ws/overlay",
            "/ws/node",
        ]
    ),
    st.builds(
        lambda prefix, text: prefix + quote(text, safe=""), st.sampled_from(GET_PREFIXES), TEXT
    ),
)
QUERIES = st.dictionaries(
    st.sampled_from(["width", "height", "theme", "smoothing", "alert_s", "cameras"]) | TEXT,
    TEXT | NUMBERS.map(str),
    max_size=3,
).map(urlencode)


@settings(GENERATED, max_examples=EXAMPLES_GET)
@given(path=GET_PATHS, query=QUERIES)
def test_a_generated_page_or_status_request_never_gets_5xx(hub_thread, path, query):
    url = f"{path}{'&' if '?' in path else '?'}{query}" if query else path
    status, _, headers = fetch(hub_thread, "GET", url, None)
    event(f"{status}")
    assert status < 500, (url, status)
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value


def is_plain(text: str) -> bool:
    return all(not unicodedata.category(char).startswith("C") for char in text)


BADGES = st.lists(st.sampled_from(["broadcaster", "moderator", "vip", "subscriber"]), max_size=2)


@settings(GENERATED, max_examples=EXAMPLES_CHAT)
@given(command=COMMANDS, text=TEXT, user=TEXT, badges=BADGES)
def test_generated_chat_text_gets_a_plain_reply_or_nothing(hub_thread, command, text, user, badges):
    hub_thread.clock.now += 60.0  # past every cooldown: the command itself answers
    message = ChatMessage(user or "viewer", f"{command} {text}", roles_from_badges(badges))
    reply = hub_thread.run(hub_thread.router.handle(message))
    event("nothing" if reply is None else "a reply")
    if reply is not None:
        assert reply.text and is_plain(reply.text), reply.text


@settings(GENERATED, max_examples=EXAMPLES_WIRE_HUB)
@given(data=WIRE_BYTES)
def test_a_generated_wire_message_to_the_hub_is_taken_or_closes_only_its_connection(
    hub_thread, data
):
    async def exchange() -> int | None:
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.ws_connect(hub_thread.hub.url()) as ws,
        ):
            await ws.send_bytes(encode(EXAMPLES[0]))  # hello, as a collector
            await ws.send_bytes(data)
            # The hub reads in order: its verdict on `data` comes before our close.
            await ws.close()
            return ws.close_code

    code = hub_thread.run(exchange())
    event(f"close code {code}")
    assert code in (1000, 1008, 1009)


# -- checkpoint metadata ----------------------------------------------------------------


def write_checkpoint(directory: Path, batch: int, meta: bytes | None = None) -> Path:
    """A checkpoint directory whose weights are bytes and whose metadata is `meta` (or sound)."""
    path = directory / f"batch-{batch:012d}"
    path.mkdir(parents=True)
    weights = f"weights {batch}".encode()
    (path / WEIGHTS_FILE).write_bytes(weights)
    sound = {"batch": batch, "saved_at": "2026-01-01T00:00:00+00:00"}
    sound["sha256"] = hashlib.sha256(weights).hexdigest()
    (path / META_FILE).write_bytes(json.dumps(sound).encode() if meta is None else meta)
    return path


class WeightsTaker:
    """Stands in for a Keras model: the loader's checks are under test, not Keras's reader."""

    optimizer = None

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def load_weights(self, path: str) -> None:
        self.loaded.append(path)


SOUND_META = {
    "batch": 200,
    "saved_at": "2026-01-01T00:00:00+00:00",
    "sha256": hashlib.sha256(b"weights 200").hexdigest(),
}
METAS = st.one_of(
    mutated(SOUND_META, JSON_VALUES).map(lambda meta: json.dumps(meta).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"null", b"[]", b"5", b"[" * DEEP + b"]" * DEEP, b'{"batch": NaN}']),
)


@settings(GENERATED, max_examples=EXAMPLES_CHECKPOINT)
@given(meta=METAS)
def test_generated_checkpoint_metadata_falls_back_or_is_refused(meta):
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        older = write_checkpoint(directory, 100)
        newest = write_checkpoint(directory, 200, meta)
        model = WeightsTaker()
        checkpoint = load_latest_checkpoint(model, directory)
        assert checkpoint.path in (older, newest)
        event("fell back" if checkpoint.path == older else "newest is sound")
        assert model.loaded == [str(checkpoint.path / WEIGHTS_FILE)]
        assert resumable_checkpoint(directory) == checkpoint

        older.rename(directory / ".removed")  # alone, a damaged checkpoint is refused
        try:
            assert load_latest_checkpoint(WeightsTaker(), directory).path == newest
        except CheckpointError as error:
            assert "no checkpoint could be loaded" in str(error)
