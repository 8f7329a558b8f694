"""Secrets charles-stream keeps on disk, outside config.toml: the hub token and TLS files.

Example::

    token = hub_token("data")    # data/secrets/hub_token, created on first use

The token lets a process speak to the hub. The app hands it to its children
through the environment; a node on another machine (`charles-stream node
...`, engine/node/cli.py) is given it once and keeps it in its own
`<data_dir>/secrets/hub-HOST-PORT.token`, with the hub's pinned certificate
fingerprint beside it (`hub-HOST-PORT.fingerprint`); the hub keeps its TLS certificate and key here
(engine/core/tls.py). The folder is 0700 and the files 0600, written
atomically, so no other user on the machine can read them and no crash
leaves half a token behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from engine.core.errors import ConfigError

SECRETS_DIR = "secrets"
HUB_TOKEN_FILE = "hub_token"


def hub_token(data_dir: str | Path) -> str:
    """The hub token in `<data_dir>/secrets/hub_token`, created (0600, folder 0700) if absent."""
    path = secret_path(data_dir, HUB_TOKEN_FILE)
    if not path.exists():
        # Two processes starting at once both land here; _create_private lets only one win.
        _create_private(path, secrets.token_urlsafe(32))
    token = path.read_text(encoding="ascii").strip()
    if not token:
        raise ConfigError(f"{path} is empty: delete it and a new token is created on the next run")
    os.chmod(path, 0o600)
    return token


def secret_path(data_dir: str | Path, name: str) -> Path:
    """`<data_dir>/secrets/<name>`, its folder created 0700 (and made 0700 if it was not)."""
    folder = Path(data_dir) / SECRETS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing folder: be explicit.
    os.chmod(folder, 0o700)
    return folder / name


def read_secret(data_dir: str | Path, name: str) -> str | None:
    """The stripped text of `<data_dir>/secrets/<name>`, or None when absent or empty."""
    path = Path(data_dir) / SECRETS_DIR / name
    if not path.is_file():
        return None
    return path.read_text(encoding="ascii").strip() or None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` 0600 from creation on, replacing it atomically if it exists.

    For secrets that change on purpose (a node's stored token, a re-pinned
    fingerprint); `hub_token` keeps an existing token instead.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(text if text.endswith("\n") else text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _create_private(path: Path, text: str) -> None:
    # 0600 from creation on: the token is never readable by others, not even briefly. The
    # complete file is linked into place, so a reader never sees half a token, and an existing
    # token (another process won the race) is kept.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
