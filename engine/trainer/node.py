"""The trainer node: trains the streamed version on the sets collectors send through the hub.

Example::

    python -m engine.trainer.node --config config.toml --model model_0000_demo_v1
    python -m engine.trainer.node --model model_0000_demo_v1 --worker-index 1   # multi_worker

Training runs on its own thread, one `Trainer` (streamed=True) at a time; the
main thread only waits, so SIGTERM (a SystemExit there) stops training between
steps: the run saves a checkpoint, closes its streamed training period, and
the node exits 0. From the hub:

- `SampleSets` -> `Trainer.add_sets`, straight from the hub link's thread
  (the buffers and their storage take their own locks); sets that arrive while
  no trainer is open (starting, switching) wait, up to `WAITING_SETS`.
- `CollectorReport` -> stored next to the samples, so `charles-stream data
  stats` shows starving bins of the running stream.
- `SwitchModel(version)` -> the current run stops (checkpoint, period closed)
  and a new `Trainer` for that version resumes from its latest checkpoint, or
  starts from scratch. A version that cannot be trained raises an `Alert` and
  training goes on with the previous one.

To the hub: `TrainerStatus` (starting, then the trainer's own reports: twice a
second while waiting for data, every `trainer.log_every` batches while
training) and `Checkpointed` for every checkpoint, which the driver loads.

With `[trainer] strategy = "multi_worker"` (engine/trainer/cluster.py) every
trainer node of the cluster trains together; only the chief (worker 0) uses
the sets and reports, the others take their slices of its batches and send
nothing. A switch is the chief's: the others ignore `SwitchModel` and, between
runs, take the chief's version (`Cluster.next_version`), so every worker moves
to it together and training goes on. A worker that stops (SIGTERM, hub lost)
ends the cluster cleanly: it exits as a lone node would, the others exit 1
(`ClusterError`) at once; one that dies ends every worker's run within
`collective_timeout_s` (exit 1). Their supervisors start them again and they
resume from the chief's checkpoint.

On another machine (its data directory is not the app's: no
`CHARLES_HUB_DATA_DIR` naming it), the node first makes each version it
trains usable here (`models.transfer.sync_version`: the hub's record and
newest checkpoint), and a `CheckpointShipper` thread gives each checkpoint to
the hub (verified there, stored where a local trainer would have saved it)
with its training period and TensorBoard event files before `Checkpointed`
goes out; only the newest
waiting checkpoint travels, and the last one is shipped before the node exits.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from engine.core.config import Config
from engine.core.errors import CharlesError
from engine.core.wire import (
    Alert,
    Checkpointed,
    CollectorReport,
    Message,
    SampleSets,
    SwitchModel,
    TrainerStatus,
    message_fields,
)
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from engine.node.client import NodeError
from engine.node.hub_files import HubFiles, shares_hub_data
from engine.node.process import EXIT_HUB_GONE, exit_process, node_parser, run_node, when_set
from engine.node.progress import report_progress
from models.transfer import (
    HubHttp,
    TransferRefused,
    checkpoint_files,
    send_curves,
    send_period,
    sync_version,
    upload_checkpoint,
)

if TYPE_CHECKING:
    from engine.trainer.cluster import Cluster
    from engine.trainer.trainer import NewCheckpoint, Trainer

log = logging.getLogger("charles.nodes.trainer")

# Sets kept in memory while no trainer is open; as many as the hub keeps for a missing trainer.
WAITING_SETS = 64

Send = Callable[[Message], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m engine.trainer.node --model VERSION [--config PATH]`."""
    parser = node_parser("trainer", "The stream's trainer, fed by collectors through the hub.")
    parser.add_argument(
        "--model", required=True, metavar="VERSION", help="the streamed version to train"
    )
    parser.add_argument(
        "--worker-index",
        type=int,
        metavar="N",
        help='[trainer] strategy = "multi_worker": this box\'s place in trainer.workers',
    )
    args = parser.parse_args(argv)
    return run_node(args, lambda config: train(_with_index(config, args.worker_index), args.model))


def _with_index(config: Config, index: int | None) -> Config:
    if index is None:
        return config
    from engine.trainer.cluster import with_worker_index

    return msgspec.structs.replace(config, trainer=with_worker_index(config.trainer, index))


