"""A latency marker: each shown frame's number in the hood window's corner, and the game's log.

Example::

    marker = LatencyMarker(MarkerLog(path))     # charles-stream sim --latency-marker PATH
    shown = marker.stamp(game.render_hood())    # a copy, number 1 in its top-left corner
    ...                                         # the window shows it, then:
    marker.frame_shown(time.monotonic())        # {"type": "frame", "number": 1, "at": ...}
    marker.key_seen("left", True, time.monotonic())   # the game read Left going down
    read_marker(captured_image)                 # 1 (None when no marker is there)
    read_marker_log(path)                       # MarkerRecords(frames={1: at}, keys=[...])

Why: a game in its own window says nothing to whoever drives it but pixels,
so the time from a frame being drawn to the key decided on it reaching the
game (`bench/driver.py --window-latency`) needs the frame to say which it
is. The window draws its frame number into the hood view's top-left
`MARKER_BITS` squares, and below them the same bits inverted, so a grab that
is not a marked frame (another window, a partial draw) reads as None rather
than as a wrong number. The game logs when each numbered frame was on screen
(after its window's flip) and when its event loop read each key event: the
moment it applies the key to the next tick. Both log `time.monotonic()`,
which on Linux is CLOCK_MONOTONIC in every process of the machine: the
driver's timestamps (capture, send) are on the same clock.

The squares are pure black and white, 4x4 pixels: screen capture copies
pixels exactly, and a reader samples each square's middle, so one stray
pixel cannot flip a bit. The model sees them too, in its corner of sky: this
is a measurement mode, never a stream's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec
import numpy as np

from engine.core.errors import UsageError

# 24 bits: 155 hours of frames at 30 fps before a number repeats.
MARKER_BITS = 24
SQUARE_PX = 4
# Width and height of the marked corner: one row of squares for the number, one for its inverse.
MARKER_WIDTH = MARKER_BITS * SQUARE_PX
MARKER_HEIGHT = 2 * SQUARE_PX
_LARGEST = (1 << MARKER_BITS) - 1


class FrameShown(msgspec.Struct, tag="frame", frozen=True):
    """Frame `number` was on the screen at `at` (time.monotonic, s): its window flipped."""

    number: int
    at: float


class KeySeen(msgspec.Struct, tag="key", frozen=True):
    """The game's event loop read `key` (SDL's name, e.g. "left") go down or up at `at`."""

    key: str
    down: bool
    at: float


MarkerRecord = FrameShown | KeySeen
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(MarkerRecord)


def stamp_marker(image: np.ndarray, number: int) -> None:
    """Draw `number` (0 to 2**24 - 1) into the top-left corner of an RGB image, in place."""
    if not 0 <= number <= _LARGEST:
        raise ValueError(f"marker number {number!r} is not accepted; accepted: 0 to {_LARGEST}")
    height, width = image.shape[:2]
    if width < MARKER_WIDTH or height < MARKER_HEIGHT:
        raise ValueError(
            f"a {width}x{height} image cannot hold the marker; accepted: at least "
            f"{MARKER_WIDTH}x{MARKER_HEIGHT} pixels"
        )
    bits = _bits(number)
    for row, values in enumerate((bits, ~bits)):
        top = row * SQUARE_PX
        band = image[top : top + SQUARE_PX, :MARKER_WIDTH]
        # One square per bit: the bit's colour repeated across the square's pixels.
        band[:] = np.repeat(np.where(values, 255, 0).astype(np.uint8), SQUARE_PX)[None, :, None]


def read_marker(image: np.ndarray) -> int | None:
    """The number in an RGB image's top-left corner; None when the corner holds no marker."""
    height, width = image.shape[:2]
    if width < MARKER_WIDTH or height < MARKER_HEIGHT:
        return None
    middle = SQUARE_PX // 2
    columns = slice(middle, MARKER_WIDTH, SQUARE_PX)
    rows = []
    for row in range(2):
        pixels = image[row * SQUARE_PX + middle, columns].astype(np.int32)
        if np.any((pixels > 64) & (pixels < 192)):
            return None  # grey: not a marker's black or white
        rows.append(pixels.mean(axis=1) >= 128)
    number_bits, inverse_bits = rows
    if np.any(number_bits == inverse_bits):
        return None
    return int(np.dot(number_bits.astype(np.int64), 1 << np.arange(MARKER_BITS - 1, -1, -1)))


class MarkerLog:
    """The game's log of frames shown and keys seen: one JSON object a line, written at once.

    Unbuffered, so a game stopped by a signal leaves every line it wrote.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed in close)
        except OSError as error:
            raise UsageError(
                f"--latency-marker {str(path)!r}: cannot write the marker log there "
                f"({error.strerror}); accepted: a file path in an existing, writable folder"
            ) from None

    def write(self, record: MarkerRecord) -> None:
        """Append one record."""
        self._file.write(_ENCODER.encode(record) + b"\n")

    def close(self) -> None:
        """Close the file (again: nothing happens)."""
        self._file.close()


class LatencyMarker:
    """What the game window does in marker mode: number the hood frames, log frames and keys."""

    def __init__(self, log: MarkerLog) -> None:
        self.log = log
        self.number = 0

    def stamp(self, hood: np.ndarray) -> np.ndarray:
        """A copy of the hood frame with the next frame number in its corner."""
        self.number += 1
        marked = hood.copy()
        stamp_marker(marked, self.number & _LARGEST)
        return marked

    def frame_shown(self, at: float) -> None:
        """The frame last stamped is on the screen since `at` (time.monotonic)."""
        self.log.write(FrameShown(self.number, at))

    def key_seen(self, key: str, down: bool, at: float) -> None:
        """The game's event loop read a key event at `at` (time.monotonic)."""
        self.log.write(KeySeen(key, down, at))


@dataclass
class MarkerRecords:
    """A marker log read back: when each frame number was shown, and every key event seen."""

    frames: dict[int, float] = field(default_factory=dict)
    keys: list[KeySeen] = field(default_factory=list)


def read_marker_log(path: str | Path) -> MarkerRecords:
    """Every record of a marker log; ValueError names the file and line of a bad one."""
    records = MarkerRecords()
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                record = _DECODER.decode(line)
            except msgspec.DecodeError as error:
                raise ValueError(
                    f"{path}: line {number} is not a marker record ({error}); accepted: "
                    '{"type": "frame", "number", "at"} or {"type": "key", "key", "down", "at"}'
                ) from None
            if isinstance(record, FrameShown):
                records.frames[record.number] = record.at
            else:
                records.keys.append(record)
    return records


def _bits(number: int) -> np.ndarray:
    """The marker's bits of `number`, most significant first, as booleans."""
    shifts = np.arange(MARKER_BITS - 1, -1, -1)
    return ((number >> shifts) & 1).astype(bool)
