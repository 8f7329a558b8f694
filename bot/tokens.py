"""The bot's Twitch tokens on disk: `<data_dir>/secrets/twitch_tokens.json`, mode 0600.

Example::

    store = TokenStore("data")
    store.save(TwitchTokens(access="...", refresh="...", user_id="1002", login="charlesbot",
                            scopes=("user:read:chat", "user:write:chat"), client_id="abc"))
    tokens = store.load()          # None until `charles-stream twitch auth` ran

`charles-stream twitch auth` writes the file; the bot rewrites it whenever
twitchio refreshes the access token (the device code flow's refresh tokens
are single-use, so the newest one must be on disk before the old one is
gone). The folder is 0700 and the file 0600 from the moment it exists, and it
is replaced atomically: no other user can read it, and no crash leaves half a
token. Nothing here ever goes into config.toml.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.core.errors import ConfigError
from engine.core.secrets import SECRETS_DIR

TOKENS_FILE = "twitch_tokens.json"
# What the bot asks Twitch for: read the channel's chat (EventSub channel.chat.message) and
# post in it (Helix Send Chat Message), as its own account.
SCOPES = ("user:read:chat", "user:write:chat")


@dataclass(frozen=True)
class TwitchTokens:
    """A user access token with its refresh token, whose account it is, and for which app."""

    access: str
    refresh: str
    user_id: str
    login: str
    scopes: tuple[str, ...]
    client_id: str


class TokenStore:
    """Reads and atomically rewrites the token file in `<data_dir>/secrets/`."""

    def __init__(self, data_dir: str | Path) -> None:
        self.folder = Path(data_dir) / SECRETS_DIR
        self.path = self.folder / TOKENS_FILE

    def load(self) -> TwitchTokens | None:
        """The stored tokens, or None if `twitch auth` has not run; `ConfigError` if unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot read the Twitch tokens: {error}") from None
        try:
            data = json.loads(text)
            return TwitchTokens(
                access=str(data["access"]),
                refresh=str(data["refresh"]),
                user_id=str(data["user_id"]),
                login=str(data["login"]),
                scopes=tuple(str(scope) for scope in data["scopes"]),
                client_id=str(data["client_id"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{self.path} is not a token file ({error!r}); run `charles-stream twitch auth` "
                "to write a new one"
            ) from None

    def save(self, tokens: TwitchTokens) -> None:
        """Write the tokens: folder 0700, file 0600 from creation, replaced atomically."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # mkdir's mode is filtered by the umask
        temporary = self.folder / f".{TOKENS_FILE}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(asdict(tokens), file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
