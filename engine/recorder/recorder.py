"""The recorder of human play: the player drives, frames and inputs become balanced samples.

Example::

    recorder = Recorder(config, source="human:ada", grab=screen.grab, inputs=keyboard,
                        pause=Hotkey("F9", keys), sink=storage.insert_set)
    summary = recorder.run(samples=2000)      # until 2000 samples are stored, or Ctrl-C

Every 1/sample_hz s of wall time the recorder reads the player's controls and
offers them to the same Balancing_v3 stage the NPC collectors use; a frame is
grabbed, resized to the [data] frame size and encoded (`[data] frame_codec`) only
when some balancer wants the sample (that is most of the CPU otherwise), right
then, so the frame is the screen the player was reacting to. Completed sets go to `sink`
(storage commits a whole set in one transaction, so stopping at any moment
loses only the set still open). Outputs are those of [data] outputs:
`steering`, `throttle_brake`, or `acceleration`/`braking` split from it, so the
trainer uses the samples unchanged.

While paused (the hotkey toggles it) nothing is sampled: no frame is grabbed
and no balancing step counts, so menus and loading screens never become data.
Each resume starts a new episode number, marking the break in the driving.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np

from engine.core.config import Config
from engine.data.balance import BalanceStats, BalancingStage
from engine.data.controls import check_recordable, control_outputs
from engine.data.frames import encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.recorder.inputs import Controls, InputSource

SetSink = Callable[[SampleSet], None]


class PauseKey(Protocol):
    """A toggle the player presses: `pressed()` is true once per press."""

    def pressed(self) -> bool:
        """Whether the key went down since the last call."""
        ...


@dataclass
class RecorderStats:
    """Where a recording stands: what the status line shows and the summary reports."""

    source: str
    balance: BalanceStats
    paused: bool = False
    steps: int = 0
    frames_grabbed: int = 0
    sets_stored: int = 0
    samples_stored: int = 0
    stored_by_buffer: dict[str, int] = field(default_factory=dict)
    episodes: int = 0
    recording_s: float = 0.0
    paused_s: float = 0.0
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what storage keeps as the source's collector stats)."""
        return msgspec.to_builtins(self)


class Recorder:
    """Samples a game's frames and the player's controls at `[collector] sample_hz`."""

    def __init__(
        self,
        config: Config,
        *,
        source: str,
        grab: Callable[[], np.ndarray],
        inputs: InputSource,
        sink: SetSink,
        pause: PauseKey | None = None,
        start_paused: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_recordable(config, "the recorder")
        self.config = config
        self.source = source
        self._grab = grab
        self._inputs = inputs
        self._sink = sink
        self._pause = pause
        self._clock = clock
        self._sleep = sleep
        self._frame_size = (config.data.frame_width, config.data.frame_height)
        window_steps = max(1, round(config.data.set_window_s * config.collector.sample_hz))
        self._stage = BalancingStage(config.data, window_steps=window_steps)
        self.stats = RecorderStats(
            source=source,
            balance=self._stage.stats(),
            stored_by_buffer={name: 0 for name in config.data.balanced_outputs},
            # Paused from the start: the first press of the pause key begins the recording.
            paused=start_paused,
        )
        self._started: float | None = None
        self._last_poll = 0.0
        self._episode_started = 0.0

    def run(
        self,
        *,
        samples: int | None = None,
        seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_tick: Callable[[RecorderStats], None] | None = None,
    ) -> RecorderStats:
        """Record until `samples` are stored, `seconds` of wall time pass or `should_stop()`.

        `on_tick` sees the stats after every poll (the status line). Ctrl-C
        (KeyboardInterrupt) and SIGTERM turned into SystemExit end the run like a
        stop: sets already handed to the sink stay stored; the open ones are dropped.
        """
        interval = 1.0 / self.config.collector.sample_hz
        start = self._clock()
        cpu_start = time.process_time()
        next_at = start
        # Ctrl-C and SIGTERM end the loop like a stop; what was stored stays stored.
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            while True:
                now = self._clock()
                if seconds is not None and now - start >= seconds:
                    break
                if samples is not None and self.stats.samples_stored >= samples:
                    break
                if should_stop is not None and should_stop():
                    break
                self.poll(now)
                self.stats.cpu_s = time.process_time() - cpu_start
                if on_tick is not None:
                    on_tick(self.stats)
                next_at += interval
                # A late poll does not make up for lost time with a burst of samples.
                next_at = max(next_at, self._clock())
                self._sleep(max(0.0, next_at - self._clock()))
        self.stats.cpu_s = time.process_time() - cpu_start
        self.stats.balance = self._stage.stats()
        return self.stats

    def stats_now(self) -> RecorderStats:
        """The stats with the balancers' counters as of now, for a report between two sets.

        `stats.balance` is otherwise copied only when a set completes (a copy a poll
        would cost for nothing: the status line shows only the sets dropped).
        """
        self.stats.balance = self._stage.stats()
        return self.stats

    def poll(self, now: float) -> None:
        """One sampling step at `now`: the pause key, then (if recording) a sample offered."""
        if self._started is None:
            self._started = self._last_poll = now
            self._begin_episode(now)
        elapsed = now - self._last_poll
        self._last_poll = now
        if self.stats.paused:
            self.stats.paused_s += elapsed
        else:
            self.stats.recording_s += elapsed
        if self._pause is not None and self._pause.pressed():
            self.stats.paused = not self.stats.paused
            if not self.stats.paused:
                self._begin_episode(now)
        if self.stats.paused:
            return
        controls = self._inputs.read(now)
        self._offer(controls, now)

    def _begin_episode(self, now: float) -> None:
        self.stats.episodes += 1
        self._episode_started = now
        self._inputs.reset()

    def _offer(self, controls: Controls, now: float) -> None:
        outputs = control_outputs(
            controls.steering, controls.throttle_brake, self.config.data.outputs
        )
        self.stats.steps += 1

        def make_sample() -> Sample:
            frame = resize_frame(np.ascontiguousarray(self._grab()), self._frame_size)
            self.stats.frames_grabbed += 1
            return Sample(
                frame=encode_frame(
                    frame, self.config.data.jpeg_quality, self.config.data.frame_codec
                ),
                width=self._frame_size[0],
                height=self._frame_size[1],
                outputs=outputs,
                speed=0.0,  # a foreign game tells us no speed
                time=now - self._episode_started,
                source=self.source,
                episode=self.stats.episodes - 1,
            )

        for sample_set in self._stage.offer(outputs, make_sample):
            self._sink(sample_set)
            self.stats.sets_stored += 1
            self.stats.samples_stored += len(sample_set.samples)
            buffer = sample_set.output
            self.stats.stored_by_buffer[buffer] = self.stats.stored_by_buffer.get(buffer, 0) + len(
                sample_set.samples
            )
            self.stats.balance = self._stage.stats()
