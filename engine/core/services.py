"""What each wire message is for: who sends it, where the hub routes it, how it waits, who keeps it.

Example::

    from engine.core.services import SERVICES
    SERVICES["sample_sets"].route_to        # frozenset({"trainer"})
    SERVICES["frames"].replaceable          # True: only the newest waits in an outbox

One table, in the spirit of openpilot's `cereal/services.py`: the meaning of
a message type lives in one row here, and the hub (routing, who may send
it), the node client (which messages a newer one replaces while the link is
slow) and the app's store (where it keeps it) all read the same row.
`engine/core/wire.py` declares what a message holds; this table declares
what happens to it. Adding a message type is one class there and one row
here.

`PROTOCOL_VERSION` is the version of both together. A node says its version
in `Hello`; the hub closes a connection of another version with a message
that says which side to upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bump when a message changes in a way an older peer would misread (a field renamed, removed or
# retyped, a new message type an older hub would refuse). 1 is the protocol of wave 1, whose
# Hello had no version field; 3 added `paused` to collector_report (recorders of human play);
# 4 added `stages` to driver_status (the driver loop's time per stage); 5 renamed a sample's
# `frame_jpeg` to `frame`, which may hold a raw frame (engine/data/frames.py) an older trainer
# would discard as corrupt; 6 added `convcam_layers` and `convcam_kernels` to driver_status
# (the overlay's Convcam caption), which an older hub refuses as unknown fields; 7 added `files`
# (name, size, SHA-256 of each) to checkpointed, so a node on another machine fetches the
# checkpoint through the hub and verifies it (an older hub refuses the field); 8 added `engine`
# to driver_status (what runs the driver's predictions), which a protocol-7 hub refuses. Hello's
# `host` and loss counters need no bump: a hub of any version ignores Hello fields it lacks.
PROTOCOL_VERSION = 8

Role = Literal["collector", "trainer", "driver", "sim", "chat", "observer"]
ROLES: tuple[Role, ...] = ("collector", "trainer", "driver", "sim", "chat", "observer")
# A message only the hub sends (nodes that send it are disconnected).
HUB = "hub"

# Where the app's store keeps a message: the newest one ("latest"), the newest per sending node
# ("per_sender"), a bounded history ("history"), or not at all (None: it only passes through).
Kept = Literal["latest", "per_sender", "history"]


@dataclass(frozen=True)
class Service:
    """The rules for one message type."""

    # Roles that may send it, or {"hub"} for messages that only the hub sends.
    senders: frozenset[str]
    # Roles the hub forwards it to, as the very bytes the sender sent.
    route_to: frozenset[str] = frozenset()
    # While the link is slow, a newer message of this type replaces an older one still waiting
    # in an outbox (only the newest frame or status matters; every sample set does).
    replaceable: bool = False
    # How the app's store keeps it (see Kept); None: the store ignores it.
    kept: Kept | None = None
    # Kept by the hub while no node of `route_to` is connected, for the next one that says hello.
    held_for_absent: bool = False


_ANY_NODE = frozenset(ROLES)

SERVICES: dict[str, Service] = {
    "hello": Service(senders=_ANY_NODE),
    "sample_sets": Service(
        senders=frozenset({"collector"}),
        route_to=frozenset({"trainer"}),
        held_for_absent=True,
    ),
    "collector_report": Service(
        senders=frozenset({"collector"}),
        route_to=frozenset({"trainer"}),
        replaceable=True,  # cumulative counters: the newest says everything the older said
        kept="per_sender",
    ),
    # Every report carries the mean loss since the previous one: none may be dropped, or the
    # loss chart loses points.
    "trainer_status": Service(senders=frozenset({"trainer"}), kept="latest"),
    "checkpointed": Service(
        senders=frozenset({"trainer"}), route_to=frozenset({"driver"}), kept="latest"
    ),
    "driver_status": Service(senders=frozenset({"driver"}), replaceable=True, kept="latest"),
    "frames": Service(senders=frozenset({"driver"}), replaceable=True, kept="latest"),
    "alert": Service(senders=_ANY_NODE, kept="history"),
    "switch_model": Service(senders=frozenset({HUB}), route_to=frozenset({"trainer", "driver"})),
}


def service(message_type: str) -> Service:
    """The row of a wire message type (KeyError for a type the table does not know)."""
    return SERVICES[message_type]


def routed_to(role: str) -> frozenset[str]:
    """The message types the hub forwards to nodes of `role`."""
    return frozenset(name for name, row in SERVICES.items() if role in row.route_to)


def version_problem(node_protocol: int) -> str | None:
    """Why a node of `node_protocol` cannot talk to this hub, naming the side to upgrade; or None.

    Short enough for a websocket close reason (123 bytes), which is where the node reads it.
    """
    if node_protocol == PROTOCOL_VERSION:
        return None
    side = "node" if node_protocol < PROTOCOL_VERSION else "hub"
    return (
        f"node speaks protocol {node_protocol}, this hub speaks {PROTOCOL_VERSION}: "
        f"upgrade the {side} (pip install -U charles-stream)"
    )
