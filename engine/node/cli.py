"""`charles-stream node KIND --hub HOST:PORT`: join a running stream from another machine.

Example::

    charles-stream node collector --hub 192.168.1.10:8765 --index 5      # asks for the token once
    charles-stream node trainer --hub 192.168.1.10:8765 --model model_0000_demo_v1
    charles-stream node trainer --hub 192.168.1.10:8765 --model model_0000_demo_v1 --worker-index 1
    charles-stream node recorder --hub 192.168.1.10:8765 --index 3 --game builtin --player ada
    charles-stream node driver --hub 192.168.1.10:8765 --model model_0000_demo_v1 \\
        --token-file hub_token --fingerprint 3F:A0:...:9C

The streaming PC runs `charles-stream` with `[hub] host` set to one of its
LAN addresses (or "0.0.0.0"); its hub then serves TLS and logs the
certificate's fingerprint. This command, on another machine:

1. takes the hub token once (`--token-file`, else `CHARLES_HUB_TOKEN`, else
   the one stored before, else a prompt) and keeps it in
   `<data_dir>/secrets/hub-HOST-PORT.token` (0600);
2. pins the hub's certificate: the fingerprint given with `--fingerprint`,
   else the one pinned before, else the one seen on first contact (trust on
   first use: compare it with the streaming PC's log line). A certificate
   other than the pinned one is refused, naming both fingerprints;
3. replaces itself with the node process (`python -m engine.KIND.node`,
   as the app's supervisor starts it) with the hub's address, the token and
   the pin in its environment (`engine.node.client`).

A loopback `--hub` (127.0.0.1:`[hub] local_port` on the streaming PC
itself) is plain ws://; any other address is wss://, so the token never
crosses the network in clear text. The node waits `--give-up-s` for a hub
that is gone before it exits 1.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
import os
import re
import signal
import ssl
import sys
from pathlib import Path

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    config_path_for_processes,
    data_dir_from,
    non_negative_int,
    positive_float,
    seed_value,
)
from engine.core.errors import UsageError
from engine.core.secrets import read_secret, secret_path, write_private
from engine.core.tls import needs_tls, parse_fingerprint, peer_fingerprint
from engine.node.client import (
    HUB_FINGERPRINT_ENV,
    HUB_GIVE_UP_ENV,
    HUB_TOKEN_ENV,
    HUB_URL_ENV,
    NodeError,
)

log = logging.getLogger("charles.node")

# The node process each kind runs: the supervisor's table (engine/app/processes.py) names the
# same modules; by name here, as a node may not import the capabilities above it.
NODE_MODULES = {
    "collector": "engine.collector.node",
    "recorder": "engine.recorder.node",
    "trainer": "engine.trainer.node",
    "driver": "engine.driver.node",
}
# A node on another machine rides out a hub restart or a flaky link for this long.
DEFAULT_GIVE_UP_S = 300.0
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `charles-stream node KIND ...`."""
    parser = subparsers.add_parser(
        "node",
        help="join a running stream from another machine (collector, recorder, trainer, driver)",
        description=(
            "Join the stream whose hub runs at --hub from this machine. The token is asked "
            "for once and kept under <data_dir>/secrets; the hub's TLS certificate is pinned "
            "on first contact."
        ),
    )
    kinds = parser.add_subparsers(title="kinds", metavar="KIND", required=True)
    for kind, help_text in (
        ("collector", "an NPC collector on the built-in game: its sets go to the trainer"),
        ("recorder", "a recorder of a person's play in a game profile"),
        ("trainer", "the trainer (e.g. on a GPU box)"),
        ("driver", "the driver (player)"),
    ):
        sub = kinds.add_parser(kind, help=help_text, description=help_text)
        _add_link_arguments(sub)
        if kind in ("collector", "recorder"):
            sub.add_argument(
                "--index",
                required=True,
                type=non_negative_int,
                help=f"which {kind}: one the streaming PC's own {kind}s do not use (e.g. 5)",
            )
        if kind == "collector":
            sub.add_argument("--seed", type=seed_value, help="its seed (default: a new one)")
        if kind == "recorder":
            sub.add_argument("--game", required=True, metavar="PROFILE", help="game profile")
            sub.add_argument("--player", required=True, help='stored as source "human:NAME"')
        if kind in ("trainer", "driver"):
            sub.add_argument(
                "--model",
                required=True,
                metavar="VERSION",
                help="the version to start with (the hub moves it to the streamed one)",
            )
        if kind == "trainer":
            sub.add_argument(
                "--worker-index",
                type=non_negative_int,
                metavar="N",
                help='[trainer] strategy = "multi_worker": this box\'s place in trainer.workers '
                "(0 = the chief), instead of trainer.worker_index",
            )
        sub.set_defaults(handler=functools.partial(join, kind))


