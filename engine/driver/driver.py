"""The driver ("Player"): capture -> preprocess -> predict -> translate -> controller, in a loop.

Example::

    with open_driver_parts(config, load_version(data_dir, "model_0000_demo_v1")) as parts:
        driver = Driver(parts, config.driver, sink=send_to_hub)
        summary = driver.run(seconds=60.0)      # or until stop() / an exception / a signal
    driver.offer_weights("model_0000_demo_v1", 1500, "data/models/.../batch-000000001500")
    driver.switch_model(model_parts(config, load_version(data_dir, "model_0003_xception_v1")))

Each part has one job and a typed input and output, and none knows about the
others; `DriverParts` is the wiring. Per captured frame (the newest one: the
capture thread runs ahead and drops what the driver had no time for):

1. preprocess: the frame (already resized by the capture) stacked with past
   frames if the model line takes several;
2. predict: ONE forward pass gives the heads' values and the Convcam layer;
3. translate: dead zones, clipping, NaN -> neutral (`engine.driver.controller`);
4. control: the pad gets the values;
5. Convcam: the activations tiled into the overlay's image (after the pad, so
   the car never waits for it);
6. watch: an unstuck when the car has not moved; pending new weights are
   loaded then (or after `reload_interval_s`, whichever first); on an engine
   other than TensorFlow they are converted on a thread and swapped in once
   they agree with TensorFlow on the newest frame (`OnePassModel.reload_in_background`),
   the car driving on the old model meanwhile;
7. report: status and overlay JPEGs to the sink when due.

Each stage is timed (`engine.driver.stage_times`: one clock read per stage,
p50/p95 over the last turns), "capture_wait" being the time from the end of
one turn to the next frame in hand; the stages of a turn add up to the turn.

Another version (`switch_model`, e.g. the stream switched models) takes over
before the next prediction; its model is built beforehand on whatever thread
offers it, so the car never waits for TensorFlow. A model of another input
size gets frames resized from the captured image.

What the stream shows goes to `sink`, a plain callable taking protocol
messages: `DriverStatus` (the Player Console: raw predictions, pad values, FPS,
PPS, loaded version and batch, unstucks, time per stage) at `status_hz`, `Frames` (hood,
Convcam and chase JPEGs) at `frames_hz`, and an `Alert` per unstuck. The
driver knows no transport; the hub (or a terminal console) is whatever
callable it is given.

Every way out of `run` - the end of `seconds`, `stop()`, an exception, a
SIGTERM turned into SystemExit, Ctrl-C - leaves the pad neutral.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.core.config import Config, DriverConfig
from engine.core.errors import ModelError
from engine.core.rates import RateMeter
from engine.core.wire import Alert, DriverStage, DriverStatus, Frames, Message, StageTime
from engine.data.frames import encode_frame, resize_frame
from engine.driver.capture import Capture, Frame
from engine.driver.controller import NEUTRAL_PAD, Controller, GamepadState, Translator
from engine.driver.convcam import OVERLAY_ASPECT, render_convcam, render_convcam_dual
from engine.driver.stage_times import StageTimes
from engine.driver.unstuck import StuckWatch, UnstuckAction
from engine.node.progress import report_progress
from models.checkpoints import CheckpointError

if TYPE_CHECKING:
    # Only types: the loop itself never needs TensorFlow, whoever wires the parts does.
    from engine.driver.inference import (
        GradCam,
        LoadedModel,
        OnePassModel,
        Prediction,
        ReloadOutcome,
    )

log = logging.getLogger("charles.driver")

Sink = Callable[[Message], None]

# With no frame for this long the pad goes neutral until frames come back.
FRAME_TIMEOUT_S = 1.0


class Weights(Protocol):
    """The loaded model's weights: which version and batch, and how to load newer ones."""

    version: str
    batch: int

    def reload_latest(self) -> object | None:
        """Load the newest checkpoint into the running model; None if there is none."""


