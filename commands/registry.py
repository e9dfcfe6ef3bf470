"""Maps each command type to its handler: ``handler(tx, cmd) -> result``.

A handler translates the message into a call of the domain's decision functions; it
does no I/O. What it returns (an id, a dict) becomes ``CommandResult.value``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from commands.messages import Command
from domain.base import Tx

Handler = Callable[[Tx, Any], Any]
HANDLERS: dict[type[Command], Handler] = {}

C = TypeVar("C", bound=Command)


def handles(cls: type[C]) -> Callable[[Callable[[Tx, C], Any]], Callable[[Tx, C], Any]]:
    def register(fn: Callable[[Tx, C], Any]) -> Callable[[Tx, C], Any]:
        if cls in HANDLERS:
            raise TypeError(f"{cls.__name__} has two handlers")
        HANDLERS[cls] = fn
        return fn

    return register
