"""One forward pass gives the predictions and the Convcam; new weights reach the running model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from engine.core.errors import ModelError
from engine.driver.inference import GradCam, OnePassModel, feature_map_layers, load_version
from models.build import build_architecture
from models.checkpoints import save_checkpoint
from models.registry import version_dir
from tests.driver_helpers import constant_model, create_version, demo_spec, save_constant_checkpoint

pytestmark = pytest.mark.tf


class CountingLayer(layers.Layer):
    """Passes its input through and counts, inside the graph, how often it really ran."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, inputs):
        self.calls.assign_add(1.0)
        return inputs


def counted_model() -> tuple[keras.Model, CountingLayer]:
    """A tiny driving model whose every forward pass goes through a CountingLayer."""
    frames = keras.Input((24, 32, 3), name="frames")
    counter = CountingLayer(name="counter")
    x = counter(frames)
    maps = layers.Conv2D(8, 3, strides=2, activation="relu", name="convcam")(x)
    pooled = layers.Flatten()(maps)
    outputs = {name: layers.Dense(1, name=name)(pooled) for name in ("steering", "throttle_brake")}
    return keras.Model(frames, outputs), counter


def test_predictions_and_convcam_come_from_one_forward_pass():
    model, counter = counted_model()
    one_pass = OnePassModel(model, ("steering", "throttle_brake"), ("convcam",))
    before = float(counter.calls.numpy())  # building traced (and so ran) the pass once
    frame = np.random.default_rng(0).uniform(0, 255, (24, 32, 3)).astype(np.float32)
    for _ in range(5):
        prediction = one_pass.predict(frame)
    assert float(counter.calls.numpy()) - before == 5
    assert set(prediction.outputs) == {"steering", "throttle_brake"}
    assert prediction.activations[0].shape == (11, 15, 8)


def test_one_pass_gives_what_the_model_and_its_layer_give():
    model, _ = counted_model()
    one_pass = OnePassModel(model, ("steering", "throttle_brake"), ("convcam",))
    frame = np.random.default_rng(1).uniform(0, 255, (24, 32, 3)).astype(np.float32)
    prediction = one_pass.predict(frame)
    expected = model(frame[None], training=False)
    layer_model = keras.Model(model.input, model.get_layer("convcam").output)
    assert prediction.outputs["steering"] == pytest.approx(float(expected["steering"][0, 0]), 1e-5)
    np.testing.assert_allclose(prediction.activations[0], layer_model(frame[None])[0], atol=1e-5)


def test_two_convcam_layers_come_from_the_same_pass():
    spec = demo_spec()
    one_pass = OnePassModel(build_architecture(spec), spec.output_names, ("conv3", "convcam"))
    frame = np.zeros((72, 128, 3), np.uint8)
    shapes = [maps.shape for maps in one_pass.predict(frame).activations]
    assert shapes == [(9, 16, 48), (9, 16, 64)]


def test_unknown_convcam_layer_names_the_layers_that_exist():
    spec = demo_spec()
    with pytest.raises(ModelError, match=r"'conv9' is not a feature-map layer.*convcam"):
        OnePassModel(build_architecture(spec), spec.output_names, ("conv9",))


def test_feature_map_layers_list_the_backbone_but_not_the_input():
    names = [name for name, _ in feature_map_layers(build_architecture(demo_spec()))]
    assert "frames" not in names
    assert names[-4:] == ["conv1", "conv2", "conv3", "convcam"]


def test_frame_of_the_wrong_shape_is_refused():
    spec = demo_spec()
    one_pass = OnePassModel(build_architecture(spec), spec.output_names, ("convcam",))
    with pytest.raises(ValueError, match=r"\(270, 480, 3\).*\(72, 128, 3\)"):
        one_pass.predict(np.zeros((270, 480, 3), np.uint8))


def test_reloaded_checkpoint_changes_the_next_prediction_of_the_running_model(tmp_path):
    version = create_version(tmp_path)
    save_constant_checkpoint(tmp_path, version, batch=10, steering=0.25)
    loaded = load_version(tmp_path, version)
    spec = loaded.spec
    one_pass = OnePassModel(loaded.model, spec.output_names, (spec.convcam,))
    frame = np.zeros((72, 128, 3), np.uint8)
    assert (loaded.batch, one_pass.predict(frame).outputs["steering"]) == (10, pytest.approx(0.25))
    save_checkpoint(
        constant_model(spec, steering=-0.75), version_dir(tmp_path, version), 20, keep=3
    )
    loaded.reload_latest()
    assert (loaded.batch, one_pass.predict(frame).outputs["steering"]) == (20, pytest.approx(-0.75))


def test_a_version_without_checkpoints_loads_at_batch_zero(tmp_path):
    loaded = load_version(tmp_path, create_version(tmp_path))
    assert loaded.batch == 0 and loaded.spec.line == "model_0000_demo"


def test_grad_cam_is_a_normalised_map_at_the_layers_resolution():
    keras.utils.set_random_seed(3)
    spec = demo_spec()
    gradcam = GradCam(build_architecture(spec), "steering", "convcam")
    frame = np.random.default_rng(3).uniform(0, 255, (72, 128, 3)).astype(np.float32)
    heat = gradcam.heat_map(frame)
    assert heat.shape == (9, 16)
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0, abs=1e-3)


def test_grad_cam_overlay_keeps_the_image_size():
    spec = demo_spec()
    gradcam = GradCam(build_architecture(spec), "steering", "convcam")
    image = np.full((108, 192, 3), 90, np.uint8)
    overlay = gradcam.overlay(np.zeros((72, 128, 3), np.float32), image)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