def train(config: Config, version: str) -> int:
    """Connect, train until SIGTERM (SystemExit) or the hub is lost; returns the exit code."""
    # TensorFlow loads here, after the SIGTERM handler is in place.
    from engine.node.client import NodeClient
    from engine.trainer.trainer import configure_process

    configure_process(config.trainer)
    if config.trainer.strategy == "multi_worker":
        from engine.trainer.cluster import join_cluster

        # In the main thread, the one that may take SIGTERM back from TensorFlow.
        join_cluster(config.trainer)
    hub = None if shares_hub_data(config.app.data_dir) else HubFiles.from_environment()
    node = TrainerNode(config, version, hub=hub)
    client = NodeClient.from_environment(
        "trainer",
        node_name(config),
        on_message=node.receive,
        follows_chief=node.follows_chief,  # the hub sends it no sets: the chief's draw feeds it
    )
    client.start()
    when_set(client.lost, node.stop, "hub-lost-watch")
    node.start_shipping(client.send)
    training = threading.Thread(target=node.run, args=(client.send,), name="training")
    training.start()
    try:
        node.finished.wait()
    finally:
        node.stop()
        training.join()
        node.close()
        client.close()
    if node.failure is not None:
        raise node.failure
    log.error("hub lost: the trainer stops")
    return EXIT_HUB_GONE


def node_name(config: Config) -> str:
    """ "trainer", or "trainer-N" for worker N > 0 of a cluster: each node has its own name.

    The hub keys its list of nodes (and their host names) by name: two workers
    both named "trainer" showed as one, on the host of whichever joined last.
    """
    settings = config.trainer
    if settings.strategy == "multi_worker" and settings.worker_index:
        return f"trainer-{settings.worker_index}"
    return "trainer"


