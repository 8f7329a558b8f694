"""A trainer's place in a multi-worker cluster: the strategy, its role, and lockstep turns.

Example::

    cluster = join_cluster(config.trainer)     # strategy = "multi_worker"; once a process
    cluster.is_chief                           # worker 0: draws, checkpoints, TensorBoard, reports
    run = cluster.next_version(version, leaving=False)   # between runs: the chief's version
    batch = cluster.sync_state(variables, batch)   # every worker starts from the chief's weights
    turn = cluster.agree(rows=32, stop=False, log=True)   # every worker, every turn of the loop
    x, y = cluster.share_batch(drawn, turn.rows, (72, 128, 3), outputs)   # this worker's slice

The cluster is `tf.distribute.MultiWorkerMirroredStrategy`: one replica per
trainer process, the gradients summed by its collective all-reduce over gRPC
(ring) on every step. Its members come from config (`[trainer] workers`, the
same list on every box, and `worker_index`, which `--worker-index` overrides);
TF_CONFIG is not read, so one config file and a flag describe the whole cluster.

Who draws: only the chief has sample buffers. Each turn it takes one global
batch (the configured batch size) from its buffers exactly as a single trainer
would, keeps the first 1/n for its own replica and sends worker i the i-th
slice, as uint8 frames and float32 targets packed into one int32 all-reduce
that the others feed zeros (integer sums with zeros are exact). So the halves
are disjoint, a sample is used once (one store is the truth, a crash costs what
a single trainer's crash costs), and a cluster trains the very batches one
trainer with the same store and seed would. The alternatives: every worker
drawing the same batch from its own copy of the stream with the same seed
diverges as soon as sets reach the copies at different moments or a kill leaves
their marks different (a sample is then trained by both or by neither); a
disjoint partition per worker makes every worker fill its own buffers before
the first step and agree on readiness anyway. The price is (n-1)/n of a batch
of frames over the network per step (`bench/trainer.py --case multi_worker`).

Lockstep: every collective must be entered by every worker in the same order,
so the chief's decisions travel in `agree` (a batch is ready with this many
rows, write a status now) together with any worker's stop request, and losses
are read (a collective too) only on turns that `agree` marked. A dead or cut-off
peer makes the next collective fail within `collective_timeout_s`;
`MultiWorkerMirroredStrategy` cannot go on with fewer workers in the same
process (its collectives are aborted for good), so the trainer raises
`ClusterError` and every worker must be started again: they resume together
from the chief's latest checkpoint.

Model switches: `SwitchModel` reaches each trainer node at its own moment, so
only the chief's counts. Its stop ends the run of all (in `agree`), and
between runs every worker asks `next_version`: the chief's version, and
whether any worker is leaving (SIGTERM, hub lost), which ends the cluster
cleanly instead of leaving the others in a collective until it times out.
Then `unready`: a version one box cannot prepare (not fetched from the hub)
is trained by none, and all go back to the previous one together.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

from engine.core.config import TrainerConfig
from engine.core.errors import CharlesError, ConfigError
from engine.core.schema import convert

log = logging.getLogger("charles.trainer.cluster")

# How long the first collectives (joining, the chief's weights) wait for every worker to start:
# a worker's TensorFlow import and model build take a while on a busy machine.
JOIN_TIMEOUT_S = 600.0

# A version's name is a folder name: at most 255 bytes on every common file system.
MAX_VERSION_BYTES = 255

# One cluster per process: the strategy's gRPC server and collective context cannot be redone.
_joined: Cluster | None = None


class ClusterError(CharlesError):
    """A multi-worker collective failed (a peer died, was cut off or too slow): start all again."""

    exit_code = 1


def with_worker_index(settings: TrainerConfig, index: int) -> TrainerConfig:
    """`settings` with `worker_index` replaced (a CLI flag), checked like the config file."""
    if settings.strategy != "multi_worker":
        raise ConfigError(
            f"--worker-index {index} is given, but 'trainer.strategy' = {settings.strategy!r}; "
            'accepted: --worker-index only with strategy = "multi_worker"'
        )
    table = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in zip(settings.__struct_fields__, _values(settings), strict=True)
    }
    table["worker_index"] = index
    return convert(
        table, TrainerConfig, where="--worker-index", error=ConfigError, prefix="trainer."
    )


def join_cluster(settings: TrainerConfig) -> Cluster:
    """This process's cluster (created on the first call): the strategy over `settings.workers`."""
    global _joined
    if _joined is not None:
        if (_joined.workers, _joined.index) != (settings.workers, settings.worker_index):
            raise ConfigError(
                f"this process already joined {list(_joined.workers)} as worker {_joined.index}; "
                "accepted: the same cluster (a trainer process joins one cluster once)"
            )
        return _joined
    if os.environ.get("TF_CONFIG"):
        log.warning("TF_CONFIG is ignored: the cluster comes from [trainer] workers")
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(settings.workers)}),
        task_type="worker",
        task_id=settings.worker_index,
        rpc_layer="grpc",
    )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=settings.collective_timeout_s,
    )
    _configure_heartbeats(len(settings.workers), settings.collective_timeout_s)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options
    )
    _take_back_sigterm()
    log.info(
        "worker %d of %s (%s)",
        settings.worker_index,
        json.dumps(list(settings.workers)),
        "chief" if settings.worker_index == 0 else "not the chief",
    )
    _joined = Cluster(strategy, settings.workers, settings.worker_index)
    return _joined


