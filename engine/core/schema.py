"""msgspec does the validating; this module says what went wrong the way people read it.

Example::

    from engine.core.schema import convert
    convert({"sim": {"tick_hz": 0.5}}, Config, where="config.toml", error=ConfigError)
    # ConfigError: config.toml: 'sim.tick_hz' = 0.5 is out of range; accepted: 1.0 to 240.0

Config sections, model specs and wire messages are msgspec Structs with their
ranges (`Annotated[float, Meta(ge=..., le=...)]`), choices (`Literal`) and
cross-key checks (`__post_init__`) declared on the fields. msgspec walks the
data in C; when it refuses something, its error says only what was expected
and a path like `$.data.bins[...].kind`. `explain` turns that into one
sentence naming the dotted key, the value found there and what would be
accepted, so config.toml, a spec file and a network message all speak alike:

- `'sim.tick_hz' = 0.5 is out of range; accepted: 1.0 to 240.0`
- `'sim.tick_hz' = nan is not a finite number; accepted: 1.0 to 240.0`
- `unknown key 'sim.foo'; accepted keys here: chase_height, chase_width, ...`
- `'sim.hood_width' = 'wide' has the wrong type; expected int`
- `'sim.window' = 'maybe' is not accepted; use one of 'auto', 'on', 'off'`

The walk to find the value follows the error's path only, so it costs
nothing on the happy path and stays shallow for hostile, deeply nested input.

Text comes in through `parse_toml` (config.toml, model specs, game profiles)
and `parse_json_object` (API bodies, checkpoint metadata): a syntax error, a
value nested deeper than `MAX_NESTING` (Python's parsers recurse, and a few
thousand brackets would end in `RecursionError`) or, for JSON, anything but an
object is refused as the caller's error type with the same kind of sentence.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import sys
import tomllib
import types
import typing
from collections.abc import Collection
from typing import Annotated, Any, Literal

import msgspec

# The largest float: a range up to it only says "finite" (NaN and infinity fail a bound).
FLOAT_MAX = sys.float_info.max
# A float that must be a real number: NaN and +-inf are refused.
Finite = Annotated[float, msgspec.Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=FLOAT_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0)]
# No config, spec, profile, message or API body nests deeper than a handful of levels; a hostile
# one that does is refused before anything recurses into it.
MAX_NESTING = 32

# msgspec's "... - at `$.a.b[0]`" and "... - at `key` in `$.a`".
_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[(\.\.\.)\]")
# re.S: a key may hold any character, a newline too (it is quoted with repr in the sentence).
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(.*)`$", re.S)
_WRONG_TYPE = re.compile(r"^Expected `[^`]*`, got `[^`]*`$")
_NOT_FOUND = object()
_T = typing.TypeVar("_T")

_shown = reprlib.Repr()
_shown.maxlevel = 4
_shown.maxstring = 120
_shown.maxother = 120
_shown.maxlist = _shown.maxtuple = _shown.maxdict = 8


def parse_toml(text: str, *, where: str, error: type[Exception]) -> dict[str, Any]:
    """TOML text as a table; `error` says `where` for bad TOML or a value nested too deeply."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{where}: not valid TOML: {problem}") from None
    except RecursionError:  # tomllib reads nested arrays and inline tables recursively
        raise error(f"{where}: a value is {_TOO_DEEP}") from None
    if _deeper_than(table, MAX_NESTING):
        raise error(f"{where}: a value is {_TOO_DEEP}")
    return table