@dataclass
class DriverParts:
    """The driver's parts, wired by whoever starts it (the `drive` command, eval, tests)."""

    capture: Capture
    model: OnePassModel
    translator: Translator
    controller: Controller
    watch: StuckWatch
    unstuck: UnstuckAction
    weights: Weights
    gradcam: GradCam | None = None
    # The built-in game's third-person frame for the overlay, when there is one.
    chase: Callable[[], np.ndarray | None] | None = None


@dataclass(frozen=True)
class ModelParts:
    """The parts that belong to one model version: what `switch_model` replaces."""

    model: OnePassModel
    weights: Weights
    gradcam: GradCam | None = None


def model_parts(config: Config, loaded: LoadedModel) -> ModelParts:
    """Wrap a loaded version for driving: one-pass model (heads + Convcam) on `[driver] engine`,
    Grad-CAM if on (on TensorFlow, whatever the engine: it needs gradients)."""
    from engine.driver.inference import GradCam, one_pass_model
    from engine.driver.precision import stream_frames

    layers = config.driver.convcam_layers or (loaded.spec.convcam,)
    # A reduced precision calibrates and is checked on the stream's own recorded frames.
    frames = stream_frames(config, tuple(loaded.model.inputs[0].shape[1:]))
    model = one_pass_model(config.driver, loaded.model, loaded.spec.output_names, layers, frames)
    gradcam = GradCam(loaded.model, "steering", layers[0]) if config.driver.gradcam_hz > 0 else None
    return ModelParts(model, loaded, gradcam)


@contextlib.contextmanager
def open_driver_parts(
    config: Config, loaded: LoadedModel, *, seed: int | None = None
) -> Iterator[DriverParts]:
    """Every part of a driver for a loaded version, from config; capture and pad run inside.

    The one wiring of `charles-stream drive` and the stream's driver node. On
    leaving, the capture stops and the pad is released.
    """
    from engine.driver.capture import open_capture
    from engine.driver.controller import open_controller
    from engine.driver.unstuck import StuckWatch, choose_action
    from engine.games.profile import apply_to_config, load_profile

    # A game profile decides capture, input and unstuck together (driver.game).
    profile = load_profile(config.driver.game) if config.driver.game else None
    if profile is not None:
        config = apply_to_config(profile, config)
    model = model_parts(config, loaded)
    spec = loaded.spec
    size = (spec.input.width, spec.input.height)
    capture = open_capture(config, size, seed=seed, profile=profile)
    game = getattr(capture.source, "game", None)
    with capture, open_controller(config.controller, game=game, profile=profile) as controller:
        yield DriverParts(
            capture=capture,
            model=model.model,
            translator=Translator(config.controller),
            controller=controller,
            watch=StuckWatch(config.unstuck),
            unstuck=choose_action(config.unstuck, capture.source, controller, profile),
            weights=model.weights,
            gradcam=model.gradcam,
            chase=getattr(capture.source, "latest_chase", None),
        )


@dataclass(frozen=True)
class DriveSummary:
    """How the last `run` went; distance and off-road events only with the built-in game."""

    seconds: float
    predictions: int
    pps: float
    fps: float
    frames_captured: int
    frames_dropped: int
    convcam_ms: float
    unstucks: int
    reloads: int
    version: str
    batch: int
    last_pad: GamepadState
    distance_m: float | None
    offroad_events: int | None
    # p50/p95 of each loop stage over its last turns (empty with timing off).
    stages: dict[DriverStage, StageTime] = dataclasses.field(default_factory=dict)