def _configure_heartbeats(workers: int, timeout_s: float) -> None:
    """TensorFlow's coordination service declares a worker dead after `timeout_s` of silence.

    `MultiWorkerMirroredStrategy` configures that service itself, with TensorFlow's default
    heartbeat timeout of 10 s, unless one is configured already. On a busy machine (a stream,
    a test suite and a trainer sharing two cores) a live worker's heartbeats were late by more
    than that and both workers stopped. One setting, `collective_timeout_s`, now says how long
    a silent peer may be alive: the same service as the strategy would configure, with that
    timeout. TensorFlow offers this only in its `context` module (not the public `tf.` API).
    """
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader="/job:worker/replica:0/task:0",
        heartbeat_timeout_in_ms=round(timeout_s * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=workers)],
    )


@dataclass(frozen=True)
class Turn:
    """What every worker agreed on for one turn of the training loop."""

    rows: int  # the global batch's rows (0: the chief has no batch this turn)
    stop: bool  # some worker was asked to stop: all stop now
    log: bool  # read the losses (a collective) and, on the chief, report them


@dataclass(frozen=True)
class NextRun:
    """What every worker agreed on between two runs (a start, a model switch, a stop)."""

    version: str  # the chief's: every worker trains it next
    leaving: tuple[int, ...]  # the workers that stop: the cluster ends (it cannot shrink)