class TrainerNode:
    """One streamed `Trainer` at a time, fed from the hub and switched by `SwitchModel`."""

    def __init__(self, config: Config, version: str, *, hub: HubHttp | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.app.data_dir)
        # The hub's model files when this node's data directory is not the app's (None: shared).
        self.hub = hub
        self.shipper: CheckpointShipper | None = None
        self.finished = threading.Event()
        self.failure: BaseException | None = None
        self._target = version
        self._lock = threading.Lock()
        self._trainer: Trainer | None = None
        self._cluster: Cluster | None = None  # multi_worker: joined when training starts
        # A worker other than the chief trains what the chief trains, whatever the hub says.
        self.follows_chief = (
            config.trainer.strategy == "multi_worker" and config.trainer.worker_index != 0
        )
        self._waiting: collections.deque[SampleSet] = collections.deque(maxlen=WAITING_SETS)
        self._dropped = 0
        self._run_stop = threading.Event()
        self._stopping = False
        self._closed = False
        # Collector reports go next to the samples, whichever trainer is open.
        self._reports = SampleStorage(
            default_storage_path(config), capacity=config.data.buffer_capacity
        )

    def receive(self, message: Message) -> None:
        """A message from the hub (on the hub link's thread: nothing here waits long)."""
        if isinstance(message, SampleSets):
            self.add_sets(message.sets)
        elif isinstance(message, CollectorReport):
            with self._lock:
                # Reports still arriving while the node shuts down have nowhere to go.
                if not self._closed:
                    self._reports.record_collector_stats(message.source, message_fields(message))
        elif isinstance(message, SwitchModel):
            self.switch(message.version)

    def add_sets(self, sample_sets: Iterable[SampleSet]) -> None:
        """Hand sets to the open trainer, or keep them until one is open."""
        with self._lock:
            if self._trainer is not None:
                self._trainer.add_sets(sample_sets)
                return
            for sample_set in sample_sets:
                if len(self._waiting) == self._waiting.maxlen:
                    self._dropped += 1
                self._waiting.append(sample_set)

    def switch(self, version: str) -> None:
        """Train `version` from now on: the current run stops and checkpoints first."""
        if self.follows_chief:
            log.info("switch to %s: the chief decides, this worker follows it", version)
            return
        with self._lock:
            if version == self._target:
                log.info("already training %s", version)
                return
            log.info("switching from %s to %s", self._target, version)
            self._target = version
            self._run_stop.set()

    def stop(self) -> None:
        """End training (any thread): the current run checkpoints, then `run` returns."""
        with self._lock:
            self._stopping = True
            self._run_stop.set()

    def start_shipping(self, send: Send) -> None:
        """For a node on another machine: start the thread that gives checkpoints to the hub."""
        if self.hub is not None:
            self.shipper = CheckpointShipper(self.hub, self.data_dir, send)

    def close(self) -> None:
        """Ship the last checkpoint, release the report storage (after `run` returned)."""
        if self.shipper is not None:
            self.shipper.close()
        with self._lock:
            self._closed = True
            self._reports.close()

    def run(self, send: Send) -> None:
        """Train the target version, and the next after each switch, until `stop`."""
        previous: str | None = None
        try:
            if self.config.trainer.strategy == "multi_worker":
                from engine.trainer.cluster import join_cluster

                self._cluster = join_cluster(self.config.trainer)
            while True:
                with self._lock:
                    # Under the lock: a stop or switch after this sets `_run_stop` again.
                    stopping = self._stopping
                    version = self._target
                    self._run_stop.clear()
                if self._cluster is not None:
                    # Every worker between runs, together: the chief's version, or the end.
                    version = self._next_in_cluster(self._cluster, version, stopping)
                if stopping:
                    return
                try:
                    self._train(version, send)
                    previous = version
                except CharlesError as error:
                    from engine.trainer.cluster import ClusterError

                    # The node's first version has nothing to go back to; a failed cluster
                    # cannot train any version in this process (its collectives are aborted).
                    if previous is None or isinstance(error, ClusterError):
                        raise
                    self._refuse_switch(version, previous, error, send)
        except BaseException as error:  # the main thread re-raises it
            self.failure = error
        finally:
            self.finished.set()

    def _next_in_cluster(self, cluster: Cluster, version: str, leaving: bool) -> str:
        """The chief's version for the next run; a worker that leaves ends the cluster."""
        from engine.trainer.cluster import ClusterError

        report_progress()  # the chief may take a while to save the last run's checkpoint
        agreed = cluster.next_version(version, leaving=leaving)
        others = [index for index in agreed.leaving if index != cluster.index]
        if others and not leaving:
            who = ", ".join(f"worker {i}{' (the chief)' if i == 0 else ''}" for i in others)
            raise ClusterError(
                f"worker {cluster.index} of {list(cluster.workers)}: {who} stopped; a "
                "multi-worker trainer cannot go on with fewer workers: start every worker "
                "again; they resume together from the chief's latest checkpoint"
            )
        if agreed.version != version and not leaving:
            log.info("the chief trains %s: this worker follows", agreed.version)
            with self._lock:
                self._target = agreed.version
        return agreed.version

    def _train(self, version: str, send: Send) -> None:
        from engine.trainer.trainer import Trainer

        if not self.follows_chief:
            send(TrainerStatus(version=version, status="starting"))  # the chief speaks for all
        report_progress()  # a switch builds a model next: its liveness bound starts here
        self._prepare(version)
        trainer = Trainer(
            self.config,
            version,
            streamed=True,
            data_dir=self.data_dir,
            on_status=send,
            on_checkpoint=self._announcer(send),
        )
        try:
            with self._lock:
                self._trainer = trainer
                waiting, dropped = list(self._waiting), self._dropped
                self._waiting.clear()
                self._dropped = 0
                trainer.add_sets(waiting)
            if dropped:
                log.warning("%d sample sets dropped while no trainer was open", dropped)
            trainer.run(stop=self._run_stop, wait_for_data=True)
        finally:
            with self._lock:
                self._trainer = None
            trainer.close()
            if self.shipper is not None:
                self.shipper.period_ended(version)

    def _prepare(self, version: str) -> None:
        """Make `version` trainable here; in a cluster, every worker or none goes on."""
        problem: CharlesError | None = None
        try:
            if self.hub is not None:
                self._sync(version)
        except CharlesError as error:
            if self._cluster is None:
                raise
            problem = error
        if self._cluster is None:
            return
        unready = self._cluster.unready(problem is None)
        if problem is not None:
            raise problem
        if unready:
            from engine.core.errors import ModelError

            workers = ", ".join(str(index) for index in unready)
            raise ModelError(f"worker(s) {workers} could not prepare {version} (see their logs)")

    def _sync(self, version: str) -> None:
        """A remote node: the hub's record of `version` and its newest checkpoint, here."""
        assert self.hub is not None
        try:
            copied = sync_version(
                self.hub, self.data_dir, version, keep=self.config.models.keep_checkpoints
            )
        except OSError as error:
            # The hub is away (exit 1, a restart may find it), not a bad model (exit 2).
            raise NodeError(f"cannot fetch {version} from the hub: {error}") from None
        if copied is not None:
            log.info("resuming %s from the hub's checkpoint of batch %d", version, copied)

    def _announcer(self, send: Send) -> Callable[[NewCheckpoint], None]:
        """What a new checkpoint does: announced at once (shared data), or shipped first."""
        if self.shipper is not None:
            return self.shipper.ship
        return lambda checkpoint: send(_checkpointed(checkpoint))

    def _refuse_switch(self, version: str, previous: str, error: CharlesError, send: Send) -> None:
        log.error("cannot train %s, going on with %s: %s", version, previous, error)
        if not self.follows_chief:  # the chief alerts for the cluster
            send(Alert(kind="error", text=f"cannot train {version}: {error}"))
        with self._lock:
            if self._target == version:
                self._target = previous


