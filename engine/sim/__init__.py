"""The built-in driving game: what every part of charles-stream runs against without GTA V.

Example::

    from engine.core.config import default_config
    from engine.sim.autopilot import Autopilot
    from engine.sim.game import Game

    config = default_config()
    game = Game(config.sim, seed=7)
    pilot = Autopilot(config.autopilot, seed=7)
    for _ in range(300):                       # 10 s of game time at 30 Hz
        game.set_controls(pilot.decide(game))
        game.tick()
    frame = game.render_hood()                 # what the model sees
    print(game.telemetry())

Modules, from the ground up: `track` (procedural closed tracks), `scenery`
and `world` (rasters, ponds, roadside objects of a seed), `physics` (the
car), `camera`, `ground`, `sky`, `sprites`, `meshes` and `views` (the
pseudo-3D renderers), `game` (the contract other parts use), `autopilot`
(the NPC driver), `runner`, `window` and `keyboard` (running it) and `cli`.
"""
