"""From a driver's two controls to the outputs a sample records, the same for NPCs and people.

Example::

    snap_to_dead_zone(0.015, 0.02)                                   # 0.0
    control_outputs(-0.3, 0.6, ("steering", "acceleration", "braking"))
    # {'steering': -0.3, 'acceleration': 0.6, 'braking': 0.0}

A collector's NPC (`engine/collector/`) and a recorder's player
(`engine/recorder/`) both drive with a steering and a combined
throttle/brake value; what a sample keeps is `[data] outputs`. Both snap
values close to -1, 0 or 1 to exactly that, like a gamepad's dead zone:
Balancing's exact-value bins (steering 0.0; throttle_brake -1.0, 0.0, 1.0)
would starve on values that are never exactly 0.
"""

from __future__ import annotations

from engine.core.config import Config
from engine.core.errors import ConfigError

# The outputs two controls can be recorded as.
RECORDABLE_OUTPUTS = ("steering", "throttle_brake", "acceleration", "braking")


def snap_to_dead_zone(value: float, dead_zone: float) -> float:
    """`value` as exactly -1, 0 or 1 when within `dead_zone` of it, else unchanged."""
    nearest = float(round(value))
    return nearest if abs(value - nearest) <= dead_zone and abs(nearest) <= 1 else value


def control_outputs(
    steering: float, throttle_brake: float, names: tuple[str, ...]
) -> dict[str, float]:
    """The recorded outputs: steering and throttle_brake, or acceleration/braking split from it."""
    combined = float(throttle_brake)
    values = {
        "steering": float(steering),
        "throttle_brake": combined,
        "acceleration": max(combined, 0.0),
        "braking": max(-combined, 0.0),
    }
    return {name: values[name] for name in names}


def check_recordable(config: Config, recorder: str) -> None:
    """Raise ConfigError if `data.outputs` names an output `recorder` cannot record."""
    unknown = [name for name in config.data.outputs if name not in RECORDABLE_OUTPUTS]
    if unknown:
        raise ConfigError(
            f"{config.source}: 'data.outputs' names {', '.join(map(repr, unknown))}, which "
            f"{recorder} cannot record; it records {', '.join(RECORDABLE_OUTPUTS)}"
        )
