"""The connector's local state: one SQLite file (``state_file``).

It holds the item map (item -> title ids), the last seen user data per user and item (so a poll
can tell what changed), the writes the connector is making (so what it applied is not reported
back as a new action), the events not yet accepted by watchledger (so a webhook answered 200 is
not lost in a crash) and the changes cursor. Losing the file costs a re-scan, never wrong data.

Every call is a short local transaction, made on the event loop's thread: SQLite in WAL mode
answers these in microseconds, far below what a thread hop would cost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from services.http.wire import StateChange

from .model import Item, UserData

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    kind    TEXT NOT NULL,
    ids     TEXT NOT NULL,   -- JSON array, the guid first
    edition TEXT
);
CREATE TABLE IF NOT EXISTS item_ids (
    title_id TEXT NOT NULL,
    item_id  TEXT NOT NULL REFERENCES items ON DELETE CASCADE,
    PRIMARY KEY (title_id, item_id)
);
CREATE INDEX IF NOT EXISTS item_ids_item ON item_ids (item_id);
CREATE TABLE IF NOT EXISTS seen (
    user_key  TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    played    INTEGER NOT NULL,
    viewed_at REAL,
    rating    INTEGER,
    rated_at  REAL,
    in_progress INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_key, item_id)
);
CREATE TABLE IF NOT EXISTS applying (
    user_key TEXT NOT NULL,
    item_id  TEXT NOT NULL,
    field    TEXT NOT NULL,  -- 'played' or 'rating'
    value    TEXT NOT NULL,  -- JSON: the value being written
    PRIMARY KEY (user_key, item_id, field)
);
CREATE TABLE IF NOT EXISTS added (
    item_id TEXT PRIMARY KEY,
    at      REAL NOT NULL
);
-- Changes for titles the library did not hold when they came (acknowledged to watchledger, so
-- kept here): applied when an item with one of their ids appears.
CREATE TABLE IF NOT EXISTS deferred (
    account TEXT NOT NULL,
    guid    TEXT NOT NULL,
    change  TEXT NOT NULL,   -- JSON: the change, as delivered
    PRIMARY KEY (account, guid)
);
CREATE TABLE IF NOT EXISTS deferred_ids (
    title_id TEXT NOT NULL,
    account  TEXT NOT NULL,
    guid     TEXT NOT NULL,
    PRIMARY KEY (title_id, account, guid),
    FOREIGN KEY (account, guid) REFERENCES deferred ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS deferred_ids_change ON deferred_ids (account, guid);
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL      -- JSON: one server event, as sent
);
"""


