"""A stream across machines: `charles-stream node` joining a hub over TLS between namespaces.

The streaming PC is a network namespace running the real `charles-stream run`
with `[hub] host = "0.0.0.0"` and `[stream] trainer = false` (the trainer
lives elsewhere): its hub serves TLS with a self-signed certificate. A stand-in
trainer on the hub's machine (tests/children/set_counter.py, the real node
client) counts the sets routed to it. Collector PCs are namespaces joined to
the hub by veth pairs (tests/netns.py): real TCP and TLS between distinct
addresses, not loopback. A stand-in collector that numbers its sets
(tests/children/set_sender.py) shows exactly which set a link cut mid-set
loses. Every wait polls /api/status (or a process's output, or the sender's
socket) under a generous overall bound; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.core.tls import HUB_CERT_FILE, fingerprint_of_pem
from engine.node.client import (
    HUB_FINGERPRINT_ENV,
    HUB_GIVE_UP_ENV,
    HUB_TOKEN_ENV,
    HUB_URL_ENV,
)
from tests.children.set_sender import PREFIX
from tests.netns import Lab, network_lab
from tests.stream_helpers import TINY_STREAM_CONFIG

pytestmark = pytest.mark.slow

HUB_PORT = 18765
LOCAL_PORT = 18766
# Only ends a hung test: a busy 2-core machine starts the app and a collector in seconds, and a
# cut link takes the heartbeat's 10 s plus 5 s for a pong to be missed on each side.
HANG_S = 120.0
# A set cut mid-send: this many frame bytes cross a LINK_RATE link in about 2 s, so a cut can
# land inside one set; the hub's and the node's heartbeat pongs wait behind at most one set,
# well within aiohttp's 5 s for a pong.
PROBE_BYTES = 250_000
LINK_RATE = "1mbit"
# Bytes sent and not yet acknowledged by the hub's kernel on the probe's connection: only part
# of a set can be this much (its pings and pongs are a few bytes), so that set is still on
# its way and the hub has not got it whole.
MID_SET_BYTES = 64 * 1024

HUB_CONFIG = f"""
[app]
data_dir = "{{data_dir}}"

[hub]
host = "0.0.0.0"
port = {HUB_PORT}
local_port = {LOCAL_PORT}

[obs]
enabled = false

