"""A connector's configuration (connectors.md, "Configuration"): every mistake one line naming
the key, secrets only from the environment and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.connectors.config import ConfigError, load_config
from services.ops.cli import main

GOOD = """
state_file = "/var/lib/watchledger/plex-living-room.sqlite"
poll_interval = 300

[watchledger]
url = "http://127.0.0.1:8080"
server_id = "plex-living-room"
token_env = "WATCHLEDGER_SERVER_TOKEN"

[media_server]
kind = "plex"
url = "http://127.0.0.1:32400"
token_env = "PLEX_TOKEN"

[listen]
host = "127.0.0.1"
port = 8765
secret_env = "CONNECTOR_WEBHOOK_SECRET"

[[users]]
media_user = "ann"
account = "ann"
token_env = "PLEX_TOKEN_ANN"
"""
ENV = {
    "WATCHLEDGER_SERVER_TOKEN": "wls.secret-server-token",
    "PLEX_TOKEN": "secret-plex-token",
    "CONNECTOR_WEBHOOK_SECRET": "secret-hook",
    "PLEX_TOKEN_ANN": "secret-ann-token",
}


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    config = load_config(written(tmp_path, GOOD), ENV)
    assert (config.kind, config.server_id, config.listen_port) == ("plex", "plex-living-room", 8765)
    assert config.server_token.reveal() == "wls.secret-server-token"
    assert config.users[0].token is not None
    assert not any(value in repr(config) for value in ENV.values())  # secrets never show


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("poll_interval = 300", "poll_interval = 0"), "poll_interval"),
        (('kind = "plex"', 'kind = "kodi"'), "media_server.kind"),
        (('url = "http://127.0.0.1:8080"', 'url = "ftp://x"'), "watchledger.url"),
        (("port = 8765", "port = 70000"), "listen.port"),
        (('account = "ann"', "account = 3"), "users[0].account"),
        (('token_env = "PLEX_TOKEN"', 'token_env = "PLEX TOKEN"'), "media_server.token_env"),
        (("[listen]", "[listen]\ncolour = 1"), "listen"),
        (('server_id = "plex-living-room"\n', ""), "watchledger"),
        (('token_env = "PLEX_TOKEN_ANN"', 'token_env = "UNSET_VARIABLE"'), "users[0].token_env"),
        (('secret_env = "CONNECTOR_WEBHOOK_SECRET"', 'secret_env = "NOPE"'), "listen.secret_env"),
        (("[[users]]", "[[users]]\nmedia_user = 'ann'\naccount = 'x'\n[[users]]"), "media_user"),
        (("poll_interval = 300", "poll_interval = = 3"), "not valid TOML"),
    ],
)
def test_each_mistake_is_one_line_naming_its_key(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        load_config(written(tmp_path, GOOD.replace(old, new, 1)), ENV)
    message = str(caught.value)
    assert "\n" not in message
    assert key in message, message
    assert not any(v in message for v in ENV.values())


def test_a_users_own_token_is_for_plex_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"users\[0\]\.token_env: .*Plex"):
        load_config(written(tmp_path, GOOD.replace('kind = "plex"', 'kind = "emby"')), ENV)


def test_connect_says_a_configuration_error_in_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_isolated: None
) -> None:
    path = written(tmp_path, GOOD.replace('kind = "plex"', 'kind = "kodi"'))
    assert main(["connect", "--config", str(path), "--log-format", "console"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "media_server.kind" in err[0]


def test_connect_needs_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_isolated: None
) -> None:
    assert main(["connect", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the configuration" in capsys.readouterr().err


async def test_a_media_server_error_names_no_user_item_or_token() -> None:
    import aiohttp

    from services.connectors.mediahttp import call
    from services.connectors.model import MediaServerError

    url = "http://127.0.0.1:1/Users/e6a9dd89fd954d689870e7e0e3e72947/PlayedItems/240270"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(MediaServerError) as caught:
            await call(http, "POST", url + "?api_key=secret", headers={})
    message = str(caught.value)
    assert "/Users/{id}/PlayedItems/{id}" in message
    assert not any(text in message for text in ("e6a9dd89", "240270", "secret"))
