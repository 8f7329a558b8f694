"""The driver's time per stage: the timer, its message, the Player Console and /api/status.

The driver loop itself reporting every stage it ran is in tests/test_driver.py
(it needs TensorFlow); everything here runs without it.
"""

from __future__ import annotations

import math

import aiohttp
import msgpack
import pytest
from rich.console import Console

from engine.core.store import AppState, Received, status_view
from engine.core.wire import (
    DRIVER_STAGES,
    DriverStatus,
    ProtocolError,
    StageTime,
    decode,
    encode,
)
from engine.driver.console import player_table
from engine.driver.stage_times import NoStageTimes, StageTimes, percentile
from tests.hub_helpers import node_socket, running_hub, wait_until

MS = 1_000_000  # ns


class SteppedClock:
    """A perf_counter_ns that moves only when told: each reading returns the next time."""

    def __init__(self, *readings_ms: float) -> None:
        self._readings = [round(reading * MS) for reading in readings_ms]

    def __call__(self) -> int:
        return self._readings.pop(0)


def refusing_clock() -> int:
    raise AssertionError("the clock was read")


# -- the timer ------------------------------------------------------------------------------


def test_p50_and_p95_are_the_nearest_ranks_of_the_recorded_turns():
    times = StageTimes()
    for ms in range(100, 0, -1):  # out of order: the summary sorts
        times.record("predict", ms * MS)

    took = times.summary()["predict"]

    assert (took.p50_ms, took.p95_ms, took.turns) == (50.0, 95.0, 100)


def test_one_turn_is_its_own_p50_and_p95():
    times = StageTimes()
    times.record("convcam", 1_250_000)

    assert times.summary() == {"convcam": StageTime(p50_ms=1.25, p95_ms=1.25, turns=1)}


def test_laps_split_a_turn_into_stages_that_add_up_to_it():
    times = StageTimes(clock=SteppedClock(0.0, 16.0, 16.5, 28.5, 30.0))

    mark = times.start()
    for stage in ("capture_wait", "preprocess", "predict", "report"):
        mark = times.lap(stage, mark)

    summary = times.summary()
    assert {stage: took.p50_ms for stage, took in summary.items()} == {
        "capture_wait": 16.0,
        "preprocess": 0.5,
        "predict": 12.0,
        "report": 1.5,
    }
    assert sum(took.p50_ms for took in summary.values()) == 30.0


def test_memory_stays_at_the_window_and_the_percentiles_follow_the_newest_turns():
    times = StageTimes(window=50)
    for _ in range(10_000):
        times.record("predict", 900 * MS)  # a slow start ...
    for _ in range(50):
        times.record("predict", 10 * MS)  # ... that the window has forgotten

    took = times.summary()["predict"]

    assert (took.turns, took.p50_ms, took.p95_ms) == (50, 10.0, 10.0)
    assert times.turns("predict") == 10_050


def test_a_stage_the_loop_ran_is_reported_and_one_it_did_not_is_not():
    times = StageTimes()
    for stage in reversed(DRIVER_STAGES[:3]):
        times.record(stage, MS)

    assert list(times.summary()) == list(DRIVER_STAGES[:3])  # in loop order


def test_a_turn_of_zero_ns_is_still_a_turn():
    times = StageTimes()
    times.record("translate", 0)

    assert times.summary()["translate"] == StageTime(p50_ms=0.0, p95_ms=0.0, turns=1)


def test_an_unknown_stage_is_refused_naming_the_stages_accepted():
    times = StageTimes()
    with pytest.raises(ValueError, match=r"'encode' is not a driver stage; accepted: capture_wait"):
        times.record("encode", MS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'encode' is not a driver stage; accepted: capture_wait"):
        times.lap("encode", times.start())  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [0, -3, 2.5, True])
def test_a_window_of_no_turns_is_refused(window):
    with pytest.raises(ValueError, match=rf"window = {window!r} is not accepted; accepted: 1"):
        StageTimes(window=window)


def test_a_percentile_of_nothing_or_out_of_range_is_refused():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="percentile 0 is not accepted"):
        percentile([1, 2], 0)


def test_timing_switched_off_never_reads_the_clock_and_reports_nothing():
    times = NoStageTimes(clock=refusing_clock)

    mark = times.start()
    times.lap("predict", mark)
    times.record("report", MS)

    assert times.summary() == {}


# -- the message ----------------------------------------------------------------------------