def _add_link_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hub",
        required=True,
        type=hub_address,
        metavar="HOST:PORT",
        help="the streaming PC's address and [hub] port, e.g. 192.168.1.10:8765",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"a file holding the hub token (else ${HUB_TOKEN_ENV}, the stored one, or a prompt)",
    )
    parser.add_argument(
        "--fingerprint",
        type=_fingerprint,
        metavar="SHA256",
        help="the hub certificate's fingerprint, as the streaming PC logged it (pins or re-pins)",
    )
    parser.add_argument(
        "--give-up-s",
        type=positive_float,
        default=DEFAULT_GIVE_UP_S,
        metavar="S",
        help=f"exit 1 after this long without the hub (default {DEFAULT_GIVE_UP_S:g})",
    )
    add_config_argument(parser)
    add_data_argument(parser)


def join(kind: str, args: argparse.Namespace) -> int:
    """Resolve the token and the pin, then become the node process (does not return on POSIX)."""
    host, port = args.hub
    config = config_from(args)
    data_dir = data_dir_from(args, config).resolve()
    token = node_token(data_dir, host, port, args.token_file)
    environment = dict(os.environ)
    shown = f"[{host}]" if ":" in host else host
    if needs_tls(host):
        fingerprint = pinned_fingerprint(data_dir, host, port, args.fingerprint)
        environment[HUB_URL_ENV] = f"wss://{shown}:{port}/ws/node"
        environment[HUB_FINGERPRINT_ENV] = fingerprint
    else:
        environment[HUB_URL_ENV] = f"ws://{shown}:{port}/ws/node"
        environment.pop(HUB_FINGERPRINT_ENV, None)
    environment[HUB_TOKEN_ENV] = token
    environment[HUB_GIVE_UP_ENV] = str(args.give_up_s)
    argv = [sys.executable, "-m", NODE_MODULES[kind], "--data", str(data_dir)]
    config_path = config_path_for_processes(args)
    if config_path:
        argv += ["--config", config_path]
    argv += _kind_arguments(kind, args)
    log.info("joining the stream at %s as a %s", environment[HUB_URL_ENV], kind)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, argv, environment)
    import subprocess  # Windows has no exec that keeps the process: run it and pass its code on

    # One console: Ctrl+C reaches the node as well, which stops cleanly (a trainer ships its
    # last checkpoint first). Here it only waits: Python's default would raise, and run()
    # would then kill the node 0.25 s later, mid-cleanup.
    previous = signal.signal(signal.SIGINT, _wait_for_the_node)
    try:
        return subprocess.run(argv, env=environment, check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_for_the_node(signum: int, frame: object) -> None:
    log.info("Ctrl+C: waiting for the node to stop")


def hub_address(text: str) -> tuple[str, int]:
    """argparse type: "HOST:PORT" ("[v6]:PORT" for IPv6) -> (host, port)."""
    match = _HOST_PORT.fullmatch(text.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; accepted: HOST:PORT of the streaming PC's hub, e.g. "
            "192.168.1.10:8765 or [fd00::10]:8765 (port 1-65535)"
        )
    return match["host"].strip("[]"), port


def node_token(data_dir: Path, host: str, port: int, token_file: Path | None) -> str:
    """The hub token: --token-file, $CHARLES_HUB_TOKEN, the stored one, or a prompt; then stored.

    A token given anew replaces the stored one (the streamer made a new one).
    """
    name = f"{_file_stem(host, port)}.token"
    given = ""
    if token_file is not None:
        try:
            given = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(
                f"--token-file {str(token_file)!r} cannot be read ({error}); accepted: a file "
                "holding the hub token (the streaming PC's <data_dir>/secrets/hub_token)"
            ) from None
        if not given:
            raise UsageError(f"--token-file {str(token_file)!r} is empty; accepted: the hub token")
    given = given or os.environ.get(HUB_TOKEN_ENV, "").strip()
    stored = read_secret(data_dir, name)
    if not given and stored:
        return stored
    if not given:
        given = _ask_for_token(host, port)
    if given != stored:
        write_private(secret_path(data_dir, name), given)
        log.info("hub token stored in %s (0600)", secret_path(data_dir, name))
    return given


def pinned_fingerprint(data_dir: Path, host: str, port: int, given: str | None) -> str:
    """The fingerprint to trust for the hub at host:port, checked against what it presents now.

    Pins on first contact (or when `given`), refuses a certificate other
    than the pinned one with both fingerprints and how to re-pin.
    """
    path = secret_path(data_dir, f"{_file_stem(host, port)}.fingerprint")
    stored = read_secret(data_dir, path.name)
    try:
        seen = peer_fingerprint(host, port)
    except (OSError, ssl.SSLError, TimeoutError) as error:
        raise NodeError(
            f"cannot reach the hub's TLS port at {host}:{port}: {error!r}; check that "
            "charles-stream runs there with [hub] host beyond loopback and this port, and that "
            "no firewall is in the way"
        ) from None
    expected = given or stored
    if expected is not None and seen != expected:
        source = "given with --fingerprint" if given else f"pinned in {path}"
        raise NodeError(
            f"the hub at {host}:{port} presents a certificate with fingerprint {seen}, but "
            f"this node expects {expected} ({source}): someone may be between this node and "
            "the hub, or the hub has a new certificate. Compare with the fingerprint the hub "
            "logged when it started; if it is the new one, re-pin with --fingerprint " + seen
        )
    if stored != seen:
        write_private(path, seen)
        if given:
            log.info("hub certificate %s pinned in %s", seen, path)
        else:
            log.warning(
                "first contact with the hub at %s:%d: pinned its certificate fingerprint %s "
                "in %s; check that it is the one the streaming PC logged",
                host,
                port,
                seen,
                path,
            )
    return seen


def _ask_for_token(host: str, port: int) -> str:
    prompt = f"hub token for {host}:{port} (the streaming PC's <data_dir>/secrets/hub_token): "
    try:
        token = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        token = ""
    token = token.strip()
    if not token:
        raise UsageError(
            f"no hub token: give --token-file FILE, set {HUB_TOKEN_ENV}, or type it when asked "
            "(it is the content of <data_dir>/secrets/hub_token on the streaming PC)"
        )
    return token


def _kind_arguments(kind: str, args: argparse.Namespace) -> list[str]:
    if kind == "collector":
        seed = [] if args.seed is None else ["--seed", str(args.seed)]
        return ["--index", str(args.index), *seed]
    if kind == "recorder":
        return ["--index", str(args.index), "--game", args.game, "--player", args.player]
    index = getattr(args, "worker_index", None)
    return ["--model", args.model, *([] if index is None else ["--worker-index", str(index)])]


def _file_stem(host: str, port: int) -> str:
    return f"hub-{host.replace(':', '_')}-{port}"


def _fingerprint(text: str) -> str:
    try:
        return parse_fingerprint(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
