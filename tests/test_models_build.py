"""One builder turns any spec into a Keras model; model_0003_xception matches the seed page."""

from __future__ import annotations

import math

import keras
import msgspec
import numpy as np
import pytest

from engine.core.errors import ConfigError, ModelError
from models.build import build_architecture, build_model, compile_model, parameter_counts
from models.spec import CommonDenseSpec, InputSpec, ParameterCounts, load_spec

pytestmark = pytest.mark.tf


def layer_params(model: keras.Model) -> dict[str, int]:
    return {
        layer.name: sum(math.prod(weight.shape) for weight in layer.weights)
        for layer in model.layers
    }


@pytest.fixture(scope="module")
def xception_model() -> keras.Model:
    return build_architecture(load_spec("model_0003_xception"))


@pytest.fixture(scope="module")
def imagenet_file(xception_model, tmp_path_factory):
    """A stand-in for Keras' xception notop file: the same legacy .h5 layout, our weights."""
    backbone = keras.Model(
        xception_model.input, xception_model.get_layer("block14_sepconv2_act").output
    )
    path = tmp_path_factory.mktemp("imagenet") / "xception_notop.h5"
    backbone.save(path)
    return path


@pytest.fixture(scope="module")
def stacked_imagenet_model(imagenet_file) -> keras.Model:
    spec = msgspec.structs.replace(load_spec("model_0003_xception"), weights="imagenet")
    return build_model(spec.with_overrides(frames=3), {"xception": str(imagenet_file)})


def demo_spec_at(height: int, width: int):
    spec = load_spec("model_0000_demo")
    return msgspec.structs.replace(
        spec, input=InputSpec(height, width, 1), common=CommonDenseSpec(units=64)
    )


def test_model_0003_xception_summary_is_exactly_the_seed_pages(xception_model):
    assert parameter_counts(xception_model) == ParameterCounts(
        total=23_519_466, trainable=23_464_938, non_trainable=54_528
    )


def test_model_0003_xception_takes_270x480_rgb_and_returns_one_value_per_head(xception_model):
    predictions = xception_model(np.zeros((1, 270, 480, 3), dtype="float32"))
    assert xception_model.input.shape == (None, 270, 480, 3)
    assert {name: tuple(value.shape) for name, value in predictions.items()} == {
        "steering": (1, 1),
        "throttle_brake": (1, 1),
    }


def test_frames_override_changes_only_the_first_conv(xception_model, stacked_imagenet_model):
    # By position: Keras numbers some Xception layers (conv2d_4, ...) per process, not per model.
    pairs = zip(
        layer_params(xception_model).items(),
        layer_params(stacked_imagenet_model).values(),
        strict=True,
    )
    changed = {name: (base, stacked) for (name, base), stacked in pairs if base != stacked}
    assert changed == {"block1_conv1": (3 * 3 * 3 * 32, 3 * 3 * (3 * 3) * 32)}


def test_imagenet_weights_come_from_the_file_spread_over_stacked_frames(
    xception_model, stacked_imagenet_model
):
    (rgb_kernel,) = xception_model.get_layer("block1_conv1").get_weights()
    (stacked_kernel,) = stacked_imagenet_model.get_layer("block1_conv1").get_weights()
    np.testing.assert_allclose(stacked_kernel, np.concatenate([rgb_kernel] * 3, axis=2) / 3)
    for name in ("block7_sepconv2", "block14_sepconv2_bn"):
        for loaded, original in zip(
            stacked_imagenet_model.get_layer(name).get_weights(),
            xception_model.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(loaded, original)


def test_imagenet_weights_without_a_configured_file_name_the_config_key():
    spec = msgspec.structs.replace(load_spec("model_0003_xception"), weights="imagenet")
    with pytest.raises(ConfigError, match=r"\[models.imagenet_weights\] xception = "):
        build_model(spec, {})


def test_imagenet_weights_file_that_does_not_exist_is_named(tmp_path):
    spec = msgspec.structs.replace(load_spec("model_0003_xception"), weights="imagenet")
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(ConfigError, match=f"xception = '{missing}': no such file"):
        build_model(spec, {"xception": str(missing)})


def test_imagenet_weights_file_that_is_not_weights_is_named(tmp_path):
    spec = msgspec.structs.replace(load_spec("model_0003_xception"), weights="imagenet")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an HDF5 file")
    with pytest.raises(ConfigError, match=f"'{junk}': cannot load it"):
        build_model(spec, {"xception": str(junk)})


def test_backbone_override_keeps_the_common_layer_and_heads(xception_model):
    swapped = build_architecture(
        load_spec("model_0003_xception").with_overrides(backbone="small_cnn")
    )
    base, small = layer_params(xception_model), layer_params(swapped)
    heads = [name for name in base if name.startswith(("steering", "throttle_brake"))]
    assert len(heads) == 8 and all(small[name] == base[name] for name in heads)
    # Global average pooling of the small CNN's 64 maps instead of Xception's 2048.
    assert small["common"] == (64 + 1) * 1024
    assert "block1_conv1" not in small and small["convcam"] == 3 * 3 * 48 * 64 + 64


def test_outputs_override_adds_one_head_like_the_others():
    spec = load_spec("model_0000_demo")
    two = parameter_counts(build_architecture(spec))
    three_model = build_architecture(spec.with_overrides(outputs=["steering", "accel", "brake"]))
    one_head = sum(
        count for name, count in layer_params(three_model).items() if name.startswith("accel")
    )
    assert parameter_counts(three_model).total == two.total + one_head
    assert set(three_model.output) == {"steering", "accel", "brake"}


def test_inception_resnet_v2_line_builds_with_its_convcam_layer():
    spec = load_spec("model_0004_inceptionresnetv2")
    model = build_architecture(spec)
    assert model.get_layer(spec.convcam).output.shape[-1] == 1536
    assert set(model.output) == {"steering", "throttle_brake"}


def test_demo_convcam_layer_is_64_maps_of_9x16():
    spec = load_spec("model_0000_demo")
    assert build_architecture(spec).get_layer(spec.convcam).output.shape == (None, 9, 16, 64)


def test_a_convcam_layer_the_model_lacks_is_rejected_at_build():
    spec = msgspec.structs.replace(load_spec("model_0000_demo"), convcam_layer="conv9")
    with pytest.raises(ModelError, match=r"'convcam_layer' = 'conv9' is not a layer.*convcam"):
        build_architecture(spec)


def test_a_tiny_spec_learns_a_fixed_batch():
    keras.utils.set_random_seed(0)
    spec = demo_spec_at(16, 16)
    model = compile_model(build_architecture(spec), spec)
    rng = np.random.default_rng(0)
    # Noisy frames of varying brightness; the outputs are brightness, so there is a lot to learn.
    brightness = rng.uniform(0, 255, size=(16, 1, 1, 1))
    frames = np.clip(brightness + rng.normal(0, 20, size=(16, 16, 16, 3)), 0, 255)
    steering = brightness.reshape(16, 1) / 127.5 - 1.0
    targets = {"steering": steering, "throttle_brake": -steering}
    losses = [model.train_on_batch(frames, targets, return_dict=True)["loss"] for _ in range(40)]
    assert losses[-1] < 0.1 * losses[0]
