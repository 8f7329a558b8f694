"""The NPC as a teacher: the autopilot without its noise and deliberate mistakes.

Example::

    expert = Autopilot(expert_config(config.autopilot), seed=7)
    intent = expert.decide(game)        # what the NPC means to do in this state

Collectors drive with the noisy autopilot, so the car also visits the states a
learner gets into (off-centre, angled, too fast) and recovers from them. What
a model should learn in those states is the expert's intent, not the noise or
the swerve that put the car there; and the same clean driving is the figure
`eval` holds a model to.
"""

from __future__ import annotations

import msgspec

from engine.core.config import AutopilotConfig


def expert_config(autopilot: AutopilotConfig) -> AutopilotConfig:
    """The configured NPC (cruise speed, cornering limit) with no noise and no mistakes."""
    return msgspec.structs.replace(
        autopilot, steering_noise=0.0, throttle_noise=0.0, perturbation_interval_s=0.0
    )
