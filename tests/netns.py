"""Machines on this one: Linux network namespaces joined by veth pairs, for tests across hosts.

Example::

    with network_lab(["c1", "c2"]) as lab:        # namespaces cs<pid>-<n>-hub, -c1, -c2
        lab.hub_address("c1")                      # "10.77.1.1": the hub's end towards c1
        process = lab.popen("hub", ["python", "-m", "http.server", "8000"])
        lab.http_get("c1", "http://10.77.1.1:8000/")   # from inside c1's namespace
        lab.cut("c1"); lab.restore("c1")           # the link goes down, then up
        lab.slow("c1", "1mbit")                    # tc tbf on both ends (no netem here)
        lab.unslow("c1")                           # and off again

The hub namespace (the streaming PC) has one veth per other namespace: its
end is `h-<name>` with 10.77.<i>.1/30, the other end `eth0` with
10.77.<i>.2/30 in namespace `<name>` (i = 1, 2, ... in the order given).
Every namespace has its own loopback, up, and no route anywhere else: the
traffic stays inside the namespaces the lab made. Names carry the test
process's pid and a counter, so parallel runs do not meet. Everything
(processes left in the namespaces, the namespaces and their veths) is
removed on exit, failure included; a lab left by a test process that was
killed is removed by the next one. Needs root and `ip netns`; when that
fails the test fails with the command's own message, it is never skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

HUB = "hub"
# A lab namespace's name: "cs<pid of the test process>-<lab number>-<host>".
_STALE_NAME = re.compile(r"cs(?P<pid>[0-9]+)-[0-9]+-[A-Za-z0-9_-]+")
_CLONE_NEWNET = 0x40000000
_labs = itertools.count()


class NetnsError(AssertionError):
    """A namespace command failed: the test cannot build its network."""


@dataclass
class Lab:
    """The namespaces of one test and helpers to run, cut and slow what is between them."""

    prefix: str
    names: tuple[str, ...]
    _processes: list[subprocess.Popen] = field(default_factory=list)

    def namespace(self, name: str) -> str:
        """The Linux name of a lab namespace ("hub" or one given to network_lab)."""
        return f"{self.prefix}-{name}"

    def hub_address(self, name: str) -> str:
        """The hub's address on its link to `name`."""
        return f"10.77.{self._index(name)}.1"

    def address(self, name: str) -> str:
        """`name`'s own address (on its link to the hub)."""
        return f"10.77.{self._index(name)}.2"

    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """`argv` as run inside namespace `name` (`ip netns exec`)."""
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    def popen(self, name: str, argv: Sequence[str], **options: object) -> subprocess.Popen:
        """Start `argv` in namespace `name`; it is killed when the lab closes if still running."""
        process = subprocess.Popen(self.command(name, argv), **options)  # type: ignore[call-overload]
        self._processes.append(process)
        return process

    def run(self, name: str, argv: Sequence[str], **options: object) -> subprocess.CompletedProcess:
        """Run `argv` in namespace `name` to its end (output captured as text)."""
        options = {"capture_output": True, "text": True, **options}
        return subprocess.run(self.command(name, argv), check=False, **options)  # type: ignore[call-overload]

    def cut(self, name: str) -> None:
        """Take the hub's end of the link to `name` down: packets stop, sockets stay open."""
        _ip("-n", self.namespace(HUB), "link", "set", "dev", f"h-{name}", "down")

    def restore(self, name: str) -> None:
        """Bring the link to `name` back up (its address stayed; the route comes back)."""
        _ip("-n", self.namespace(HUB), "link", "set", "dev", f"h-{name}", "up")

    def slow(self, name: str, rate: str = "1mbit") -> None:
        """Limit the link to `name` to `rate` each way (tbf on both ends: no netem here)."""
        for namespace, device in (
            (self.namespace(HUB), f"h-{name}"),
            (self.namespace(name), "eth0"),
        ):
            _run(
                "ip", "netns", "exec", namespace, "tc", "qdisc", "replace", "dev", device,
                "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms",
            )  # fmt: skip

    def unslow(self, name: str) -> None:
        """Take `slow`'s limit off the link to `name` again (both ends back to the default)."""
        for namespace, device in (
            (self.namespace(HUB), f"h-{name}"),
            (self.namespace(name), "eth0"),
        ):
            _run("ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root")

    def http_get(self, name: str, url: str, timeout: float = 10.0) -> bytes:
        """GET `url` from inside namespace `name` (a thread that joined it), return the body."""
        result: list[bytes | BaseException] = []

        def fetch() -> None:
            try:
                _join_namespace(self.namespace(name))
                with urllib.request.urlopen(url, timeout=timeout) as reply:
                    result.append(reply.read())
            except BaseException as error:  # handed to the caller's thread
                result.append(error)

        worker = threading.Thread(target=fetch, name=f"netns-{name}", daemon=True)
        worker.start()
        worker.join(timeout + 5.0)
        if not result:
            raise TimeoutError(f"GET {url} in {self.namespace(name)} did not finish")
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"{name!r} is not a namespace of this lab; it has: {self.names}")
        return self.names.index(name) + 1


@contextlib.contextmanager
def network_lab(names: Sequence[str]) -> Iterator[Lab]:
    """A hub namespace joined to one namespace per name by a veth pair; removed on exit."""
    if len(set(names)) != len(names) or HUB in names or not names:
        raise ValueError(f"namespace names {names!r}: give distinct names other than {HUB!r}")
    _remove_stale_labs()
    lab = Lab(prefix=f"cs{os.getpid()}-{next(_labs)}", names=tuple(names))
    made: list[str] = []
    try:
        for name in (HUB, *names):
            _ip("netns", "add", lab.namespace(name))
            made.append(lab.namespace(name))
            _ip("-n", lab.namespace(name), "link", "set", "dev", "lo", "up")
        hub = lab.namespace(HUB)
        for name in names:
            device = f"h-{name}"
            _ip(
                "link", "add", device, "netns", hub, "type", "veth",
                "peer", "name", "eth0", "netns", lab.namespace(name),
            )  # fmt: skip
            _ip("-n", hub, "addr", "add", f"{lab.hub_address(name)}/30", "dev", device)
            _ip("-n", lab.namespace(name), "addr", "add", f"{lab.address(name)}/30", "dev", "eth0")
            _ip("-n", hub, "link", "set", "dev", device, "up")
            _ip("-n", lab.namespace(name), "link", "set", "dev", "eth0", "up")
        yield lab
    finally:
        for process in lab._processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for namespace in made:
            _kill_left_in(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _remove_stale_labs() -> None:
    """Delete the empty namespaces of labs whose test process is gone (it was SIGKILLed)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        namespace = line.split(" ", 1)[0]
        owner = _STALE_NAME.fullmatch(namespace)
        if owner is None or _alive(int(owner["pid"])):
            continue
        inside = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
        )
        if not inside.stdout.strip():  # never a namespace something still runs in
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_left_in(namespace: str) -> None:
    # Only processes inside this lab's namespace: what this test started there.
    found = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _join_namespace(namespace: str) -> None:
    # Only the calling thread moves (setns(2) on a thread); sockets it opens belong to `namespace`.
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(descriptor, _CLONE_NEWNET) != 0:
            raise NetnsError(f"setns into {namespace}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(descriptor)


def _ip(*argv: str) -> None:
    _run("ip", *argv)


def _run(*argv: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as error:
        raise NetnsError(f"{' '.join(argv)}: {error} (cross-host tests need iproute2)") from None
    if done.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()} "
            "(the cross-host tests need root and network namespaces)"
        )