[stream]
collectors = 0
trainer = false
driver = false
"""


@dataclass
class StreamingPc:
    """The hub's namespace: the app, its data folder, and the stand-in trainer's output."""

    lab: Lab
    data_dir: Path
    log: Path
    counter_out: Path

    def status(self) -> dict:
        url = f"http://127.0.0.1:{LOCAL_PORT}/api/status"
        return json.loads(self.lab.http_get("hub", url, timeout=5.0))

    def token(self) -> str:
        return (self.data_dir / "secrets" / "hub_token").read_text().strip()

    def fingerprint(self) -> str:
        return fingerprint_of_pem((self.data_dir / "secrets" / HUB_CERT_FILE).read_bytes())

    def sets_counted(self, source_prefix: str) -> int:
        lines = self.counter_out.read_text().splitlines()
        return sum(1 for line in lines if line.startswith("sets ") and source_prefix in line)

    def probes_routed(self) -> list[int]:
        """The numbers of tests/children/set_sender.py's sets the trainer got, in arrival order."""
        lines = self.counter_out.read_text().splitlines()
        sources = [line.split(" ", 2)[2] for line in lines if line.startswith("sets ")]
        return [int(source[len(PREFIX) :]) for source in sources if source.startswith(PREFIX)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with network_lab(["c1", "c2", "c3"]) as made:
        yield made


@pytest.fixture(scope="module")
def streaming_pc(lab: Lab, tmp_path_factory) -> Iterator[StreamingPc]:
    folder = tmp_path_factory.mktemp("streaming-pc")
    config = folder / "config.toml"
    config.write_text(HUB_CONFIG.format(data_dir=folder / "data"), encoding="utf-8")
    log = folder / "app.log"
    with log.open("w") as output:
        app = lab.popen(
            "hub",
            [sys.executable, "-m", "engine.cli", "run", "--config", str(config), "--for", "600"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    pc = StreamingPc(lab, folder / "data", log, folder / "counter.out")
    _wait_for(lambda: _answers(pc), "the app's hub to answer /api/status", app)
    environment = {
        **os.environ,
        HUB_URL_ENV: f"ws://127.0.0.1:{LOCAL_PORT}/ws/node",
        HUB_TOKEN_ENV: pc.token(),
    }
    with pc.counter_out.open("w") as output:
        counter = lab.popen(
            "hub",
            [sys.executable, "-m", "tests.children.set_counter"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    _wait_for(lambda: "set-counter" in pc.status()["nodes"], "the stand-in trainer", counter)
    yield pc
    for process in (counter, app):
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def remote_collector(lab: Lab, streaming_pc: StreamingPc, tmp_path_factory) -> Iterator[Path]:
    """`charles-stream node collector` on host c1 (host name pc-c1), joined with the token."""
    folder = tmp_path_factory.mktemp("collector-pc")
    token_file = folder / "hub_token"
    token_file.write_text(streaming_pc.token() + "\n")
    log = folder / "node.log"
    with log.open("w") as output:
        node = lab.popen(
            "c1",
            _as_host(
                "pc-c1",
                _node_command(lab, "c1", folder, "--index", "5", "--token-file", str(token_file)),
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    yield folder
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=60)


def test_a_collector_on_another_pc_joins_over_tls_and_its_sets_arrive(
    lab, streaming_pc, remote_collector
):
    app_log = streaming_pc.log.read_text()
    fingerprint = streaming_pc.fingerprint()
    assert f"certificate fingerprint SHA-256 {fingerprint}" in app_log  # for the operator

    _wait_for(
        lambda: "collector-5" in streaming_pc.status()["nodes"], "collector-5 to join the hub"
    )
    _wait_for(lambda: streaming_pc.sets_counted("collector-5@") >= 1, "a set from collector-5")

    status = streaming_pc.status()
    link = status["node_links"]["collector-5"]
    assert link["host"] == "pc-c1"
    assert link["peer"].startswith(lab.address("c1") + ":")  # over the veth, not loopback
    assert any("collector-5 (collector) on pc-c1 connected" in e for e in status["events"])
    secrets = remote_collector / "data" / "secrets"
    stem = f"hub-{lab.hub_address('c1')}-{HUB_PORT}"
    assert (secrets / f"{stem}.fingerprint").read_text().strip() == fingerprint
    assert (secrets / f"{stem}.token").read_text().strip() == streaming_pc.token()
    assert (secrets / f"{stem}.token").stat().st_mode & 0o777 == 0o600


def test_a_wrong_token_is_refused_clearly(lab, streaming_pc, tmp_path):
    token_file = tmp_path / "hub_token"
    token_file.write_text("not-the-token\n")

    done = lab.run(
        "c2",
        _node_command(lab, "c2", tmp_path, "--index", "6", "--token-file", str(token_file)),
        timeout=HANG_S,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    url = f"wss://{lab.hub_address('c2')}:{HUB_PORT}/ws/node"
    assert f"the hub at {url} refused the token (401)" in done.stderr


def test_a_changed_certificate_is_refused_naming_both_fingerprints(lab, streaming_pc, tmp_path):
    pinned = ":".join(["AB"] * 32)
    secrets = tmp_path / "data" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / f"hub-{lab.hub_address('c2')}-{HUB_PORT}.fingerprint").write_text(pinned + "\n")
    token_file = tmp_path / "hub_token"
    token_file.write_text(streaming_pc.token())

    done = lab.run(
        "c2",
        _node_command(lab, "c2", tmp_path, "--index", "6", "--token-file", str(token_file)),
        timeout=HANG_S,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    seen = streaming_pc.fingerprint()
    assert f"presents a certificate with fingerprint {seen}, but this node expects {pinned}" in (
        done.stderr
    )
    assert f"re-pin with --fingerprint {seen}" in done.stderr


def test_the_token_is_not_sent_over_plain_ws_to_another_pc(lab, streaming_pc, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(TINY_STREAM_CONFIG.format(data_dir=tmp_path / "data"))
    environment = {
        **os.environ,
        HUB_URL_ENV: f"ws://{lab.hub_address('c2')}:{HUB_PORT}/ws/node",
        HUB_TOKEN_ENV: streaming_pc.token(),
    }
    command = [sys.executable, "-m", "engine.collector.node", "--config", str(config)]

    done = lab.run("c2", [*command, "--index", "7"], env=environment, timeout=HANG_S)

    assert done.returncode == 1
    assert f"refusing to send the hub token in clear text to {lab.hub_address('c2')}" in (
        done.stderr
    )
    assert "collector-7" not in streaming_pc.status()["nodes"]


def test_a_collector_behind_a_slow_link_still_delivers(lab, streaming_pc, tmp_path):
    lab.slow("c2", "1mbit")
    token_file = tmp_path / "hub_token"
    token_file.write_text(streaming_pc.token())
    command = _node_command(lab, "c2", tmp_path, "--index", "6", "--token-file", str(token_file))
    with (tmp_path / "node.log").open("w") as output:
        node = lab.popen("c2", _as_host("pc-c2", command), stdout=output, stderr=subprocess.STDOUT)
    try:

        def arrived() -> bool:
            return streaming_pc.sets_counted("collector-6@") >= 2

        _wait_for(arrived, "sets over a 1 Mbit/s link", node)
        link = streaming_pc.status()["node_links"]["collector-6"]
        assert (link["host"], link["sets_lost"]) == ("pc-c2", 0)
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0


def test_a_cut_link_is_rejoined_with_backoff_and_its_loss_counted(
    lab, streaming_pc, remote_collector
):
    _wait_for(lambda: "collector-5" in streaming_pc.status()["nodes"], "collector-5 to join")
    before = streaming_pc.sets_counted("collector-5@")

    lab.cut("c1")
    try:
        _wait_for(
            lambda: "collector-5" not in streaming_pc.status()["nodes"],
            "the hub to notice the cut link (heartbeat)",
        )
    finally:
        lab.restore("c1")

    _wait_for(
        lambda: (
            streaming_pc.status()["node_links"].get("collector-5", {}).get("reconnects", 0) >= 1
        ),
        "collector-5 to reconnect",
    )
    _wait_for(lambda: streaming_pc.sets_counted("collector-5@") > before, "sets after the cut")
    link = streaming_pc.status()["node_links"]["collector-5"]
    node_log = (remote_collector / "node.log").read_text()
    # The set in flight at the cut, if any, is counted as lost: at most 1 per drop.
    if "counted as lost" in node_log:
        assert link["sets_lost"] >= 1 and link["bytes_lost"] > 0
    else:
        assert (link["sets_lost"], link["bytes_lost"]) == (0, 0)
    assert link["sets_lost"] <= 1
    events = streaming_pc.status()["events"]
    rejoined = "collector-5 (collector) on pc-c1 connected"
    assert any(rejoined in event and "reconnect 1" in event for event in events)


def test_a_link_cut_mid_set_loses_that_one_set_and_counts_it(lab, streaming_pc, tmp_path):
    """A set is halfway over a slow link when the link goes down: exactly it is lost, counted.

    The stand-in collector (tests/children/set_sender.py, the real node client over TLS)
    numbers its sets, so the sets the trainer got say which were lost.
    """
    lab.slow("c3", LINK_RATE)
    environment = {
        **os.environ,
        HUB_URL_ENV: f"wss://{lab.hub_address('c3')}:{HUB_PORT}/ws/node",
        HUB_TOKEN_ENV: streaming_pc.token(),
        HUB_FINGERPRINT_ENV: streaming_pc.fingerprint(),
        HUB_GIVE_UP_ENV: str(HANG_S),
    }
    log = tmp_path / "sender.log"
    command = [sys.executable, "-m", "tests.children.set_sender", "--name", "collector-8"]
    with log.open("w") as output:
        sender = lab.popen(
            "c3",
            [*command, "--bytes", str(PROBE_BYTES), "--period", "1"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    _wait_for(lambda: streaming_pc.probes_routed(), "a first set over the slowed link", sender)
    _wait_for(
        lambda: _unacknowledged_bytes(lab, "c3") >= MID_SET_BYTES,
        "a set halfway over the link",
        sender,
    )
    routed_before_cut = streaming_pc.probes_routed()
    lab.cut("c3")
    try:
        _wait_for(
            lambda: "collector-8" not in streaming_pc.status()["nodes"],
            "the hub to notice the cut link (heartbeat)",
        )
        _wait_for(lambda: "counted as lost" in log.read_text(), "the node to notice the cut")
    finally:
        lab.restore("c3")
    _wait_for(
        lambda: streaming_pc.status()["node_links"].get("collector-8", {}).get("reconnects"),
        "collector-8 to rejoin",
        sender,
    )
    set_bytes = int(log.read_text().split("set_bytes ", 1)[1].split()[0])
    link = streaming_pc.status()["node_links"]["collector-8"]
    lab.unslow("c3")  # what waited through the cut drains quickly
    sender.send_signal(signal.SIGTERM)
    assert sender.wait(timeout=HANG_S) == 0, log.read_text()[-3000:]
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    _wait_for(
        lambda: len(streaming_pc.probes_routed()) >= summary["sent"] - summary["sets_lost"],
        "every set the node did not count lost to reach the trainer",
    )

    routed = streaming_pc.probes_routed()
    missing = sorted(set(range(1, summary["sent"] + 1)) - set(routed))
    assert (summary["reconnects"], summary["sets_lost"]) == (1, 1), summary
    assert summary["bytes_lost"] == set_bytes  # the one set, as encoded on the wire
    assert routed == sorted(set(routed))  # in order, none twice
    assert len(routed) == summary["sent"] - summary["sets_lost"]
    assert len(missing) == 1 and missing[0] > max(routed_before_cut)  # the set in flight
    assert (link["reconnects"], link["sets_lost"], link["bytes_lost"]) == (1, 1, set_bytes)
    said = f"(reconnect 1; lost so far: 1 set(s), {set_bytes} bytes)"
    assert any(
        "collector-8 (collector)" in e and said in e for e in streaming_pc.status()["events"]
    )


def _unacknowledged_bytes(lab: Lab, name: str) -> int:
    """Bytes `name` sent to the hub's TLS port that the hub's kernel has not acknowledged yet."""
    listed = lab.run(name, ["ss", "-tnH", "state", "established", "dst", f":{HUB_PORT}"])
    assert listed.returncode == 0, listed.stderr
    # Columns: Recv-Q Send-Q local peer (the state, filtered, is not shown).
    return sum(int(line.split()[1]) for line in listed.stdout.splitlines() if line.strip())


def _node_command(lab: Lab, name: str, folder: Path, *arguments: str) -> list[str]:
    config = folder / "config.toml"
    config.write_text(TINY_STREAM_CONFIG.format(data_dir=folder / "data"), encoding="utf-8")
    hub = f"{lab.hub_address(name)}:{HUB_PORT}"
    return [
        sys.executable, "-m", "engine.cli", "node", "collector", "--hub", hub,
        "--config", str(config), "--data", str(folder / "data"), *arguments,
    ]  # fmt: skip


def _as_host(hostname: str, argv: list[str]) -> list[str]:
    """`argv` with its own host name (a UTS namespace), as on another PC."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *argv]


def _answers(pc: StreamingPc) -> bool:
    try:
        pc.status()
    except OSError:
        return False
    return True


def _wait_for(
    condition: Callable[[], bool], what: str, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"waiting for {what}: the process exited {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {HANG_S:g} s")
        time.sleep(0.2)
