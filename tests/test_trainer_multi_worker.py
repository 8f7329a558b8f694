"""`[trainer] strategy = "multi_worker"`: two CPU trainer processes train the demo line together.

Each worker is a real `charles-stream train` process with its own data directory
(a "box"); the chief's holds the stored sample stream, the other's only the
version. They meet over gRPC on 127.0.0.1 at distinct ports.

- Same trajectory: the cluster trains the very global batches one trainer with
  the same store and seed trains (the chief draws, each worker takes its half),
  so the per-batch losses differ only by float32 rounding: the gradient is
  summed from two half-batch sums over the network instead of one, and Adam
  carries those differences on. Tolerance: relative 2e-3 per batch over 12
  batches (measured: about 1e-6; a wrong split, a missed half or unsynced
  weights differ by 1e-2 or more from the first batches on).
- Across two network namespaces (tests/netns.py, real TCP between distinct
  addresses): the link is cut mid-run, both workers' collectives time out
  (`collective_timeout_s`), both exit 1, and with the link back they resume
  together from the chief's checkpoint.
- A model switch: two trainer *nodes* (the chief on the streaming PC's data
  directory, worker 1 on "another machine" that fetches versions from the
  hub) joined to a real hub; the app's switch reaches both at their own
  moments, they move to the new version together (the chief's word), train
  it, and go back on the next switch from the checkpoint; a worker stopped
  with SIGTERM ends the cluster at once (the chief exits 1 naming it), no hung
  collective.
- Kill and resume: worker 1 is killed with SIGKILL mid-run; the chief notices
  in its next collective (within `collective_timeout_s`), exits 1 naming the
  failed collective, and saves nothing more; started again (the test is the
  supervisor), both resume from the chief's latest checkpoint and its batch
  counter, on samples never drawn before.
- A paused worker (SIGSTOP for twice TensorFlow's 10 s heartbeat default,
  as a starved process on a busy machine) is not declared dead: only
  `collective_timeout_s` decides, and the run goes on to its end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.app.model_files import ModelFiles
from engine.core.config import HubConfig, load_config
from engine.core.errors import ConfigError
from engine.core.store import AppState
from engine.data.storage import SampleStorage, default_storage_path
from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV
from engine.node.hub_files import HUB_DATA_DIR_ENV
from models.checkpoints import list_checkpoints
from models.registry import Registry
from tests.data_helpers import full_set
from tests.netns import HUB, network_lab

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parent.parent
LINE = "model_0000_demo"
VERSION = f"{LINE}_v1"
OUTPUTS = ("steering", "throttle_brake")
# Two CPU workers of the demo line on a busy 2-core machine: minutes, not seconds.
RUN_TIMEOUT_S = 600.0
TRAJECTORY_BATCHES = 12
NODE_TOKEN = "multi-worker-test-token"
TOLERANCE = 2e-3
# TensorFlow's coordination service declares a silent worker dead after 10 s by default.
TENSORFLOW_HEARTBEAT_DEFAULT_S = 10.0
PAUSED_BATCHES = 45
# Per buffer: a 32-sample batch takes 16 from each; 40 sets of 21-23 samples last ~55 batches.
SETS_PER_BUFFER = 40
CAPACITY = 2000


def test_two_workers_follow_one_workers_loss_trajectory(tmp_path):
    single = make_box(tmp_path / "single", samples=True)
    run_train(single, ["--batches", str(TRAJECTORY_BATCHES)])
    chief, worker = make_cluster(tmp_path)
    results = run_cluster(chief, worker, ["--batches", str(TRAJECTORY_BATCHES)])
    assert [r["end_batch"] for r in results] == [TRAJECTORY_BATCHES] * 2
    expected, got = losses(single), losses(chief)
    assert len(expected) == len(got) == TRAJECTORY_BATCHES
    difference = np.abs(np.array(got) - np.array(expected)) / np.array(expected)
    print(f"largest relative loss difference: {difference.max():.2e}")
    assert difference.max() < TOLERANCE, (expected, got)
    # The chief checkpoints, writes curves and records the period; the worker writes nothing.
    assert list_checkpoints(chief / "data" / "models" / VERSION)
    assert not (worker / "data" / "models" / VERSION).exists()
    assert not (worker / "data" / "tensorboard").exists()
    with Registry(worker / "data") as registry:
        assert registry.version(VERSION).batches_trained == 0


def test_a_killed_worker_stops_the_chief_and_both_resume_from_its_checkpoint(tmp_path):
    chief, worker = make_cluster(
        tmp_path, trainer="checkpoint_every = 3\ncollective_timeout_s = 20"
    )
    chief_run = start_train(chief, ["--worker-index", "0"])
    worker_run = start_train(worker, ["--worker-index", "1"])
    try:
        wait_for(
            lambda: newest_checkpoint(chief) >= 6,
            "a chief checkpoint at batch 6",
            runs=(chief_run, worker_run),
        )
        worker_run.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        worker_run.wait(timeout=RUN_TIMEOUT_S)
        # The survivor's next collective fails: it exits 1 with the reason, no hang.
        _, chief_err = chief_run.communicate(timeout=RUN_TIMEOUT_S)
        print(f"the chief exited {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        for process in (chief_run, worker_run):
            if process.poll() is None:
                process.kill()
    assert chief_run.returncode == 1, chief_err
    assert "a collective failed" in chief_err and "start every worker again" in chief_err
    resume_from = newest_checkpoint(chief)
    assert resume_from >= 6
    fresh_before = undrawn_samples(chief)
    results = run_cluster(chief, worker, ["--batches", "4"])
    assert [(r["start_batch"], r["end_batch"]) for r in results] == [
        (resume_from, resume_from + 4)
    ] * 2
    assert newest_checkpoint(chief) == resume_from + 4
    # The resumed run trained on samples no earlier draw had taken: 4 batches of 32 at least.
    assert fresh_before - undrawn_samples(chief) >= 4 * 32


def test_a_worker_paused_past_tensorflows_heartbeat_default_is_not_declared_dead(tmp_path):
    trainer = "checkpoint_every = 3\ncollective_timeout_s = 90"
    chief, worker = make_cluster(tmp_path, trainer=trainer)
    runs = [
        start_train(box, ["--batches", str(PAUSED_BATCHES), "--worker-index", str(index)])
        for index, box in enumerate((chief, worker))
    ]
    try:
        wait_for(
            lambda: newest_checkpoint(chief) >= 3, "a chief checkpoint at batch 3", runs=tuple(runs)
        )
        runs[1].send_signal(signal.SIGSTOP)
        paused_at = newest_checkpoint(chief)
        time.sleep(2 * TENSORFLOW_HEARTBEAT_DEFAULT_S)  # the stimulus: a worker silent this long
        runs[1].send_signal(signal.SIGCONT)
        outputs = [run.communicate(timeout=RUN_TIMEOUT_S) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert paused_at < PAUSED_BATCHES, "the run ended before the pause: nothing was tested"
    failed = [err[-4000:] for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode]
    assert not failed, "\n---\n".join(failed)
    assert [json.loads(out.strip().splitlines()[-1])["end_batch"] for out, _ in outputs] == [
        PAUSED_BATCHES
    ] * 2


def test_across_two_namespaces_a_cut_link_stops_both_and_they_resume_together(tmp_path):
    """Two "machines" (network namespaces, real TCP between 10.77.1.1 and 10.77.1.2)."""
    with network_lab(["box2"]) as lab:
        chief, worker = make_cluster(
            tmp_path,
            trainer="checkpoint_every = 3\ncollective_timeout_s = 15",
            hosts=(lab.hub_address("box2"), lab.address("box2")),
        )
        places = ((HUB, chief), ("box2", worker))

        def start(args: list[str]) -> list[subprocess.Popen[str]]:
            return [
                lab.popen(
                    namespace,
                    train_command(box, [*args, "--worker-index", str(index)]),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env=environment(),
                )
                for index, (namespace, box) in enumerate(places)
            ]

        runs = start([])
        wait_for(lambda: newest_checkpoint(chief) >= 3, "a chief checkpoint at batch 3")
        lab.cut("box2")  # packets stop, both processes live on
        cut_at = time.monotonic()
        errors = [run.communicate(timeout=RUN_TIMEOUT_S)[1] for run in runs]
        print(f"both workers exited {time.monotonic() - cut_at:.1f} s after the cut")
        for run, err in zip(runs, errors, strict=True):
            assert run.returncode == 1 and "a collective failed" in err, err[-3000:]
        lab.restore("box2")
        resume_from = newest_checkpoint(chief)
        runs = start(["--batches", "2"])
        outputs = [run.communicate(timeout=RUN_TIMEOUT_S) for run in runs]
        failed = [
            err[-3000:] for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode
        ]
        assert not failed, "\n---\n".join(failed)
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert [(r["start_batch"], r["end_batch"]) for r in results] == [
            (resume_from, resume_from + 2)
        ] * 2


async def test_a_model_switch_moves_every_worker_together_and_training_goes_on(tmp_path):
    """The app's switch, through the hub, to a cluster of two trainer nodes."""
    addresses = json.dumps([f"127.0.0.1:{port}" for port in free_ports(2)])
    cluster = f'strategy = "multi_worker"\nworkers = {addresses}\ncheckpoint_every = 2'
    # The chief trains in the streaming PC's data directory, on its stored stream (each
    # sample usable many times: the test must not run out while switches take their time).
    chief = make_box(tmp_path / "streaming-pc", samples=True, trainer=cluster, uses=50)
    spec = (ROOT / "models" / f"{LINE}.toml").read_text(encoding="utf-8")
    with Registry(chief / "data") as registry:
        v2 = registry.create_version(LINE, spec_toml=spec).name
    # Worker 1 on another machine: an empty data directory it fills from the hub.
    worker = tmp_path / "gpu-box"
    worker.mkdir()
    (worker / "config.toml").write_text(box_config(worker, cluster), encoding="utf-8")
    state = AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=0), NODE_TOKEN, state)
    ModelFiles(chief / "data", NODE_TOKEN, state, keep=3).add_routes(hub.app)
    actions = StreamActions(chief / "data", state, hub)
    hub.set_action_handler(actions)
    await hub.start()
    nodes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "chief.log", tmp_path / "worker.log"]
    try:
        await actions.switch(VERSION, user="app")
        env = environment() | {HUB_URL_ENV: hub.url(), HUB_TOKEN_ENV: NODE_TOKEN}
        env.pop(HUB_DATA_DIR_ENV, None)
        for index, box in enumerate((chief, worker)):
            # The app names its own data directory to the nodes it starts: the chief shares it.
            shared = {HUB_DATA_DIR_ENV: str(chief / "data")} if box == chief else {}
            with logs[index].open("wb") as log_file:
                nodes.append(
                    subprocess.Popen(
                        [
                            *(sys.executable, "-m", "engine.trainer.node"),
                            *("--config", str(box / "config.toml"), "--model", VERSION),
                            *("--worker-index", str(index)),
                        ],
                        env=env | shared,
                        cwd=ROOT,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )

        async def training(version: str, past: int) -> int:
            def trained() -> bool:
                status = state.snapshot().trainer
                return status is not None and status.version == version and status.batch > past

            await until(trained, f"{version} trained past batch {past}", nodes, logs)
            return state.snapshot().trainer.batch

        await training(VERSION, 2)
        names = {"trainer", "trainer-1"}  # a name each: the hub lists both, each with its host
        await until(lambda: set(state.snapshot().node_links) == names, "both", nodes, logs)
        await actions.switch(v2, user="test")
        await training(v2, 2)
        with Registry(chief / "data") as registry:
            (v1_period,) = registry.periods(VERSION)
        assert v1_period.ended is not None  # v1 stopped with a checkpoint of what it trained
        assert newest_checkpoint(chief) == v1_period.end_batch
        await actions.switch(VERSION, user="test")
        await training(VERSION, v1_period.end_batch)  # resumed from that checkpoint, goes on
        assert all(node.poll() is None for node in nodes), read_logs(logs)
        worker_log = logs[1].read_text(errors="replace")
        # The worker built each version the chief trained, from the chief's batch.
        assert f"training {v2} from batch 0 as a worker" in worker_log, worker_log[-3000:]
        resumed = f"training {VERSION} from batch {v1_period.end_batch} as a worker"
        assert resumed in worker_log, worker_log[-3000:]

        # A worker stopped on purpose ends the cluster at once, not after a collective timeout.
        nodes[1].send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(node.wait, 120) for node in nodes]
        chief_log = logs[0].read_text(errors="replace")
        assert codes == [1, 0], read_logs(logs)
        assert "worker 1 stopped; a multi-worker trainer cannot go on" in chief_log
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
        await hub.stop()


