"""`charles-stream twitch auth`'s work: sign the bot in with Twitch's device code flow.

Example::

    tokens = await authorize(config.twitch, TokenStore("data"), show=print)
    # prints: Open https://www.twitch.tv/activate?... and enter ABCD-EFGH (as charlesbot)

The device code flow is the least effort for a streamer: no client secret
(the application is registered as a Public client), no local web server, no
redirect URL to configure; one code to enter on twitch.tv while signed in as
the bot account. twitchio's `OAuth` speaks it; the tokens land in
`<data_dir>/secrets/twitch_tokens.json` (0600) and the bot refreshes them
from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import twitchio
from twitchio.authentication import OAuth, Scopes

from bot.tokens import SCOPES, TokenStore, TwitchTokens
from bot.twitch import TwitchSetupProblem, use_endpoints
from engine.core.config import TwitchConfig
from engine.core.errors import ConfigError

log = logging.getLogger("charles.twitch")


async def authorize(
    config: TwitchConfig, store: TokenStore, *, show: Callable[[str], None]
) -> TwitchTokens:
    """Run the device code flow for the bot account; store and return its tokens.

    `show` tells the streamer where to enter which code. Raises `ConfigError`
    without a client ID, `TwitchSetupProblem` when Twitch refuses, the code
    expires or the wrong account signs in.
    """
    if not config.client_id:
        raise ConfigError(
            "'twitch.client_id' is empty; register an application (client type Public) at "
            "dev.twitch.tv/console and put its Client ID in [twitch] client_id"
        )
    if not config.bot_login:
        raise ConfigError("'twitch.channel' (or 'twitch.bot') is empty: whose chat should I join?")
    use_endpoints(config)
    oauth = OAuth(client_id=config.client_id, scopes=Scopes(SCOPES))
    try:
        flow = await oauth.device_code_flow()
        show(
            f"Open {flow['verification_uri']} signed in as {config.bot_login} and enter the code "
            f"{flow['user_code']} (valid for {int(flow['expires_in']) // 60} min)."
        )
        async with asyncio.timeout(float(flow["expires_in"])):
            granted = await oauth.device_code_authorization(
                device_code=flow["device_code"], interval=int(flow["interval"])
            )
        validated = await oauth.validate_token(granted["access_token"])
    except TimeoutError:
        raise TwitchSetupProblem("the code expired before it was entered; run this again") from None
    except twitchio.DeviceCodeFlowException as error:
        raise TwitchSetupProblem(
            f"Twitch refused the sign-in ({error.reason.value}); run this again"
        ) from None
    except (twitchio.HTTPException, ValueError) as error:
        raise TwitchSetupProblem(f"Twitch refused the sign-in: {error}") from None
    except (OSError, aiohttp.ClientError) as error:
        raise TwitchSetupProblem(
            f"cannot reach Twitch at {config.auth_url} ([twitch] auth_url): {error}"
        ) from None
    finally:
        await oauth.close()
    login = (validated.login or "").lower()
    if login != config.bot_login:
        raise TwitchSetupProblem(
            f"signed in as {login!r}, but the bot account is {config.bot_login!r} ([twitch] bot, "
            f"else channel); sign out on twitch.tv and enter a new code as {config.bot_login}, "
            "or set [twitch] bot"
        )
    tokens = TwitchTokens(
        access=granted["access_token"],
        refresh=granted["refresh_token"],
        user_id=str(validated.user_id),
        login=login,
        scopes=tuple(validated.scopes),
        client_id=config.client_id,
    )
    store.save(tokens)
    log.info("Twitch tokens for %s saved to %s", login, store.path)
    return tokens
