"""A bare X11 window that shows RGB frames: libX11 through ctypes, like mss uses it.

Example::

    window = X11Window("charles-stream hood", 480, 270, origin=(0, 0))
    window.show(frame)                   # RGB uint8 (270, 480, 3)
    keys, closed = window.poll()         # X keysyms pressed since the last poll

Why not OpenCV's window? Its Qt backend, without a window manager (Xvfb, the
usual way to stream from a server), now and then never paints a window: it is
mapped, Qt believes it is visible, and it stays black. Putting the pixels
ourselves with XPutImage on every frame leaves nothing to chance. Needs a
24-bit TrueColor display, which every current X server (and Xvfb) offers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import cv2
import numpy as np

_KEY_PRESS = 2
_DESTROY_NOTIFY = 17
_CLIENT_MESSAGE = 33
_KEY_PRESS_MASK = 1 << 0
_EXPOSURE_MASK = 1 << 15
_STRUCTURE_NOTIFY_MASK = 1 << 17
_Z_PIXMAP = 2
_LSB_FIRST = 0
# XSizeHints flags: the position is the user's choice, and the size is fixed.
_US_POSITION = 1 << 0
_P_POSITION = 1 << 2
_P_MIN_SIZE = 1 << 4
_P_MAX_SIZE = 1 << 5


class X11Error(OSError):
    """The X server cannot be used for a window; the message says why."""


def probe_display() -> None:
    """Connect to the X display and disconnect; raise X11Error when that is impossible."""
    xlib = _xlib()
    display = xlib.XOpenDisplay(None)
    if not display:
        raise X11Error("cannot open the X display")
    xlib.XCloseDisplay(display)


class X11Window:
    """One top-level window of a fixed size at a fixed place, showing whole frames."""

    def __init__(self, title: str, width: int, height: int, origin: tuple[int, int]):
        xlib = _xlib()
        self._xlib = xlib
        self._display = xlib.XOpenDisplay(None)
        if not self._display:
            raise X11Error("cannot open the X display")
        display = self._display
        screen = xlib.XDefaultScreen(display)
        depth = xlib.XDefaultDepth(display, screen)
        if depth not in (24, 32):
            xlib.XCloseDisplay(display)
            raise X11Error(f"the X display has {depth}-bit colour; 24 or 32 is needed")
        self.width, self.height = width, height
        self._window = xlib.XCreateSimpleWindow(
            display, xlib.XRootWindow(display, screen), origin[0], origin[1], width, height, 0, 0, 0
        )
        hints = _SizeHints(
            flags=_US_POSITION | _P_POSITION | _P_MIN_SIZE | _P_MAX_SIZE,
            x=origin[0],
            y=origin[1],
            width=width,
            height=height,
            min_width=width,
            min_height=height,
            max_width=width,
            max_height=height,
        )
        xlib.XSetWMNormalHints(display, self._window, ctypes.byref(hints))
        xlib.XStoreName(display, self._window, title.encode())
        xlib.XSelectInput(
            display, self._window, _KEY_PRESS_MASK | _EXPOSURE_MASK | _STRUCTURE_NOTIFY_MASK
        )
        self._close_atom = ctypes.c_ulong(xlib.XInternAtom(display, b"WM_DELETE_WINDOW", False))
        xlib.XSetWMProtocols(display, self._window, ctypes.byref(self._close_atom), 1)
        self._gc = xlib.XCreateGC(display, self._window, 0, None)
        # BGRX in memory is what a little-endian 24-bit TrueColor image wants.
        self._pixels = np.zeros((height, width, 4), np.uint8)
        self._image = xlib.XCreateImage(
            display,
            xlib.XDefaultVisual(display, screen),
            depth,
            _Z_PIXMAP,
            0,
            self._pixels.ctypes.data_as(ctypes.c_char_p),
            width,
            height,
            32,
            width * 4,
        )
        image = self._image.contents
        if (image.byte_order, image.bits_per_pixel, image.red_mask) != (_LSB_FIRST, 32, 0xFF0000):
            self.close()
            raise X11Error("the X display's pixel layout is not 32-bit BGRX")
        xlib.XMapWindow(display, self._window)
        # Window managers may ignore the creation position; move once mapped as well.
        xlib.XMoveWindow(display, self._window, origin[0], origin[1])
        xlib.XFlush(display)

    def show(self, frame: np.ndarray) -> None:
        """Put an RGB uint8 frame of the window's size on screen."""
        cv2.cvtColor(frame, cv2.COLOR_RGB2BGRA, dst=self._pixels)
        xlib = self._xlib
        xlib.XPutImage(
            self._display, self._window, self._gc, self._image, 0, 0, 0, 0, self.width, self.height
        )
        xlib.XFlush(self._display)

    def poll(self) -> tuple[list[int], bool]:
        """Keysyms pressed since the last call, and whether the user closed the window."""
        xlib = self._xlib
        keys: list[int] = []
        closed = False
        event = _Event()
        while xlib.XPending(self._display):
            xlib.XNextEvent(self._display, ctypes.byref(event))
            if event.type == _KEY_PRESS:
                keys.append(int(xlib.XLookupKeysym(ctypes.byref(event.key), 0)))
            elif event.type == _CLIENT_MESSAGE:
                closed = closed or event.client.data[0] == self._close_atom.value
            elif event.type == _DESTROY_NOTIFY:
                closed = True
        return keys, closed

    def close(self) -> None:
        """Destroy the window and drop the connection (the frame buffer stays ours to free)."""
        xlib = self._xlib
        if not self._display:
            return
        # XDestroyImage frees `data` unless it is cleared: the buffer belongs to numpy.
        self._image.contents.data = None
        xlib.XDestroyImage(self._image)
        xlib.XFreeGC(self._display, self._gc)
        xlib.XDestroyWindow(self._display, self._window)
        xlib.XCloseDisplay(self._display)
        self._display = None


