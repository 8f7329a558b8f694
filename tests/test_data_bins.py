"""Bins: the reference's Balancing_v2 bins, with every boundary value assigned by one rule."""

from __future__ import annotations

import math

import pytest

from engine.core.config import DataConfig, load_config
from engine.core.errors import ConfigError
from engine.data.bins import OutputBins, bins_from_config

NAN = float("nan")


def label(bins: OutputBins, value: float) -> str | None:
    index = bins.index(value)
    return None if index is None else bins.labels[index]


def test_steering_axis_has_21_bins_with_exact_zero_its_own():
    bins = OutputBins("steering", "axis")
    assert len(bins) == 21
    assert bins.labels[10] == "0.0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1.0, "[-1.0,-0.9)"),
        (-0.95, "[-1.0,-0.9)"),
        (-0.9, "[-0.9,-0.8)"),
        (-0.1, "[-0.1,0.0)"),
        (-1e-9, "[-0.1,0.0)"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (1e-9, "(0.0,0.1]"),
        (0.1, "(0.0,0.1]"),
        (0.3, "(0.2,0.3]"),
        (0.9, "(0.8,0.9]"),
        (1.0, "(0.9,1.0]"),
        (NAN, None),
        (math.inf, None),
        (1.0001, None),
        (-1.0001, None),
    ],
)
def test_axis_boundary_values_go_to_the_bin_nearer_zero(value, expected):
    assert label(OutputBins("steering", "axis"), value) == expected


def test_trigger_has_12_bins_with_exact_zero_and_one_their_own():
    bins = OutputBins("acceleration", "trigger")
    assert len(bins) == 12
    assert bins.labels[0] == "0.0" and bins.labels[-1] == "1.0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0.0"),
        (0.1, "(0.0,0.1]"),
        (0.9, "(0.8,0.9]"),
        (0.95, "(0.9,1.0)"),
        (1.0, "1.0"),
        (-0.1, None),
        (-1.0, None),
        (NAN, None),
    ],
)
def test_trigger_boundary_values(value, expected):
    assert label(OutputBins("braking", "trigger"), value) == expected


def test_trigger_pair_has_23_bins_with_exact_minus_one_zero_and_one_their_own():
    bins = OutputBins("throttle_brake", "trigger_pair")
    assert len(bins) == 23
    assert (bins.labels[0], bins.labels[11], bins.labels[22]) == ("-1.0", "0.0", "1.0")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1.0, "-1.0"),
        (-0.95, "(-1.0,-0.9)"),
        (-0.9, "[-0.9,-0.8)"),
        (-0.1, "[-0.1,0.0)"),
        (0.0, "0.0"),
        (0.1, "(0.0,0.1]"),
        (0.9, "(0.8,0.9]"),
        (0.95, "(0.9,1.0)"),
        (1.0, "1.0"),
        (NAN, None),
    ],
)
def test_trigger_pair_boundary_values(value, expected):
    assert label(OutputBins("throttle_brake", "trigger_pair"), value) == expected


@pytest.mark.parametrize("kind", ["axis", "trigger_pair"])
def test_a_value_and_its_negative_land_in_mirrored_bins(kind):
    bins = OutputBins("x", kind)
    for step in range(-100, 101):
        value = step / 100.0
        assert bins.index(value) + bins.index(-value) == len(bins) - 1, value


def test_divisions_set_the_bin_width():
    bins = OutputBins("steering", "axis", divisions=20)
    assert len(bins) == 41
    assert label(bins, 0.05) == "(0.0,0.05]" and label(bins, 0.06) == "(0.05,0.1]"


def test_bins_come_from_the_data_config():
    data = DataConfig(
        outputs=("steering", "acceleration", "braking"), balanced_outputs=("steering",)
    )
    bins = bins_from_config(data)
    assert {name: len(b) for name, b in bins.items()} == {
        "steering": 21,
        "acceleration": 12,
        "braking": 12,
    }


def test_an_output_without_bins_is_a_config_error_naming_file_and_output(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[data]\noutputs = ["steering", "yaw"]\nbalanced_outputs = ["steering"]\n',
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"config.toml: 'data.bins' has no entry for output 'yaw'"
    ):
        load_config(path)


def test_a_balanced_output_must_be_a_recorded_output(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[data]\nbalanced_outputs = ["braking"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'data.balanced_outputs' names 'braking'.*accepted"):
        load_config(path)


def test_an_unknown_bin_kind_is_rejected_with_the_accepted_kinds(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[data.bins]\nsteering = { kind = "wheel" }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'data.bins.steering.kind' = 'wheel'.*'axis'"):
        load_config(path)
