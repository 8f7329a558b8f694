"""`charles-stream chat`: type chat commands into the running app, as the broadcaster.

Example::

    charles-stream chat                      # a prompt: !stats, !switch model_0003_xception, ...
    charles-stream chat --say "!tag great recovery"

It posts each line to the running app's `POST /api/chat` with the hub token
(`<data_dir>/secrets/hub_token`), so the very router that answers Twitch
answers here; the reply is printed. Works with and without Twitch.
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from engine.core.cli_args import add_config_argument, add_data_argument, config_from, data_dir_from
from engine.core.config import TWITCH_LOGIN, HubConfig
from engine.core.secrets import HUB_TOKEN_FILE, SECRETS_DIR
from engine.core.tls import local_base_url

log = logging.getLogger("charles.chat")

REQUEST_TIMEOUT_S = 30.0  # a switch to a line without versions counts its parameters first
NO_REPLY = "(no reply: not a command, or on cooldown)"
PROMPT = "chat> "


class ChatFailed(Exception):
    """The app could not be reached or refused the request; the message says why."""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `chat`."""
    parser = subparsers.add_parser(
        "chat", help="type chat commands into the running app (as the broadcaster)"
    )
    parser.add_argument("--say", metavar="TEXT", help="send this one line, print the reply, exit")
    parser.add_argument(
        "--user",
        default="streamer",
        type=_user_name,
        help="the name moments and switches are recorded under (default: streamer)",
    )
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    """One line (--say) or a prompt until EOF; exit 1 if the app cannot be reached."""
    config = config_from(args)
    url = chat_url(config.hub)
    try:
        token = _hub_token(data_dir_from(args, config))
        if args.say is not None:
            print(say(url, token, args.say, args.user) or NO_REPLY)
            return 0
        _prompt(url, token, args.user)
    except ChatFailed as problem:
        log.error("%s", problem)
        return 1
    return 0


def chat_url(hub: HubConfig) -> str:
    """Where the app on this config listens for chat lines."""
    # Plain HTTP on this machine even when the hub serves TLS to other machines.
    return f"{local_base_url(hub.host, hub.port, hub.local_port)}/api/chat"


def say(url: str, token: str, text: str, user: str) -> str | None:
    """Send one chat line; the router's reply, or None. `ChatFailed` if the app says no."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text, "user": user}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return json.loads(response.read())["reply"]
    except urllib.error.HTTPError as error:
        detail = _error_text(error)
        if error.code == 401:
            raise ChatFailed(
                f"the app at {url} refused the hub token ({detail}); is it running with the "
                "same data directory?"
            ) from None
        raise ChatFailed(f"the app at {url} answered {error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ChatFailed(
            f"no app answers at {url} ({getattr(error, 'reason', error)}); start `charles-stream` "
            "first, with the same [hub] host and port"
        ) from None


def _prompt(url: str, token: str, user: str) -> None:
    print(f"Chat with the app at {url} as the broadcaster; !help lists commands, Ctrl-D ends.")
    while True:
        try:
            line = input(PROMPT)
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if line.strip():
            print(say(url, token, line, user) or NO_REPLY)


def _hub_token(data_dir: Path) -> str:
    path = data_dir / SECRETS_DIR / HUB_TOKEN_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as error:
        raise ChatFailed(
            f"cannot read the hub token {path} ({error.strerror or error}); the app writes it "
            "when it starts: is it running with this data directory (--data, [app] data_dir)?"
        ) from None


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason


def _user_name(text: str) -> str:
    """argparse type: a chat user name, 3-25 letters, digits or '_'."""
    if not TWITCH_LOGIN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; use 3-25 letters, digits or '_'"
        )
    return text
