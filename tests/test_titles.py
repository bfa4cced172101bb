"""Title ids (product rules 1 and 1b): every form, every rejection, and the order a title's
ids are shown in. Pure: no database."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.domain import (
    GuidRejected,
    TitleLinks,
    classify_ids,
    guid_kind,
    parse_id,
    shown_order,
)
from projections.domain.titles import MAX_DIGITS

HEX = "5d776825880197001ec967c6"

_hex = st.text("0123456789abcdefABCDEF", min_size=24, max_size=24)
_provider_digits = st.text("0123456789", min_size=1, max_size=MAX_DIGITS)
_number = st.integers(0, 10**6).map(str)


_PLEX_KINDS = ("movie", "show", "season", "episode")
_EXTERNAL_KINDS = ("movie", "show", "episode")


@st.composite
def plex_ids(draw: st.DrawFn, kinds: tuple[str, ...] = _PLEX_KINDS) -> tuple[str, str]:
    kind = draw(st.sampled_from(kinds))
    return f"plex://{kind}/{draw(_hex)}", kind


@st.composite
def external_ids(draw: st.DrawFn, kinds: tuple[str, ...] = _EXTERNAL_KINDS) -> tuple[str, str]:
    scheme = draw(st.sampled_from(["imdb", "tmdb", "tvdb"]))
    kind = draw(st.sampled_from(kinds))
    prefix = "tt" if scheme == "imdb" else ""
    return f"{scheme}://{kind}/{prefix}{draw(_provider_digits)}", kind


@st.composite
def numbered_ids(draw: st.DrawFn) -> tuple[str, str]:
    show, _ = draw(st.one_of(plex_ids(("show",)), external_ids(("show",))))
    return f"{show}/s{draw(_number)}e{draw(_number)}", "episode"


# (an id, the kind of title it names)
valid_ids = st.one_of(plex_ids(), external_ids(), numbered_ids())


@given(valid_ids)
def test_every_valid_form_round_trips(valid: tuple[str, str]) -> None:
    text, kind = valid
    assert parse_id(text)[0] == kind
    normalised = parse_id(text)[1]
    # Only a Plex id's hex is normalised (to lowercase); everything else is kept exactly.
    assert normalised == (text.lower() if text.startswith("plex://") else text)
    assert parse_id(normalised) == (kind, normalised)
    assert guid_kind(normalised) == kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"plex://movie/{HEX}", "movie"),
        (f"plex://episode/{HEX.upper()}", "episode"),
        ("imdb://movie/tt0111161", "movie"),
        ("imdb://episode/tt0959621", "episode"),
        ("tmdb://show/1396", "show"),
        ("tvdb://episode/349232", "episode"),
        ("tvdb://show/81189/s1e1", "episode"),
        ("tvdb://show/81189/s0e12", "episode"),  # season 0: specials
        (f"plex://show/{HEX}/s10e0", "episode"),
        ("imdb://show/tt0903747/s5e16", "episode"),
        ("tmdb://show/1396/s2e3", "episode"),
    ],
)
def test_each_form_and_its_kind(text: str, kind: str) -> None:
    assert parse_id(text)[0] == kind


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (f"plex://artist/{HEX}", "music_not_synced"),
        (f"plex://album/{HEX}", "music_not_synced"),
        (f"plex://track/{HEX}", "music_not_synced"),
        ("plex://track/anything at all", "music_not_synced"),
        ("com.plexapp.agents.imdb://tt0080684?lang=en", "unsupported_guid"),
        ("com.plexapp.agents.thetvdb://81189/1/1?lang=en", "unsupported_guid"),
        ("local://12345", "unsupported_guid"),
        ("", "unsupported_guid"),
        (f"PLEX://movie/{HEX}", "unsupported_guid"),  # scheme and kind are lowercase
        (f"plex://Movie/{HEX}", "unsupported_guid"),
        ("IMDB://movie/tt0111161", "unsupported_guid"),
        (f"plex://clip/{HEX}", "unsupported_guid"),
        (f"plex://movie/{HEX[:-1]}", "unsupported_guid"),
        (f"plex://movie/{HEX}0", "unsupported_guid"),
        (f"plex://movie/{HEX}/", "unsupported_guid"),
        (f" plex://movie/{HEX}", "unsupported_guid"),
        ("imdb://movie/0111161", "unsupported_guid"),  # IMDb ids start with tt
        ("imdb://movie/tt", "unsupported_guid"),
        ("imdb://movie/TT0111161", "unsupported_guid"),
        ("tmdb://movie/tt550", "unsupported_guid"),
        ("tmdb://movie/", "unsupported_guid"),
        ("tmdb://movie/55a", "unsupported_guid"),
        ("tmdb://movie/-550", "unsupported_guid"),
        ("tmdb://season/550", "unsupported_guid"),  # no season kind outside Plex
        ("tvdb://collection/550", "unsupported_guid"),
        ("anidb://movie/550", "unsupported_guid"),
        ("tmdb://movie/" + "9" * (MAX_DIGITS + 1), "unsupported_guid"),
        ("tvdb://show/81189/s01e1", "unsupported_guid"),  # numbers without leading zeros
        ("tvdb://show/81189/s1e01", "unsupported_guid"),
        ("tvdb://show/81189/s1", "unsupported_guid"),
        ("tvdb://show/81189/e1", "unsupported_guid"),
        ("tvdb://show/81189/S1E1", "unsupported_guid"),
        ("tvdb://movie/81189/s1e1", "unsupported_guid"),  # numbers hang off a show
        ("tvdb://episode/81189/s1e1", "unsupported_guid"),
        (f"plex://season/{HEX}/s1e1", "unsupported_guid"),
        ("tvdb://show/81189/s1e1/s1e1", "unsupported_guid"),
        ("tvdb://show/81189/s1e1 ", "unsupported_guid"),
        ("tvdb://show/81189/s1e" + "1" * (MAX_DIGITS + 1), "unsupported_guid"),
    ],
)
def test_near_misses_are_rejected_with_their_code(text: str, code: str) -> None:
    with pytest.raises(GuidRejected) as rejected:
        parse_id(text)
    assert rejected.value.code == code


def test_an_actions_ids_agree_on_the_kind_of_title() -> None:
    title = classify_ids(
        "tvdb://show/81189/s1e1", ["imdb://episode/tt0959621", f"plex://episode/{HEX}"]
    )
    assert title.kind == "episode"
    assert title.guid == "tvdb://show/81189/s1e1"
    assert title.others == (f"plex://episode/{HEX}", "imdb://episode/tt0959621")

    with pytest.raises(GuidRejected) as rejected:
        classify_ids("imdb://movie/tt0111161", ["tmdb://show/278"])
    assert rejected.value.code == "conflicting_ids"
    # A show and one of its episodes are different titles too.
    with pytest.raises(GuidRejected) as rejected:
        classify_ids("tvdb://show/81189", ["tvdb://show/81189/s1e1"])
    assert rejected.value.code == "conflicting_ids"


@pytest.mark.parametrize(
    ("guid", "ids", "code"),
    [
        # The contract's order: music, then another form, then conflicting kinds.
        ("imdb://movie/tt0111161", ["local://1", f"plex://track/{HEX}"], "music_not_synced"),
        (f"plex://album/{HEX}", ["tmdb://show/1"], "music_not_synced"),
        ("imdb://movie/tt0111161", ["tmdb://show/1", "local://1"], "unsupported_guid"),
        ("local://1", ["imdb://movie/tt1", "tmdb://show/1"], "unsupported_guid"),
        ("imdb://movie/tt0111161", ["tmdb://movie/278", "tvdb://show/1"], "conflicting_ids"),
    ],
)
def test_the_first_rejection_that_applies_is_given(guid: str, ids: list[str], code: str) -> None:
    with pytest.raises(GuidRejected) as rejected:
        classify_ids(guid, ids)
    assert rejected.value.code == code


def test_the_guid_again_and_repeats_in_ids_are_allowed_and_kept_once() -> None:
    title = classify_ids(
        f"plex://movie/{HEX.upper()}",
        [f"plex://movie/{HEX}", "tmdb://movie/278", "tmdb://movie/278"],
    )
    assert title.guid == f"plex://movie/{HEX}"
    assert title.others == ("tmdb://movie/278",)
    assert classify_ids("imdb://movie/tt1").others == ()


def test_a_titles_ids_are_shown_by_scheme_numbers_last_then_by_text() -> None:
    ids = [
        "tvdb://show/81189/s1e1",
        "tvdb://episode/349232",
        "imdb://episode/tt0959621",
        f"plex://show/{HEX}/s1e1",
        "tmdb://episode/62085",
        f"plex://episode/{HEX}",
        "imdb://episode/tt0959620",
    ]
    assert shown_order(ids) == [
        f"plex://episode/{HEX}",
        "imdb://episode/tt0959620",
        "imdb://episode/tt0959621",
        "tmdb://episode/62085",
        "tvdb://episode/349232",
        f"plex://show/{HEX}/s1e1",
        "tvdb://show/81189/s1e1",
    ]


@given(st.lists(valid_ids, min_size=1, max_size=9))
def test_the_shown_order_is_a_total_order_of_distinct_ids(valid: list[tuple[str, str]]) -> None:
    normalised = [parse_id(text)[1] for text, _ in valid]
    shown = shown_order(normalised)
    assert sorted(set(normalised)) == sorted(shown)
    assert shown_order(reversed(normalised)) == shown  # whatever order they came in
    assert shown_order(shown[1:] + shown[:1]) == shown


@given(st.lists(valid_ids, min_size=1, max_size=9), st.data())
def test_an_actions_other_ids_are_in_shown_order(
    valid: list[tuple[str, str]], data: st.DataObject
) -> None:
    """classify_ids orders the other ids by the rank their forms give: the shown order."""
    chosen = data.draw(st.sampled_from(sorted({kind for _, kind in valid})))
    same_kind = [text for text, kind in valid if kind == chosen]
    title = classify_ids(same_kind[0], same_kind[1:])
    normalised = [parse_id(text)[1] for text in same_kind[1:]]
    assert list(title.others) == shown_order(i for i in normalised if i != title.guid)


@given(st.text(max_size=60))
def test_any_text_is_parsed_or_rejected_with_a_code(text: str) -> None:
    code: str | None = None
    try:
        kind, normalised = parse_id(text)
    except GuidRejected as rejected:
        code = rejected.code
    else:
        assert parse_id(normalised) == (kind, normalised)
    assert code in (None, "music_not_synced", "unsupported_guid")


def test_title_links_join_titles_sharing_an_id_under_the_first_id() -> None:
    links = TitleLinks()
    chain = [f"tmdb://movie/{n}" for n in range(3000, 0, -1)]  # each link a better first id
    for newer, better in pairwise(chain):
        links.link(newer, better)
    assert {links.title(one) for one in chain} == {"tmdb://movie/1"}
    links.link("imdb://movie/tt9", chain[0])
    assert links.title(chain[-1]) == "imdb://movie/tt9"
    assert links.title("tvdb://movie/5") == "tvdb://movie/5"  # an id linked to none
