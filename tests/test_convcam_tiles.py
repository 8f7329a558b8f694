"""Convcam tiles every kernel's map into one image, one colour per backbone in dual mode."""

from __future__ import annotations

import numpy as np
import pytest

from engine.driver.convcam import (
    DUAL_COLOURS,
    OVERLAY_ASPECT,
    grid_shape,
    render_convcam,
    render_convcam_dual,
    tile_activations,
)
from overlays.layout import TILES


def test_grid_is_near_square_for_the_reference_layer():
    rows, cols = grid_shape(1536, 7, 11)
    height, width = rows * 7, cols * 11
    assert rows * cols >= 1536
    assert 0.7 < height / width < 1.4


def test_configured_columns_are_kept():
    assert grid_shape(64, 8, 8, columns=16) == (4, 16)
    assert grid_shape(5, 8, 8, columns=16) == (1, 5)


def test_each_kernel_lands_in_its_own_tile_in_row_major_order():
    activations = np.zeros((3, 4, 6), np.float32)
    activations[1, 2, 4] = 1.0  # kernel 4 -> row 1, column 1 of a 2x3 grid... with columns=3
    mosaic = tile_activations(activations, columns=3, gap=1)
    assert mosaic.shape == (2 * 4 - 1, 3 * 5 - 1)
    bright = np.argwhere(mosaic == 255)
    assert bright.tolist() == [[1 * 4 + 1, 1 * 5 + 2]]


def test_tile_normalisation_shows_weak_kernels_global_does_not():
    activations = np.zeros((2, 2, 2), np.float32)
    activations[0, 0, 0] = 100.0
    activations[0, 0, 1] = 0.01
    per_tile = tile_activations(activations, columns=2, gap=0)
    global_ = tile_activations(activations, columns=2, normalise="global", gap=0)
    assert per_tile[0, 2] == 255
    assert global_[0, 2] == 0


def test_nan_activations_render_dark_instead_of_failing():
    activations = np.full((2, 2, 1), np.nan, np.float32)
    assert tile_activations(activations).max() == 0


def test_render_gives_rgb_uint8():
    image = render_convcam(np.random.default_rng(0).random((7, 11, 100), np.float32))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_dual_mode_paints_each_backbone_in_its_own_colour():
    first = np.ones((4, 4, 2), np.float32)
    second = np.ones((4, 4, 2), np.float32)
    first[0, 0, :] = second[0, 0, :] = 2.0  # per-tile normalisation: one pixel at full brightness
    image = render_convcam_dual(first, second, columns=4, gap=0)
    assert tuple(image[0, 0]) == DUAL_COLOURS[0]
    assert tuple(image[0, 3 * 4]) == DUAL_COLOURS[1]


def test_dual_mode_rejects_different_tile_sizes():
    with pytest.raises(ValueError, match="equal tile sizes"):
        render_convcam_dual(np.ones((4, 4, 2)), np.ones((5, 4, 2)))


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects \(height, width, channels\)"):
        tile_activations(np.ones((4, 4)))


def test_the_grid_fills_the_overlays_landscape_tile():
    tile = TILES["convcam"]
    assert tile.width / tile.height == pytest.approx(OVERLAY_ASPECT)
    # Xception's 7x11 maps of 1536 kernels: at least 9/10 of the tile is maps, not letterbox.
    rows, cols = grid_shape(1536, 7, 11, aspect=OVERLAY_ASPECT)
    assert rows * cols >= 1536
    width, height = cols * 12 - 1, rows * 8 - 1
    covered = min(width / height / OVERLAY_ASPECT, OVERLAY_ASPECT / (width / height))
    assert covered * 1536 / (rows * cols) > 0.9


@pytest.mark.parametrize(("tile_h", "tile_w"), [(7, 11), (11, 7), (8, 8), (3, 30)])
def test_the_grid_follows_the_maps_own_shape(tile_h, tile_w):
    rows, cols = grid_shape(512, tile_h, tile_w, aspect=OVERLAY_ASPECT)
    image = render_convcam(np.ones((tile_h, tile_w, 512), np.float32), aspect=OVERLAY_ASPECT)
    assert image.shape[:2] == (rows * (tile_h + 1) - 1, cols * (tile_w + 1) - 1)
    assert 1.3 < image.shape[1] / image.shape[0] < 2.4


def test_dual_mode_follows_the_aspect_too():
    image = render_convcam_dual(
        np.ones((7, 11, 64), np.float32), np.ones((7, 11, 64), np.float32), aspect=OVERLAY_ASPECT
    )
    assert 1.3 < image.shape[1] / image.shape[0] < 2.4


def test_a_bad_aspect_is_refused_naming_it():
    with pytest.raises(ValueError, match="positive width / height, got 0"):
        grid_shape(16, 4, 4, aspect=0)
