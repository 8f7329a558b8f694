"""Record human play: the player drives a game, the recorder stores frames and inputs as samples."""
