"""Running a connector in a test: its configuration file written, its secrets in its own
environment, the connector itself running against a real watchledger server and a fake media
server, and what it sent to watchledger kept for inspection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from services.connectors.config import load_config
from services.connectors.connector import Connector
from services.connectors.run import opened, started
from services.connectors.upstream import Backoff
from tests.api import settle
from tests.servers import pull

WEBHOOK_SECRET = "hook-secret"


def write_config(
    path: Path,
    *,
    kind: str,
    watchledger: str,
    server_id: str,
    media_url: str,
    users: list[tuple[str, str, str | None]],
    poll_interval: float = 3600,
    secret: bool = True,
) -> Path:
    """A configuration file as connectors.md shows it (``users``: media_user, account, and the
    name of a variable holding the user's own token, or None)."""
    lines = [
        f'state_file = "{path.stem}.sqlite"',
        f"poll_interval = {poll_interval}",
        "[watchledger]",
        f'url = "{watchledger}"',
        f'server_id = "{server_id}"',
        'token_env = "WATCHLEDGER_SERVER_TOKEN"',
        "[media_server]",
        f'kind = "{kind}"',
        f'url = "{media_url}"',
        'token_env = "MEDIA_TOKEN"',
        "[listen]",
        'host = "127.0.0.1"',
        "port = 0",
    ]
    if secret:
        lines.append('secret_env = "CONNECTOR_WEBHOOK_SECRET"')
    for media_user, account, token_env in users:
        lines += ["[[users]]", f'media_user = "{media_user}"', f'account = "{account}"']
        if token_env:
            lines.append(f'token_env = "{token_env}"')
    path.write_text("\n".join(lines) + "\n")
    return path


class Running:
    """A connector running in this process."""

    def __init__(self, connector: Connector, client: TestClient[Any, Any]) -> None:
        self.connector = connector
        self.client = client
        self.sent: list[dict[str, Any]] = []
        self.batches = 0  # requests that carried them
        self.port = 0
        send = connector.upstream.send

        async def recording(events: list[dict[str, object]]) -> list[dict[str, Any]]:
            self.sent.extend(events)
            self.batches += 1
            return await send(events)

        connector.upstream.send = recording  # type: ignore[method-assign]

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook?secret={WEBHOOK_SECRET}"

    async def delivered(self) -> None:
        """Until what the connector queued is in watchledger and applied by its projections."""
        await self.connector.sender.idle()
        await settle(self.client)

    async def drain(self, server_id: str, server: dict[str, str]) -> None:
        """Until the server has no change pending in watchledger: the connector applied (or
        kept) and acknowledged every one (``server``: headers to call as the server)."""
        connector = self.connector
        while True:
            answers = connector.changes_drained
            changes, _ = await pull(self.client, server_id, server)  # no cursor: only a look
            if not changes:
                return
            await connector.drained(answers)

    async def poll(self) -> None:
        """One full poll, now, and its events delivered."""
        done = self.connector.polls_done
        self.connector.poll_soon()
        await self.connector.polled(done)
        await self.delivered()


@contextlib.asynccontextmanager
async def running_connector(
    client: TestClient[Any, Any],
    config: Path,
    env: dict[str, str],
    *,
    clock: Callable[[], datetime] | None = None,
    sender_window: float = 0.01,
) -> AsyncIterator[Running]:
    """The connector of ``config`` running until the block ends (its first poll done), on
    ``clock`` where given (a simulated "now")."""
    loaded = load_config(config, env)
    async with opened(loaded, backoff=Backoff(0.01, 0.2), sender_window=sender_window) as connector:
        if clock is not None:
            connector.clock = clock
        running = Running(connector, client)  # before it starts: it records every send
        async with started(connector):
            running.port = connector.listening_port
            await connector.polled(0)
            await connector.drained(0)  # the baseline request queued when sync went on
            await running.delivered()
            yield running
