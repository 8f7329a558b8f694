"""The hub token lives in data/secrets/, readable by its owner only."""

from __future__ import annotations

import stat

import pytest

from engine.core.errors import ConfigError
from engine.core.secrets import hub_token


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_created_0600_in_a_0700_folder(tmp_path):
    token = hub_token(tmp_path)

    path = tmp_path / "secrets" / "hub_token"
    assert path.read_text().strip() == token
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_token_is_long_and_url_safe(tmp_path):
    token = hub_token(tmp_path)

    assert len(token) >= 40
    assert all(char.isalnum() or char in "-_" for char in token)


def test_token_is_reused_on_the_next_call(tmp_path):
    assert hub_token(tmp_path) == hub_token(tmp_path)


def test_token_is_not_world_or_group_readable_even_with_a_lax_umask(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir(mode=0o777)
    (tmp_path / "secrets").chmod(0o777)

    hub_token(tmp_path)

    assert mode(tmp_path / "secrets") & 0o077 == 0
    assert mode(tmp_path / "secrets" / "hub_token") & 0o077 == 0


def test_no_temporary_file_is_left_behind(tmp_path):
    hub_token(tmp_path)

    assert [path.name for path in (tmp_path / "secrets").iterdir()] == ["hub_token"]


def test_an_empty_token_file_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hub_token").write_text("\n")

    with pytest.raises(ConfigError, match=r"secrets/hub_token is empty"):
        hub_token(tmp_path)
