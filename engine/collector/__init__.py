"""NPC data collectors: the built-in game driven by its autopilot, balanced into sample sets."""
