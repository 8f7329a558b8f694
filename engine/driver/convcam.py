"""Convcam: what one convolution layer of the driving model sees, as one image.

Example::

    image = render_convcam(activations)          # activations: (h, w, channels) float
    image = render_convcam(act, columns=64, normalise="global")
    image = render_convcam_dual(backbone_a, backbone_b)   # two colours

As in the reference stream, each kernel's small activation map becomes one
tile and the tiles are laid side by side in a grid, bright meaning active.
The grid's shape follows the picture it fills (`aspect`, width / height; the
driver passes OVERLAY_ASPECT, the overlay's Convcam tile) and the maps' own
shape, so the kernels fill a landscape tile instead of a square strip in it.
Per-tile normalisation shows the pattern of every kernel even when it is
weak; global normalisation shows which kernels fire the most. A model with
two backbones shows both in one image, each in its own colour, so viewers
can tell them apart.

Rendering is pure numpy (one reshape/transpose) plus one OpenCV colour-map
lookup, well under the 3 ms budget for 2048 kernels, because it runs for
every prediction the driver makes.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

Normalise = Literal["tile", "global"]

# A colour map that reads well on stream: dark for silent kernels, bright for active ones.
DEFAULT_COLORMAP = cv2.COLORMAP_INFERNO
# Dual-backbone colours (RGB): warm for the first backbone, cold for the second.
DUAL_COLOURS = ((255, 140, 30), (40, 180, 255))
# Width / height of the overlay's Convcam tile (overlays/layout.py, 640x360; a test checks they
# agree): the driver cannot import the overlays, which sit above it.
OVERLAY_ASPECT = 16 / 9
# Column counts tried on each side of the closed-form guess.
_COLUMN_SEARCH = 3


def render_convcam(
    activations: np.ndarray,
    *,
    columns: int | None = None,
    normalise: Normalise = "tile",
    colormap: int = DEFAULT_COLORMAP,
    gap: int = 1,
    aspect: float = 1.0,
) -> np.ndarray:
    """Tile an (h, w, channels) activation tensor into one RGB uint8 image about `aspect` wide."""
    mosaic = tile_activations(
        activations, columns=columns, normalise=normalise, gap=gap, aspect=aspect
    )
    bgr = cv2.applyColorMap(mosaic, colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def render_convcam_dual(
    first: np.ndarray,
    second: np.ndarray,
    *,
    columns: int | None = None,
    normalise: Normalise = "tile",
    gap: int = 1,
    aspect: float = 1.0,
) -> np.ndarray:
    """Tile two backbones' activations into one RGB image, each backbone in its own colour.

    Both tensors must have the same tile size (h, w); their channels are tiled one
    after the other so the image shows the first backbone's kernels, then the second's.
    """
    if first.shape[:2] != second.shape[:2]:
        raise ValueError(
            f"dual Convcam needs equal tile sizes, got {first.shape[:2]} and {second.shape[:2]}"
        )
    stacked = np.concatenate([first, second], axis=-1)
    mosaic = tile_activations(stacked, columns=columns, normalise=normalise, gap=gap, aspect=aspect)
    owner = tile_activations(
        np.concatenate(
            [np.zeros(first.shape, np.float32), np.ones(second.shape, np.float32)], axis=-1
        ),
        columns=columns,
        normalise="none",
        gap=gap,
        aspect=aspect,
    )
    colours = np.array(DUAL_COLOURS, dtype=np.float32)
    palette = np.where(owner[..., None] > 127, colours[1], colours[0])
    return (palette * (mosaic[..., None] / 255.0)).astype(np.uint8)


def grid_shape(
    channels: int,
    tile_h: int,
    tile_w: int,
    columns: int | None = None,
    *,
    aspect: float = 1.0,
    gap: int = 1,
) -> tuple[int, int]:
    """(rows, columns) of the tile grid: the given columns, or the grid that fills the most of
    a picture `aspect` (width / height) wide when scaled to fit it.

    What counts is the area the maps themselves cover: a grid of the right shape with a
    half-empty last row loses to one a little off in shape but full.
    """
    if channels < 1:
        raise ValueError(f"Convcam needs at least one channel, got {channels}")
    if not math.isfinite(aspect) or aspect <= 0:
        raise ValueError(f"Convcam aspect must be a positive width / height, got {aspect}")
    if columns is not None:
        columns = min(columns, channels)
        return math.ceil(channels / columns), columns
    guess = round(math.sqrt(channels * aspect * (tile_h + gap) / (tile_w + gap)))
    candidates = range(max(1, guess - _COLUMN_SEARCH), min(channels, guess + _COLUMN_SEARCH) + 1)
    best = max(candidates, key=lambda cols: _filled(channels, cols, tile_h, tile_w, aspect, gap))
    return math.ceil(channels / best), best


def _filled(channels: int, cols: int, tile_h: int, tile_w: int, aspect: float, gap: int) -> float:
    """The share of a picture `aspect` wide that the maps cover when the grid is fitted into it."""
    rows = math.ceil(channels / cols)
    grid_aspect = (cols * (tile_w + gap) - gap) / (rows * (tile_h + gap) - gap)
    fitted = min(grid_aspect / aspect, aspect / grid_aspect)
    return fitted * channels / (rows * cols)


def tile_activations(
    activations: np.ndarray,
    *,
    columns: int | None = None,
    normalise: Normalise | Literal["none"] = "tile",
    gap: int = 1,
    aspect: float = 1.0,
) -> np.ndarray:
    """Lay (h, w, channels) maps out as a grid of tiles: a uint8 (rows*(h+gap)-gap, ...) image."""
    if activations.ndim != 3:
        raise ValueError(
            f"Convcam expects (height, width, channels), got shape {activations.shape}"
        )
    tile_h, tile_w, channels = activations.shape
    rows, cols = grid_shape(channels, tile_h, tile_w, columns, aspect=aspect, gap=gap)
    maps = np.moveaxis(np.asarray(activations, dtype=np.float32), -1, 0)
    maps = _normalised(maps, normalise)
    padded = np.zeros((rows * cols, tile_h + gap, tile_w + gap), dtype=np.uint8)
    padded[:channels, :tile_h, :tile_w] = maps
    mosaic = padded.reshape(rows, cols, tile_h + gap, tile_w + gap).transpose(0, 2, 1, 3)
    mosaic = mosaic.reshape(rows * (tile_h + gap), cols * (tile_w + gap))
    return mosaic[: mosaic.shape[0] - gap, : mosaic.shape[1] - gap]


def _normalised(maps: np.ndarray, normalise: str) -> np.ndarray:
    """Scale (channels, h, w) maps to 0..255: per tile, globally, or as given (0..1)."""
    maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    if normalise == "none":
        return (np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)
    if normalise == "tile":
        low = maps.min(axis=(1, 2), keepdims=True)
        high = maps.max(axis=(1, 2), keepdims=True)
    elif normalise == "global":
        low, high = maps.min(), maps.max()
    else:
        raise ValueError(f"unknown Convcam normalisation {normalise!r}; use 'tile' or 'global'")
    span = np.maximum(high - low, 1e-6)
    return ((maps - low) * (255.0 / span)).astype(np.uint8)