class StateError(Exception):
    """The state file cannot be used (another connector's, or not a state file)."""


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class LocalState:
    """The state file, opened (and created, with its folder) for one connector."""

    def __init__(self, path: Path, server_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path} is not a connector state file ({exc})") from None
        owner = self.get("server_id")
        if owner is None:
            self.put("server_id", server_id)
            self.put("schema_version", str(SCHEMA_VERSION))
        elif owner != server_id:
            raise StateError(
                f"{path} is the state of the connector of server {owner!r}, not {server_id!r}"
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta: the changes cursor, which users had their first scan --------------------------

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- the item map ------------------------------------------------------------------------

    def remember_items(self, items: Iterable[Item]) -> set[str]:
        """Record (or update) items and the title ids they map to; the title ids of items that
        are new or now map to other ids."""
        mapped: set[str] = set()
        with self._transaction() as db:
            for item in items:
                row = db.execute(
                    "SELECT kind, ids, edition FROM items WHERE item_id = ?", (item.item_id,)
                ).fetchone()
                ids = json.dumps(item.ids)
                if row == (item.kind, ids, item.edition):
                    continue
                db.execute(
                    "INSERT INTO items (item_id, kind, ids, edition) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (item_id) DO UPDATE SET kind = excluded.kind, "
                    "ids = excluded.ids, edition = excluded.edition",
                    (item.item_id, item.kind, ids, item.edition),
                )
                db.execute("DELETE FROM item_ids WHERE item_id = ?", (item.item_id,))
                db.executemany(
                    "INSERT OR IGNORE INTO item_ids (title_id, item_id) VALUES (?, ?)",
                    [(title_id, item.item_id) for title_id in item.ids],
                )
                mapped.update(item.ids)
        return mapped

    def items_named(self, ids: Sequence[str]) -> list[str]:
        """The items (ids on the server) of the title named by any of ``ids``."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT DISTINCT item_id FROM item_ids WHERE title_id IN ({marks}) ORDER BY item_id",
            tuple(ids),
        ).fetchall()
        return [str(row[0]) for row in rows]

    # -- changes for titles not in the library yet --------------------------------------------

    def defer(self, change: StateChange) -> None:
        """Keep ``change`` until an item of its title appears (it replaces any kept change of
        the account's that names one of the same ids)."""
        with self._transaction() as db:
            self._undefer(db, change.account, change.ids)
            db.execute(
                "INSERT INTO deferred (account, guid, change) VALUES (?, ?, ?)",
                (change.account, change.guid, msgspec.json.encode(change).decode()),
            )
            db.executemany(
                "INSERT OR IGNORE INTO deferred_ids (title_id, account, guid) VALUES (?, ?, ?)",
                [(title_id, change.account, change.guid) for title_id in change.ids],
            )

    def undefer(self, account: str, ids: Sequence[str]) -> None:
        """Drop the kept changes of ``account`` that name any of ``ids`` (a newer one came)."""
        with self._transaction() as db:
            self._undefer(db, account, ids)

    @staticmethod
    def _undefer(db: sqlite3.Connection, account: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(
                "DELETE FROM deferred WHERE (account, guid) IN (SELECT account, guid FROM "
                f"deferred_ids WHERE account = ? AND title_id IN ({marks}))",
                (account, *chunk),
            )

    def deferred_named(self, ids: Iterable[str]) -> list[StateChange]:
        """The kept changes that name any of ``ids``."""
        wanted = sorted(set(ids))
        found: dict[tuple[str, str], StateChange] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT DISTINCT d.account, d.guid, d.change FROM deferred_ids i JOIN deferred d "
                f"USING (account, guid) WHERE i.title_id IN ({marks})",
                tuple(chunk),
            ).fetchall()
            for account, guid, change in rows:
                found[(account, guid)] = msgspec.json.decode(change, type=StateChange)
        return [found[key] for key in sorted(found)]

    def deferred_in_library(self) -> list[StateChange]:
        """The kept changes that name a title some item of the library is mapped to."""
        rows = self._db.execute(
            "SELECT DISTINCT d.account, d.guid, d.change FROM deferred d "
            "JOIN deferred_ids i USING (account, guid) "
            "JOIN item_ids m ON m.title_id = i.title_id ORDER BY d.account, d.guid"
        ).fetchall()
        return [msgspec.json.decode(change, type=StateChange) for _, _, change in rows]

    def deferred_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM deferred").fetchone()[0])

    def item(self, item_id: str) -> Item | None:
        row = self._db.execute(
            "SELECT kind, ids, edition FROM items WHERE item_id = ?", (item_id,)
        ).fetchone()
        if row is None:
            return None
        return Item(item_id, row[0], tuple(json.loads(row[1])), row[2])

    # -- what was last seen ------------------------------------------------------------------

    def seen(self, user: str, item_id: str) -> UserData | None:
        row = self._db.execute(
            "SELECT played, viewed_at, rating, rated_at, in_progress FROM seen "
            "WHERE user_key = ? AND item_id = ?",
            (user, item_id),
        ).fetchone()
        if row is None:
            return None
        return UserData(bool(row[0]), _dt(row[1]), row[2], _dt(row[3]), bool(row[4]))

    def seen_many(self, user: str, item_ids: Sequence[str]) -> dict[str, UserData]:
        found: dict[str, UserData] = {}
        for start in range(0, len(item_ids), 500):
            chunk = item_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT item_id, played, viewed_at, rating, rated_at, in_progress FROM seen "
                f"WHERE user_key = ? AND item_id IN ({marks})",
                (user, *chunk),
            ).fetchall()
            for row in rows:
                found[row[0]] = UserData(
                    bool(row[1]), _dt(row[2]), row[3], _dt(row[4]), bool(row[5])
                )
        return found

    def record(
        self,
        user: str,
        seen: Iterable[tuple[str, UserData]],
        events: Iterable[dict[str, object]] = (),
        *,
        done_applying: Iterable[str] = (),
    ) -> None:
        """In one transaction: what was seen of items, the events that report what changed
        (into the outbox), and the end of the writes to those items in ``done_applying``."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO seen "
                "(user_key, item_id, played, viewed_at, rating, rated_at, in_progress) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_key, item_id) DO UPDATE SET "
                "played = excluded.played, viewed_at = excluded.viewed_at, "
                "rating = excluded.rating, rated_at = excluded.rated_at, "
                "in_progress = excluded.in_progress",
                [
                    (
                        user,
                        item_id,
                        int(d.played),
                        _ts(d.viewed_at),
                        d.rating,
                        _ts(d.rated_at),
                        int(d.in_progress),
                    )
                    for item_id, d in seen
                ],
            )
            db.executemany(
                "INSERT INTO outbox (event) VALUES (?)",
                [(msgspec.json.encode(event).decode(),) for event in events],
            )
            db.executemany(
                "DELETE FROM applying WHERE user_key = ? AND item_id = ?",
                [(user, item_id) for item_id in done_applying],
            )

    # -- writes in progress (echo control) ---------------------------------------------------

    def begin_applying(self, user: str, item_id: str, field: str, value: object) -> None:
        """Before writing ``field`` of an item: a crash before the write is recorded as seen
        leaves this, and the next look at the item takes that value as the connector's own."""
        self._db.execute(
            "INSERT INTO applying (user_key, item_id, field, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_key, item_id, field) DO UPDATE SET value = excluded.value",
            (user, item_id, field, json.dumps(value)),
        )

    def applying(self, user: str, item_id: str) -> dict[str, object]:
        rows = self._db.execute(
            "SELECT field, value FROM applying WHERE user_key = ? AND item_id = ?",
            (user, item_id),
        ).fetchall()
        return {str(field): json.loads(value) for field, value in rows}

    # -- items new to the library ------------------------------------------------------------

    def mark_added(self, item_id: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO added (item_id, at) VALUES (?, ?) "
            "ON CONFLICT (item_id) DO UPDATE SET at = excluded.at",
            (item_id, at.timestamp()),
        )

    def added_since(self, item_id: str, since: datetime) -> bool:
        row = self._db.execute("SELECT at FROM added WHERE item_id = ?", (item_id,)).fetchone()
        return row is not None and row[0] >= since.timestamp()

    # -- events waiting for watchledger ------------------------------------------------------

    def queue(self, events: Iterable[dict[str, object]]) -> None:
        self.record("", (), events)

    def pending(self, limit: int) -> list[tuple[int, dict[str, object]]]:
        rows = self._db.execute(
            "SELECT seq, event FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(int(seq), json.loads(event)) for seq, event in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def sent(self, through: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (through,))
