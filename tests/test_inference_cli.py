"""`charles-stream convcam`: list a version's conv layers, render one image's Convcam."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.sim.game import Game
from tests.driver_helpers import create_version, save_constant_checkpoint, small_sim

pytestmark = pytest.mark.tf

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


@pytest.fixture(scope="module")
def version(tmp_path_factory) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("convcam")
    name = create_version(data_dir)
    save_constant_checkpoint(data_dir, name, batch=1)
    return data_dir, name


@pytest.fixture
def hood_png(tmp_path) -> Path:
    path = tmp_path / "hood.png"
    frame = Game(small_sim(), seed=1).render_hood()
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def convcam(version: tuple[Path, str], *args: str) -> int:
    data_dir, name = version
    base = ["convcam", "--model", name, "--data", str(data_dir), "--config", str(REPO_CONFIG)]
    return main([*base, *args])


def test_list_layers_names_the_default_and_each_shape(version, capsys):
    assert convcam(version, "--list-layers", "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["default"] == "convcam"
    assert listing["layers"]["convcam"] == [9, 16, 64]
    assert listing["layers"]["conv1"] == [36, 64, 24]


def test_the_convcam_of_an_image_tiles_every_kernel(version, hood_png, tmp_path):
    out = tmp_path / "convcam.png"
    assert convcam(version, "--image", str(hood_png), "--out", str(out), "--columns", "8") == 0
    image = cv2.imread(str(out))
    # 64 kernels of 9x16 at 8 per row: 8 rows, 1-pixel gaps between tiles.
    assert image.shape == (8 * 10 - 1, 8 * 17 - 1, 3)


def test_two_layers_render_in_two_colours(version, hood_png, tmp_path):
    out = tmp_path / "dual.png"
    layers = ("--layer", "conv3", "--layer", "convcam")
    assert convcam(version, "--image", str(hood_png), "--out", str(out), *layers) == 0
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB).reshape(-1, 3).astype(int)
    lit = image[image.sum(axis=1) > 60]
    warm = np.mean(lit[:, 0] > lit[:, 2])
    assert 0.2 < warm < 0.8, "both backbones' colours should show"


def test_gradcam_is_written_over_the_image(version, hood_png, tmp_path):
    out, heat = tmp_path / "c.png", tmp_path / "heat.png"
    args = ("--image", str(hood_png), "--out", str(out), "--gradcam", str(heat))
    assert convcam(version, *args) == 0
    assert cv2.imread(str(heat)).shape == (72, 128, 3)


def test_an_unreadable_image_exits_2(version, tmp_path, caplog):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert convcam(version, "--image", str(bad), "--out", str(tmp_path / "o.png")) == 2
    assert "not a readable image" in caplog.text


def test_an_unknown_layer_exits_2_listing_real_ones(version, hood_png, tmp_path, caplog):
    args = ("--image", str(hood_png), "--out", str(tmp_path / "o.png"), "--layer", "add_11")
    assert convcam(version, *args) == 2
    assert "'add_11' is not a feature-map layer" in caplog.text and "convcam" in caplog.text