def parse_json_object(text: str | bytes, *, where: str, error: type[Exception]) -> dict[str, Any]:
    """A JSON object from text or bytes (UTF-8/16/32); anything else is `error` naming `where`.

    JSON's NaN and Infinity literals parse as floats: the schema or the field's
    check refuses them where a number must be finite.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{where} is {_TOO_DEEP}") from None
    except ValueError as problem:  # UnicodeDecodeError and over-long integers too
        raise error(f"{where} is not JSON ({problem}); accepted: a JSON object") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise error(f"{where} is a JSON {kind}; accepted: a JSON object")
    if _deeper_than(value, MAX_NESTING):
        raise error(f"{where} is {_TOO_DEEP}")
    return value


def convert(
    table: Any,
    schema: type[_T],
    *,
    where: str,
    error: type[Exception],
    prefix: str = "",
    internal: Collection[str] = (),
) -> _T:
    """Validate plain data (a TOML table) into `schema`; raise `error` with one readable sentence.

    `where` opens the sentence (the file); `prefix` is the dotted key of `table`
    itself ("" for a whole file); `internal` names fields that the program sets
    and a file may not (a config's `source`).
    """
    if isinstance(table, dict):
        for name in internal:
            if name in table:
                accepted = ", ".join(_field_names(schema, internal))
                key = _join(prefix.rstrip("."), name)
                raise error(f"{where}: unknown key {key!r}; accepted keys here: {accepted}")
    try:
        return msgspec.convert(table, schema, strict=True)
    except msgspec.ValidationError as problem:
        reason = explain(problem, table, schema, prefix=prefix, internal=internal)
        raise error(f"{where}: {reason}") from None
    except RecursionError:
        raise error(f"{where}: a value is nested too deeply to be read") from None


def explain(
    problem: msgspec.ValidationError,
    data: Any,
    schema: Any,
    *,
    prefix: str = "",
    internal: Collection[str] = (),
) -> str:
    """One sentence for a msgspec error: the dotted key, the value there, what is accepted.

    `data` is what was validated, as plain values (a TOML table, an untyped
    msgpack decode), so the sentence can show the offending value.
    """
    found = _LOCATION.match(str(problem))
    assert found is not None  # the pattern matches any text
    message = found["message"]
    hint, value, key = schema, data, prefix.rstrip(".")
    for field, index, any_key in _SEGMENT.findall(found["path"] or ""):
        hint = _member(hint, value)
        if any_key:
            entry = _bad_entry(hint, value)
            if entry is None:  # not found again: say where, without the entry
                return f"{message} (at '{key}')"
            name, value, key_problem = entry
            if key_problem:
                return _describe(message, typing.get_args(_base(hint))[0], name, f"{key} key", ())
            key, hint = f"{key}.{key_text(name)}", typing.get_args(_base(hint))[1]
        elif index:
            key, hint = f"{key}[{index}]", _item_type(hint)
            value = value[int(index)] if isinstance(value, list | tuple) else _NOT_FOUND
        else:
            hint = _field_type(_base(hint), field)
            value = value.get(field, _NOT_FOUND) if isinstance(value, dict) else _NOT_FOUND
            key = _join(key, field)
    if found["key"]:  # a dict key at this location is refused
        key_type = typing.get_args(_base(_member(hint, value)))[0]
        bad = _bad_keys(key_type, value)
        return _describe(message, key_type, bad, f"{key} key", ())
    at_root = hint is schema
    return _describe(message, hint, value, key, internal if at_root else ())


def field_range(schema: type, name: str) -> tuple[float | None, float | None]:
    """The inclusive range a Struct field declares (`Meta(ge=, le=)`), for checks outside files."""
    info = msgspec.inspect.type_info(_field_type(schema, name))
    return _bounds(info)


def key_text(name: Any) -> str:
    """A table key as a dotted key shows it: as it is, or quoted as TOML would (`"a\\nb"`).

    A key is the user's text too: a newline or a right-to-left override in it
    must not break the one line an error is, nor reverse the rest of it.
    """
    if not isinstance(name, str):
        return shown(name)
    return name if name.isprintable() else json.dumps(name)


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, shortened, safe for any nesting depth."""
    return "(not found)" if value is _NOT_FOUND else _shown.repr(value)


_TOO_DEEP = f"nested too deeply to be read; accepted: at most {MAX_NESTING} levels"
_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
_JSON_KINDS[type(None)] = "null"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and tables inside `value` nest more than `limit` levels (no recursion)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list | tuple)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list | tuple)
        ]
        if not level:
            return False
    return True


