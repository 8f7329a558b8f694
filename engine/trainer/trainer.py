"""The trainer: sample buffers -> batches -> compiled train step -> curves, checkpoints, status.

Example::

    configure_process(config.trainer)      # first, in the trainer's own process
    with Trainer(config, "model_0000_demo_v1", streamed=True,
                 on_status=send_status, on_checkpoint=announce_weights) as trainer:
        trainer.add_sets(sample_sets)      # balanced sets from collectors, any thread
        result = trainer.run(stop=stop_event)

The trainer runs in its own process (TensorFlow never runs in the asyncio app)
and knows nothing of how it is reached: sample sets come in through `add_sets`,
and it reports through two callbacks, `on_status` (waiting for data / training /
saving, batch, losses, samples/s, buffer fill: the wire protocol's
`TrainerStatus`, so the trainer node forwards it as it is) and `on_checkpoint`
(a new checkpoint the driver can load). The app's transport wraps those. The
callbacks run on the thread that calls `run`, between steps: keep them quick.

Training follows the reference: a step runs only while every buffer is at least
`data.ready_threshold` full, and each batch takes an equal share of random
samples from every buffer and removes them (`engine.data`). Mean losses go to
TensorBoard (`<data_dir>/tensorboard/<version>/`) and a status report every
`trainer.log_every` batches (and at least every 2 s); a checkpoint is saved every
`trainer.checkpoint_every` batches and when the run ends, and a new run resumes
from the latest checkpoint with its batch counter. Each run is one training
period of the version in the registry, streamed or off-stream.

An off-stream trainer (`charles-stream train`) has no sets coming in; while it
waits for data it picks up samples that another process (`charles-stream
collect`) stores.

With `[trainer] strategy = "multi_worker"` several trainer processes (boxes)
train one model together (`engine/trainer/cluster.py`): the chief (worker 0)
alone holds sample buffers, draws each global batch, checkpoints, writes
TensorBoard, records the training period and reports status; every other
worker takes its slice of the chief's batch, starts from the chief's weights
and batch counter, and writes nothing (its data directory only needs the
version). A dead peer ends every worker's run with `ClusterError` and no
checkpoint; started again, they resume from the chief's latest one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import tensorflow as tf

from engine.core.config import Config, DataConfig, TrainerConfig
from engine.core.errors import ModelError
from engine.core.priority import lower_priority
from engine.core.wire import BufferFill, TrainerState, TrainerStatus
from engine.data.batches import Batch, BatchSource, DataPathCosts
from engine.data.buffers import SampleBuffers
from engine.data.samples import SampleSet
from engine.node.progress import report_progress
from engine.trainer.cluster import Cluster, ClusterError, join_cluster
from engine.trainer.train_step import TrainStep, create_training_variables, make_strategy
from models.build import build_architecture, build_model, compile_model, parameter_counts
from models.checkpoints import list_checkpoints, load_latest_checkpoint, save_checkpoint
from models.registry import Registry, version_dir
from models.spec import ModelSpec
from models.tensorboard_log import LossLog, tensorboard_dir

log = logging.getLogger("charles.trainer")

StopReason = Literal["batches_done", "stop_requested", "data_below_threshold"]

# How long the loop waits for a batch before re-checking `stop` and the buffers.
_POLL_S = 0.5
# A status (and a TensorBoard point) at least this often while training, even when
# `log_every` batches take longer (a big model on a CPU): the consoles stay live.
_STATUS_EVERY_S = 2.0


@dataclass(frozen=True)
class NewCheckpoint:
    """A checkpoint just saved: the driver can load `path` into the version's model."""

    version: str
    batch: int
    path: Path


@dataclass(frozen=True)
class TrainingRun:
    """How one `Trainer.run` went: batch counters before and after, and why it ended."""

    version: str
    start_batch: int
    end_batch: int
    stopped_because: StopReason
    # Throughput while training (waits for data excluded); None if no batch was trained.
    samples_per_s: float | None
    # The newest checkpoint this trainer saved; None if it has saved none yet.
    checkpoint: Path | None

    @property
    def batches(self) -> int:
        """Batches trained in this run."""
        return self.end_batch - self.start_batch


