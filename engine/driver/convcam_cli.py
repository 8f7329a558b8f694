"""`charles-stream convcam`: what a model version's conv layer sees in one image.

Example::

    charles-stream convcam --model model_0000_demo_v1 --list-layers
    charles-stream convcam --model model_0000_demo_v1 --image hood.png --out convcam.png
    charles-stream convcam --model model_0003_xception_v1 --image hood.png --out c.png \\
        --layer add_11 --columns 48 --normalise global --gradcam heat.png

The image is resized (INTER_AREA) to the model's input, run through the same
one-pass model the driver uses, and the layer's activations are tiled into
one image (see `engine/driver/convcam.py`). Two `--layer`s of a two-backbone model
are drawn in two colours. `--gradcam` also writes the Grad-CAM heat map of
the steering output over the input image (always on TensorFlow: it needs
gradients). `--engine` runs the one pass on another engine than `[driver] engine`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
)
from engine.core.errors import UsageError
from engine.driver.engines import add_engine_argument, driver_config_with_engine

log = logging.getLogger("charles.convcam")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `convcam`."""
    parser = subparsers.add_parser(
        "convcam", help="render a model's Convcam for one image, or list its conv layers"
    )
    parser.add_argument("--model", required=True, metavar="VERSION", help="e.g. model_0000_demo_v1")
    parser.add_argument(
        "--list-layers", action="store_true", help="list the layers a Convcam can show"
    )
    parser.add_argument("--image", metavar="IN.png", help="the input image (any size)")
    parser.add_argument("--out", metavar="OUT.png", help="where to write the Convcam image")
    parser.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="layer to show (default: the line's Convcam layer); twice for two backbones",
    )
    parser.add_argument("--columns", type=int, help="tiles per row (default: near-square)")
    parser.add_argument(
        "--normalise", choices=("tile", "global"), help="default: [driver] convcam_normalise"
    )
    parser.add_argument("--gradcam", metavar="HEAT.png", help="also write a Grad-CAM heat map")
    add_engine_argument(parser)
    parser.add_argument("--json", action="store_true", help="--list-layers as JSON")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_convcam)


def run_convcam(args: argparse.Namespace) -> int:
    """List the layers, or render the Convcam (and Grad-CAM) of one image."""
    if not args.list_layers and not (args.image and args.out):
        raise UsageError("convcam needs --image IN.png and --out OUT.png (or --list-layers)")
    if args.columns is not None and args.columns < 1:
        raise UsageError(f"--columns {args.columns} is not accepted; use 1 or more")
    if args.layer and len(args.layer) > 2:
        raise UsageError(f"--layer given {len(args.layer)} times; accepted: once, or twice")
    config = config_from(args)
    from engine.driver.inference import (
        GradCam,
        feature_map_layers,
        load_version,
        one_pass_model,
        set_tensorflow_threads,
    )

    set_tensorflow_threads(config.driver)
    data_dir = data_dir_from(args, config)
    loaded = load_version(data_dir, args.model)
    spec = loaded.spec
    if args.list_layers:
        layers = feature_map_layers(loaded.model)
        if args.json:
            print(json.dumps({"default": spec.convcam, "layers": dict(layers)}))
        else:
            for name, shape in layers:
                mark = "  (default)" if name == spec.convcam else ""
                print(f"{name}: {'x'.join(map(str, shape))}{mark}")
        return 0
    from engine.data.frames import resize_frame
    from engine.driver.convcam import render_convcam, render_convcam_dual

    layers = tuple(args.layer or (spec.convcam,))
    image = resize_frame(_read_rgb(args.image), (spec.input.width, spec.input.height))
    frame = np.concatenate([image] * spec.input.frames, axis=-1)
    from engine.driver.precision import stream_frames

    driver = driver_config_with_engine(config, args.engine)
    # At [driver] precision as the driver would be: gated on the data dir's recorded frames.
    frames = stream_frames(config, tuple(loaded.model.inputs[0].shape[1:]), data_dir)
    model = one_pass_model(driver, loaded.model, spec.output_names, layers, frames)
    prediction = model.predict(frame)
    normalise = args.normalise or config.driver.convcam_normalise
    render = render_convcam_dual if len(layers) == 2 else render_convcam
    convcam = render(*prediction.activations, columns=args.columns, normalise=normalise)
    _write_rgb(args.out, convcam)
    log.info(
        "Convcam of %s (%s, on %s) written to %s; predictions: %s",
        ", ".join(layers),
        "x".join(map(str, prediction.activations[0].shape)),
        model.engine,
        args.out,
        {name: round(value, 4) for name, value in prediction.outputs.items()},
    )
    if args.gradcam:
        # Gradients: TensorFlow, whatever engine rendered the Convcam.
        heat = GradCam(loaded.model, "steering", layers[0]).overlay(frame, image)
        _write_rgb(args.gradcam, heat)
        log.info("Grad-CAM of steering written to %s", args.gradcam)
    return 0


def _read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise UsageError(f"--image {path}: not a readable image file (PNG, JPEG, BMP, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _write_rgb(path: str, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise UsageError(f"{path}: cannot write an image there (use a .png or .jpg name)")
