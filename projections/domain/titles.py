"""Titles and their ids (product rule 1): which titles sync, and what kind each is. Pure."""

from __future__ import annotations

import re
from typing import Literal, cast

TitleKind = Literal["movie", "show", "season", "episode"]

_SYNCED_GUID = re.compile(r"^plex://(movie|show|season|episode)/([0-9a-fA-F]{24})$")
_MUSIC_GUID = re.compile(r"^plex://(artist|album|track)/")


class GuidRejected(Exception):
    """Why a GUID is not synced: its rejection code."""

    def __init__(self, code: Literal["music_not_synced", "unsupported_guid"]) -> None:
        super().__init__(code)
        self.code = code


def classify_guid(guid: str) -> tuple[TitleKind, str]:
    """(kind, normalised GUID) of a synced title; raises :class:`GuidRejected` otherwise.

    Only Plex Movie / Plex TV Series GUIDs sync (``plex://movie|show|season|episode/<24 hex>``);
    music never does; any other scheme (legacy agents, ``local://``) is unsupported."""
    if _MUSIC_GUID.match(guid):
        raise GuidRejected("music_not_synced")
    match = _SYNCED_GUID.match(guid)
    if match is None:
        raise GuidRejected("unsupported_guid")
    kind = cast(TitleKind, match.group(1))
    return kind, f"plex://{kind}/{match.group(2).lower()}"


def guid_kind(guid: str) -> TitleKind:
    """The kind of an already validated, normalised GUID."""
    return cast(TitleKind, guid.split("/", 3)[2])
