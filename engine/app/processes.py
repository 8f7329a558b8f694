"""The one declared table of processes the stream app runs, and when each one runs.

Example::

    specs = process_table(config, "config.toml", "model_0000_demo_v1")
    [spec.name for spec in specs]   # -> ['trainer', 'driver', 'collector-0', 'collector-1']
    check_recorder_games(config.stream)   # ConfigError/UsageError naming a bad game profile

In the spirit of openpilot's `process_config.py`: every child process of the
app is one row of `PROCESSES` below (its module, how many run given the
`[stream]` section, restart policy, shutdown order and liveness bound), so one
screen tells what runs and why. `process_table` turns the rows into the `ProcessSpec`s the
supervisor starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.core.config import Config, StreamConfig, SupervisorConfig
from engine.core.errors import ConfigError, UsageError
from engine.games.profile import load_profile

RestartPolicy = Literal["always", "on_failure", "never"]


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: started as `python -m MODULE ARGS`, restarted per `restart`.

    `stop_order` groups the shutdown: lower groups get SIGTERM first and are
    awaited before the next group is told. `liveness_s`: the longest its work
    loop may go without reporting progress (`engine/node/progress.py`) before
    the supervisor kills and restarts it; None: not watched.
    """

    name: str
    module: str
    args: tuple[str, ...] = ()
    restart: RestartPolicy = "always"
    stop_order: int = 0
    liveness_s: float | None = None
    # Started with malloc's large blocks on huge pages (engine/core/memory.py `with_huge_pages`).
    huge_pages: bool = False


@dataclass(frozen=True)
class DeclaredProcess:
    """A row of the table: a kind of process and how many of it `[stream]` asks for."""

    name: str
    module: str
    instances: Callable[[StreamConfig], int]
    stop_order: int
    takes_model: bool  # gets `--model VERSION`, the streamed version
    indexed: bool = False  # several instances, named NAME-I and given `--index I`
    restart: RestartPolicy = "always"
    # Arguments of instance I beyond `--index I`, read from `[stream]` (a recorder's game).
    instance_args: Callable[[StreamConfig, int], tuple[str, ...]] | None = None
    # Its liveness bound from `[supervisor]` (0: off); None: its work loop does not report.
    liveness: Callable[[SupervisorConfig], float] | None = None
    # Runs TensorFlow: its tensors come from malloc, on huge pages, so their memory goes back.
    tensorflow: bool = False


# Start order is table order: the trainer first (it loads TensorFlow, the slowest start).
# Stop order: the driver first so the controller goes neutral while the car is still
# watched, then the collectors and recorders (each sends the sets it completed and a last
# report), then the trainer, which stores those sets and checkpoints.
PROCESSES: tuple[DeclaredProcess, ...] = (
    DeclaredProcess(
        "trainer",
        "engine.trainer.node",
        instances=lambda stream: int(stream.trainer),
        stop_order=2,
        takes_model=True,
        liveness=lambda supervisor: supervisor.liveness_trainer_s,
        tensorflow=True,
    ),
    DeclaredProcess(
        "driver",
        "engine.driver.node",
        instances=lambda stream: int(stream.driver),
        stop_order=0,
        takes_model=True,
        liveness=lambda supervisor: supervisor.liveness_driver_s,
        tensorflow=True,
    ),
    DeclaredProcess(
        "collector",
        "engine.collector.node",
        instances=lambda stream: stream.collectors,
        stop_order=1,
        takes_model=False,
        indexed=True,
        liveness=lambda supervisor: supervisor.liveness_collector_s,
    ),
    # Recorders of human play: the streamer drives a game, the sets go to the trainer.
    DeclaredProcess(
        "recorder",
        "engine.recorder.node",
        instances=lambda stream: len(stream.recorders),
        stop_order=1,
        takes_model=False,
        indexed=True,
        liveness=lambda supervisor: supervisor.liveness_recorder_s,
        instance_args=lambda stream, index: (
            "--game",
            stream.recorders[index].game,
            "--player",
            stream.recorders[index].player,
        ),
    ),
)


def process_table(config: Config, config_path: str | None, version: str) -> list[ProcessSpec]:
    """The processes this config runs, with their command lines, in start order.

    `config_path` is handed on as `--config` so every child reads the same file
    as the app (none: the children use the schema's defaults, as the app did);
    `version` is the streamed model version, resolved by the app beforehand.
    """
    config_args = ("--config", str(config_path)) if config_path else ()
    specs: list[ProcessSpec] = []
    for row in PROCESSES:
        count = row.instances(config.stream)
        if count and row.takes_model and not version:
            raise ValueError(f"the {row.name} process needs the streamed model version; got ''")
        model_args = ("--model", version) if row.takes_model else ()
        liveness_s = row.liveness(config.supervisor) if row.liveness is not None else 0.0
        for index in range(count):
            name, index_args = _instance(row, index)
            if row.instance_args is not None:
                index_args += row.instance_args(config.stream, index)
            specs.append(
                ProcessSpec(
                    name=name,
                    module=row.module,
                    args=config_args + model_args + index_args,
                    restart=row.restart,
                    stop_order=row.stop_order,
                    liveness_s=liveness_s or None,
                    huge_pages=row.tensorflow,
                )
            )
    return specs


def _instance(row: DeclaredProcess, index: int) -> tuple[str, tuple[str, ...]]:
    # A single-instance row keeps its plain name ("trainer"), as logs and /api/status show it.
    if row.indexed:
        return f"{row.name}-{index}", ("--index", str(index))
    return row.name, ()


def check_recorder_games(stream: StreamConfig) -> None:
    """Load every `[stream] recorders` game profile: a bad one refuses the app at its start.

    Without this a recorder with a misspelt profile would exit 2 at every
    restart until the supervisor gives up on it, while the stream ran without it.
    """
    for index, entry in enumerate(stream.recorders):
        try:
            load_profile(entry.game).window_target()
        except (ConfigError, UsageError) as error:
            raise type(error)(
                f"'stream.recorders[{index}].game' = {entry.game!r}: {error}"
            ) from None
