"""The collection table wires requests to commands by class: every field an ``Input``
reads is a field of its command, so renaming a command field fails here instead of the
request's value being dropped without a word."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.collections import ALL, RESOURCES
from api.schema import Input, Resource

pytestmark = pytest.mark.unit

# Read from the request but not a field of the command: only the host's enrollment secret,
# which api.enrollment keeps out of the command (and so out of the log) on purpose. Every
# other field an Input reads is carried out or refused by its command (issue 16).
NOT_COMMAND_FIELDS = {("hosts.add", "AddHost"): {"root_password"}}


def _inputs(res: Resource) -> Iterator[tuple[str, Input]]:
    for verb in ("add", "update", "remove"):
        inp = getattr(res, verb)
        if inp is not None:
            yield f"{res.path}.{verb}", inp
    for verb, inp in res.actions.items():
        yield f"{res.path}/{verb}", inp
    for sub in res.subs.values():
        for verb in ("add", "update", "remove"):
            inp = getattr(sub, verb)
            if inp is not None:
                yield f"{res.path}/{sub.path}.{verb}", inp
        for verb, inp in sub.actions.items():
            yield f"{res.path}/{sub.path}/{verb}", inp


def _read_fields(inp: Input) -> set[str]:
    ids = {f for f in (inp.id_field, inp.parent_field, inp.item_field) if f}
    return set(inp.fields) | set(inp.query) | ids


def test_every_field_an_input_reads_is_a_field_of_its_command():
    found = {}
    for res in ALL:
        for where, inp in _inputs(res):
            extra = _read_fields(inp) - set(inp.command.__struct_fields__)
            if extra:
                found[(where, inp.command.__name__)] = extra
    assert found == NOT_COMMAND_FIELDS


def test_the_areas_list_every_collection_once_and_sub_collections_name_collections():
    assert len({r.path for r in ALL}) == len(ALL) == len(RESOURCES)
    assert len({r.tag for r in ALL}) == len(ALL)
    for res in ALL:
        for sub in res.subs.values():
            if sub.kind == "child":
                assert sub.resource in RESOURCES, (res.path, sub.path)