def status_with_stages() -> DriverStatus:
    return DriverStatus(
        version="model_0000_demo_v1",
        pps=29.5,
        stages={
            "capture_wait": StageTime(p50_ms=14.2, p95_ms=16.9, turns=256),
            "predict": StageTime(p50_ms=12.5, p95_ms=20.0, turns=256),
            "report": StageTime(p50_ms=0.01, p95_ms=6.5, turns=255),
        },
    )


def test_a_driver_status_with_stage_times_goes_over_the_wire_unchanged():
    status = status_with_stages()

    assert decode(encode(status)) == status
    assert list(decode(encode(status)).stages) == ["capture_wait", "predict", "report"]


def test_a_driver_status_without_stage_times_still_decodes():
    assert decode(encode(DriverStatus(version="v"))).stages == {}


@pytest.mark.parametrize(
    ("stages", "said"),
    [
        (
            {"predict": {"p50_ms": -1.0, "p95_ms": 2.0, "turns": 5}},
            "'driver_status.stages.predict.p50_ms' = -1.0 is out of range; accepted: at least 0.0",
        ),
        (
            {"predict": {"p50_ms": math.nan, "p95_ms": 2.0, "turns": 5}},
            "'driver_status.stages.predict.p50_ms' = nan is not a finite number",
        ),
        (
            {"predict": {"p50_ms": 1.0, "p95_ms": math.inf, "turns": 5}},
            "'driver_status.stages.predict.p95_ms' = inf is not a finite number",
        ),
        (
            {"predict": {"p50_ms": 3.0, "p95_ms": 2.0, "turns": 5}},
            "p95_ms = 2.0 is below its p50_ms = 3.0; accepted: p95_ms >= p50_ms",
        ),
        (
            {"predict": {"p50_ms": 1.0, "p95_ms": 2.0, "turns": 0}},
            "'driver_status.stages.predict.turns' = 0 is out of range; accepted: at least 1",
        ),
        (
            {"encode": {"p50_ms": 1.0, "p95_ms": 2.0, "turns": 1}},
            "'driver_status.stages key' = 'encode' is not accepted; use one of 'capture_wait'",
        ),
        (
            {"predict": {"p50_ms": 1.0, "p95_ms": 2.0}},
            "missing key 'driver_status.stages.predict.turns'",
        ),
    ],
)
def test_a_bad_stage_time_is_refused_naming_the_key_and_what_is_accepted(stages, said):
    data = msgpack.packb({"type": "driver_status", "version": "v", "stages": stages})

    with pytest.raises(ProtocolError) as refused:
        decode(data)

    assert said in str(refused.value)


# -- where it is shown ----------------------------------------------------------------------


def console_text(status: DriverStatus | None) -> str:
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(player_table(status))
    return console.export_text()


def test_the_player_console_shows_p50_and_p95_of_each_stage():
    text = console_text(status_with_stages())

    assert "stage times" in text and "p50 / p95 ms" in text
    lines = text.splitlines()
    for name, numbers in (
        ("capture wait", "14.20 / 16.90"),
        ("predict", "12.50 / 20.00"),
        ("report", "0.01 / 6.50"),
    ):
        assert any(name in line and numbers in line for line in lines), (name, text)
    assert "convcam" not in text  # not run yet: not shown as zero


def test_the_player_console_has_no_stage_rows_before_the_driver_timed_any():
    assert "stage times" not in console_text(DriverStatus(version="v"))


def test_the_status_view_carries_the_stage_times():
    state = AppState()
    state.apply(Received(status_with_stages(), "driver"))

    body = status_view(state.snapshot())

    assert body["stages"]["predict"] == {"p50_ms": 12.5, "p95_ms": 20.0, "turns": 256}
    assert list(body["stages"]) == ["capture_wait", "predict", "report"]


def test_the_status_view_has_no_stage_times_without_a_driver():
    assert status_view(AppState().snapshot())["stages"] == {}


async def test_stage_times_a_driver_sends_reach_api_status():
    state = AppState()
    async with running_hub(state=state) as hub:
        async with node_socket(hub, "driver") as driver:
            await driver.send_bytes(encode(status_with_stages()))
            await wait_until(lambda: state.driver is not None)
        url = hub.url().replace("ws://", "http://").replace("/ws/node", "/api/status")
        async with aiohttp.ClientSession() as session, session.get(url) as got:
            body = await got.json()

    assert got.status == 200
    assert body["stages"]["capture_wait"] == {"p50_ms": 14.2, "p95_ms": 16.9, "turns": 256}
    assert body["stages"]["report"]["p95_ms"] == 6.5
