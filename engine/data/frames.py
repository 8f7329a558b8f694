"""The one JPEG encode/decode pair for frames, in storage and in transit.

Example::

    jpeg = encode_frame(rgb, quality=90)      # uint8 RGB (H, W, 3) -> JPEG bytes
    rgb = decode_frame(jpeg, expected=(W, H)) # JPEG bytes -> uint8 RGB, or FrameError
    small = decode_frame(jpeg, expected=(W, H), size=(128, 72))  # decoded small, then resized

Frames are RGB everywhere in charles-stream (what the game renders and the model
sees); OpenCV wants BGR, so the colour swap lives here and nowhere else. The
decode asks libjpeg for RGB itself (IMREAD_COLOR_RGB), which saves the batch
path a colour-swap copy per frame.
"""

from __future__ import annotations

import cv2
import numpy as np


class FrameError(ValueError):
    """A frame that cannot be used: not a JPEG, or not the expected shape."""


def encode_frame(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG-encode an RGB frame; JPEG keeps a 480x270 frame around 20-30 kB instead of 389 kB."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FrameError(f"expected a uint8 (H, W, 3) RGB frame, got {rgb.dtype} {rgb.shape}")
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise FrameError(f"OpenCV could not JPEG-encode a frame of shape {rgb.shape}")
    return encoded.tobytes()


def decode_frame(
    jpeg: bytes, expected: tuple[int, int] | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode JPEG bytes to uint8 RGB, checked against `expected` (W, H), resized to `size`.

    When `size` is much smaller than the stored frame, libjpeg decodes at 1/2,
    1/4 or 1/8 scale straight from the DCT coefficients (never below `size`),
    which costs a fraction of a full decode; INTER_AREA then does the rest.
    Raises FrameError for bytes that are not a JPEG or a frame of the wrong size.
    """
    scale = _decode_scale(expected, size)
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), _SCALED_DECODE[scale])
    if image is None:
        raise FrameError(f"not a decodable JPEG ({len(jpeg)} bytes)")
    height, width = image.shape[:2]
    if expected is not None:
        # libjpeg rounds scaled sizes up.
        wanted = (-(-expected[0] // scale), -(-expected[1] // scale))
        if (width, height) != wanted:
            raise FrameError(
                f"frame is {width * scale}x{height * scale}, expected {expected[0]}x{expected[1]}"
            )
    return image if size is None else resize_frame(image, size)


def resize_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height) with INTER_AREA, which averages pixels and so avoids aliasing."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


# libjpeg's scale-downs, each decoding straight to RGB (IMREAD_COLOR is BGR: its bit goes).
_SCALED_DECODE = {
    1: cv2.IMREAD_COLOR_RGB,
    2: (cv2.IMREAD_REDUCED_COLOR_2 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
    4: (cv2.IMREAD_REDUCED_COLOR_4 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
    8: (cv2.IMREAD_REDUCED_COLOR_8 & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB,
}


def _decode_scale(stored: tuple[int, int] | None, size: tuple[int, int] | None) -> int:
    """The largest libjpeg scale-down that still leaves at least `size` pixels."""
    if stored is None or size is None:
        return 1
    for scale in (8, 4, 2):
        if stored[0] // scale >= size[0] and stored[1] // scale >= size[1]:
            return scale
    return 1
