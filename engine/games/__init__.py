"""Real games: one TOML profile per game (window, capture, input, unstuck, recorder)."""
