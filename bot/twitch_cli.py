"""`charles-stream twitch auth`: sign the bot's Twitch account in, once.

Example::

    charles-stream twitch auth
    # Open https://www.twitch.tv/activate?... signed in as charlesbot and enter the code ABCD-EFGH

Twitch's device code flow (see `bot/twitch_auth.py`): open the URL, enter the
code as the bot account ([twitch] bot, else the channel's own account), done.
The tokens go to `<data_dir>/secrets/twitch_tokens.json` (mode 0600); the app
refreshes them from then on. Exit 0 when stored, 1 when Twitch refused or the
code expired, 2 for a config without `[twitch] client_id`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from engine.core.cli_args import add_config_argument, add_data_argument, config_from, data_dir_from

log = logging.getLogger("charles.twitch")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `twitch auth`."""
    parser = subparsers.add_parser("twitch", help="Twitch chat: sign the bot account in")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    auth = actions.add_parser(
        "auth",
        help="sign the bot in (open a URL, enter a code); tokens go to <data_dir>/secrets/",
    )
    add_data_argument(auth)
    add_config_argument(auth)
    auth.set_defaults(handler=run_auth)


def run_auth(args: argparse.Namespace) -> int:
    """Run the device code flow and store the tokens; exit 1 if Twitch says no."""
    config = config_from(args)
    from bot.tokens import TokenStore
    from bot.twitch import TwitchSetupProblem
    from bot.twitch_auth import authorize

    store = TokenStore(data_dir_from(args, config))
    try:
        tokens = asyncio.run(
            authorize(config.twitch, store, show=lambda text: print(text, flush=True))
        )
    except TwitchSetupProblem as problem:
        log.error("Twitch sign-in failed: %s", problem)
        return 1
    print(
        f"Signed in as {tokens.login} ({', '.join(tokens.scopes)}); tokens saved to {store.path} "
        "(mode 0600). Start the stream: charles-stream"
    )
    return 0
