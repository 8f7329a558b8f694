"""Frame codecs: JPEG or raw pixels, each frame saying which, mixed freely in one database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from msgspec.structs import replace

from engine.collector.collector import Collector
from engine.core.config import load_config
from engine.core.errors import ConfigError
from engine.data.batches import BatchSource
from engine.data.buffers import SampleBuffers
from engine.data.frames import (
    RAW_MAGIC,
    FrameError,
    decode_frame,
    encode_frame,
    frame_codec,
)
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from tests.data_helpers import HEIGHT, WIDTH, full_set, grey_level
from tests.test_collector import CONFIG as COLLECTOR_CONFIG
from tests.test_data_frames import gradient_frame

OUTPUTS = ("steering", "throttle_brake")
# Only ends a hung test: a passing one never waits this long, however busy the machine.
WAIT_S = 60.0


def test_a_raw_frame_round_trips_exactly_behind_its_header():
    frame = gradient_frame(128, 72)
    raw = encode_frame(frame, quality=90, codec="raw")
    assert raw.startswith(RAW_MAGIC) and len(raw) == 9 + 128 * 72 * 3
    assert frame_codec(raw) == "raw"
    decoded = decode_frame(raw, expected=(128, 72))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, frame)


def test_a_jpeg_frame_still_round_trips_and_says_it_is_jpeg():
    frame = gradient_frame(128, 72)
    jpeg = encode_frame(frame, quality=90, codec="jpeg")
    assert jpeg[:2] == b"\xff\xd8" and frame_codec(jpeg) == "jpeg"
    assert np.abs(decode_frame(jpeg, expected=(128, 72)).astype(int) - frame).mean() < 2.0


def test_a_raw_frame_is_resized_to_the_batch_size_like_a_jpeg():
    frame = gradient_frame(480, 270)
    raw = decode_frame(encode_frame(frame, 90, "raw"), expected=(480, 270), size=(128, 72))
    jpeg = decode_frame(encode_frame(frame, 90, "jpeg"), expected=(480, 270), size=(128, 72))
    assert raw.shape == jpeg.shape == (72, 128, 3)
    assert np.abs(raw.astype(int) - jpeg).mean() < 2.0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-1], "needs 6912 bytes of pixels, has 6911"),
        (lambda raw: raw + b"\x00", "needs 6912 bytes of pixels, has 6913"),
        (lambda raw: raw[:6], "shorter than its header"),
        (lambda raw: raw[:8] + b"\x04" + raw[9:], r"32x72x4; accepted: a positive size with 3"),
        (lambda raw: RAW_MAGIC + b"\x00\x00" + raw[6:], r"0x72x3; accepted: a positive size"),
    ],
    ids=["truncated", "trailing byte", "header cut", "four channels", "zero width"],
)
def test_a_damaged_raw_frame_is_refused_with_what_is_wrong(damage, message):
    raw = encode_frame(gradient_frame(32, 72), quality=90, codec="raw")
    with pytest.raises(FrameError, match=message):
        decode_frame(damage(raw))


def test_a_raw_frame_of_another_size_than_stored_is_refused():
    raw = encode_frame(gradient_frame(240, 135), quality=90, codec="raw")
    with pytest.raises(FrameError, match="frame is 240x135, expected 480x270"):
        decode_frame(raw, expected=(480, 270), size=(128, 72))


def test_an_unknown_codec_is_refused_naming_the_accepted_ones():
    with pytest.raises(FrameError, match=r"frame codec 'png' is unknown; accepted: jpeg, raw"):
        encode_frame(gradient_frame(32, 18), quality=90, codec="png")  # type: ignore[arg-type]


def test_the_config_refuses_an_unknown_frame_codec_naming_what_is_accepted(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[data]\nframe_codec = "png"\n', encoding="utf-8")
    expected = r"'data.frame_codec' = 'png' is not accepted; use one of 'jpeg', 'raw'"
    with pytest.raises(ConfigError, match=expected) as error:
        load_config(path)
    assert str(path) in str(error.value)
    path.write_text('[data]\nframe_codec = "raw"\nframe_width = 128\nframe_height = 72\n', "utf-8")
    assert load_config(path).data.frame_codec == "raw"


def test_the_config_refuses_raw_frames_whose_balanced_set_exceeds_a_hub_message(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[data]\nframe_codec = "raw"\n', encoding="utf-8")  # at 480x270
    expected = (
        r"'data.frame_codec' = 'raw' at 480x270 makes a balanced set of 23 frames 8.5 MB, "
        r"over the 8 MB a hub message may carry; accepted: 'jpeg' at this size, or a smaller"
    )
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
    path.write_text('[data]\nframe_codec = "raw"\nframe_width = 240\nframe_height = 135\n', "utf-8")
    assert load_config(path).data.frame_codec == "raw"


def test_a_database_holding_both_codecs_gives_every_frame_back_as_stored(tmp_path):
    storage = SampleStorage(tmp_path / "samples.db", capacity=92)
    buffers = SampleBuffers.open(storage, OUTPUTS, ready_threshold=0.9, seed=2)
    for codec in ("jpeg", "raw", "jpeg", "raw"):  # a streamer switching back and forth
        buffers.add_set(full_set("steering", codec=codec))
        buffers.add_set(full_set("throttle_brake", codec=codec))
    codecs = [frame_codec(row.frame) for row in storage.load()]
    assert codecs.count("raw") == codecs.count("jpeg") == 42 + 46
    # Refilled from storage, as a restarted trainer is: frames come back as stored.
    refilled = SampleBuffers.open(storage, OUTPUTS, ready_threshold=0.9, seed=2)
    with BatchSource(
        refilled, batch_size=160, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS
    ) as source:
        batch = source.next_batch(timeout=WAIT_S)
    assert len(batch.x) == 160
    for frame, steering in zip(batch.x, batch.y["steering"], strict=True):
        assert abs(frame.mean() - grey_level(float(steering))) < 2.5
    assert storage.counters().get("corrupt_samples", 0) == 0


def test_a_corrupt_raw_frame_is_discarded_and_replaced_like_a_corrupt_jpeg(tmp_path):
    storage = SampleStorage(tmp_path / "samples.db", capacity=42)
    buffers = SampleBuffers.open(storage, ("steering",), ready_threshold=1.0, seed=5)
    good = full_set("steering", codec="raw")
    cut = [replace(s, frame=s.frame[:-10]) for s in good.samples[:7]]
    bad_jpeg = [replace(s, frame=b"\xff\xd8 not a jpeg") for s in good.samples[7:14]]
    # A whole raw frame of twice the width stored with the sample: the wrong shape.
    wide = encode_frame(np.zeros((HEIGHT, WIDTH * 2, 3), np.uint8), quality=90, codec="raw")
    wrong_shape = [replace(s, frame=wide) for s in good.samples[14:]]
    buffers.add_set(good)
    buffers.add_set(SampleSet("steering", tuple(cut + bad_jpeg + wrong_shape)))
    with BatchSource(buffers, batch_size=21, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        batch = source.next_batch(timeout=WAIT_S)
    assert len(batch.x) == 21
    for frame, steering in zip(batch.x, batch.y["steering"], strict=True):
        assert abs(frame.mean() - grey_level(float(steering))) < 2.5
    assert storage.counters()["corrupt_samples"] == 21
    assert buffers.fill() == {"steering": 0}


@pytest.mark.slow
def test_a_collector_configured_for_raw_sends_raw_frames(tmp_path):
    path = tmp_path / "config.toml"
    text = COLLECTOR_CONFIG.format(data_dir=tmp_path / "data")
    path.write_text(text.replace("[data]\n", '[data]\nframe_codec = "raw"\n', 1), "utf-8")
    sets: list[SampleSet] = []
    Collector(load_config(path), seed=5, source="test", sink=sets.append).run(game_seconds=20.0)
    assert sets
    for sample in (s for sample_set in sets for s in sample_set.samples):
        assert frame_codec(sample.frame) == "raw"
        assert decode_frame(sample.frame, expected=(32, 18)).shape == (18, 32, 3)


def test_a_recorder_configured_for_raw_stores_raw_frames(tmp_path):
    from engine.recorder.inputs import KeyBindings, KeyboardInput
    from engine.recorder.recorder import Recorder
    from tests.test_recorder_labels import HZ, FakeClock, ScriptedKeys, grey_frame, small_config

    keys, clock = ScriptedKeys(), FakeClock()
    cycle = iter([{"Left"}, set(), {"Right"}] * 100)

    def sleep(seconds: float) -> None:
        clock.now += max(seconds, 1 / HZ)
        keys.down = next(cycle)

    config = small_config()
    config = replace(config, data=replace(config.data, frame_codec="raw"))
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = Recorder(
            config,
            source="human:ada",
            grab=grey_frame,
            inputs=KeyboardInput(KeyBindings(), keys),
            sink=storage.insert_set,
            clock=clock,
            sleep=sleep,
        )
        assert recorder.run(samples=6).samples_stored == 6
        rows = storage.load()
    assert [frame_codec(row.frame) for row in rows] == ["raw"] * 6
    for row in rows:
        assert np.array_equal(decode_frame(row.frame, expected=(32, 18)), np.full((18, 32, 3), 128))


@pytest.mark.tf
def test_a_trainer_trains_on_a_database_holding_both_codecs(tmp_path):
    from engine.trainer.trainer import Trainer
    from tests.test_trainer import VERSION, batch_loss, create_version, fixed_batch, make_config

    config = make_config(
        tmp_path,
        data='ready_threshold = 0.1\nframe_codec = "raw"\nframe_width = 32\nframe_height = 18',
    )
    create_version(Path(config.app.data_dir))
    path = default_storage_path(config)
    with SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        for codec in ("jpeg", "raw") * 5:  # what a streamer who switched codecs has stored
            for output in OUTPUTS:
                storage.insert_set(full_set(output, codec=codec))
    x, y = fixed_batch()
    with Trainer(config, VERSION, streamed=False, seed=1) as trainer:
        before = batch_loss(trainer, x, y)
        result = trainer.run(max_batches=40)
        after = batch_loss(trainer, x, y)
        corrupt = trainer.buffers.storage.counters().get("corrupt_samples", 0)
    assert result.batches == 40 and corrupt == 0
    assert after < 0.5 * before


def test_the_shipped_config_stores_raw_frames_at_the_demo_size():
    # Raw measured cheaper end to end with samples.db's 32 KiB pages, and off the step's path.
    config = load_config(Path(__file__).resolve().parent.parent / "config.toml")
    assert (config.data.frame_width, config.data.frame_height) == (128, 72)
    assert config.data.frame_codec == "raw"
