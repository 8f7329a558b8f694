"""The trainer node: trains the streamed version on the sets collectors send through the hub.

Example::

    python -m engine.trainer.node --config config.toml --model model_0000_demo_v1

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
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
from engine.node.process import EXIT_HUB_GONE, exit_process, node_parser, run_node, when_set
from engine.node.progress import report_progress

if TYPE_CHECKING:
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
    args = parser.parse_args(argv)
    return run_node(args, lambda config: train(config, args.model))


def train(config: Config, version: str) -> int:
    """Connect, train until SIGTERM (SystemExit) or the hub is lost; returns the exit code."""
    # TensorFlow loads here, after the SIGTERM handler is in place.
    from engine.node.client import NodeClient
    from engine.trainer.trainer import configure_process

    configure_process(config.trainer)
    node = TrainerNode(config, version)
    client = NodeClient.from_environment("trainer", "trainer", on_message=node.receive)
    client.start()
    when_set(client.lost, node.stop, "hub-lost-watch")
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


class TrainerNode:
    """One streamed `Trainer` at a time, fed from the hub and switched by `SwitchModel`."""

    def __init__(self, config: Config, version: str) -> None:
        self.config = config
        self.data_dir = Path(config.app.data_dir)
        self.finished = threading.Event()
        self.failure: BaseException | None = None
        self._target = version
        self._lock = threading.Lock()
        self._trainer: Trainer | None = None
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

    def close(self) -> None:
        """Release the report storage (after `run` returned)."""
        with self._lock:
            self._closed = True
            self._reports.close()

    def run(self, send: Send) -> None:
        """Train the target version, and the next after each switch, until `stop`."""
        previous: str | None = None
        try:
            while True:
                with self._lock:
                    # Under the lock: a stop or switch after this sets `_run_stop` again.
                    if self._stopping:
                        return
                    version = self._target
                    self._run_stop.clear()
                try:
                    self._train(version, send)
                    previous = version
                except CharlesError as error:
                    if previous is None:
                        raise  # the version the node was started with: nothing to go back to
                    self._refuse_switch(version, previous, error, send)
        except BaseException as error:  # the main thread re-raises it
            self.failure = error
        finally:
            self.finished.set()

    def _train(self, version: str, send: Send) -> None:
        from engine.trainer.trainer import Trainer

        send(TrainerStatus(version=version, status="starting"))
        report_progress()  # a switch builds a model next: its liveness bound starts here
        trainer = Trainer(
            self.config,
            version,
            streamed=True,
            data_dir=self.data_dir,
            on_status=send,
            on_checkpoint=lambda checkpoint: send(_checkpointed(checkpoint)),
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

    def _refuse_switch(self, version: str, previous: str, error: CharlesError, send: Send) -> None:
        log.error("cannot train %s, going on with %s: %s", version, previous, error)
        send(Alert(kind="error", text=f"cannot train {version}: {error}"))
        with self._lock:
            if self._target == version:
                self._target = previous


def _checkpointed(checkpoint: NewCheckpoint) -> Checkpointed:
    return Checkpointed(
        version=checkpoint.version, batch=checkpoint.batch, path=str(checkpoint.path)
    )


if __name__ == "__main__":
    exit_process(main())
