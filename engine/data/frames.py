"""The one encode/decode pair for frames, in storage and in transit: JPEG or raw pixels.

Example::

    jpeg = encode_frame(rgb, quality=90)               # uint8 RGB (H, W, 3) -> JPEG bytes
    raw = encode_frame(rgb, quality=90, codec="raw")   # -> RAW_MAGIC + W, H, C + the pixels
    rgb = decode_frame(blob, expected=(W, H)) # either kind -> uint8 RGB, or FrameError
    small = decode_frame(blob, expected=(W, H), size=(128, 72))  # decoded small, then resized
    frame_codec(blob)                         # -> "jpeg" or "raw"

Every stored or sent frame says how it is encoded, so one database (or one
sample set) may hold both and each frame decodes the way it was written: a
streamer can switch `[data] frame_codec` without losing the samples already
stored. A raw frame starts with the 4-byte `RAW_MAGIC`, which no JPEG can start
with (a JPEG starts FF D8), then width and height (little-endian uint16) and
channels (uint8), then height x width x channels bytes, row by row, RGB.

Why two codecs: at the demo's 128x72, decoding a JPEG costs ~65 us of CPU a
frame (2.1 ms a 32-sample batch, three quarters of the trainer's data path on
cores TensorFlow already fills) while a raw frame "decodes" in a copy (0.1 ms a
batch), at 7x the bytes (27,648 B vs ~3,950 B). At the reference's 480x270 a
raw frame is 389 KB, 15x its JPEG, too much for 2 x 25,000 buffered samples and
a hub message, so JPEG stays the default there (`bench/data.py --part costs`).

Frames are RGB everywhere in charles-stream (what the game renders and the model
sees); OpenCV wants BGR, so the colour swap lives here and nowhere else. The
decode asks libjpeg for RGB itself (IMREAD_COLOR_RGB), which saves the batch
path a colour-swap copy per frame.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from engine.core.config import FRAME_CODECS, FrameCodec

# "charles raw frame, layout 1"; 0x52 is no JPEG's first byte (0xFF).
RAW_MAGIC = b"RAW1"
# Magic, width, height, channels; the pixels follow.
_RAW_HEADER = struct.Struct("<4sHHB")
_RAW_CHANNELS = 3


class FrameError(ValueError):
    """A frame that cannot be used: not a JPEG or raw frame, or not the expected shape."""


def encode_frame(rgb: np.ndarray, quality: int, codec: FrameCodec = "jpeg") -> bytes:
    """Encode an RGB frame as `codec`: JPEG (`quality`) or raw pixels behind `RAW_MAGIC`.

    JPEG keeps a 480x270 frame around 20-30 kB instead of 389 kB; raw costs
    nothing to decode, which pays at small frame sizes (see the module docstring).
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != _RAW_CHANNELS:
        raise FrameError(f"expected a uint8 (H, W, 3) RGB frame, got {rgb.dtype} {rgb.shape}")
    if codec == "raw":
        height, width = rgb.shape[:2]
        if width > 0xFFFF or height > 0xFFFF:
            raise FrameError(f"a raw frame is at most 65535x65535, got {width}x{height}")
        header = _RAW_HEADER.pack(RAW_MAGIC, width, height, _RAW_CHANNELS)
        return header + np.ascontiguousarray(rgb).tobytes()
    if codec != "jpeg":
        raise FrameError(f"frame codec {codec!r} is unknown; accepted: {', '.join(FRAME_CODECS)}")
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise FrameError(f"OpenCV could not JPEG-encode a frame of shape {rgb.shape}")
    return encoded.tobytes()


def decode_frame(
    frame: bytes, expected: tuple[int, int] | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode a JPEG or raw frame to uint8 RGB, checked against `expected` (W, H), resized.

    A raw frame comes back as a read-only view of `frame` (no copy) unless it
    is resized. When `size` is much smaller than a stored JPEG, libjpeg decodes
    at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients (never below
    `size`), which costs a fraction of a full decode; INTER_AREA then does the rest.
    Raises FrameError for bytes that are neither, or a frame of the wrong size.
    """
    if frame[: len(RAW_MAGIC)] == RAW_MAGIC:
        image = _decode_raw(frame)
        _check_size(image, expected, scale=1)
        return image if size is None else resize_frame(image, size)
    scale = _decode_scale(expected, size)
    image = cv2.imdecode(np.frombuffer(frame, dtype=np.uint8), _SCALED_DECODE[scale])
    if image is None:
        raise FrameError(f"not a decodable JPEG or raw frame ({len(frame)} bytes)")
    _check_size(image, expected, scale)
    return image if size is None else resize_frame(image, size)


def frame_codec(frame: bytes) -> FrameCodec:
    """How a stored frame is encoded, from its first bytes (nothing is decoded)."""
    return "raw" if frame[: len(RAW_MAGIC)] == RAW_MAGIC else "jpeg"


def resize_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height) with INTER_AREA, which averages pixels and so avoids aliasing."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _decode_raw(frame: bytes) -> np.ndarray:
    """The pixels of a raw frame, refused if its header and its length disagree."""
    if len(frame) < _RAW_HEADER.size:
        raise FrameError(f"raw frame of {len(frame)} bytes is shorter than its header")
    _, width, height, channels = _RAW_HEADER.unpack_from(frame)
    if channels != _RAW_CHANNELS or width < 1 or height < 1:
        raise FrameError(
            f"raw frame header says {width}x{height}x{channels}; accepted: "
            f"a positive size with {_RAW_CHANNELS} channels (RGB)"
        )
    pixels = len(frame) - _RAW_HEADER.size
    if pixels != width * height * channels:
        raise FrameError(
            f"raw frame {width}x{height}x{channels} needs {width * height * channels} bytes "
            f"of pixels, has {pixels}"
        )
    image = np.frombuffer(frame, dtype=np.uint8, offset=_RAW_HEADER.size)
    return image.reshape(height, width, channels)


def _check_size(image: np.ndarray, expected: tuple[int, int] | None, scale: int) -> None:
    if expected is None:
        return
    height, width = image.shape[:2]
    # libjpeg rounds scaled sizes up.
    wanted = (-(-expected[0] // scale), -(-expected[1] // scale))
    if (width, height) != wanted:
        raise FrameError(
            f"frame is {width * scale}x{height * scale}, expected {expected[0]}x{expected[1]}"
        )


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
