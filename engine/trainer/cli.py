"""`charles-stream train`: train a model version off-stream, with a progress bar.

Example::

    charles-stream train --model model_0000_demo_v1 --batches 2000
    charles-stream train --model model_0000_demo_v1 --wait --json   # while `collect` runs
    charles-stream train --model model_0000_demo_v1 --worker-index 1  # [trainer] multi_worker

It trains from the sample storage of the data directory (filled by
`charles-stream collect`), resumes from the version's latest checkpoint and
records an off-stream training period. Samples are used once, so training
stops when a buffer falls below `data.ready_threshold`, unless `--wait` makes
it wait for samples another process stores. SIGTERM or Ctrl-C finishes the
current step, saves a checkpoint, closes the period and exits 0.

With `[trainer] strategy = "multi_worker"` every box of the cluster runs this
with the same config and its own `--worker-index` (0, the chief, trains from
its stored samples; the others need only the version in their data directory).

Exit codes: 0 trained (or stopped as asked); 1 the data is not ready and
`--wait` was not given, no checkpoint of the version can be loaded, or a
multi-worker collective failed (a peer died: start every worker again); 2 bad
input (unknown version, bad flag or config).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_int,
)
from engine.core.memory import released_memory
from models.registry import Registry

if TYPE_CHECKING:
    from engine.core.config import Config
    from engine.core.wire import BufferFill, TrainerStatus

log = logging.getLogger("charles.train")

EXIT_NOT_READY = 1
EXIT_NO_CHECKPOINT = 1
EXIT_CLUSTER_FAILED = 1


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`."""
    parser = subparsers.add_parser(
        "train", help="train a model version off-stream from the stored samples"
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="VERSION",
        help="version to train, e.g. model_0000_demo_v1",
    )
    parser.add_argument(
        "--batches",
        type=positive_int,
        help="batches to train (default: until stopped or out of data)",
    )
    add_data_argument(parser)
    add_config_argument(parser)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for samples (e.g. from a running `collect`) while a buffer is below "
        "data.ready_threshold, instead of stopping",
    )
    parser.add_argument(
        "--worker-index",
        type=int,
        metavar="N",
        help='[trainer] strategy = "multi_worker": this box\'s place in trainer.workers '
        "(0 = the chief), instead of trainer.worker_index",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the random draws from the buffers and of a new version's first weights, "
        "for a reproducible run",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Load the version, train it, and report how the run went."""
    stop = threading.Event()
    # Handlers go in first, so a SIGTERM while TensorFlow loads is honoured too.
    with _stop_on_signals(stop):
        return _train(args, stop)


def _train(args: argparse.Namespace, stop: threading.Event) -> int:
    config = config_from(args)
    if args.worker_index is not None:
        from engine.trainer.cluster import with_worker_index

        config = msgspec.structs.replace(
            config, trainer=with_worker_index(config.trainer, args.worker_index)
        )
    data_dir = data_dir_from(args, config)
    # An unknown version fails here, in a second, before TensorFlow loads.
    with Registry(data_dir) as registry:
        registry.version(args.model)
    # Entered before TensorFlow runs anything: it reads its allocator setting at its first tensor.
    with released_memory(config.supervisor.release_memory_s):
        return _train_version(args, config, data_dir, stop)


def _train_version(
    args: argparse.Namespace, config: Config, data_dir: Path, stop: threading.Event
) -> int:
    from engine.trainer.cluster import ClusterError
    from engine.trainer.trainer import Trainer, configure_process
    from models.checkpoints import CheckpointError

    configure_process(config.trainer)
    if args.seed is not None:
        import keras

        keras.utils.set_random_seed(args.seed)
    progress = _TrainingProgress(args.batches)
    try:
        trainer = Trainer(
            config,
            args.model,
            streamed=False,
            data_dir=data_dir,
            on_status=progress.update,
            seed=args.seed,
        )
    except (CheckpointError, ClusterError) as error:
        log.error("%s", error)
        return EXIT_NO_CHECKPOINT
    with trainer:
        if not trainer.ready() and not args.wait:
            log.error(
                "the data is not ready: buffers hold %s samples (held/needed, at "
                "data.ready_threshold = %g); store more with `charles-stream collect "
                "--samples N`, or pass --wait to wait for them",
                _describe_fill(trainer.fill()),
                config.data.ready_threshold,
            )
            return EXIT_NOT_READY
        with progress.shown(trainer.batch):
            try:
                result = trainer.run(max_batches=args.batches, stop=stop, wait_for_data=args.wait)
            except ClusterError as error:
                log.error("%s", error)
                return EXIT_CLUSTER_FAILED
        if result.stopped_because == "data_below_threshold":
            log.info(
                "stopped after %d batches: buffers hold %s samples (held/needed); samples are "
                "used once, so store more with `charles-stream collect` or pass --wait",
                result.batches,
                _describe_fill(trainer.fill()),
            )
    summary = {
        "version": result.version,
        "start_batch": result.start_batch,
        "end_batch": result.end_batch,
        "batches": result.batches,
        "stopped_because": result.stopped_because,
        "samples_per_s": round(result.samples_per_s, 1) if result.samples_per_s else None,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        log.info(
            "trained %s batches %d-%d (%s)",
            result.version,
            result.start_batch,
            result.end_batch,
            result.stopped_because.replace("_", " "),
        )
    return 0


class _TrainingProgress:
    """The progress bar `train` shows on stderr: state, batch, loss, samples/s, buffer fill."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.start_batch = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(bar_width=20),
            TimeElapsedColumn(),
            TextColumn(
                "batch {task.fields[batch]}  loss {task.fields[loss]}  "
                "{task.fields[speed]} samples/s  buffers {task.fields[fill]}"
            ),
            console=Console(stderr=True),
        )
        self._task: int | None = None

    @contextmanager
    def shown(self, start_batch: int) -> Iterator[None]:
        """Show the bar while the block runs, counting batches from `start_batch`."""
        self.start_batch = start_batch
        self._task = self._progress.add_task(
            "starting", total=self.total, batch=start_batch, loss="-", speed="-", fill="-"
        )
        with self._progress:
            yield

    def update(self, status: TrainerStatus) -> None:
        """Show a trainer status report (ignored until the bar is shown)."""
        if self._task is None:
            return
        fields = {"batch": status.batch, "fill": _describe_fill(status.buffers)}
        if "total" in status.loss:
            fields["loss"] = f"{status.loss['total']:.4f}"
        if status.samples_per_s:
            fields["speed"] = f"{status.samples_per_s:,.0f}"
        self._progress.update(
            self._task,
            description=status.status,
            completed=status.batch - self.start_batch,
            **fields,
        )


def _describe_fill(fill: dict[str, BufferFill]) -> str:
    return ", ".join(f"{name} {f.fill}/{f.needed}" for name, f in fill.items())


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the trainer then saves and exits) instead of killing."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing the step, saving, stopping", signal.Signals(signum).name)
        stop.set()

    handled = (signal.SIGTERM, signal.SIGINT)
    previous: dict[int, Callable | int | None] = {
        signum: signal.signal(signum, request_stop) for signum in handled
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
