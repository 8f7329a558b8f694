"""A tiny stream config for tests that run real node processes (tests/test_nodes.py, test_app.py).

Small frames and buffers, coarse bins and frequent NPC mistakes make the first
balanced sets, batches and checkpoints come within seconds; the demo line trains.
"""

TINY_STREAM_CONFIG = """
[app]
data_dir = "{data_dir}"

[obs]
enabled = false

[sim]
hood_width = 96
hood_height = 54
chase_width = 64
chase_height = 36
window = "off"

[data]
frame_width = 32
frame_height = 18
buffer_capacity = 100
ready_threshold = 0.2
set_window_s = 60.0

[data.bins]
steering = {{ kind = "axis", divisions = 2 }}
throttle_brake = {{ kind = "trigger_pair", divisions = 2 }}

[autopilot]
perturbation_interval_s = 1.0
perturbation_strength = 1.0

[collector]
episode_s = 30.0
report_interval_s = 2.0
dead_zone = 0.1

[trainer]
checkpoint_every = 2
log_every = 1

[capture]
chase_hz = 0.0

[driver]
frames_hz = 2.0
reload_interval_s = 1.0
"""