class _Image(ctypes.Structure):
    """The head of Xlib's XImage; only these fields are read or written here."""

    _fields_ = (
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_char_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
        ("red_mask", ctypes.c_ulong),
        ("green_mask", ctypes.c_ulong),
        ("blue_mask", ctypes.c_ulong),
    )


class _SizeHints(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_long),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("min_width", ctypes.c_int),
        ("min_height", ctypes.c_int),
        ("max_width", ctypes.c_int),
        ("max_height", ctypes.c_int),
        ("width_inc", ctypes.c_int),
        ("height_inc", ctypes.c_int),
        ("min_aspect", ctypes.c_int * 2),
        ("max_aspect", ctypes.c_int * 2),
        ("base_width", ctypes.c_int),
        ("base_height", ctypes.c_int),
        ("win_gravity", ctypes.c_int),
    )


class _KeyEvent(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("root", ctypes.c_ulong),
        ("subwindow", ctypes.c_ulong),
        ("time", ctypes.c_ulong),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("x_root", ctypes.c_int),
        ("y_root", ctypes.c_int),
        ("state", ctypes.c_uint),
        ("keycode", ctypes.c_uint),
        ("same_screen", ctypes.c_int),
    )


class _ClientMessageEvent(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    )


class _Event(ctypes.Union):
    """XEvent: 24 longs, of which the key and client-message views are used."""

    _fields_ = (
        ("type", ctypes.c_int),
        ("key", _KeyEvent),
        ("client", _ClientMessageEvent),
        ("pad", ctypes.c_long * 24),
    )


@functools.cache
def _xlib() -> ctypes.CDLL:
    """libX11 with the signatures used here (wrong ones would crash on 64-bit)."""
    name = ctypes.util.find_library("X11")
    if not name:
        raise X11Error("libX11 is not installed")
    xlib = ctypes.cdll.LoadLibrary(name)
    pointer, ulong, integer = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int
    signatures = {
        "XOpenDisplay": ([ctypes.c_char_p], pointer),
        "XCloseDisplay": ([pointer], integer),
        "XDefaultScreen": ([pointer], integer),
        "XDefaultDepth": ([pointer, integer], integer),
        "XDefaultVisual": ([pointer, integer], pointer),
        "XRootWindow": ([pointer, integer], ulong),
        "XCreateSimpleWindow": (
            [
                pointer,
                ulong,
                integer,
                integer,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                ulong,
                ulong,
            ],
            ulong,
        ),
        "XSetWMNormalHints": ([pointer, ulong, ctypes.POINTER(_SizeHints)], None),
        "XStoreName": ([pointer, ulong, ctypes.c_char_p], integer),
        "XSelectInput": ([pointer, ulong, ctypes.c_long], integer),
        "XInternAtom": ([pointer, ctypes.c_char_p, integer], ulong),
        "XSetWMProtocols": ([pointer, ulong, ctypes.POINTER(ulong), integer], integer),
        "XCreateGC": ([pointer, ulong, ulong, pointer], pointer),
        "XFreeGC": ([pointer, pointer], integer),
        "XCreateImage": (
            [
                pointer,
                pointer,
                ctypes.c_uint,
                integer,
                integer,
                ctypes.c_char_p,
                ctypes.c_uint,
                ctypes.c_uint,
                integer,
                integer,
            ],
            ctypes.POINTER(_Image),
        ),
        "XDestroyImage": ([ctypes.POINTER(_Image)], integer),
        "XPutImage": (
            [
                pointer,
                ulong,
                pointer,
                ctypes.POINTER(_Image),
                integer,
                integer,
                integer,
                integer,
                ctypes.c_uint,
                ctypes.c_uint,
            ],
            integer,
        ),
        "XMapWindow": ([pointer, ulong], integer),
        "XMoveWindow": ([pointer, ulong, integer, integer], integer),
        "XDestroyWindow": ([pointer, ulong], integer),
        "XFlush": ([pointer], integer),
        "XPending": ([pointer], integer),
        "XNextEvent": ([pointer, ctypes.POINTER(_Event)], integer),
        "XLookupKeysym": ([ctypes.POINTER(_KeyEvent), integer], ulong),
    }
    for function, (arguments, result) in signatures.items():
        getattr(xlib, function).argtypes = arguments
        getattr(xlib, function).restype = result
    return xlib