class CheckpointShipper:
    """Gives a remote trainer's checkpoints and periods to the hub, on its own thread.

    The training thread only queues: a checkpoint waiting to go is replaced by
    a newer one (older ones may already be pruned, and the driver wants the
    newest), a period update always goes, in order. `Checkpointed` follows a
    checkpoint the hub took; one it refused (bytes unlike their list) is
    logged and alerted and never announced.
    """

    # How long `close` waits for the last checkpoint to reach the hub.
    CLOSE_TIMEOUT_S = 120.0

    def __init__(self, hub: HubHttp, data_dir: Path, send: Send) -> None:
        self.hub = hub
        self.data_dir = data_dir
        self.shipped = 0
        self._send = send
        self._curves_sent: dict[str, int] = {}  # event file -> bytes the hub holds
        self._jobs: collections.deque[NewCheckpoint | str] = collections.deque()
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="checkpoint-shipper", daemon=True)
        self._thread.start()

    def ship(self, checkpoint: NewCheckpoint) -> None:
        """Queue a new checkpoint (any thread), replacing a waiting one of the same version."""
        with self._changed:
            for job in list(self._jobs):
                if not isinstance(job, str) and job.version == checkpoint.version:
                    self._jobs.remove(job)
                    log.info(
                        "batch %d of %s not shipped: a newer one is ready", job.batch, job.version
                    )
            self._jobs.append(checkpoint)
            self._changed.notify()

    def period_ended(self, version: str) -> None:
        """Queue the closed training period of `version` (after its last checkpoint)."""
        with self._changed:
            self._jobs.append(version)
            self._changed.notify()

    def close(self) -> None:
        """Ship what is queued (up to CLOSE_TIMEOUT_S), then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(self.CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("the hub did not take the last checkpoint within %g s", self.CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._jobs or self._closing)
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                if isinstance(job, str):
                    send_period(self.hub, self.data_dir, job)
                    # The run's writer is closed: its curves are complete now.
                    send_curves(self.hub, self.data_dir, job, self._curves_sent)
                else:
                    self._ship(job)
            except TransferRefused as error:
                log.error("%s", error)
                self._send(Alert(kind="error", text=f"checkpoint refused: {error}"))
            except (CharlesError, OSError) as error:
                log.warning("could not give the hub %s: %s", _what(job), error)

    def _ship(self, checkpoint: NewCheckpoint) -> None:
        started = time.monotonic()
        sent = upload_checkpoint(self.hub, checkpoint.version, checkpoint.batch, checkpoint.path)
        send_period(self.hub, self.data_dir, checkpoint.version)
        send_curves(self.hub, self.data_dir, checkpoint.version, self._curves_sent)
        self.shipped += 1
        log.info(
            "%s batch %d %s in %.2f s",
            checkpoint.version,
            checkpoint.batch,
            "shipped to the hub" if sent else "was on the hub already",
            time.monotonic() - started,
        )
        self._send(_checkpointed(checkpoint))


def _what(job: NewCheckpoint | str) -> str:
    return f"the period of {job}" if isinstance(job, str) else f"{job.version} batch {job.batch}"


def _checkpointed(checkpoint: NewCheckpoint) -> Checkpointed:
    try:
        files = checkpoint_files(checkpoint.path)
    except (CharlesError, OSError) as error:
        # Announced without its list: a driver sharing this data directory still loads it.
        log.warning("checkpoint %s not listed: %s", checkpoint.path, error)
        files = ()
    return Checkpointed(
        version=checkpoint.version, batch=checkpoint.batch, path=str(checkpoint.path), files=files
    )


if __name__ == "__main__":
    exit_process(main())
