"""eval --hard: off-line starts, lap times, mean speed and the spread over seeds against the NPC."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.config import Config, UnstuckConfig
from engine.driver.evaluation import AutopilotPolicy, EpisodeResult, EvaluationResult
from engine.driver.hard_test import (
    DEFAULT_SEEDS,
    HardResult,
    HardTest,
    OffLine,
    Spread,
    Start,
    compare,
    mean_speed_kmh,
    run_hard_test,
)
from engine.sim.game import LANE_CENTRE_M, Controls, Game, Telemetry
from engine.sim.score import LapClock
from tests.driver_helpers import small_sim

REPO = Path(__file__).resolve().parent.parent
CONFIG = Config(sim=small_sim(), unstuck=UnstuckConfig(window_s=2.0, offroad_s=1.0))
SEED = 7
START = Start(0.0, LANE_CENTRE_M, 0.0)


class FixedControls:
    """A policy that always does the same thing, whatever it sees."""

    frame_size = None

    def __init__(self, name: str, controls: Controls) -> None:
        self.name = name
        self.controls = controls

    def start(self, seed: int) -> None:
        """Nothing to forget."""

    def decide(self, game: Game, frame: object) -> Controls:
        return self.controls


def heading_error(game: Game) -> float:
    error = game.car.heading - game.track.heading_at(game.track_s)
    return (error + math.pi) % (2 * math.pi) - math.pi


def telemetry(time: float, laps: int) -> Telemetry:
    """What LapClock reads: the time and the lap counter (the rest is a car at rest)."""
    return Telemetry(
        time=time,
        x=0.0,
        y=0.0,
        heading=0.0,
        speed=0.0,
        lateral_offset=LANE_CENTRE_M,
        on_road=True,
        surface="road",
        distance_m=0.0,
        laps=laps,
        offroad_events=0,
        purpose_direction=0.0,
        purpose_distance_m=0.0,
        clipped_inputs=0,
        steering=0.0,
        throttle_brake=0.0,
    )


def hard_result(name: str, episodes: list[EpisodeResult], seconds: float = 100.0) -> HardResult:
    return HardResult(EvaluationResult(name, seconds, tuple(episodes)), (START,) * len(episodes))


def episode(seed: int, progress: float, offroad: int = 0, laps: tuple[float, ...] = ()):
    return EpisodeResult(seed, progress, progress, offroad, 0, laps)


# --- where the car starts -------------------------------------------------------------------


def test_an_off_line_start_stands_where_it_says_off_the_lane_and_angled_before_the_line():
    test = HardTest()
    game = Game(CONFIG.sim, seed=SEED)
    places = OffLine(test, SEED)
    places.start(game)
    (start,) = places.starts
    assert start.s == pytest.approx(game.track.length_m - test.run_up_m)
    assert test.offset_m[0] <= abs(start.offset_m - LANE_CENTRE_M) <= test.offset_m[1]
    assert test.heading_error_rad[0] <= abs(start.heading_error_rad) <= test.heading_error_rad[1]
    telemetry = game.telemetry()
    assert telemetry.lateral_offset == pytest.approx(start.offset_m, abs=0.02)
    assert heading_error(game) == pytest.approx(start.heading_error_rad, abs=0.02)
    assert telemetry.speed == 0.0 and telemetry.on_road and telemetry.laps == 0


def test_off_line_starts_and_respawns_repeat_per_seed_and_differ_between_seeds():
    def starts(seed: int) -> list[Start]:
        game = Game(CONFIG.sim, seed=SEED)
        places = OffLine(HardTest(), seed)
        places.start(game)
        for _ in range(5):
            places.respawn(game)
        return places.starts

    first = starts(1)
    assert first == starts(1)
    assert first != starts(2)
    assert len({(s.offset_m > LANE_CENTRE_M, s.heading_error_rad > 0) for s in first}) > 1


def test_every_policy_gets_the_same_starts_on_a_seed():
    test = HardTest(seeds=(SEED, 8), seconds=1.0)
    idler = run_hard_test(FixedControls("idler", Controls(0.0, -1.0)), CONFIG, test)
    racer = run_hard_test(FixedControls("racer", Controls(0.0, 1.0)), CONFIG, test)
    assert idler.starts == racer.starts and len(idler.starts) == 2
    assert idler.starts[0] != idler.starts[1]


# --- lap times ------------------------------------------------------------------------------


def test_laps_are_timed_from_crossing_to_crossing_and_the_first_partial_lap_is_not():
    clock = LapClock()
    for time, laps in [(0.0, 0), (3.0, 0), (3.5, 1), (50.0, 1), (95.5, 2), (140.0, 3), (141, 3)]:
        clock.update(telemetry(time, laps))
    assert clock.lap_times_s == (92.0, 44.5)


def test_a_respawn_voids_the_lap_under_way():
    clock = LapClock()
    clock.update(telemetry(0.0, 0))
    clock.update(telemetry(4.0, 1))
    clock.void()
    clock.update(telemetry(60.0, 2))
    clock.update(telemetry(150.0, 3))
    assert clock.lap_times_s == (90.0,)


def test_the_npc_times_a_lap_from_an_off_line_start_without_leaving_the_road():
    npc = AutopilotPolicy(CONFIG)
    game = Game(CONFIG.sim, seed=SEED)
    # Long enough for the run-up and one whole lap at the NPC's pace (it averages ~60 km/h).
    seconds = (game.track.length_m + 200.0) / (55 / 3.6)
    result = run_hard_test(npc, CONFIG, HardTest(seeds=(SEED,), seconds=seconds))
    (run,) = result.episodes
    assert run.offroad_events == 0 and run.unstucks == 0
    (lap,) = run.lap_times_s[:1]
    # A whole lap at a mean speed between 40 and 100 km/h.
    assert game.track.length_m / (100 / 3.6) < lap < game.track.length_m / (40 / 3.6)
    assert result.best_laps_s == (min(run.lap_times_s),)


# --- the summary: mean speed, laps and spread against the NPC --------------------------------


def test_mean_speed_is_progress_on_the_road_per_game_second_in_kmh():
    assert mean_speed_kmh(episode(1, 1000.0), 60.0) == pytest.approx(60.0)
    slow = hard_result("m", [episode(1, 500.0), episode(2, 1500.0)])
    assert slow.speed_kmh == Spread(36.0, 18.0, 54.0, pytest.approx(25.456, abs=1e-3))


def test_the_spread_over_seeds_is_min_max_and_sample_stdev():
    assert Spread.of([2.0, 4.0, 9.0]) == Spread(5.0, 2.0, 9.0, pytest.approx(3.606, abs=1e-3))
    assert Spread.of([7.0]) == Spread(7.0, 7.0, 7.0, 0.0)


def test_the_comparison_gives_score_speed_and_lap_ratios_and_the_per_seed_spread():
    model = hard_result(
        "model",
        [
            episode(1, 2000.0, 1, (130.0,)),
            episode(2, 3000.0, 0, ()),
            episode(3, 2400.0, 0, (100.0,)),
        ],
    )
    npc = hard_result(
        "npc",
        [episode(1, 2500.0, 0, (120.0, 118.0)), episode(2, 3000.0), episode(3, 3000.0, 0, (90.0,))],
    )
    comparison = compare(model, npc)
    # Scores 1000, 3000, 2400 against 2500, 3000, 3000.
    assert comparison.ratio_to_npc == pytest.approx(6400 / 8500)
    assert comparison.seed_ratios == pytest.approx((0.4, 1.0, 0.8))
    assert comparison.speed_ratio == pytest.approx(7400 / 8500)
    assert comparison.lap_ratios == pytest.approx((118.0 / 130.0, 0.9))
    assert comparison.lap_ratio == pytest.approx((118.0 / 130.0 + 0.9) / 2)
    hard = comparison.as_dict(HardTest(seeds=(1, 2, 3), seconds=100.0))
    assert hard["seed_ratios"] == {"mean": 0.733, "min": 0.4, "max": 1.0, "stdev": 0.306}
    assert hard["laps_compared"] == 2 and hard["ratio_to_npc"] == 0.753
    assert hard["model"]["metres_per_offroad"] == {
        "mean": 2133.3,
        "min": 1000.0,
        "max": 3000.0,
        "stdev": 1026.3,
    }
    seed_1 = hard["model"]["episodes"][0]
    assert (seed_1["lap_times_s"], seed_1["best_lap_s"], seed_1["mean_speed_kmh"]) == (
        [130.0],
        130.0,
        72.0,
    )
    assert hard["model"]["episodes"][1]["best_lap_s"] is None


def test_without_a_lap_by_both_there_is_no_lap_ratio():
    comparison = compare(hard_result("m", [episode(1, 100.0)]), hard_result("n", [episode(1, 90)]))
    assert comparison.lap_ratio is None and comparison.as_dict(HardTest())["lap_ratio"] is None


def test_a_comparison_needs_the_same_seeds():
    with pytest.raises(ValueError, match=r"same seeds: \[1\] vs \[2\]"):
        compare(hard_result("m", [episode(1, 1.0)]), hard_result("n", [episode(2, 1.0)]))


# --- seeds and flags ------------------------------------------------------------------------


def test_no_test_or_benchmark_names_the_hard_tests_seeds():
    pattern = re.compile(r"(?<!\d)(" + "|".join(map(str, DEFAULT_SEEDS)) + r")(?!\d)")
    named = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for folder in ("tests", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    ]
    assert named == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--hard", "--hard-seconds", "0"], "'0' is not accepted; accepted: game seconds above 0"),
        (["--hard", "--hard-seconds", "nan"], "'nan' is not accepted"),
        (
            ["--hard", "--hard-seconds", "1e9"],
            "'1e9' is not accepted; accepted: game seconds above 0, up to 3600",
        ),
        (["--hard", "--hard-seconds", "four"], "'four' is not a number"),
        (["--seconds", "inf"], "'inf' is not accepted"),
        (
            ["--hard", "--hard-seeds", "7,7"],
            "'7,7' names seed 7 more than once; accepted: each seed once",
        ),
        (["--hard", "--hard-seeds", "7,-1"], "give at least one seed, each from 0 to 2147483647"),
        (["--hard", "--hard-seeds", "a"], "'a' is not a comma-separated list of whole numbers"),
    ],
)
def test_a_bad_hard_flag_exits_2_naming_the_value_and_what_is_accepted(flags, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--model", "model_0000_demo_v1", *flags])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--hard-seconds", "300"], "--hard-seconds 300 applies to the hard test only"),
        (["--hard-seeds", "1,2"], "--hard-seeds 1,2 applies to the hard test only"),
    ],
)
def test_a_hard_flag_without_hard_is_refused_before_anything_loads(flags, words, caplog):
    assert main(["eval", "--model", "model_0000_demo_v1", *flags]) == 2
    assert words in caplog.text and "accepted: with --hard, or left out" in caplog.text
