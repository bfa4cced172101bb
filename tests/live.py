"""A real `watchledger serve` process for tests whose client is not asyncio (schemathesis).

The process runs against its own database cloned from the session's migrated template, on a
free port; its JSON log lines are collected so a failing test can show the server-side
exception behind a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from services.ops.bench import with_database

WATCHLEDGER = str(Path(sys.executable).with_name("watchledger"))
_STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class LiveService:
    """A running `watchledger serve`: its base URL and what it has logged so far."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="watchledger-log", daemon=True)

    def _wait_until_serving(self) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            assert line, f"watchledger serve exited ({self.process.poll()}) before it served"
            if line.startswith(b"{") and json.loads(line).get("event") == "serving":
                self._reader.start()
                return
        raise AssertionError("watchledger serve did not start serving in time")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith(b"{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self._lines.append(entry)

    @property
    def log_size(self) -> int:
        with self._lock:
            return len(self._lines)

    def errors(self, since: int = 0) -> list[dict[str, Any]]:
        """Log entries at level error or above (``since``: a :attr:`log_size` taken earlier)."""
        with self._lock:
            lines = self._lines[since:]
        return [e for e in lines if e.get("level") in {"error", "critical", "exception"}]

    def describe_errors(self, since: int = 0) -> str:
        """The errors logged since ``since``, for a failure message (the newest three)."""
        # The reader thread may be a moment behind the response the client already has.
        time.sleep(0.05)
        errors = self.errors(since)
        if not errors:
            return "(the service logged no error)"
        parts = []
        for entry in errors[-3:]:
            head = {k: v for k, v in entry.items() if k not in {"exception", "timestamp"}}
            parts.append(f"{json.dumps(head)}\n{entry.get('exception', '')}")
        return "server log:\n" + "\n".join(parts)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def live_service(
    server_url: str, template_name: str, operator_token: str, **settings: str
) -> Iterator[LiveService]:
    """`watchledger serve` on a fresh migrated database and a free port, stopped afterwards;
    ``settings``: environment variables of other settings (``WATCHLEDGER_...``)."""
    name = f"wl_live_{secrets.token_hex(6)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    port = free_port()
    env = {
        **os.environ,
        "WATCHLEDGER_DATABASE_URL": with_database(server_url, name),
        "WATCHLEDGER_OPERATOR_TOKEN": operator_token,
        "WATCHLEDGER_LOG_FORMAT": "json",
        "WATCHLEDGER_HOST": "127.0.0.1",
        "WATCHLEDGER_PORT": str(port),
        **settings,
    }
    process = subprocess.Popen(  # noqa: S603 - our own entry point, from our own virtualenv
        [WATCHLEDGER, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    service = LiveService(process, f"http://127.0.0.1:{port}")
    try:
        service._wait_until_serving()
        yield service
    finally:
        service.stop()
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
