"""Building blocks: events, aggregates, errors, and the transaction decisions emit into."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec

# The registry of event classes by stable topic name; filled as classes are defined.
EVENT_TYPES: dict[str, type[Event]] = {}
# Upcasters: (topic, from_version) -> function turning that version's dict into the next.
UPCASTERS: dict[tuple[str, int], Any] = {}
AGGREGATE_TYPES: dict[str, type[Aggregate]] = {}


# Fields holding credentials (password hashes, secrets, tickets, tokens): each aggregate
# class declares its own in ``SECRET_FIELDS``; this is their union, filled as the classes
# are defined (the events that set such a field use the same name). They stay in the log
# so logins survive a replay, are never shown by the tools that print events or objects
# for people, and no search, filter or sort may use them (a prefix search would reveal
# them a character at a time).
CREDENTIAL_FIELDS: set[str] = set()
REDACTED = "***"


def redacted(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of plain data with the credential fields masked."""
    return {k: REDACTED if k in CREDENTIAL_FIELDS and v is not None else v for k, v in data.items()}


def is_credential_field(name: str) -> bool:
    """Whether a field name, as a search or sort names it (any case, ``a.b`` paths by their
    last part), is a credential field of some aggregate."""
    return name.rsplit(".", 1)[-1].lower() in CREDENTIAL_FIELDS


class DomainError(Exception):
    """A rule says no. ``status`` follows the HTTP status oVirt answers with."""

    status = 409

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    status = 404


class InvalidInput(DomainError):
    status = 400


class Conflict(DomainError):
    """An optimistic concurrency conflict that survived its retries."""

    status = 409


class Meta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Who and why: lands on every event of a command."""

    actor_id: UUID | None = None
    actor: str | None = None
    correlation_id: str | None = None
    command_id: str | None = None
    command: str | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A fact in past tense about one aggregate.

    Subclasses set ``TOPIC`` (stable forever; defaults to the class name) and bump
    ``VERSION`` when their shape changes, registering an upcaster from the old one.
    ``CREATES`` names the aggregate class a creation event starts; ``DELETES`` marks
    the event that ends an aggregate.
    """

    TOPIC: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    CREATES: ClassVar[str | None] = None
    DELETES: ClassVar[bool] = False

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    meta: Meta = Meta()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        topic = cls.__dict__.get("TOPIC") or cls.__name__
        cls.TOPIC = topic
        if topic in EVENT_TYPES and EVENT_TYPES[topic] is not cls:
            raise TypeError(f"event topic {topic!r} defined twice")
        EVENT_TYPES[topic] = cls

    def payload(self) -> dict[str, Any]:
        """The event's own fields (no envelope), leaving out unset ones."""
        names = _PAYLOAD_FIELDS.get(type(self))
        if names is None:
            names = _PAYLOAD_FIELDS[type(self)] = tuple(
                f for f in self.__struct_fields__ if f not in _ENVELOPE
            )
        out = {}
        for f in names:
            v = getattr(self, f)
            if v is not msgspec.UNSET:
                out[f] = v
        return out

    def evolve(self, agg: Any) -> Any:
        """Returns the aggregate after this event (None once deleted).

        Default: a creation event builds the aggregate from its payload, a deletion
        event drops it, any other event copies its set fields onto the aggregate.
        """
        if self.CREATES is not None:
            cls = AGGREGATE_TYPES[self.CREATES]
            return cls(id=self.originator_id, version=self.originator_version, **self.payload())
        if self.DELETES:
            return None
        return msgspec.structs.replace(agg, version=self.originator_version, **self.payload())


_PAYLOAD_FIELDS: dict[type[Event], tuple[str, ...]] = {}
_ENVELOPE = frozenset(msgspec.structs.fields(Event)[i].name for i in range(4))


def upcaster(topic: str, from_version: int) -> Any:
    """Registers ``fn(dict) -> dict`` turning ``topic`` at ``from_version`` into the next."""

    def register(fn: Any) -> Any:
        UPCASTERS[(topic, from_version)] = fn
        return fn

    return register


class Aggregate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An immutable snapshot of one object; events produce the next snapshot.

    ``KIND`` is the name clients know it by ("vm", "host"). ``NAME_SCOPE`` returns the
    scope in which ``name`` must be unique, or None when names may repeat.
    """

    KIND: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    # The fields of this class that hold a credential (see CREDENTIAL_FIELDS).
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    id: UUID
    version: int = 0

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("KIND"):
            cls.KIND = cls.__name__.lower()
        if not cls.__dict__.get("LABEL"):
            cls.LABEL = cls.__name__
        AGGREGATE_TYPES[cls.__name__] = cls
        CREDENTIAL_FIELDS.update(cls.SECRET_FIELDS)

    def name_scope(self) -> tuple[Any, ...] | None:
        """The key under which this object's name must be unique; None: not unique."""
        name = getattr(self, "name", None)
        return (self.KIND,) if name is not None else None


class Ctx(msgspec.Struct, frozen=True, kw_only=True):
    """What the command layer supplies to a decision: the time and who asks."""

    now: datetime
    meta: Meta = Meta()


class Tx:
    """One command's decision: reads the engine, collects events, applies nothing.

    Decisions check every rule before emitting, so a raise leaves no trace.
    ``id_factory`` is the command layer's source of new ids (uuid4 in production, a
    counter in tests); the ids land in the events, so replay never calls it.
    """

    __slots__ = ("_id_factory", "_versions", "created", "ctx", "engine", "events")

    def __init__(self, engine: Any, ctx: Ctx, id_factory: Callable[[], UUID]) -> None:
        self.engine = engine
        self.ctx = ctx
        self.events: list[Event] = []
        self._versions: dict[UUID, int] = {}
        self._id_factory = id_factory
        self.created: list[UUID] = []

    @property
    def now(self) -> datetime:
        return self.ctx.now

    def new_id(self, given: UUID | None = None) -> UUID:
        if given is not None:
            if self.engine.exists(given):
                raise InvalidInput(f"Id {given} is already in use.", field="id")
            return given
        return self._id_factory()

    def emit(self, cls: type[Event], agg_id: UUID, **fields: Any) -> Event:
        version = self._versions.get(agg_id)
        if version is None:
            version = self.engine.version_of(agg_id)
        version += 1
        self._versions[agg_id] = version
        event = cls(
            originator_id=agg_id,
            originator_version=version,
            timestamp=self.ctx.now,
            meta=self.ctx.meta,
            **fields,
        )
        if cls.CREATES is not None:
            self.created.append(agg_id)
        self.events.append(event)
        return event
