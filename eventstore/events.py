"""Typed events: frozen msgspec structs with a name and a schema version, and upcasting.

A type's stored shape may change between releases. Bump ``schema_version`` on the struct and
register an upcaster that turns the previous version's JSON object into the next one's; stored
events are then read through the chain of upcasters, and never rewritten.

    registry = EventRegistry()

    @registry.register
    class Rated(Event, frozen=True):
        event_type: ClassVar[str] = "rated"
        schema_version: ClassVar[int] = 2
        rating: int            # was "stars" (1-5) in version 1

    @registry.upcaster("rated", from_version=1)
    def _stars_to_rating(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "rating": data.pop("stars") * 2}
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

from .errors import UnknownEventType, UnsupportedSchemaVersion
from .records import NewEvent, RecordedEvent


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every typed event. Subclasses set the ``event_type`` and ``schema_version``
    class variables and are registered with an :class:`EventRegistry`."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


E = TypeVar("E", bound=type[Event])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_encoder = msgspec.json.Encoder()


class EventRegistry:
    """Maps stored type names to event classes; encodes events and decodes stored ones."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Event]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: E) -> E:
        """Class decorator: make ``cls`` the reader and writer of its ``event_type``."""
        name = cls.event_type
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"event type {name!r} is registered twice")
        if cls.schema_version < 1:
            raise ValueError(f"{cls.__name__}.schema_version must be 1 or more")
        self._classes[name] = cls
        self._decoders[name] = msgspec.json.Decoder(cls)
        return cls

    def upcaster(self, event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: a function turning ``from_version``'s JSON object into the next version's."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._upcasters:
                raise ValueError(f"two upcasters for {event_type!r} version {from_version}")
            self._upcasters[key] = fn
            return fn

        return decorate

    def is_known(self, event_type: str) -> bool:
        return event_type in self._classes

    def new(self, event: Event, *, event_id: uuid.UUID | None = None) -> NewEvent:
        """The :class:`NewEvent` to append for a typed event."""
        cls = type(event)
        if self._classes.get(cls.event_type) is not cls:
            raise UnknownEventType(f"{cls.__name__} is not registered", event_type=cls.event_type)
        return NewEvent(
            type=cls.event_type,
            data=msgspec.Raw(_encoder.encode(event)),
            schema_version=cls.schema_version,
            event_id=event_id if event_id is not None else uuid.uuid4(),
        )

    def decode(self, recorded: RecordedEvent) -> Event:
        """The typed event of a stored one, upcast from its stored schema version if older."""
        name = recorded.type
        cls = self._classes.get(name)
        if cls is None:
            raise UnknownEventType(f"unknown event type {name!r}", event_type=name)
        stored, current = recorded.schema_version, cls.schema_version
        if stored == current:
            event: Event = self._decoders[name].decode(recorded.data)
            return event
        if stored > current:
            raise UnsupportedSchemaVersion(
                f"{name!r} version {stored} was written by a newer release "
                f"(this one reads up to {current})",
                event_type=name,
                schema_version=stored,
            )
        data: dict[str, Any] = msgspec.json.decode(recorded.data)
        for version in range(stored, current):
            upcast = self._upcasters.get((name, version))
            if upcast is None:
                raise UnsupportedSchemaVersion(
                    f"no upcaster for {name!r} from version {version}",
                    event_type=name,
                    schema_version=version,
                )
            data = upcast(data)
        return msgspec.convert(data, cls)
