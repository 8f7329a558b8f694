"""An NPC data collector: the built-in game, driven by the autopilot, sampled and balanced.

Example::

    collector = Collector(config, seed=7, source="collector-0", sink=storage.insert_set)
    collector.run(game_seconds=600)    # headless: as fast as the machine allows

Every 1/sample_hz s of game time the collector records the autopilot's control
values with the hood frame it decided them on, and offers them to the
Balancing_v3 stage; completed sets go to `sink`, a plain callable, so the same
collector feeds a list in a test, local storage or the hub (its node). A
frame is rendered and encoded only when some balancer wants the sample,
which is what makes headless collection fast. Episodes vary the track (a new
seed every `episode_s`), and a car that stops or leaves the road for `stuck_s`
is respawned, as the reference's collectors did. Controls pass through a small
dead zone first (see `apply_dead_zone`), so exact values like "straight ahead"
occur and their bins fill.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from engine.core.config import Config
from engine.data.balance import BalanceStats, BalancingStage
from engine.data.controls import check_recordable, control_outputs, snap_to_dead_zone
from engine.data.frames import encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.node.progress import report_progress
from engine.sim.autopilot import Autopilot
from engine.sim.expert import expert_config
from engine.sim.game import Controls, Game

log = logging.getLogger("charles.collector")


SetSink = Callable[[SampleSet], None]
StatsSink = Callable[["CollectorStats"], None]


@dataclass
class CollectorStats:
    """What a collector reports: its balancing counters plus episodes, respawns and pace."""

    source: str
    balance: BalanceStats
    episodes: int = 0
    respawns: int = 0
    game_seconds: float = 0.0
    wall_seconds: float = 0.0
    sets_sent: int = 0
    samples_sent: int = 0
    # The report's field for recorders of human play (engine/recorder/node.py); an NPC never pauses.
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, what storage and the hub keep (the counters' Structs as dicts)."""
        return msgspec.to_builtins(self)


class Collector:
    """Runs one headless game with the NPC autopilot and emits balanced sample sets."""

    def __init__(
        self,
        config: Config,
        *,
        seed: int,
        source: str,
        sink: SetSink,
        report: StatsSink | None = None,
    ) -> None:
        check_recordable(config, "the built-in game's collector")
        self.config = config
        self.seed = seed
        self.source = source
        self._sink = sink
        self._report = report
        self._sim_config = msgspec.structs.replace(config.sim, window="off")
        self._frame_size = (config.data.frame_width, config.data.frame_height)
        window_steps = max(1, round(config.data.set_window_s * config.collector.sample_hz))
        self._stage = BalancingStage(config.data, window_steps=window_steps)
        self._stats = CollectorStats(source=source, balance=self._stage.stats())
        self._respawn_rng = np.random.default_rng([seed, 1])

    def run(
        self,
        *,
        game_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CollectorStats:
        """Collect until `game_seconds` of game time have passed or `should_stop()` is true."""
        settings = self.config.collector
        tick_hz = self._sim_config.tick_hz
        # Whole ticks, not summed floats, so 4 s at 30 Hz is exactly 120 ticks and 120 samples.
        ticks_left = math.inf if game_seconds is None else round(game_seconds * tick_hz)
        ticks_per_sample = tick_hz / settings.sample_hz
        ticks_per_episode = max(1, round(settings.episode_s * tick_hz))
        ticks_per_report = max(1, round(settings.report_interval_s * tick_hz))
        started = time.perf_counter()
        total_ticks = 0
        while total_ticks < ticks_left:
            episode = self._stats.episodes
            game = Game(self._sim_config, seed=episode_seed(self.seed, episode))
            pilot = Autopilot(self.config.autopilot, seed=episode_seed(self.seed, episode))
            expert = Autopilot(expert_config(self.config.autopilot))
            self._stats.episodes += 1
            log.debug("%s: episode %d on track seed %d", self.source, episode, game.seed)
            samples_taken = stuck_for = 0
            for episode_tick in range(ticks_per_episode):
                if total_ticks >= ticks_left:
                    break
                controls = apply_dead_zone(pilot.decide(game), settings.dead_zone)
                # The label is what the NPC means to do here, not its noise or deliberate
                # mistake: the mistakes only put the car where recoveries are learnt.
                intent = apply_dead_zone(expert.decide(game), settings.dead_zone)
                game.set_controls(controls)
                if episode_tick >= samples_taken * ticks_per_sample - 1e-9:
                    samples_taken += 1
                    report_progress()  # the app's liveness watchdog; rate-limited there
                    if should_stop is not None and should_stop():
                        return self._finish(total_ticks / tick_hz, started)
                    self._sample(game, intent, episode, episode_tick / tick_hz)
                game.tick()
                total_ticks += 1
                stuck_for = self._watch_stuck(game, stuck_for, 1.0 / tick_hz)
                if total_ticks % ticks_per_report == 0:
                    self._send_report(total_ticks / tick_hz, started)
        return self._finish(total_ticks / tick_hz, started)

    def _sample(self, game: Game, controls: Controls, episode: int, episode_time: float) -> None:
        outputs = control_outputs(
            controls.steering, controls.throttle_brake, self.config.data.outputs
        )

        def make_sample() -> Sample:
            telemetry = game.telemetry()
            frame = resize_frame(game.render_hood(), self._frame_size)
            return Sample(
                frame=encode_frame(
                    frame, self.config.data.jpeg_quality, self.config.data.frame_codec
                ),
                width=self._frame_size[0],
                height=self._frame_size[1],
                outputs=outputs,
                speed=float(telemetry.speed),
                time=episode_time,
                source=self.source,
                episode=episode,
                purpose_direction=_optional_float(telemetry.purpose_direction),
                purpose_distance_m=_optional_float(telemetry.purpose_distance_m),
            )

        for sample_set in self._stage.offer(outputs, make_sample):
            self._stats.sets_sent += 1
            self._stats.samples_sent += len(sample_set.samples)
            self._sink(sample_set)

    def _watch_stuck(self, game: Game, stuck_for: float, dt: float) -> float:
        telemetry = game.telemetry()
        slow = telemetry.speed * 3.6 < self.config.collector.stuck_speed_kmh
        stuck_for = stuck_for + dt if slow or not telemetry.on_road else 0.0
        if stuck_for < self.config.collector.stuck_s:
            return stuck_for
        game.respawn(self._respawn_rng)
        self._stats.respawns += 1
        return 0.0

    def _send_report(self, total_time: float, started: float) -> None:
        self._stats.balance = self._stage.stats()
        self._stats.game_seconds = total_time
        self._stats.wall_seconds = time.perf_counter() - started
        if self._report is not None:
            self._report(dataclasses.replace(self._stats))

    def _finish(self, total_time: float, started: float) -> CollectorStats:
        self._send_report(total_time, started)
        return dataclasses.replace(self._stats)


def apply_dead_zone(controls: Controls, dead_zone: float) -> Controls:
    """Snap each control within `dead_zone` of -1, 0 or 1 to exactly that value.

    The car then does exactly what is recorded, and the exact-value bins of
    Balancing (steering 0.0; throttle_brake -1.0, 0.0, 1.0) can fill.
    """

    return Controls(
        snap_to_dead_zone(controls.steering, dead_zone),
        snap_to_dead_zone(controls.throttle_brake, dead_zone),
    )


def episode_seed(seed: int, episode: int) -> int:
    """A track seed per (collector seed, episode): distinct across collectors and episodes."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0]) % (2**31 - 1)


def _optional_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