class Cluster:
    """The multi-worker strategy and the collectives that keep its workers in step."""

    def __init__(
        self, strategy: tf.distribute.Strategy, workers: Sequence[str], index: int
    ) -> None:
        self.strategy = strategy
        self.workers = tuple(workers)
        self.index = index
        self.size = len(self.workers)
        self.is_chief = index == 0
        step = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        join = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=JOIN_TIMEOUT_S,
        )
        self._sum = _all_sum(strategy, step)
        self._sum_joining = _all_sum(strategy, join)

    def sync_state(self, variables: Sequence[tf.Variable], batch: int) -> int:
        """Give every worker the chief's variables and batch counter; return the counter.

        The chief alone loads checkpoints; this replaces whatever the others built.
        """
        keep = 1.0 if self.is_chief else 0.0
        values = [tf.cast(v, tf.float64) * keep for v in variables]
        values.append(tf.constant(float(batch) * keep, tf.float64))
        summed = self._run(self._sum_joining, values, "joining the cluster")
        for variable, value in zip(variables, summed[:-1], strict=True):
            variable.assign(tf.cast(value, variable.dtype))
        return int(summed[-1].numpy())

    def next_version(self, version: str, *, leaving: bool) -> NextRun:
        """Between runs, every worker together: the chief's version, and who leaves.

        A model switch reaches every trainer node at its own moment; the cluster
        trains what the chief says, so a worker never builds another model than
        its peers (their collectives would not match). Waits up to the joining
        timeout: the chief may still be saving the last run's checkpoint.
        """
        encoded = version.encode() if self.is_chief else b""
        if len(encoded) > MAX_VERSION_BYTES:  # a folder name cannot be longer
            raise ClusterError(
                f"version name {version!r} is {len(encoded)} bytes; accepted: up to "
                f"{MAX_VERSION_BYTES} (a version's folder name)"
            )
        values = np.zeros(MAX_VERSION_BYTES + self.size, np.int32)
        values[: len(encoded)] = np.frombuffer(encoded, np.uint8)
        values[MAX_VERSION_BYTES + self.index] = int(leaving)
        summed = self._run(self._sum_joining, [tf.constant(values)], "agreeing on a version")
        total = summed[0].numpy()
        name = bytes(total[:MAX_VERSION_BYTES].astype(np.uint8)).rstrip(b"\0").decode()
        leavers = tuple(int(i) for i in np.flatnonzero(total[MAX_VERSION_BYTES:]))
        return NextRun(version=name, leaving=leavers)

    def unready(self, ready: bool) -> tuple[int, ...]:
        """Every worker together: which of them could not prepare the agreed version.

        Preparing (fetching the version from the hub, checking it) can fail on one
        box only; then no worker builds the model, and all go back together.
        """
        values = np.zeros(self.size, np.int32)
        values[self.index] = int(not ready)
        summed = self._run(self._sum_joining, [tf.constant(values)], "preparing a version")
        return tuple(int(i) for i in np.flatnonzero(summed[0].numpy()))

    def agree(self, *, rows: int, stop: bool, log: bool) -> Turn:
        """One turn's decisions: the chief's batch rows and log flag, anyone's stop."""
        chief = 1.0 if self.is_chief else 0.0
        flags = tf.constant([rows * chief, float(stop), float(log) * chief], tf.float64)
        total = self._run(self._sum, [flags], "agreeing on a turn")[0].numpy()
        return Turn(rows=int(total[0]), stop=bool(total[1]), log=bool(total[2]))

    def share_batch(
        self,
        batch: tuple[np.ndarray, Mapping[str, np.ndarray]] | None,
        rows: int,
        frame_shape: tuple[int, int, int],
        outputs: Sequence[str],
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """This worker's slice of the chief's global batch of `rows` (a multiple of the size)."""
        per_worker = rows // self.size
        frame_bytes = int(np.prod(frame_shape))
        frame_ints = -(-frame_bytes // 4)
        row_ints = frame_ints + len(outputs)
        others = rows - per_worker
        if self.is_chief:
            if batch is None:
                raise ValueError("the chief shares a batch it has")
            x, y = batch
            packed = np.zeros((others, row_ints), np.int32)
            frames = packed[:, :frame_ints].view(np.uint8)
            frames[:, :frame_bytes] = x[per_worker:rows].reshape(others, -1).astype(np.uint8)
            targets = np.stack([y[name][per_worker:rows] for name in outputs], axis=1)
            packed[:, frame_ints:] = targets.astype(np.float32).view(np.int32)
        else:
            packed = np.zeros((others, row_ints), np.int32)
        summed = self._run(self._sum, [tf.constant(packed)], "sharing a batch")[0].numpy()
        if self.is_chief:
            x, y = batch  # type: ignore[misc]
            return x[:per_worker], {name: y[name][:per_worker] for name in outputs}
        mine = summed[(self.index - 1) * per_worker : self.index * per_worker]
        frames = mine[:, :frame_ints].copy().view(np.uint8)[:, :frame_bytes]
        x = frames.reshape(per_worker, *frame_shape).astype(np.float32)
        targets = mine[:, frame_ints:].copy().view(np.float32)
        return x, {name: targets[:, i].copy() for i, name in enumerate(outputs)}

    def _run(self, function: tf.types.experimental.GenericFunction, values: list, what: str):
        try:
            result = function(values)
        except (tf.errors.OpError, RuntimeError) as error:
            raise ClusterError(self.failure(what, error)) from None
        return self.strategy.experimental_local_results(result)[0]

    def failure(self, what: str, error: BaseException) -> str:
        """The sentence a failed collective becomes: who, what, and what to do."""
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return (
            f"worker {self.index} of {list(self.workers)}: a collective failed while {what} "
            f"({type(error).__name__}: {first_line}); a worker died, was cut off or did not "
            "answer within trainer.collective_timeout_s. A multi-worker trainer cannot go on "
            "with fewer workers: start every worker again; they resume together from the "
            "chief's latest checkpoint"
        )


def _take_back_sigterm() -> None:
    """Give SIGTERM back to Python's handler, which the strategy's start replaced.

    The strategy's coordination service starts TensorFlow's preemption notifier
    (tsl::PreemptionNotifier), whose C handler takes SIGTERM for itself: the
    process then ignored SIGTERM, so a supervisor's stop never reached the
    trainer's clean shutdown (measured: a worker node trained on for minutes
    after SIGTERM). Setting the Python handler again re-installs Python's own C
    handler; only the main thread may, so a cluster is joined there.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "joined the cluster outside the main thread: SIGTERM stays with TensorFlow's "
            "preemption notifier and will not stop this trainer cleanly"
        )
        return
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None:  # None: a handler Python did not install; leave it
        signal.signal(signal.SIGTERM, handler)


def _all_sum(
    strategy: tf.distribute.Strategy, options: tf.distribute.experimental.CommunicationOptions
) -> tf.types.experimental.GenericFunction:
    """A compiled all-reduce (sum over every worker) of a list of tensors."""

    def replica(values: list[tf.Tensor]) -> list[tf.Tensor]:
        context = tf.distribute.get_replica_context()
        # Placed on this replica's device: the inputs come in without one, and the
        # collective needs a device to reduce to.
        placed = [tf.identity(value) for value in values]
        return context.all_reduce(tf.distribute.ReduceOp.SUM, placed, options=options)

    @tf.function(reduce_retracing=True)
    def all_sum(values: list[tf.Tensor]) -> object:
        return strategy.run(replica, args=(values,))

    return all_sum


def _values(settings: TrainerConfig) -> list[object]:
    return [getattr(settings, name) for name in settings.__struct_fields__]
