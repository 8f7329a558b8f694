"""Does it learn? Drive the built-in game headless with a policy and score how far it gets.

Example::

    npc = evaluate(AutopilotPolicy(config), config, seeds=(101, 202), seconds=60)
    model = evaluate(ModelPolicy("model", one_pass_model, config.controller), config, ...)
    model.metres_per_offroad / npc.metres_per_offroad       # acceptance: >= 0.8

The score is the mean, over track seeds, of

    progress along the track on the road (m) / (off-road events + 1)

over a fixed stretch of game time per seed. Progress is measured along the
track's centre line, so circling, reversing or driving on the grass earns
nothing, and the unstuck rules of the driver (`[unstuck]`: off the road for a
few seconds, or not moving) respawn the car just as on stream. An endless
crash loop therefore scores badly twice: every crash is an off-road event, and
the time spent off the road and respawning adds no progress. A car that does
not move scores 0. The "+ 1" keeps a clean run finite and makes a run with one
off-road event worth half a clean one.

The NPC's figure is the autopilot's clean driving (`engine.sim.expert`): the
collectors' noise and deliberate mistakes would only make the bar lower.
Game time, not wall time: episodes run as fast as the machine renders, and
the same seeds and weights give the same figures.

Where the car starts and where an unstuck puts it is a `Placement`: this
test's `OnLine` (the start line and the game's own respawns, in the
right-hand lane's centre); `eval --hard` (`engine/driver/hard_test.py`) starts
and respawns it off that line, and drives minutes per seed, not one.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from engine.core.config import Config, ControllerConfig
from engine.data.frames import resize_frame
from engine.driver.controller import Translator
from engine.driver.driver import FrameStack, throttle_brake_reader
from engine.driver.unstuck import StuckWatch
from engine.sim.autopilot import Autopilot
from engine.sim.expert import expert_config
from engine.sim.game import Controls, Game
from engine.sim.score import LapClock, RoadProgress, metres_per_offroad

if TYPE_CHECKING:
    from engine.driver.inference import OnePassModel


class Placement(Protocol):
    """Where an episode puts the car: at its start, and after each unstuck."""

    def start(self, game: Game) -> None:
        """Place the car for the episode's start (a new game already stands on the start line)."""

    def respawn(self, game: Game) -> None:
        """Place the car after an unstuck."""


class OnLine:
    """This test's places: the game's start (start line, lane centre), its respawns.

    The respawns draw from the seed's own generator, so an episode repeats exactly.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 2])

    def start(self, game: Game) -> None:
        """The game's own start: the right-hand lane's centre on the start line."""

    def respawn(self, game: Game) -> None:
        """The game's respawn: a random point of the right-hand lane's centre."""
        game.respawn(self._rng)


class Policy(Protocol):
    """Who drives in an evaluation: the NPC autopilot, a model, an untrained copy."""

    name: str
    # The model's input size (width, height) if it looks at the hood camera, else None.
    frame_size: tuple[int, int] | None

    def start(self, seed: int) -> None:
        """A new episode on the track of `seed`, or a fresh start after an unstuck."""

    def decide(self, game: Game, frame: np.ndarray | None) -> Controls:
        """The controls for the game's current state (and hood frame, if it wants one)."""


@dataclass(frozen=True)
class EpisodeResult:
    """One track seed: how far the car got on the road, how often it left it."""

    seed: int
    progress_m: float
    distance_m: float
    offroad_events: int
    unstucks: int
    # Whole laps driven, start line to start line, none across a respawn (game seconds).
    lap_times_s: tuple[float, ...] = ()

    @property
    def metres_per_offroad(self) -> float:
        """Progress on the road per off-road event (+1: a clean run counts as one)."""
        return metres_per_offroad(self.progress_m, self.offroad_events)


@dataclass(frozen=True)
class EvaluationResult:
    """A policy's episodes on every seed and its score: the mean metres per off-road event."""

    name: str
    seconds: float
    episodes: tuple[EpisodeResult, ...]

    @property
    def metres_per_offroad(self) -> float:
        """The mean over seeds of each episode's metres per off-road event."""
        return statistics.fmean(episode.metres_per_offroad for episode in self.episodes)

    def as_dict(self) -> dict[str, object]:
        """The JSON shape `eval --json` prints per policy."""
        return {
            "name": self.name,
            "metres_per_offroad": round(self.metres_per_offroad, 1),
            "progress_m": round(sum(e.progress_m for e in self.episodes), 1),
            "offroad_events": sum(e.offroad_events for e in self.episodes),
            "unstucks": sum(e.unstucks for e in self.episodes),
            "episodes": [
                {**_standard_fields(e), "metres_per_offroad": round(e.metres_per_offroad, 1)}
                for e in self.episodes
            ],
        }


