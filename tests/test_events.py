"""Typed events: registration, encoding, decoding, and upcasting of older schema versions."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from eventstore import (
    Event,
    EventRegistry,
    EventStore,
    NewEvent,
    UnknownEventType,
    UnsupportedSchemaVersion,
)


def registry_v1() -> tuple[EventRegistry, type[Event]]:
    registry = EventRegistry()

    @registry.register
    class Rated(Event, frozen=True):
        event_type: ClassVar[str] = "rated"
        guid: str
        stars: int

    return registry, Rated


def registry_v3() -> tuple[EventRegistry, type[Event]]:
    """The same type two releases later: stars (1-5) became rating (1-10), then gained a scale."""
    registry = EventRegistry()

    @registry.register
    class Rated(Event, frozen=True):
        event_type: ClassVar[str] = "rated"
        schema_version: ClassVar[int] = 3
        guid: str
        rating: int
        scale: int

    @registry.upcaster("rated", from_version=1)
    def stars_to_rating(data: dict[str, Any]) -> dict[str, Any]:
        return {"guid": data["guid"], "rating": data["stars"] * 2}

    @registry.upcaster("rated", from_version=2)
    def add_scale(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "scale": 10}

    return registry, Rated


async def test_events_round_trip_through_the_log(store: EventStore) -> None:
    registry, rated = registry_v1()
    original = rated(guid="plex://movie/0123456789abcdef01234567", stars=4)
    new = registry.new(original)
    assert (new.type, new.schema_version) == ("rated", 1)

    await store.append("account-a1", [new])
    [stored] = await store.read_stream("account-a1")

    assert registry.decode(stored) == original
    assert stored.event_id == new.event_id


async def test_old_events_are_upcast_when_read(store: EventStore) -> None:
    old_registry, old_rated = registry_v1()
    await store.append(
        "account-a1",
        [old_registry.new(old_rated(guid="g", stars=4))],
    )
    new_registry, new_rated = registry_v3()
    await store.append(
        "account-a1",
        [new_registry.new(new_rated(guid="h", rating=7, scale=10))],
    )

    old, new = await store.read_stream("account-a1")

    assert old.schema_version == 1
    assert new_registry.decode(old) == new_rated(guid="g", rating=8, scale=10)
    assert new_registry.decode(new) == new_rated(guid="h", rating=7, scale=10)


async def test_an_event_from_a_newer_release_is_refused(store: EventStore) -> None:
    new_registry, new_rated = registry_v3()
    await store.append(
        "account-a1",
        [new_registry.new(new_rated(guid="h", rating=7, scale=10))],
    )
    [stored] = await store.read_stream("account-a1")
    old_registry, _ = registry_v1()
    with pytest.raises(UnsupportedSchemaVersion, match="newer release"):
        old_registry.decode(stored)


async def test_a_missing_upcaster_is_reported(store: EventStore) -> None:
    old_registry, old_rated = registry_v1()
    await store.append("account-a1", [old_registry.new(old_rated(guid="g", stars=4))])
    [stored] = await store.read_stream("account-a1")

    registry = EventRegistry()

    @registry.register
    class Rated(Event, frozen=True):
        event_type: ClassVar[str] = "rated"
        schema_version: ClassVar[int] = 2
        rating: int

    with pytest.raises(UnsupportedSchemaVersion, match="no upcaster"):
        registry.decode(stored)


async def test_unknown_types_are_reported(store: EventStore) -> None:
    registry, _ = registry_v1()
    await store.append("account-a1", [NewEvent(type="other", data=msgspec.Raw(b"{}"))])
    [stored] = await store.read_stream("account-a1")
    assert not registry.is_known("other")
    with pytest.raises(UnknownEventType):
        registry.decode(stored)


def test_registration_mistakes_are_caught() -> None:
    registry, rated = registry_v1()
    other = EventRegistry()

    with pytest.raises(UnknownEventType):
        other.new(rated(guid="g", stars=1))

    class Imposter(Event, frozen=True):
        event_type: ClassVar[str] = "rated"

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Imposter)

    @registry.upcaster("rated", from_version=1)
    def once(data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(ValueError, match="two upcasters"):
        registry.upcaster("rated", from_version=1)(once)

    class Zero(Event, frozen=True):
        event_type: ClassVar[str] = "zero"
        schema_version: ClassVar[int] = 0

    with pytest.raises(ValueError, match="1 or more"):
        registry.register(Zero)


def test_events_are_frozen() -> None:
    _, rated = registry_v1()
    value = rated(guid="g", stars=1)
    with pytest.raises(AttributeError):
        value.guid = "other"  # type: ignore[attr-defined]