class Driver:
    """Runs the prediction loop on the newest frames and reports what it does."""

    def __init__(
        self,
        parts: DriverParts,
        config: DriverConfig,
        *,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.monotonic,
        stage_times: StageTimes | None = None,
    ) -> None:
        self.parts = parts
        self.config = config
        # Always on: a turn costs one clock read and one list store per stage.
        self.stage_times = stage_times if stage_times is not None else StageTimes()
        self._sink = sink or (lambda message: None)
        self._clock = clock
        self._throttle_from = throttle_brake_reader(parts.model.output_names)
        self._stack = FrameStack(frames=parts.model.input_shape[-1] // 3)
        self._pps = RateMeter(clock=clock)
        self._stop = threading.Event()
        self._offer_lock = threading.Lock()
        self._offered: tuple[str, int, Path] | None = None
        # The version offered weights must be of: the driven one, or the one switched to.
        self._offer_version = parts.weights.version
        self._switch_to: ModelParts | None = None
        self._last_load = clock()
        self._next_status = 0.0
        self._next_frames = 0.0
        self._next_gradcam = 0.0
        self._gradcam_image: np.ndarray | None = None
        self._convcam: np.ndarray | None = None
        self._convcam_kernels = 0  # the kernels the newest Convcam shows (its caption)
        self._convcam_s = 0.0
        self._convcam_renders = 0
        self._started: float | None = None
        self._counts_at_start = (0, 0)
        self._last_frame: Frame | None = None
        self._last_input: np.ndarray | None = None
        self._last_prediction: Prediction | None = None
        self.last_pad = NEUTRAL_PAD
        self.unstucks = 0
        self.reloads = 0

    def run(self, seconds: float | None = None) -> DriveSummary:
        """Drive until `seconds` pass (None: until `stop()`); the pad is neutral afterwards."""
        parts = self.parts
        self._started = self._clock()
        self._counts_at_start = (self._pps.total, parts.capture.frames_captured)
        self._alert_precision(getattr(parts.model, "precision_note", None))
        last_index = -1
        times = self.stage_times
        mark = times.start()
        try:
            while not self._stop.is_set():
                if seconds is not None and self._clock() - self._started >= seconds:
                    break
                frame = parts.capture.next_frame(after=last_index, timeout=FRAME_TIMEOUT_S)
                if frame is None:
                    log.warning(
                        "no frame for %.1f s: pad neutral until frames return", FRAME_TIMEOUT_S
                    )
                    parts.controller.neutral()
                    # A wait that brought no frame is no turn: the next turn's wait starts now.
                    mark = times.start()
                    continue
                mark = times.lap("capture_wait", mark)
                last_index = frame.index
                mark = self._turn(frame, mark)
                # Per driven frame only: a capture that brings no frames is a hang to restart.
                report_progress()
        finally:
            parts.controller.neutral()
        return self.summary()

    def stop(self) -> None:
        """Ask `run` to return after the current frame (any thread)."""
        self._stop.set()

    def offer_weights(self, version: str, batch: int, path: str | Path) -> None:
        """New weights from the trainer (any thread); applied at the next unstuck or interval."""
        with self._offer_lock:
            driving = self._offer_version
            if version == driving:
                self._offered = (version, batch, Path(path))
        if version != driving:
            # Normal around a switch: the old version's last checkpoint comes after it.
            log.info(
                "weights of %s offered while driving %s: ignored (switch_model changes versions)",
                version,
                driving,
            )
            return
        log.debug("weights of %s batch %d offered", version, batch)

    def switch_model(self, parts: ModelParts) -> None:
        """Drive with another version from the next frame on (any thread; `parts` built already).

        Weights offered for the old version are dropped; new offers must be of the new one.
        """
        with self._offer_lock:
            self._switch_to = parts
            self._offer_version = parts.weights.version
            if self._offered is not None and self._offered[0] != parts.weights.version:
                self._offered = None
        log.info("switching to %s (batch %d)", parts.weights.version, parts.weights.batch)

    def step(self, frame: Frame) -> GamepadState:
        """One turn of the loop on one frame (every stage but the capture's); returns the pad."""
        self._turn(frame, self.stage_times.start())
        return self.last_pad

    def _turn(self, frame: Frame, mark: int) -> int:
        """The stages after the capture, each timed from `mark` on; returns the last lap's end."""
        times = self.stage_times
        self._take_switched_model()
        parts = self.parts
        model_input = self._stack(self._model_input(frame))
        mark = times.lap("preprocess", mark)
        prediction = parts.model.predict(model_input)
        mark = times.lap("predict", mark)
        self._last_input = model_input
        steering = prediction.outputs["steering"]
        pad = parts.translator.translate(steering, self._throttle_from(prediction.outputs))
        mark = times.lap("translate", mark)
        parts.controller.send(pad)
        mark = times.lap("controller", mark)
        self.last_pad = pad
        self._pps.record()
        self._last_frame, self._last_prediction = frame, prediction
        # Every prediction's Convcam, so the overlay always shows the newest (about 1 ms for
        # Xception's 2048 kernels); it is encoded and sent only at frames_hz.
        started = time.perf_counter()
        self._convcam = self.render_convcam(prediction.activations)
        self._convcam_s += time.perf_counter() - started
        self._convcam_renders += 1
        mark = times.lap("convcam", mark)
        now = self._clock()
        reason = parts.watch.update(frame.captured_at, frame.telemetry, frame.model_input)
        if reason is not None:
            self._unstuck(reason)
        elif now - self._last_load >= self.config.reload_interval_s:
            self._apply_offered_weights("reload interval")
        mark = times.lap("watch", mark)
        self._report(now, frame)
        return times.lap("report", mark)

    def summary(self) -> DriveSummary:
        """The drive so far (callable at any time, e.g. after a SIGTERM ended `run`)."""
        parts = self.parts
        elapsed = self._clock() - self._started if self._started is not None else 0.0
        telemetry = self._last_frame.telemetry if self._last_frame is not None else None
        predictions = self._pps.total - self._counts_at_start[0]
        frames = parts.capture.frames_captured - self._counts_at_start[1]
        return DriveSummary(
            seconds=elapsed,
            predictions=predictions,
            pps=predictions / elapsed if elapsed > 0 else 0.0,
            fps=frames / elapsed if elapsed > 0 else 0.0,
            frames_captured=parts.capture.frames_captured,
            frames_dropped=parts.capture.frames_dropped,
            convcam_ms=1000 * self._convcam_s / max(1, self._convcam_renders),
            unstucks=self.unstucks,
            reloads=self.reloads,
            version=parts.weights.version,
            batch=parts.weights.batch,
            last_pad=self.last_pad,
            distance_m=telemetry.distance_m if telemetry else None,
            offroad_events=telemetry.offroad_events if telemetry else None,
            stages=self.stage_times.summary(),
        )

    def status(self) -> DriverStatus:
        """The Player Console numbers now."""
        prediction = self._last_prediction
        telemetry = self._last_frame.telemetry if self._last_frame is not None else None
        pad = self.last_pad
        return DriverStatus(
            version=self.parts.weights.version,
            batch=self.parts.weights.batch,
            predictions=dict(prediction.outputs) if prediction else {},
            pad={
                "steering": pad.steering,
                "left_trigger": pad.left_trigger,
                "right_trigger": pad.right_trigger,
            },
            fps=self.parts.capture.fps,
            pps=self._pps.rate(),
            unstucks=self.unstucks,
            distance_m=telemetry.distance_m if telemetry else 0.0,
            offroad_events=telemetry.offroad_events if telemetry else 0,
            # Percentiles computed here, at status_hz, never per frame.
            stages=self.stage_times.summary(),
            convcam_layers=self.parts.model.convcam_layers,
            convcam_kernels=self._convcam_kernels,
            engine=self.parts.model.engine,
        )

    def _take_switched_model(self) -> None:
        with self._offer_lock:
            switched, self._switch_to = self._switch_to, None
        if switched is None:
            return
        self.parts = dataclasses.replace(
            self.parts, model=switched.model, weights=switched.weights, gradcam=switched.gradcam
        )
        self._throttle_from = throttle_brake_reader(switched.model.output_names)
        self._stack = FrameStack(frames=switched.model.input_shape[-1] // 3)
        self._gradcam_image = None
        self.parts.translator.reset()
        self._last_load = self._clock()
        log.info("now driving %s (batch %d)", switched.weights.version, switched.weights.batch)
        self._alert_precision(getattr(switched.model, "precision_note", None))

    def _alert_precision(self, note: str | None) -> None:
        """A model driving at f32 instead of [driver] precision (the reduced one disagreed,
        or could not be made): viewers and the streamer see why (the model logged it)."""
        if note is not None:
            self._sink(Alert(kind="error", text=note))

    def _model_input(self, frame: Frame) -> np.ndarray:
        """The frame at the model's input size (the capture's, unless a switch changed it)."""
        height, width = self.parts.model.input_shape[:2]
        if frame.model_input.shape[:2] == (height, width):
            return frame.model_input
        return resize_frame(frame.image, (width, height))

    def _unstuck(self, reason: str) -> None:
        """Stop, fix, forget the old motion, and take the moment to load new weights."""
        parts = self.parts
        parts.controller.neutral()
        self.unstucks += 1
        action = parts.unstuck.description
        log.info("unstuck #%d: %s -> %s", self.unstucks, reason, action)
        self._sink(Alert(kind="unstuck", text=f"Stuck ({reason}): {action}"))
        parts.unstuck()
        parts.translator.reset()
        self._stack.reset()
        self._apply_offered_weights("unstuck")
        parts.watch.reset(self._clock())

    def _apply_offered_weights(self, why: str) -> None:
        if self.parts.model.converts_checkpoints:
            self._convert_offered_weights(why)
            return
        with self._offer_lock:
            offered, self._offered = self._offered, None
        self._last_load = self._clock()
        if offered is None:
            return
        weights = self.parts.weights
        before = weights.batch
        try:
            weights.reload_latest()
        except (CheckpointError, OSError) as error:
            # Damaged or vanished files must not stop the car: keep the weights it drives with.
            log.error(
                "new weights of %s not loaded, driving on with batch %d: %s",
                weights.version,
                before,
                error,
            )
            return
        self.reloads += 1
        log.info(
            "new weights at %s: %s batch %d (was %d; offered %d)",
            why,
            weights.version,
            weights.batch,
            before,
            offered[1],
        )

    def _convert_offered_weights(self, why: str) -> None:
        """Another engine: load and convert on a thread, the car driving on the old model.

        The newest model input is the probe the conversion must agree with TensorFlow on.
        An offer made while a conversion runs waits for the next unstuck or interval.
        """
        self._last_load = self._clock()
        with self._offer_lock:
            offered = self._offered
            if offered is None or self._last_input is None:
                return
            weights, model = self.parts.weights, self.parts.model
            started = model.reload_in_background(weights, self._last_input, self._converted)
            if started:
                self._offered = None
        if started:
            log.info("weights of %s at %s: converting for %s", offered[0], why, model.engine)

    def _converted(self, outcome: ReloadOutcome) -> None:
        """A background conversion ended (its thread): count it, or alert and keep the old."""
        if outcome.refused is not None:
            log.error(
                "new weights of %s not taken, driving on with batch %d: %s",
                outcome.version,
                outcome.before,
                outcome.refused,
            )
            self._sink(
                Alert(
                    kind="error",
                    text=f"new weights of {outcome.version} refused, driving on with batch "
                    f"{outcome.before}: {outcome.refused}",
                )
            )
            return
        self.reloads += 1
        self._alert_precision(outcome.precision_note)
        log.info(
            "now predicting with %s batch %d (was %d): converted and checked in %.1f s",
            outcome.version,
            outcome.batch,
            outcome.before,
            outcome.seconds,
        )

    def _report(self, now: float, frame: Frame) -> None:
        config = self.config
        if config.frames_hz > 0 and now >= self._next_frames:
            self._next_frames = now + 1.0 / config.frames_hz
            self._sink(self._frames(now, frame))
        if now >= self._next_status:
            self._next_status = now + 1.0 / config.status_hz
            self._sink(self.status())

    def _frames(self, now: float, frame: Frame) -> Frames:
        """The overlay's images: hood (with Grad-CAM when on), Convcam, chase."""
        quality = self.config.jpeg_quality
        hood = frame.image
        gradcam = self.parts.gradcam
        if gradcam is not None and self.config.gradcam_hz > 0:
            if now >= self._next_gradcam:
                self._next_gradcam = now + 1.0 / self.config.gradcam_hz
                self._gradcam_image = gradcam.overlay(self._stack.newest(), frame.image)
            hood = self._gradcam_image if self._gradcam_image is not None else hood
        chase = self.parts.chase() if self.parts.chase is not None else None
        return Frames(
            hood=encode_frame(hood, quality),
            convcam=encode_frame(self._convcam, quality),
            chase=encode_frame(chase, quality) if chase is not None else b"",
        )

    def render_convcam(self, activations: tuple[np.ndarray, ...]) -> np.ndarray:
        """The Convcam image of one pass's activations (two layers: two colours), shaped for
        the overlay's Convcam tile unless [driver] convcam_columns fixes the columns."""
        config = self.config
        columns = config.convcam_columns or None
        self._convcam_kernels = sum(layer.shape[-1] for layer in activations)
        if len(activations) == 2:
            return render_convcam_dual(
                *activations,
                columns=columns,
                normalise=config.convcam_normalise,
                aspect=OVERLAY_ASPECT,
            )
        return render_convcam(
            activations[0],
            columns=columns,
            normalise=config.convcam_normalise,
            aspect=OVERLAY_ASPECT,
        )


class FrameStack:
    """The model's input: the newest `frames` frames stacked as channels, newest first.

    Until enough frames have come (at the start, after an unstuck) the oldest
    one repeats, so the model always gets a full stack.
    """

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self._recent: deque[np.ndarray] = deque(maxlen=frames)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Add the newest frame and return the stack (the frame itself for one frame)."""
        self._recent.appendleft(image)
        if self.frames == 1:
            return image
        stack = list(self._recent) + [self._recent[-1]] * (self.frames - len(self._recent))
        return np.concatenate(stack, axis=-1)

    def newest(self) -> np.ndarray:
        """The stack as last returned."""
        stack = list(self._recent) + [self._recent[-1]] * (self.frames - len(self._recent))
        return stack[0] if self.frames == 1 else np.concatenate(stack, axis=-1)

    def reset(self) -> None:
        """Forget past frames (they show another place after an unstuck)."""
        self._recent.clear()


def throttle_brake_reader(outputs: tuple[str, ...]) -> Callable[[dict[str, float]], float]:
    """How to get the combined throttle/brake axis from a line's outputs, checked once.

    Lines predict `throttle_brake` (model_0003 on) or separate `acceleration` and
    `braking` (earlier lines); the pad needs the combined axis either way.
    """
    if "steering" not in outputs:
        raise ModelError(
            f"the model's outputs are {', '.join(outputs)}; driving needs 'steering' "
            "and 'throttle_brake' (or 'acceleration' and 'braking')"
        )
    if "throttle_brake" in outputs:
        return lambda values: values["throttle_brake"]
    if "acceleration" in outputs or "braking" in outputs:
        return lambda values: values.get("acceleration", 0.0) - values.get("braking", 0.0)
    raise ModelError(
        f"the model's outputs are {', '.join(outputs)}; driving needs 'throttle_brake' "
        "or 'acceleration' / 'braking' next to 'steering'"
    )
