"""Command messages: one msgspec Struct per action, validated on the way in.

Every command carries who asks (``actor``/``actor_id``), a ``correlation_id`` and an
optional ``command_id`` that makes resubmission idempotent. Field constraints live
here so a bad request is refused, naming the field, before anything is decided.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, TypeVar
from uuid import UUID

import msgspec

from domain.base import InvalidInput

COMMAND_TYPES: dict[str, type[Command]] = {}

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ShortText = Annotated[str, msgspec.Meta(max_length=4000)]
Id = UUID


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of all commands. ``NAME`` is the stable name (defaults to the class name)."""

    NAME: ClassVar[str] = ""

    command_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    correlation_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    actor: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    actor_id: UUID | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.NAME = cls.__dict__.get("NAME") or cls.__name__
        COMMAND_TYPES[cls.NAME] = cls


C = TypeVar("C", bound=Command)

_PATH = re.compile(r" - at `\$\.?(.*)`$")


def parse_command(cls: type[C], data: Any) -> C:
    """Builds a command from plain data, or InvalidInput naming the offending field."""
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as e:
        raise invalid_input(e) from None


def invalid_input(e: msgspec.ValidationError) -> InvalidInput:
    text = str(e)
    m = _PATH.search(text)
    field = m.group(1) if m else None
    reason = _PATH.sub("", text)
    if field is None and "missing required field" in reason:
        field = reason.rsplit("`", 2)[-2] if reason.count("`") >= 2 else None
    if field is None and "unknown field" in reason:
        field = reason.rsplit("`", 2)[-2] if reason.count("`") >= 2 else None
    where = f" (field '{field}')" if field else ""
    return InvalidInput(f"Invalid input{where}: {reason}.", field=field)


def refuse_unless_default(cmd: Command, field: str, what: str) -> None:
    """A 400 naming ``field`` when ``cmd`` gives it a value other than its default: Orrery
    does not carry out ``what``, and a setting is never accepted and ignored."""
    default = next(
        d
        for f, d in zip(
            cmd.__struct_fields__[len(cmd.__struct_fields__) - len(cmd.__struct_defaults__) :],
            cmd.__struct_defaults__,
            strict=True,
        )
        if f == field
    )
    value = getattr(cmd, field)
    if value != default:
        raise InvalidInput(
            f"Invalid value '{str(value).lower()}' of '{field}': {what} is not supported.",
            field=field,
        )
