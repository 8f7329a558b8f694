"""Model line specs: shipped lines are valid; a mistake in a spec names file, key and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.config import OutputBinsConfig, load_config
from engine.core.errors import ConfigError, ModelError, UsageError
from models.spec import available_lines, load_spec, parse_spec

SPEC_DIR = Path(__file__).resolve().parent.parent / "models"
XCEPTION_TOML = (SPEC_DIR / "model_0003_xception.toml").read_text(encoding="utf-8")


def spec_file(tmp_path: Path, text: str, line: str = "model_0099_test") -> Path:
    path = tmp_path / f"{line}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_spec_and_registry_import_without_tensorflow():
    code = (
        "import sys, models.spec, models.registry, models.checkpoints, models.cli; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]


def test_every_shipped_line_is_a_valid_spec():
    lines = available_lines()
    assert {"model_0000_demo", "model_0003_xception", "model_0004_inceptionresnetv2"} <= set(lines)
    for line in lines:
        assert load_spec(line).line == line


def test_xception_line_is_the_seed_pages_architecture():
    spec = load_spec("model_0003_xception")
    assert spec.backbone == "xception" and spec.weights == "none"
    assert (spec.input.height, spec.input.width, spec.input.channels) == (270, 480, 3)
    assert spec.common.units == 1024
    assert spec.heads.widths(spec.common.units) == (256, 64, 16)
    assert spec.output_names == ("steering", "throttle_brake")


def test_unknown_key_names_file_key_and_accepted_keys(tmp_path):
    path = spec_file(tmp_path, XCEPTION_TOML.replace("[common]", "[common]\nunit = 3"))
    with pytest.raises(ModelError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and "'common.unit'" in message and "units" in message


def test_unknown_backbone_names_value_and_accepted_backbones(tmp_path):
    path = spec_file(tmp_path, XCEPTION_TOML.replace('"xception"', '"resnet"', 1))
    with pytest.raises(ModelError, match=r"'backbone' = 'resnet' is not accepted.*'small_cnn'"):
        load_spec(path)


def test_missing_section_is_named(tmp_path):
    text = XCEPTION_TOML.replace("[training]", "[not_training]")
    with pytest.raises(ModelError, match=r"missing key\(s\) training"):
        load_spec(spec_file(tmp_path, text))


def test_output_without_a_name_is_named_by_position(tmp_path):
    text = XCEPTION_TOML.replace('name = "throttle_brake"', "")
    with pytest.raises(ModelError, match=r"'outputs\[1\]' has no 'name'"):
        load_spec(spec_file(tmp_path, text))


def test_duplicate_output_names_are_rejected(tmp_path):
    text = XCEPTION_TOML.replace('name = "throttle_brake"', 'name = "steering"')
    with pytest.raises(ModelError, match=r"'outputs\[1\].name' = 'steering' is a duplicate"):
        load_spec(spec_file(tmp_path, text))


def test_input_smaller_than_the_backbone_accepts_is_rejected(tmp_path):
    text = XCEPTION_TOML.replace("height = 270", "height = 64")
    with pytest.raises(ModelError, match=r"'input.height' = 64 .* accepted: 71 or more"):
        load_spec(spec_file(tmp_path, text))


def test_heads_that_shrink_to_zero_width_are_rejected(tmp_path):
    text = XCEPTION_TOML.replace("units = 1024", "units = 32")
    with pytest.raises(ModelError, match="width 0"):
        load_spec(spec_file(tmp_path, text))


def test_imagenet_weights_need_a_backbone_that_has_them(tmp_path):
    text = XCEPTION_TOML.replace('"xception"', '"small_cnn"', 1).replace(
        'weights = "none"', 'weights = "imagenet"'
    )
    with pytest.raises(ModelError, match=r"'weights' = 'imagenet' is not available .*small_cnn"):
        load_spec(spec_file(tmp_path, text))


def test_an_output_may_override_its_balancing_bins(tmp_path):
    text = XCEPTION_TOML.replace(
        'name = "throttle_brake"',
        'name = "throttle_brake"\nbins = { kind = "trigger", divisions = 5 }',
    )
    spec = load_spec(spec_file(tmp_path, text))
    assert spec.outputs[0].bins is None
    assert spec.outputs[1].bins == OutputBinsConfig(kind="trigger", divisions=5)


def test_unknown_line_lists_the_available_lines():
    with pytest.raises(UsageError, match=r"unknown model line 'model_9999'.*model_0003_xception"):
        load_spec("model_9999")


def test_a_line_name_that_looks_like_a_version_is_rejected():
    with pytest.raises(ModelError, match="not a usable line name"):
        parse_spec(XCEPTION_TOML, line="model_0003_xception_v2", source="test")


def test_outputs_override_keeps_existing_outputs_and_adds_default_ones(tmp_path):
    text = XCEPTION_TOML.replace('"steering"\nloss = "mse"', '"steering"\nloss = "mae"')
    spec = load_spec(spec_file(tmp_path, text)).with_overrides(
        outputs=["steering", "acceleration", "braking"]
    )
    assert spec.output_names == ("steering", "acceleration", "braking")
    assert [output.loss for output in spec.outputs] == ["mae", "mse", "mse"]


def test_frames_override_out_of_range_names_the_flag_and_range():
    with pytest.raises(UsageError, match="--frames 0 is out of range; accepted: 1 to 16"):
        load_spec("model_0003_xception").with_overrides(frames=0)


def test_bad_output_override_names_the_flag_and_the_value():
    with pytest.raises(UsageError, match=r"--outputs steering,Brake: .*\.name' = 'Brake'"):
        load_spec("model_0003_xception").with_overrides(outputs=["steering", "Brake"])


def test_backbone_override_drops_the_old_backbones_convcam_layer():
    spec = load_spec("model_0003_xception").with_overrides(backbone="inception_resnet_v2")
    assert spec.convcam == "conv_7b_ac"


def test_config_imagenet_weights_accept_only_backbones_that_have_them(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[models.imagenet_weights]\nsmall_cnn = "w.h5"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'small_cnn' is not accepted; use one of 'xception'"):
        load_config(config)
