"""`charles-stream games list|check PROFILE`: the shipped game profiles, and whether one works here.

Example::

    charles-stream games list
    # builtin  keyboard  the built-in game in its own pygame window (charles-stream sim), ...
    charles-stream games check builtin --out hood.png
    # window 0x400001 'charles-stream hood' at 0,0 480x270; frame 480x270; mean brightness 97.3

`check` does what the driver will do before it drives: find the window by the
profile's title, grab one frame from the window's rectangle with mss, crop it
and blank its masks. A missing window exits 3 (DeviceError) with the title it
looked for and the titles of the windows that do exist, which is usually
enough to fix the profile. `--json` prints the same facts as one JSON line.
"""

from __future__ import annotations

import argparse
import json

import cv2

from engine.games.profile import load_profile, shipped_profiles


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `games` with its `list` and `check` subcommands."""
    parser = subparsers.add_parser("games", help="game profiles: list them, check one's window")
    commands = parser.add_subparsers(title="games commands", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="the shipped profiles, one line each")
    listing.set_defaults(handler=run_list)
    check = commands.add_parser(
        "check", help="find the profile's window, grab a frame, say what was found"
    )
    check.add_argument("profile", metavar="PROFILE", help="a shipped name or a profile .toml path")
    check.add_argument("--out", metavar="FILE.png", help="save the cropped, masked frame here")
    check.add_argument("--display", help="X display to look on (default: $DISPLAY)")
    check.add_argument("--json", action="store_true", help="print the findings as one JSON line")
    check.set_defaults(handler=run_check)


def run_list(args: argparse.Namespace) -> int:
    """Print each shipped profile: name, input backend, description (untested ones say so)."""
    for name in shipped_profiles():
        profile = load_profile(name)
        note = "" if profile.tested else " [untested here]"
        print(f"{name:<10} {profile.input.backend:<9} {profile.description}{note}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Find the window, grab and crop one frame, report it; DeviceError (exit 3) if absent."""
    from engine.games.window import capture_area, find_window, grab_frame

    profile = load_profile(args.profile)
    window = find_window(profile.window_target(), display=args.display)
    area = capture_area(profile, window)
    import mss

    with mss.MSS(display=args.display) if args.display else mss.MSS() as screen:
        frame = grab_frame(profile, area, screen)
    height, width = frame.shape[:2]
    brightness = float(frame.mean())
    found = {
        "profile": profile.name,
        "window_id": window.id,
        "title": window.title,
        "left": window.left,
        "top": window.top,
        "width": window.width,
        "height": window.height,
        "frame_width": width,
        "frame_height": height,
        "mean_brightness": round(brightness, 1),
    }
    if args.out:
        cv2.imwrite(args.out, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        found["out"] = args.out
    if args.json:
        print(json.dumps(found))
    else:
        print(
            f"window {window.id:#x} {window.title!r} at {window.left},{window.top} "
            f"{window.width}x{window.height}; frame {width}x{height}; "
            f"mean brightness {brightness:.1f}" + (f"; saved {args.out}" if args.out else "")
        )
    return 0