def _standard_fields(episode: EpisodeResult) -> dict[str, object]:
    """An episode's fields as `eval --json` has always printed them (lap times are --hard's)."""
    fields = dataclasses.asdict(episode)
    del fields["lap_times_s"]
    return fields


def evaluate(
    policy: Policy,
    config: Config,
    *,
    seeds: tuple[int, ...],
    seconds: float,
    progress: Callable[[str, int], None] | None = None,
    placement: Callable[[int], Placement] = OnLine,
) -> EvaluationResult:
    """Drive `seconds` of game time on each seed with `policy`; `progress(name, seed)` per seed.

    `placement(seed)` says where each episode starts and respawns (default: `OnLine`).
    """
    episodes = []
    for seed in seeds:
        if progress is not None:
            progress(policy.name, seed)
        episodes.append(
            drive_episode(policy, config, seed=seed, seconds=seconds, placement=placement(seed))
        )
    return EvaluationResult(policy.name, seconds, tuple(episodes))


def drive_episode(
    policy: Policy,
    config: Config,
    *,
    seed: int,
    seconds: float,
    placement: Placement | None = None,
) -> EpisodeResult:
    """One seed: the policy drives headless, unstuck rules respawn it, progress is counted."""
    places = OnLine(seed) if placement is None else placement
    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=seed)
    places.start(game)
    watch = StuckWatch(config.unstuck)
    policy.start(seed)
    progress = RoadProgress(game)
    laps = LapClock()
    laps.update(game.telemetry())
    unstucks = 0
    for _ in range(round(seconds * game.config.tick_hz)):
        frame = None
        if policy.frame_size is not None:
            frame = resize_frame(game.render_hood(), policy.frame_size)
        game.set_controls(policy.decide(game, frame))
        progress.tick()
        telemetry = game.telemetry()
        laps.update(telemetry)
        if watch.update(game.time, telemetry, frame if frame is not None else _NO_FRAME):
            places.respawn(game)
            laps.void()
            watch.reset(game.time)
            policy.start(seed)
            unstucks += 1
    telemetry = game.telemetry()
    return EpisodeResult(
        seed=seed,
        progress_m=progress.metres,
        distance_m=telemetry.distance_m,
        offroad_events=telemetry.offroad_events,
        unstucks=unstucks,
        lap_times_s=laps.lap_times_s,
    )


# Stuck detection reads telemetry in the built-in game; a policy without frames passes this.
_NO_FRAME = np.zeros((1, 1, 3), np.uint8)


class AutopilotPolicy:
    """The NPC at its best (no noise, no deliberate mistakes): the figure a model should reach."""

    name = "npc"
    frame_size = None

    def __init__(self, config: Config) -> None:
        self.config = expert_config(config.autopilot)
        self._pilot: Autopilot | None = None
        self._seed: int | None = None

    def start(self, seed: int) -> None:
        """A fresh autopilot per episode, seeded by the track, so runs repeat exactly."""
        if self._pilot is None or self._seed != seed:
            self._pilot = Autopilot(self.config, seed=seed)
            self._seed = seed

    def decide(self, game: Game, frame: np.ndarray | None) -> Controls:
        """The autopilot's controls."""
        assert self._pilot is not None, "decide() before start()"
        return self._pilot.decide(game)


class ModelPolicy:
    """A model driving from the hood frame, with the driver's preprocessing and translation."""

    def __init__(self, name: str, model: OnePassModel, controller: ControllerConfig) -> None:
        self.name = name
        height, width, channels = model.input_shape
        self.frame_size = (width, height)
        self._model = model
        self._stack = FrameStack(frames=channels // 3)
        self._throttle_from = throttle_brake_reader(model.output_names)
        self._translator = Translator(controller)

    def start(self, seed: int) -> None:
        """Forget past frames and smoothing: the car starts from rest somewhere new."""
        self._stack.reset()
        self._translator.reset()

    def decide(self, game: Game, frame: np.ndarray | None) -> Controls:
        """Predict on the frame and translate to pad values, as the driver does."""
        assert frame is not None, "a model policy needs the hood frame"
        outputs = self._model.predict(self._stack(frame)).outputs
        pad = self._translator.translate(outputs["steering"], self._throttle_from(outputs))
        return Controls(pad.steering, pad.throttle_brake)
