"""Frames: one JPEG encode/decode pair, RGB in and out, bad bytes and wrong sizes caught."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.frames import FrameError, decode_frame, encode_frame, resize_frame


def gradient_frame(width: int = 480, height: int = 270) -> np.ndarray:
    """A smooth RGB image with a distinct colour per channel (JPEG-friendly, order-sensitive)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
         np.full((height, width), 40.0)],
        axis=-1,
    ).astype(np.uint8)  # fmt: skip


def test_a_frame_survives_the_jpeg_round_trip_in_rgb_order():
    frame = gradient_frame()
    decoded = decode_frame(encode_frame(frame, quality=90), expected=(480, 270))
    assert decoded.shape == frame.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frame).mean() < 2.0


def test_a_scaled_decode_matches_a_full_decode_then_resize():
    jpeg = encode_frame(gradient_frame(), quality=90)
    scaled = decode_frame(jpeg, expected=(480, 270), size=(128, 72))
    full = resize_frame(decode_frame(jpeg), (128, 72))
    assert scaled.shape == (72, 128, 3)
    assert np.abs(scaled.astype(int) - full).mean() < 2.0


def test_bytes_that_are_not_a_jpeg_raise_frame_error():
    with pytest.raises(FrameError, match="not a decodable JPEG"):
        decode_frame(b"\xff\xd8 truncated", expected=(480, 270))


@pytest.mark.parametrize("size", [None, (128, 72)])
def test_a_frame_of_another_size_than_stored_raises_frame_error(size):
    jpeg = encode_frame(gradient_frame(240, 135), quality=90)
    with pytest.raises(FrameError, match="expected 480x270"):
        decode_frame(jpeg, expected=(480, 270), size=size)


def test_only_uint8_rgb_frames_are_encoded():
    with pytest.raises(FrameError, match="uint8"):
        encode_frame(np.zeros((10, 10), dtype=np.uint8), quality=90)
