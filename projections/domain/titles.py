"""Titles and their ids (product rules 1 and 1b): which ids name a synced title, of what kind,
and in what order a title's ids are shown. Pure.

The forms (lowercase scheme and kind; the rest exactly as shown):

* Plex: ``plex://movie|show|season|episode/<24 hex>`` (the hex is stored lowercase);
* external: ``imdb://<kind>/tt<digits>``, ``tmdb://<kind>/<digits>``,
  ``tvdb://<kind>/<digits>``, kind ``movie``, ``show`` or ``episode``;
* an episode by its show and numbers: ``<any show id above>/s<season>e<episode>``, numbers
  without leading zeros (season 0 holds specials).

Music (``plex://artist|album|track/…``) is ``music_not_synced``; anything else is
``unsupported_guid``; ids of one action naming different kinds of title are
``conflicting_ids``. A run of digits is at most :data:`MAX_DIGITS` long: no provider's ids come
near it, and an id stays short enough to index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple, cast

TitleKind = Literal["movie", "show", "season", "episode"]
IdRejection = Literal["music_not_synced", "unsupported_guid", "conflicting_ids"]

# At most this many ids in one action's `ids` (the contract's bound; its `guid` besides).
MAX_IDS = 8
MAX_DIGITS = 18

# The order a title's ids are shown in: by scheme, episode-by-numbers ids after those.
SCHEMES = ("plex", "imdb", "tmdb", "tvdb")
_NUMBERED_RANK = len(SCHEMES)

_DIGITS = rf"(?:0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}})"  # a number: no leading zeros
_PROVIDER_ID = rf"[0-9]{{1,{MAX_DIGITS}}}"  # a provider's id: its digits as they are
_PLEX = re.compile(r"plex://(movie|show|season|episode)/([0-9a-fA-F]{24})", re.ASCII)
_IMDB = re.compile(rf"imdb://(movie|show|episode)/tt{_PROVIDER_ID}", re.ASCII)
_NUMERIC = re.compile(rf"(tmdb|tvdb)://(movie|show|episode)/{_PROVIDER_ID}", re.ASCII)
_NUMBERED = re.compile(rf"(.+)/s({_DIGITS})e({_DIGITS})", re.ASCII)
_MUSIC = re.compile(r"plex://(artist|album|track)/", re.ASCII)
# Any text ending as an episode-by-numbers id does (the database's title_id_rank: `.` matches
# any character there, a newline too).
_NUMBERED_TEXT = re.compile(rf".+/s{_DIGITS}e{_DIGITS}", re.ASCII | re.DOTALL)
# The rank of an id by its first 7 characters, the scheme and `://` (title_id_rank's order).
_SCHEME_RANKS = {f"{scheme}://": rank for rank, scheme in enumerate(SCHEMES)}


class GuidRejected(Exception):
    """Why an id (or an action's ids together) is not synced: its rejection code."""

    def __init__(self, code: IdRejection) -> None:
        super().__init__(code)
        self.code = code


def parse_id(text: str) -> tuple[TitleKind, str]:
    """(kind, normalised id) of one id of a synced title; raises :class:`GuidRejected`
    (``music_not_synced`` or ``unsupported_guid``) otherwise."""
    kind, normalised, _ = _parse(text)
    return kind, normalised


def _parse(text: str) -> tuple[TitleKind, str, int]:
    """:func:`parse_id`'s (kind, normalised id), and the id's rank (:func:`id_rank`'s first
    part), which its form gives."""
    if _MUSIC.match(text):
        raise GuidRejected("music_not_synced")
    parsed = _parse_simple(text)
    if parsed is not None:
        return parsed
    numbered = _NUMBERED.fullmatch(text)
    if numbered is not None:
        show = _parse_simple(numbered.group(1))
        if show is not None and show[0] == "show":
            normalised = f"{show[1]}/s{numbered.group(2)}e{numbered.group(3)}"
            return "episode", normalised, _NUMBERED_RANK
    raise GuidRejected("unsupported_guid")


def _parse_simple(text: str) -> tuple[TitleKind, str, int] | None:
    # Each form begins with its scheme: one pattern tried, the one the scheme says.
    scheme = text[:7]
    if scheme == "plex://":
        if plex := _PLEX.fullmatch(text):
            kind = cast(TitleKind, plex.group(1))
            return kind, f"plex://{kind}/{plex.group(2).lower()}", 0
    elif scheme == "imdb://":
        if imdb := _IMDB.fullmatch(text):
            return cast(TitleKind, imdb.group(1)), text, 1
    elif numeric := _NUMERIC.fullmatch(text):
        return cast(TitleKind, numeric.group(2)), text, 2 if numeric.group(1) == "tmdb" else 3
    return None


def lookup_id(text: str) -> str:
    """An id as a lookup finds it: normalised if it is of a synced form, else as it is (and
    then it names no title)."""
    try:
        return parse_id(text)[1]
    except GuidRejected:
        return text


class TitleIds(NamedTuple):
    """The ids an action names its title by, checked and normalised."""

    kind: TitleKind
    guid: str  # the action's own id
    others: tuple[str, ...]  # its other distinct ids, in shown order


def classify_ids(guid: str, ids: Iterable[str] = ()) -> TitleIds:
    """The ids of an action naming its title by ``guid`` and ``ids``; raises
    :class:`GuidRejected` with the first code that applies over all of them:
    ``music_not_synced``, ``unsupported_guid``, then ``conflicting_ids`` (ids of different
    kinds of title)."""
    parsed: list[tuple[TitleKind, str, int]] = []
    unsupported: GuidRejected | None = None
    for text in (guid, *ids):  # each parsed once
        try:
            parsed.append(_parse(text))
        except GuidRejected as rejected:
            if rejected.code == "music_not_synced":  # first of the codes, whichever id has it
                raise
            unsupported = rejected
    if unsupported is not None:
        raise unsupported
    if len({kind for kind, _, _ in parsed}) > 1:
        raise GuidRejected("conflicting_ids")
    kind, own, _ = parsed[0]
    # In shown order (id_rank, which each id's form gave), each once.
    others = sorted({(rank, normalised) for _, normalised, rank in parsed[1:] if normalised != own})
    return TitleIds(kind, own, tuple(normalised for _, normalised in others))


def shown_order(ids: Iterable[str]) -> list[str]:
    """Distinct normalised ids in the order a title shows them: the first is its ``guid``."""
    return sorted(set(ids), key=id_rank)


def id_rank(normalised: str) -> tuple[int, str]:
    """Where a normalised id goes among a title's ids (smallest first): for any text, exactly
    where the database's title_id_rank (then its text, in code point order) puts it, so the
    title the projection is told an action's ids name is the one it would choose."""
    # An episode-by-numbers id's last part (after its last "/") is s<n>e<n>: only such texts
    # are matched against the pattern.
    slash = normalised.rfind("/")
    if slash > 0 and normalised.startswith("s", slash + 1) and _NUMBERED_TEXT.fullmatch(normalised):
        return _NUMBERED_RANK, normalised
    # An id of no known scheme (a stored event the API would not take) goes last.
    return _SCHEME_RANKS.get(normalised[:7], _NUMBERED_RANK + 1), normalised


def guid_kind(guid: str) -> TitleKind:
    """The kind of an already validated, normalised id (as the rebuilds' SQL reads it: an id
    ending in ``/s<n>e<n>`` is an episode, any other's kind is its third part)."""
    if _NUMBERED.fullmatch(guid):
        return "episode"
    return cast(TitleKind, guid.split("/", 3)[2])


class TitleLinks:
    """One account's titles as its actions link their ids (rule 1b): ids that come together
    name one title, and titles sharing an id are one (a union-find). The projections keep the
    same links in the database; this is for decisions over an account's events in Python."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def link(self, *ids: str) -> None:
        """The ids name one title."""
        roots = {self._root(one) for one in ids}
        if len(roots) > 1:
            first = min(roots, key=id_rank)
            for root in roots:
                self._parent[root] = first

    def title(self, one: str) -> str:
        """The guid of the title ``one`` names: the first of its ids in shown order."""
        return self._root(one)

    def _root(self, one: str) -> str:
        root = self._parent.setdefault(one, one)
        while self._parent[root] != root:
            root = self._parent[root]
        while one != root:  # every id on the way now points at the root
            self._parent[one], one = root, self._parent[one]
        return root
