"""The connector's documentation against the code, so neither drifts: every TOML sample in the
README (and the compose example) loads with ``load_config``, the Jellyfin template renders to
what the Jellyfin adapter reads, and the deploy files agree with the configuration they run."""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import yaml

from services.connectors.config import ConnectorConfig, Secret, load_config
from services.connectors.jellyfin import JellyfinServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEPLOY = ROOT / "deploy"
_FENCE = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(lang: str) -> list[str]:
    return [m["body"] for m in _FENCE.finditer(README.read_text()) if m["lang"] == lang]


def _variables(table: Any) -> Iterator[str]:
    """Every variable a parsed configuration names (the values of its ``*_env`` keys)."""
    if isinstance(table, dict):
        for key, value in table.items():
            if key.endswith("_env") and isinstance(value, str):
                yield value
            else:
                yield from _variables(value)
    elif isinstance(table, list):
        for item in table:
            yield from _variables(item)


def _load(text: str, tmp_path: Path) -> ConnectorConfig:
    """``text`` loaded as the connector loads its file, each variable it names set."""
    env = {name: f"value-of-{name}" for name in _variables(tomllib.loads(text))}
    env.setdefault("WATCHLEDGER_SERVER_TOKEN", "wls.x.y")  # the default of watchledger.token_env
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return load_config(path, env)


README_SAMPLES = _blocks("toml")


def test_the_readme_has_a_sample_per_server() -> None:
    kinds = [tomllib.loads(text)["media_server"]["kind"] for text in README_SAMPLES]
    assert {"plex", "jellyfin", "emby"} <= set(kinds), kinds


@pytest.mark.parametrize("text", README_SAMPLES, ids=lambda t: t.splitlines()[0][:40])
def test_every_readme_sample_loads(text: str, tmp_path: Path) -> None:
    config = _load(text, tmp_path)
    assert config.users
    assert config.state_file.is_absolute()


def test_the_compose_example_loads(tmp_path: Path) -> None:
    config = _load((DEPLOY / "connector.example.toml").read_text(), tmp_path)
    assert config.listen_host == "0.0.0.0"  # noqa: S104 - in a container, behind its published port


def _render(template: str, data: dict[str, str]) -> bytes:
    """A Handlebars template of plain ``{{Name}}`` values rendered as the Webhook plugin
    renders them: a missing key is empty. (Every value below is free of the characters its
    HTML escaping would change.)"""
    assert not re.search(r"\{\{[#/^>!{]", template), "the template needs only plain values"
    return re.sub(r"\{\{(\w+)\}\}", lambda m: data.get(m[1], ""), template).encode()


def test_the_jellyfin_template_renders_what_the_adapter_reads() -> None:
    (template,) = _blocks("handlebars")
    server = JellyfinServer(
        cast(aiohttp.ClientSession, None), "http://jellyfin.invalid", Secret("KEY", "k")
    )
    user, item = uuid.uuid4(), uuid.uuid4()
    # The plugin's values as it renders them: C#'s "True", Guids with dashes, times as "O".
    common = {
        "ItemId": str(item),
        "ItemType": "Episode",
        "UserId": str(user),
        "UtcTimestamp": "2026-05-08T16:10:53.1234567Z",
    }

    def hooks(**data: str) -> list[Any]:
        return server.hooks(_render(template, {**common, **data}), "text/plain; charset=utf-8")

    (marked,) = hooks(NotificationType="UserDataSaved", SaveReason="TogglePlayed", Played="True")
    assert marked.item_id == item.hex
    assert user.hex in marked.users
    assert marked.played is True
    assert marked.at is not None
    assert marked.at.year == 2026
    assert (
        hooks(NotificationType="UserDataSaved", SaveReason="PlaybackProgress", Played="False") == []
    )
    (stopped,) = hooks(NotificationType="PlaybackStop", PlayedToCompletion="True")
    assert stopped.item_id == item.hex
    assert user.hex in stopped.users
    assert hooks(NotificationType="PlaybackStop", PlayedToCompletion="False") == []
    (added,) = hooks(NotificationType="ItemAdded")
    assert added.event == "added"


def test_compose_runs_the_example_configuration() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["connector-plex"]
    example = tomllib.loads((DEPLOY / "connector.example.toml").read_text())
    config_path = service["command"][service["command"].index("--config") + 1]
    mounts = [v for v in service["volumes"] if isinstance(v, dict)]
    assert any(m["target"] == config_path and m.get("read_only") for m in mounts)
    assert service["profiles"] == ["connector"]
    assert service["depends_on"]["watchledger"]["condition"] == "service_healthy"
    port = example["listen"]["port"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
    assert f"{port}:{port}" in service["ports"]
    assert set(_variables(example)) <= set(service["environment"])
    state_volume = next(v for v in service["volumes"] if isinstance(v, str))
    assert example["state_file"].startswith(state_volume.split(":")[1] + "/")


def test_the_systemd_unit_runs_one_connector_per_instance() -> None:
    unit = (DEPLOY / "systemd" / "watchledger-connect@.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#")
    assert lines["ExecStart"].endswith("connect --config /etc/watchledger/connect/%i.toml")
    assert lines["EnvironmentFile"] == "/etc/watchledger/connect/%i.env"
    assert lines["StateDirectory"] == "watchledger-connect/%i"
    assert lines["Restart"] == "on-failure"
    assert lines["RestartPreventExitStatus"] == "2 3"  # a configuration error, a refusal
    main = (DEPLOY / "systemd" / "watchledger.service").read_text()
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert f"{hardening}={lines[hardening]}" in main


def test_the_readme_state_files_fit_the_systemd_state_directory() -> None:
    """A sample named /etc/watchledger/connect/NAME.toml keeps its state where the unit's
    instance NAME may write: /var/lib/watchledger-connect/NAME/."""
    for text in README_SAMPLES:
        named = re.match(r"# /etc/watchledger/connect/(?P<name>[^/]+)\.toml\n", text)
        if named:
            state = tomllib.loads(text)["state_file"]
            assert state.startswith(f"/var/lib/watchledger-connect/{named['name']}/"), state
