"""The namespace lab (tests/netns.py): isolated hosts, links that cut and slow, no leftovers."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.netns import network_lab

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "8000"]


def test_hosts_reach_the_hub_over_their_veth_and_nothing_is_left_behind():
    with network_lab(["c1", "c2"]) as lab:
        names = [lab.namespace(name) for name in ("hub", "c1", "c2")]
        server = lab.popen("hub", SERVE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{lab.hub_address('c2')}:8000/"
        body = _eventually(lambda: lab.http_get("c2", url, timeout=5.0))
        assert b"Directory listing" in body
        # c1 and c2 each see only their link to the hub: no route to the other's link.
        with pytest.raises(OSError, match="unreachable"):
            lab.http_get("c1", url, timeout=2.0)
        # Nor to anything outside the lab.
        with pytest.raises(OSError, match="unreachable"):
            lab.http_get("hub", "http://192.0.2.1:80/", timeout=2.0)

        lab.cut("c2")
        with pytest.raises(OSError):
            lab.http_get("c2", url, timeout=2.0)
        lab.restore("c2")
        lab.slow("c2", "1mbit")
        assert b"Directory listing" in _eventually(lambda: lab.http_get("c2", url, timeout=5.0))
        assert server.poll() is None

    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed.split() for name in names)
    assert server.poll() is not None


def _eventually(fetch, attempts: int = 50):
    """The server may not listen yet: retry a refused connection (each try is bounded)."""
    for _ in range(attempts - 1):
        try:
            return fetch()
        except OSError:
            time.sleep(0.1)
    return fetch()