def _describe(message: str, hint: Any, value: Any, key: str, internal: Collection[str]) -> str:
    hint = _member(hint, value)
    base = _base(hint)
    text = shown(value)
    unknown = _UNKNOWN.match(message)
    if unknown:
        accepted = ", ".join(_field_names(base, internal))
        return f"unknown key {_join(key, unknown[1])!r}; accepted keys here: {accepted}"
    missing = _MISSING.match(message)
    if missing:
        return f"missing key {_join(key, missing[1])!r}"
    if typing.get_origin(base) is Literal:
        accepted = ", ".join(repr(choice) for choice in typing.get_args(base))
        return f"'{key}' = {text} is not accepted; use one of {accepted}"
    if _WRONG_TYPE.match(message):
        if _is_struct(base):
            return f"'{key}' must be a table [{key}], got {text}"
        origin = typing.get_origin(base) or base
        if origin is dict:
            return f"'{key}' must be a table, got {text}"
        if origin in (list, tuple):
            return f"'{key}' must be a list, got {text}"
        return f"'{key}' = {text} has the wrong type; expected {getattr(base, '__name__', base)}"
    if message.startswith("Expected `"):  # a constraint: a range, a length, a pattern
        info = msgspec.inspect.type_info(hint)
        if getattr(info, "ge", None) is not None or getattr(info, "le", None) is not None:
            accepted = _describe_range(*_bounds(info))
            if isinstance(value, float) and not math.isfinite(value):
                return f"'{key}' = {text} is not a finite number; accepted: {accepted}"
            return f"'{key}' = {text} is out of range; accepted: {accepted}"
        return f"'{key}' = {text} is not accepted; {message[0].lower()}{message[1:]}"
    # A check in a __post_init__: its sentence names its own keys.
    return message


def _member(hint: Any, value: Any) -> Any:
    """Of a union (`X | None`), the member `value` was meant for; other hints as they are."""
    if typing.get_origin(hint) not in (types.UnionType, typing.Union):
        return hint
    members = [m for m in typing.get_args(hint) if m is not type(None)]
    for member in members:
        base = _base(member)
        origin = typing.get_origin(base) or base
        if isinstance(value, dict) and (_is_struct(base) or origin is dict):
            return member
        if isinstance(value, list) and origin in (list, tuple):
            return member
    return members[0]


def _base(hint: Any) -> Any:
    """A hint without its `Annotated` constraints."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _is_struct(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _field_type(schema: Any, name: str) -> Any:
    for field in msgspec.structs.fields(schema):
        if field.encode_name == name:
            return field.type
    raise KeyError(name)


def _field_names(schema: Any, internal: Collection[str]) -> list[str]:
    if not _is_struct(schema):
        return []
    fields = msgspec.structs.fields(schema)
    return sorted(f.encode_name for f in fields if f.encode_name not in internal)


def _item_type(hint: Any) -> Any:
    args = typing.get_args(_base(hint))
    return args[0] if args else Any


def _bad_entry(hint: Any, value: Any) -> tuple[Any, Any, bool] | None:
    """The first (key, value, whether the key is the problem) of a dict that does not validate."""
    if not isinstance(value, dict):
        return None
    key_type, value_type = typing.get_args(_base(hint))
    for key, entry in value.items():
        if not _fits(key, key_type):
            return key, entry, True
        if not _fits(entry, value_type):
            return key, entry, False
    return None


def _bad_keys(key_type: Any, value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not _fits(key, key_type):
                return key
    return _NOT_FOUND


def _fits(value: Any, hint: Any) -> bool:
    try:
        msgspec.convert(value, hint, strict=True)
    except (msgspec.ValidationError, RecursionError):
        return False
    return True


def _bounds(info: Any) -> tuple[float | None, float | None]:
    low = getattr(info, "ge", None)
    high = getattr(info, "le", None)
    low = None if low is not None and low <= -FLOAT_MAX else low
    high = None if high is not None and high >= FLOAT_MAX else high
    return low, high


def _describe_range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
