"""Shared pieces of the driver, inference, unstuck and eval tests: small real models, versions."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from engine.core.config import SimConfig
from models.registry import Registry, version_dir
from models.spec import SPEC_DIR, ModelSpec, load_spec, parse_spec

DEMO_LINE = "model_0000_demo"
# A small game: cheap to render, still the real renderer.
SMALL_SIM = SimConfig(hood_width=192, hood_height=108, chase_width=160, chase_height=90)


def demo_spec() -> ModelSpec:
    """The demo line's spec, as a version stores it."""
    return load_spec(DEMO_LINE)


def constant_model(spec: ModelSpec, **values: float):
    """The spec's model with every head fixed to a value: the frame no longer matters."""
    from models.build import build_architecture

    return set_constant_outputs(build_architecture(spec), spec.output_names, **values)


def set_constant_outputs(model, outputs: tuple[str, ...], **values: float):
    """Fix every head of `model` to a value (0.0 for heads not named); returns the model.

    The last layer of each head gets a zero kernel and the value as its bias, so the
    output is exactly that value for any input.
    """
    for name in outputs:
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights(
            [np.zeros_like(kernel), np.full_like(bias, values.get(name, 0.0))]
        )
    return model


def create_version(data_dir: Path, line: str = DEMO_LINE) -> str:
    """Register a version of `line` in `data_dir` (no TensorFlow needed); returns its name."""
    from models.spec import ParameterCounts

    text = (SPEC_DIR / f"{line}.toml").read_text(encoding="utf-8")
    parse_spec(text, line=line, source="test")
    with Registry(data_dir) as registry:
        version = registry.create_version(line, spec_toml=text, parameters=ParameterCounts(1, 1, 0))
    return version.name


def save_constant_checkpoint(data_dir: Path, version: str, batch: int, **values: float) -> Path:
    """Save a checkpoint of `version` whose heads always predict `values`."""
    from models.checkpoints import save_checkpoint

    model = constant_model(demo_spec(), **values)
    return save_checkpoint(model, version_dir(data_dir, version), batch, keep=3).path


def small_sim(**changes: object) -> SimConfig:
    """SMALL_SIM with some fields changed."""
    return msgspec.structs.replace(SMALL_SIM, **changes)


class NoPad:
    """A pad nobody reads: tests that use it look at the predictions."""

    def send(self, state) -> None:
        """Nothing presses anything."""

    def neutral(self) -> None:
        """Nothing to release."""