def configure_process(settings: TrainerConfig) -> None:
    """Lower the trainer's CPU priority and cap TensorFlow's threads, before TensorFlow starts.

    On a 2-core machine the driver must keep its frame rate while the trainer
    trains: a higher nice value lets it go first, fewer threads leave it a core.
    Threads created later (TensorFlow's pools, the batch prefetcher) inherit the
    nice value, so this runs first thing in the trainer process.
    """
    lower_priority(settings.nice)  # os.nice on POSIX, a priority class on Windows
    if settings.threads:
        tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
        tf.config.threading.set_inter_op_parallelism_threads(settings.threads)


class Trainer:
    """Trains one model version from the sample buffers; see the module docstring."""

    def __init__(
        self,
        config: Config,
        version: str,
        *,
        streamed: bool,
        data_dir: str | Path | None = None,
        on_status: Callable[[TrainerStatus], None] | None = None,
        on_checkpoint: Callable[[NewCheckpoint], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.streamed = streamed
        self.data_dir = Path(data_dir if data_dir is not None else config.app.data_dir)
        self._on_status = on_status or (lambda status: None)
        self._on_checkpoint = on_checkpoint or (lambda checkpoint: None)
        with Registry(self.data_dir) as registry:
            model_version = registry.version(version)
        self.version = model_version.name
        self.spec = model_version.spec()
        _check_trainable(self.spec, config.data, self.version)
        self.checkpoint_dir = version_dir(self.data_dir, self.version)
        settings = config.trainer
        self.cluster: Cluster | None = (
            join_cluster(settings) if settings.strategy == "multi_worker" else None
        )
        # The chief (or a lone trainer) draws, checkpoints, writes curves and reports.
        self.is_chief = self.cluster is None or self.cluster.is_chief
        self.strategy = (
            self.cluster.strategy if self.cluster is not None else make_strategy(settings.strategy)
        )
        self.model, self.batch = self._load_model(model_version.batches_trained)
        if model_version.parameters is None and self.is_chief:  # created by the app
            with Registry(self.data_dir) as registry:
                registry.record_parameters(self.version, parameter_counts(self.model))
        self.step = TrainStep(self.model, self.strategy, self.spec.output_names)
        if self.spec.training.batch_size < self.step.replicas:
            raise ModelError(
                f"{self.version}: training.batch_size = {self.spec.training.batch_size} is "
                f"smaller than the {self.step.replicas} replicas of the mirrored strategy; "
                f"accepted: {self.step.replicas} or more"
            )
        self.frame_shape = (self.spec.input.height, self.spec.input.width, 3)
        if self.cluster is not None:
            if self.spec.training.batch_size % self.cluster.size:
                raise ModelError(
                    f"{self.version}: training.batch_size = {self.spec.training.batch_size} does "
                    f"not split evenly between the {self.cluster.size} workers of "
                    f"trainer.workers; accepted: a multiple of {self.cluster.size}"
                )
            self.step.build(self.frame_shape)
            variables = [*self.model.weights, *self.model.optimizer.variables]
            self.batch = self.cluster.sync_state(variables, self.batch)
        # Only the chief draws batches; the other workers get their slices from it.
        self.buffers: SampleBuffers | None = (
            SampleBuffers.from_config(config, data_dir=self.data_dir, seed=seed)
            if self.is_chief
            else None
        )
        # The batch prefetch thread's CPU per part, over every run of this trainer.
        self.data_costs = DataPathCosts()
        self._saved_batch = self.batch
        self._last_checkpoint: Path | None = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the sample storage (what it holds is already safe on disk)."""
        if self.buffers is not None:
            self.buffers.storage.close()

    def add_sets(self, sample_sets: Iterable[SampleSet]) -> None:
        """Store balanced sets and add them to their buffers; safe from any thread.

        A worker that is not the chief has no buffers: the chief's draw feeds it.
        """
        if self.buffers is None:
            return
        for sample_set in sample_sets:
            self.buffers.add_set(sample_set)

    def ready(self) -> bool:
        """Whether every buffer is full enough to train (the reference's 90% rule).

        Always true on a worker that is not the chief: the chief's buffers decide.
        """
        return self.buffers is None or self.buffers.ready()

    def fill(self) -> dict[str, BufferFill]:
        """Each buffer's samples, against the number training needs (none off the chief)."""
        if self.buffers is None:
            return {}
        needed = math.ceil(self.buffers.ready_threshold * self.buffers.capacity)
        return {
            name: BufferFill(fill=held, capacity=self.buffers.capacity, needed=needed)
            for name, held in self.buffers.fill().items()
        }

    def run(
        self,
        max_batches: int | None = None,
        stop: threading.Event | None = None,
        *,
        wait_for_data: bool = True,
    ) -> TrainingRun:
        """Train `max_batches` more batches, until `stop` is set, or (not waiting) data runs low.

        With `wait_for_data` the trainer waits while a buffer is below the
        threshold; without it the run ends there. Either way the run ends with a
        checkpoint of what it trained and a closed training period.
        """
        stop = stop or threading.Event()
        start_batch = self.batch
        # In a cluster a stop is agreed in the loop's first turn: a worker that returned here
        # would skip the collective its peers wait in.
        if stop.is_set() and self.cluster is None:
            return TrainingRun(self.version, start_batch, start_batch, "stop_requested", None, None)
        if not self.is_chief:
            return self._run_worker(max_batches, stop)
        assert self.buffers is not None  # the chief's
        batch_size = self.spec.training.batch_size
        try:
            source = BatchSource(
                self.buffers,
                batch_size=batch_size,
                frame_size=(self.spec.input.width, self.spec.input.height),
                outputs=self.spec.output_names,
                prefetch=self.config.data.prefetch_batches,
                mirror=self.config.data.mirror,
                costs=self.data_costs,
            )
        except ValueError as error:
            raise ModelError(f"{self.version}: {error}") from None
        with (
            Registry(self.data_dir) as registry,
            LossLog(tensorboard_dir(self.data_dir, self.version)) as curves,
            source,
        ):
            period = registry.open_period(
                self.version, streamed=self.streamed, start_batch=start_batch
            )
            log.info(
                "training %s from batch %d (%s)",
                self.version,
                start_batch,
                "streamed" if self.streamed else "off-stream",
            )
            loop = _Loop(self, source, registry, curves, period.id)
            try:
                reason, samples_per_s = loop.train(max_batches, stop, wait_for_data)
                loop.finish()
            except BaseException:
                # The period ends at its last checkpoint: what a restart resumes from.
                registry.close_period(period.id)
                raise
            registry.close_period(period.id, self.batch)
        self._report("stopped", loop.last_losses, None)
        log.info("stopped %s at batch %d: %s", self.version, self.batch, reason.replace("_", " "))
        return TrainingRun(
            self.version, start_batch, self.batch, reason, samples_per_s, self._last_checkpoint
        )

    def _run_worker(self, max_batches: int | None, stop: threading.Event) -> TrainingRun:
        """A worker other than the chief: step with the cluster, write nothing."""
        start_batch = self.batch
        log.info("training %s from batch %d as a worker", self.version, start_batch)
        loop = _Loop(self, None, None, None, 0)
        reason, samples_per_s = loop.train(max_batches, stop, True)
        loop.finish()
        log.info("stopped %s at batch %d: %s", self.version, self.batch, reason.replace("_", " "))
        return TrainingRun(self.version, start_batch, self.batch, reason, samples_per_s, None)

    def _save(self, registry: Registry, period_id: int) -> None:
        """Checkpoint the current batch, record it in the period, and announce it."""
        self._report("saving", None, None)
        checkpoint = save_checkpoint(
            self.model,
            self.checkpoint_dir,
            self.batch,
            keep=self.config.models.keep_checkpoints,
        )
        registry.record_batches(period_id, self.batch)
        self._saved_batch = self.batch
        self._last_checkpoint = checkpoint.path
        self._on_checkpoint(NewCheckpoint(self.version, self.batch, checkpoint.path))

    def _report(
        self,
        state: TrainerState,
        losses: dict[str, float] | None,
        samples_per_s: float | None,
    ) -> None:
        if not self.is_chief:
            return  # the chief reports for the cluster
        self._on_status(
            TrainerStatus(
                version=self.version,
                status=state,
                batch=self.batch,
                loss=dict(losses or {}),
                samples_per_s=samples_per_s or 0.0,
                buffers=self.fill(),
            )
        )

    def _load_model(self, batches_recorded: int) -> tuple[keras.Model, int]:
        """The version's model under the strategy, with its latest checkpoint and batch counter."""
        frame_shape = (self.spec.input.height, self.spec.input.width, 3)
        if not self.is_chief:
            # The chief's weights and batch counter replace these (Cluster.sync_state).
            with self.strategy.scope():
                model = build_architecture(self.spec)
                compile_model(model, self.spec)
            create_training_variables(model, self.strategy, self.spec.output_names, frame_shape)
            return model, 0
        resuming = bool(list_checkpoints(self.checkpoint_dir))
        with self.strategy.scope():
            # Only a brand-new version starts from ImageNet weights; a checkpoint replaces them.
            model = (
                build_architecture(self.spec)
                if resuming
                else build_model(self.spec, self.config.models.imagenet_weights)
            )
            compile_model(model, self.spec)
            if self.cluster is None:
                checkpoint = load_latest_checkpoint(model, self.checkpoint_dir)
        if self.cluster is not None:
            # Every worker creates the same variables in the same order (each creation is a
            # collective); the load then only assigns, outside the scope, where whatever it
            # creates for itself stays local instead of starting a collective of its own.
            create_training_variables(model, self.strategy, self.spec.output_names, frame_shape)
            checkpoint = load_latest_checkpoint(model, self.checkpoint_dir)
        if checkpoint is None:
            if batches_recorded:
                log.warning(
                    "%s trained %d batches, but %s holds no checkpoint; starting again at 0",
                    self.version,
                    batches_recorded,
                    self.checkpoint_dir,
                )
            return model, 0
        return model, checkpoint.batch


def _check_trainable(spec: ModelSpec, data: DataConfig, version: str) -> None:
    """Refuse, before any training, a version the recorded samples cannot feed."""
    missing = [name for name in spec.output_names if name not in data.outputs]
    if missing:
        raise ModelError(
            f"{version}: outputs {', '.join(missing)} are not recorded in samples; "
            f"data.outputs lists {', '.join(data.outputs)}; accepted: a version whose outputs "
            "are all among them"
        )
    if spec.input.frames != 1:
        raise ModelError(
            f"{version}: input.frames = {spec.input.frames}, but a sample carries one frame; "
            "accepted for training: frames = 1"
        )


class _Loop:
    """One run's training loop: the per-batch work and its bookkeeping."""

    def __init__(
        self,
        trainer: Trainer,
        source: BatchSource | None,
        registry: Registry | None,
        curves: LossLog | None,
        period_id: int,
    ) -> None:
        # None on a worker other than the chief, which draws, records and writes nothing.
        self.trainer = trainer
        self.source = source
        self.registry = registry
        self.curves = curves
        self.period_id = period_id
        self.last_losses: dict[str, float] | None = None
        self._logged_batch = trainer.batch
        self._logged_at = time.monotonic()
        self._training_s = 0.0
        self._interval_training_s = 0.0
        self._interval_samples = 0
        self._samples_trained = 0

    def train(
        self, max_batches: int | None, stop: threading.Event, wait_for_data: bool
    ) -> tuple[StopReason, float | None]:
        """Step until done; return why it stopped and the samples/s while training."""
        cluster = self.trainer.cluster
        if cluster is not None:
            try:
                return self._train_in_cluster(cluster, max_batches, stop, wait_for_data)
            except tf.errors.OpError as error:  # a collective inside the step or a loss read
                raise ClusterError(cluster.failure("training", error)) from None
        assert self.source is not None and self.registry is not None and self.curves is not None
        trainer = self.trainer
        settings = trainer.config.trainer
        end = None if max_batches is None else trainer.batch + max_batches
        waiting = False
        reason: StopReason = "batches_done"
        while end is None or trainer.batch < end:
            # Every turn, waiting for data included (at most _POLL_S apart then): the app's
            # liveness watchdog tells a waiting trainer from a hung one by this.
            report_progress()
            if stop.is_set():
                reason = "stop_requested"
                break
            started = time.perf_counter()
            batch = self.source.next_batch(timeout=_POLL_S)
            if batch is None:
                if trainer.buffers.ready():
                    continue  # a batch is still being decoded
                if not wait_for_data:
                    reason = "data_below_threshold"
                    break
                self._wait(announce=not waiting)
                waiting = True
                continue
            waiting = False
            trainer.step(batch.x, batch.y)
            trainer.batch += 1
            elapsed = time.perf_counter() - started
            self._interval_training_s += elapsed
            self._training_s += elapsed
            self._interval_samples += len(batch.x)
            self._samples_trained += len(batch.x)
            if (
                trainer.batch % settings.log_every == 0
                or time.monotonic() - self._logged_at >= _STATUS_EVERY_S
            ):
                self._log_interval()
            if trainer.batch % settings.checkpoint_every == 0:
                self.curves.flush()  # a remote trainer ships them with the checkpoint
                trainer._save(self.registry, self.period_id)
        speed = self._samples_trained / self._training_s if self._training_s else None
        return reason, speed

    def _train_in_cluster(
        self, cluster: Cluster, max_batches: int | None, stop: threading.Event, wait_for_data: bool
    ) -> tuple[StopReason, float | None]:
        """`train` for a multi-worker cluster: every worker takes every turn together."""
        trainer = self.trainer
        settings = trainer.config.trainer
        end = None if max_batches is None else trainer.batch + max_batches
        held: Batch | None = None  # the chief's drawn batch, until a turn trains it
        waiting = False
        while True:
            report_progress()
            started = time.perf_counter()
            # A worker whose --batches are done ends the run of all.
            done = end is not None and trainer.batch >= end
            rows, out_of_data = 0, False
            if cluster.is_chief and not stop.is_set() and not done:
                assert self.source is not None and trainer.buffers is not None
                if held is None:
                    held = self.source.next_batch(timeout=_POLL_S)
                if held is not None:
                    # A batch short of corrupt samples still splits evenly.
                    rows = len(held.x) - len(held.x) % cluster.size
                    if not rows:
                        held = None
                elif not trainer.buffers.ready():
                    out_of_data = not wait_for_data
                    if wait_for_data:
                        self._wait(announce=not waiting)
                        waiting = True
            log_due = (trainer.batch + 1) % settings.log_every == 0 or (
                time.monotonic() - self._logged_at >= _STATUS_EVERY_S
            )
            turn = cluster.agree(rows=rows, stop=stop.is_set() or out_of_data or done, log=log_due)
            if turn.stop:
                reason: StopReason = (
                    "batches_done"
                    if done
                    else "data_below_threshold"
                    if out_of_data
                    else "stop_requested"
                )
                break
            if not turn.rows:
                continue
            waiting = False
            drawn = (held.x, held.y) if held is not None else None
            x, y = cluster.share_batch(drawn, turn.rows, trainer.frame_shape, trainer.step.outputs)
            held = None
            trainer.step.train_slice(x, y)
            trainer.batch += 1
            elapsed = time.perf_counter() - started
            self._interval_training_s += elapsed
            self._training_s += elapsed
            self._interval_samples += turn.rows
            self._samples_trained += turn.rows
            if turn.log:
                self._log_interval()
            if trainer.batch % settings.checkpoint_every == 0 and self.registry is not None:
                assert self.curves is not None  # the chief's, like the registry
                self.curves.flush()
                trainer._save(self.registry, self.period_id)
        speed = self._samples_trained / self._training_s if self._training_s else None
        return reason, speed

    def finish(self) -> None:
        """Log the last partial interval and checkpoint what was trained since the last save."""
        trainer = self.trainer
        try:
            if trainer.batch != self._logged_batch:
                self._log_interval()  # in a cluster every worker gets here at the same batch
        except tf.errors.OpError as error:
            if trainer.cluster is None:
                raise
            raise ClusterError(trainer.cluster.failure("reading the losses", error)) from None
        if trainer.batch != trainer._saved_batch and self.registry is not None:
            trainer._save(self.registry, self.period_id)

    def _log_interval(self) -> None:
        trainer = self.trainer
        losses = trainer.step.mean_losses()
        samples_per_s = (
            self._interval_samples / self._interval_training_s
            if self._interval_training_s
            else None
        )
        if self.curves is not None:
            self.curves.write(trainer.batch, losses, samples_per_s)
        self.last_losses = losses
        self._logged_batch = trainer.batch
        self._logged_at = time.monotonic()
        self._interval_training_s = 0.0
        self._interval_samples = 0
        trainer._report("training", losses, samples_per_s)

    def _wait(self, *, announce: bool) -> None:
        """A buffer is below the threshold: report it and, off-stream, look for stored samples."""
        trainer = self.trainer
        if announce:
            fill = ", ".join(f"{name} {f.fill}/{f.needed}" for name, f in trainer.fill().items())
            log.info("waiting for data: buffers %s (held/needed)", fill)
            if self.curves is not None:
                self.curves.flush()
        if not trainer.streamed and trainer.buffers is not None:
            trainer.buffers.load_new()
        trainer._report("waiting_for_data", self.last_losses, None)