@pytest.mark.parametrize(
    ("trainer", "wording"),
    [
        ('strategy = "multi_worker"', "'trainer.workers' = [] with"),
        (
            'strategy = "multi_worker"\nworkers = ["127.0.0.1", "127.0.0.1:2"]',
            "'127.0.0.1', which is not host:port",
        ),
        (
            'strategy = "multi_worker"\nworkers = ["a:1", "b:99999"]',
            "'b:99999', which is not host:port",
        ),
        (
            'strategy = "multi_worker"\nworkers = ["a:1", "b:2"]\nworker_index = 2',
            "'trainer.worker_index' = 2 is out of range; accepted: 0 to 1",
        ),
    ],
)
def test_a_bad_cluster_is_refused_naming_the_value(tmp_path, trainer, wording):
    path = tmp_path / "config.toml"
    path.write_text(f"[trainer]\n{trainer}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="accepted") as refused:
        load_config(path)
    assert wording in str(refused.value)


def test_a_worker_index_flag_out_of_range_is_refused(tmp_path):
    cluster = 'strategy = "multi_worker"\nworkers = ["a:1", "b:2"]'
    box = make_box(tmp_path / "box", samples=False, trainer=cluster)
    done = subprocess.run(
        train_command(box, ["--worker-index", "5", "--batches", "1"]),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        env=environment(),
    )
    assert done.returncode == 2
    assert "'trainer.worker_index' = 5 is out of range; accepted: 0 to 1" in done.stderr


# --- helpers -------------------------------------------------------------------------------


def make_cluster(
    tmp_path: Path, trainer: str = "", hosts: tuple[str, str] | None = None
) -> tuple[Path, Path]:
    """Two boxes: the chief with the stored stream, worker 1 with the version only."""
    if hosts is None:  # one machine: distinct free ports on loopback
        addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    else:  # two machines (namespaces): their own addresses, any port is free there
        addresses = [f"{host}:12345" for host in hosts]
    workers = json.dumps(addresses)
    cluster = f'strategy = "multi_worker"\nworkers = {workers}\n{trainer}'
    return (
        make_box(tmp_path / "chief", samples=True, trainer=cluster),
        make_box(tmp_path / "worker", samples=False, trainer=cluster),
    )


def make_box(box: Path, *, samples: bool, trainer: str = "", uses: int = 1) -> Path:
    """A data directory with the demo version (and, for a chief, the stored stream)."""
    box.mkdir(parents=True)
    (box / "config.toml").write_text(box_config(box, trainer, uses), encoding="utf-8")
    spec = (ROOT / "models" / f"{LINE}.toml").read_text(encoding="utf-8")
    with Registry(box / "data") as registry:
        registry.create_version(LINE, spec_toml=spec)
    if samples:
        store_stream(box)
    return box


def box_config(box: Path, trainer: str, uses: int = 1) -> str:
    return (
        f'[app]\ndata_dir = "{box / "data"}"\n'
        f"[data]\nbuffer_capacity = {CAPACITY}\nready_threshold = 0.01\n"
        f"uses_per_sample = {uses}\n"
        f"[trainer]\nthreads = 1\nlog_every = 1\n{trainer}\n"
    )


def store_stream(box: Path) -> None:
    """The same stored sample stream in every box that gets one (copied from a template)."""
    template = box.parent / "stream-template.db"
    target = default_storage_path(load_config(box / "config.toml"))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not template.exists():
        rng = np.random.default_rng(3)
        with SampleStorage(template, capacity=CAPACITY) as storage:
            for _ in range(SETS_PER_BUFFER):
                for output in OUTPUTS:
                    storage.insert_set(full_set(output, throttle_brake=float(rng.uniform(-1, 1))))
    shutil.copyfile(template, target)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def environment() -> dict[str, str]:
    return os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def train_command(box: Path, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "engine.cli",
        "train",
        "--model",
        VERSION,
        "--config",
        str(box / "config.toml"),
        "--seed",
        "7",
        "--json",
        *args,
    ]


def start_train(box: Path, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        train_command(box, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )


def run_train(box: Path, args: list[str]) -> dict:
    done = subprocess.run(
        train_command(box, args),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cluster(chief: Path, worker: Path, args: list[str]) -> list[dict]:
    """Both workers to the end; their JSON summaries, chief first."""
    runs = [
        start_train(box, [*args, "--worker-index", str(i)]) for i, box in enumerate((chief, worker))
    ]
    try:
        outputs = [run.communicate(timeout=RUN_TIMEOUT_S) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    failed = [err[-4000:] for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode]
    assert not failed, "\n---\n".join(failed)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def losses(box: Path) -> list[float]:
    """The total loss of each batch, from the box's TensorBoard curves (log_every = 1)."""
    # size_guidance 0: every point (the default keeps a sample of 10).
    events = EventAccumulator(
        str(box / "data" / "tensorboard" / VERSION), size_guidance={"tensors": 0}
    )
    events.Reload()
    points = {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors("loss/total")}
    return [points[step] for step in sorted(points)]


def newest_checkpoint(box: Path) -> int:
    checkpoints = list_checkpoints(box / "data" / "models" / VERSION)
    return max((c.batch for c in checkpoints), default=0)


def undrawn_samples(box: Path) -> int:
    path = default_storage_path(load_config(box / "config.toml"))
    with SampleStorage(path, capacity=CAPACITY) as storage:
        return len(storage.load())


async def until(
    condition, what: str, nodes: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    """Await what the nodes report through the hub; fail early if a node exits."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        exited = [node.args[-1] for node in nodes if node.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"worker(s) {exited} exited" if exited else f"{RUN_TIMEOUT_S:.0f} s passed"
            raise AssertionError(f"no {what}: {why}\n{read_logs(logs)}")
        await asyncio.sleep(0.1)


def read_logs(logs: list[Path]) -> str:
    return "\n".join(
        f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}" for path in logs
    )


def wait_for(
    condition,
    what: str,
    timeout: float = RUN_TIMEOUT_S,
    runs: tuple[subprocess.Popen[str], ...] = (),
) -> None:
    """Await a condition the processes bring about (checked twice a second).

    Fails at once, with their errors, when one of `runs` exits first.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [run for run in runs if run.poll() is not None]
        if exited:
            errors = "\n---\n".join(run.communicate()[1][-4000:] for run in exited)
            raise AssertionError(f"no {what}: a trainer exited first\n{errors}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.5)
