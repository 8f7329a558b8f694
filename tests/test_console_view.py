"""The terminal consoles show the Player and Trainer numbers the app holds."""

from __future__ import annotations

from rich.console import Console

from engine.app.consoles import render
from engine.core.store import (
    AppSampled,
    AppState,
    Noted,
    ProcessChanged,
    ProcessState,
    Received,
    VersionStreamed,
)
from engine.core.wire import BufferFill, DriverStatus, TrainerStatus
from tests.overlay_helpers import ELSEWHERE, joined_from_other_pcs


def text_of(state: AppState) -> str:
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(state.snapshot()))
    return console.export_text()


def streaming(version: str) -> AppState:
    state = AppState()
    state.apply(VersionStreamed(version))
    return state


def test_both_consoles_show_live_numbers():
    state = streaming("model_0000_demo_v2")
    trainer = TrainerStatus(
        version="model_0000_demo_v2",
        status="training",
        batch=1234,
        loss={"total": 0.125, "steering": 0.0625},
        samples_per_s=812.0,
        buffers={"steering": BufferFill(fill=1900, capacity=2000)},
    )
    driver = DriverStatus(
        version="model_0000_demo_v2",
        batch=1200,
        predictions={"steering": -0.25},
        pad={"steering": -0.3},
        fps=30.0,
        pps=29.5,
    )
    state.apply(Received(trainer, "trainer"))
    state.apply(Received(driver, "driver"))
    state.apply(ProcessChanged(ProcessState("trainer", "running", pid=7, restarts=2)))
    state.apply(Noted("trainer (pid 6) exited with code -9"))
    text = text_of(state)
    for expected in (
        "Player: model_0000_demo_v2 (batch 1,200)",
        "-0.250",
        "30.0 / 29.5",
        "Trainer: model_0000_demo_v2",
        "1,234",
        "0.1250",
        "1,900 / 2,000",
        "running, 2 restarts",
        "exited with code -9",
    ):
        assert expected in text


def test_consoles_say_starting_before_any_report():
    text = text_of(streaming("model_0000_demo_v1"))
    assert "waiting for the driver" in text
    assert "starting" in text


def test_each_process_shows_its_memory_and_the_player_console_the_drivers():
    state = streaming("model_0000_demo_v1")
    mb = 1 << 20
    for name, rss in (("trainer", 812 * mb), ("driver", 961 * mb)):
        state.apply(ProcessChanged(ProcessState(name, "running", pid=7, rss_bytes=rss)))
    state.apply(ProcessChanged(ProcessState("collector-0", "starting")))  # not sampled yet
    state.apply(AppSampled(ProcessState("app", "running", pid=1, rss_bytes=93 * mb)))
    text = text_of(state)
    for expected in ("running, 812 MB", "running, 961 MB", "app", "93 MB", "memory", "starting"):
        assert expected in text
    assert "collector-0" in text and "0 MB" not in text


def test_nodes_on_other_pcs_show_with_their_host_names():
    state = streaming("model_0000_demo_v1")
    state.apply(joined_from_other_pcs())
    lines = text_of(state).splitlines()
    for name, where in ELSEWHERE.items():
        assert any(name in line and where in line for line in lines), (name, where)
    assert "streamer" not in "\n".join(lines)  # this PC's own collector is no other PC
