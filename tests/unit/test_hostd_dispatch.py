"""hostd's dispatch table against the protocol: every request type has exactly one
handler, each handler takes the request it is listed for and returns the result the
protocol declares for it (``P.RESULTS``), and nothing that is not a request is in it."""

from __future__ import annotations

import asyncio
import inspect
import typing

import pytest

from hostd import protocol as P
from hostd.core import Config, Core
from hostd.dispatch import HANDLERS, answer

pytestmark = pytest.mark.unit


def _request_types() -> set[type]:
    found: set[type] = set()
    todo = list(P.Request.__subclasses__())
    while todo:
        t = todo.pop()
        found.add(t)
        todo += t.__subclasses__()
    return found


def test_the_wire_union_holds_every_request_struct() -> None:
    # What a Call can carry (RequestT, msgspec decodes by it) is every Request struct.
    assert set(typing.get_args(P.RequestT)) == _request_types()


def test_every_request_type_has_a_handler() -> None:
    missing = sorted(t.__name__ for t in _request_types() - set(HANDLERS))
    assert missing == []


def test_no_handler_is_for_a_type_that_is_not_a_request() -> None:
    strays = sorted(t.__name__ for t in set(HANDLERS) - _request_types())
    assert strays == []


@pytest.mark.parametrize(
    "req_type", sorted(HANDLERS, key=lambda t: t.__name__), ids=lambda t: t.__name__
)
def test_each_handler_takes_its_request_and_returns_its_result(req_type: type) -> None:
    fn = HANDLERS[req_type]
    assert inspect.iscoroutinefunction(fn)
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters)
    assert len(params) == 2, params
    assert hints[params[1]] is req_type
    assert hints["return"] is P.RESULTS[req_type]


def test_answer_replies_with_the_result_the_failure_or_unsupported(tmp_path) -> None:
    core = Core(Config(data_dir=str(tmp_path), token="t"))  # not connected to libvirt

    async def replies() -> list[P.Reply]:
        return [
            await answer(core, P.Call(id=1, req=P.Ping())),
            await answer(core, P.Call(id=2, req=P.ListVms())),
            # Not a request (a Call's fields are not checked when built in-process).
            await answer(core, P.Call(id=3, req=P.Ok())),
        ]

    try:
        pong, unreachable, unsupported = asyncio.run(replies())
    finally:
        core.pool.shutdown()
    assert (pong.id, pong.ok, pong.result.detail) == (1, True, "pong")
    assert (unreachable.id, unreachable.ok) == (2, False)
    assert unreachable.error is not None and unreachable.error.code == "libvirt_unreachable"
    assert (unsupported.id, unsupported.ok) == (3, False)
    assert unsupported.error is not None
    assert (unsupported.error.code, unsupported.error.message) == (
        "invalid",
        "unsupported request Ok",
    )
