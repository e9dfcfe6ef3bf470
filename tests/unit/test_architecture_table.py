"""The table "Where each oVirt action lives" in ``docs/architecture.md`` against the code.

Every name in a row is resolved: the REST path in the collection table (``api.collections``)
names the row's command class; the command has a handler that, run on a unit world, calls
the row's domain function, which emits the row's events; the host link's dispatch table
(``commands.hostlink.dispatch.HANDLERS``) has a line for the row's event that starts the
row's flow; the flow can send (read from its code and what it calls on itself and the
core) each of the row's host requests; and hostd's dispatch table maps each request to the
row's handler. A rename anywhere on the path fails here, so the table cannot go stale.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.collections import RESOURCES
from api.schema import Input
from commands import disk as disk_cmd
from commands import host as host_cmd
from commands import storage as storage_cmd
from commands import vm as vm_cmd
from commands.hostlink import dispatch as hostlink_dispatch
from commands.hostlink.core import Core
from commands.messages import Command
from commands.registry import HANDLERS
from domain.base import EVENT_TYPES, Event
from domain.rules import storage_rules
from hostd import dispatch as hostd_dispatch
from hostd import protocol as P
from tests.unit.test_compute_setup import ComputeWorld, GiB

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
HEADING = "## Where each oVirt action lives"
COLUMNS = (
    "action",
    "REST path",
    "command",
    "domain function",
    "events",
    "HostLink event",
    "HostLink flow",
    "host requests",
    "hostd handlers",
)
# The actions issue 12 asks the table to hold, by command class.
REQUIRED = {
    vm_cmd.StartVm,
    vm_cmd.MigrateVm,
    vm_cmd.AddSnapshot,
    disk_cmd.AddDisk,
    host_cmd.AddHost,
    storage_cmd.AttachStorageDomain,
}


# -- reading the table ---------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    action: str
    rest: str
    command: str
    domain_function: str
    events: tuple[str, ...]
    hostlink_event: str
    flow: str
    requests: tuple[str, ...]
    handlers: tuple[str, ...]


def _names(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def _one(cell: str, column: str, action: str) -> str:
    names = _names(cell)
    assert len(names) == 1, f"{action}: column {column!r} must hold one `name`: {cell!r}"
    return names[0]


def parse_table(text: str) -> list[Row]:
    """The rows of the first Markdown table after ``HEADING``."""
    assert HEADING in text, f"{DOC} has no section {HEADING!r}"
    lines = iter(text.split(HEADING, 1)[1].splitlines())
    table: list[list[str]] = []
    for line in lines:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif table or line.startswith("## "):
            break
    assert table, f"no table under {HEADING!r}"
    header, rule, *body = table
    assert tuple(header) == COLUMNS, header
    assert all(set(c) <= set("-:") for c in rule), rule
    rows = []
    for cells in body:
        assert len(cells) == len(COLUMNS), f"row with {len(cells)} cells: {cells}"
        action = cells[0]
        rows.append(
            Row(
                action=action,
                rest=_one(cells[1], COLUMNS[1], action),
                command=_one(cells[2], COLUMNS[2], action),
                domain_function=_one(cells[3], COLUMNS[3], action),
                events=_names(cells[4]),
                hostlink_event=_one(cells[5], COLUMNS[5], action),
                flow=_one(cells[6], COLUMNS[6], action),
                requests=_names(cells[7]),
                handlers=_names(cells[8]),
            )
        )
    return rows


ROWS = parse_table(DOC.read_text(encoding="utf-8"))


PARAMS = [pytest.param(r, id=r.action.replace(" ", "-")) for r in ROWS]


# -- resolving names -----------------------------------------------------------------------
def dotted(name: str, package: str = "") -> Any:
    """``module.attr[.attr]``: the longest importable module prefix, then attributes."""
    parts = (f"{package}.{name}" if package else name).split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{'.'.join(parts)}: {obj!r} has no {attr!r}"
            obj = getattr(obj, attr)
        return obj
    raise AssertionError(f"{name}: no such module")


def command_class(row: Row) -> type[Command]:
    cls = dotted(row.command)
    assert isinstance(cls, type) and issubclass(cls, Command), f"{row.command} is no Command"
    return typing.cast("type[Command]", cls)


def event_class(name: str) -> type[Event]:
    cls = EVENT_TYPES.get(name)
    assert cls is not None, f"no event with the topic {name!r}"
    assert cls.__name__ == name, f"topic {name!r} is the event class {cls.__name__}"
    return cls


def input_for(rest: str) -> Input:
    """The ``Input`` of ``METHOD /path`` in the collection table, routed as ``api.server``
    routes it: a collection's add/update/remove, an action, a sub-collection's add/remove
    (a child sub-collection's own collection when the sub declares none) and a
    sub-collection item's action."""
    method, _, path = rest.partition(" ")
    segs = path.strip("/").split("/")
    assert all(s.startswith("{") for s in segs[1::2]), f"{rest}: ids go every other segment"
    res = RESOURCES.get(segs[0])
    assert res is not None, f"{rest}: no collection {segs[0]!r}"
    found: Input | None = None
    if len(segs) == 1 and method == "POST":
        found = res.add
    elif len(segs) == 2:
        found = {"PUT": res.update, "DELETE": res.remove}.get(method)
    elif len(segs) == 3 and method == "POST" and segs[2] in res.actions:
        found = res.actions[segs[2]]
    else:
        sub = res.subs.get(segs[2])
        assert sub is not None, f"{rest}: {segs[0]} has no action or sub-collection {segs[2]!r}"
        child = RESOURCES[sub.resource] if sub.kind == "child" and sub.resource else None
        if len(segs) == 3 and method == "POST":
            found = sub.add or (child.add if child else None)
        elif len(segs) == 4:
            found = {"PUT": sub.update, "DELETE": sub.remove}.get(method)
            if found is None and child is not None:
                found = {"PUT": child.update, "DELETE": child.remove}.get(method)
        elif len(segs) == 5 and method == "POST":
            found = sub.actions.get(segs[4]) or (child.actions.get(segs[4]) if child else None)
    assert found is not None, f"{rest}: the collection table has no Input for it"
    return found


# -- what the host link can send, read from its code ---------------------------------------
FLOWS: dict[str, type] = {
    k: v for k, v in typing.get_type_hints(hostlink_dispatch.Flows).items() if k != "core"
}
_DISPATCH_TREE = ast.parse(inspect.getsource(hostlink_dispatch))
_MODULE_FUNCTIONS = {
    n.name: n for n in _DISPATCH_TREE.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
}


def _dispatch_entries() -> dict[str, ast.expr]:
    """Event class name -> the value expression of its line in the dispatch table."""
    for node in _DISPATCH_TREE.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "HANDLERS"
            and isinstance(node.value, ast.Dict)
        ):
            return {
                k.id: v
                for k, v in zip(node.value.keys, node.value.values, strict=True)
                if isinstance(k, ast.Name)
            }
    raise AssertionError("commands/hostlink/dispatch.py has no literal HANDLERS table")


@dataclass
class Reach:
    """The host requests (``P.Foo(...)``) a dispatch line can lead to, following the
    module's own functions it names, the flow methods it calls (``f.<flow>.<method>``)
    and, from there, the methods of the same class (``self.m``) and of the core
    (``self.core.m``)."""

    requests: set[str]
    flows: set[tuple[type, str]]
    seen: set[tuple[Any, str]]

    def visit(self, node: ast.AST, owner: type | None) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in _MODULE_FUNCTIONS:
                self.function(n.id)
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
                continue
            fn, on = n.func.attr, n.func.value
            if isinstance(on, ast.Name) and on.id == "P":  # hostd.protocol, as imported
                self.requests.add(fn)
            elif isinstance(on, ast.Name) and on.id == "self" and owner is not None:
                self.method(owner, fn)
            elif isinstance(on, ast.Attribute) and isinstance(on.value, ast.Name):
                if on.attr in FLOWS and owner is None:  # f.<flow>.<method>, in dispatch
                    self.flows.add((FLOWS[on.attr], fn))
                    self.method(FLOWS[on.attr], fn)
                elif on.attr == "core" and on.value.id == "self":
                    self.method(Core, fn)

    def function(self, name: str) -> None:
        if (None, name) not in self.seen:
            self.seen.add((None, name))
            self.visit(_MODULE_FUNCTIONS[name], None)

    def method(self, cls: type, name: str) -> None:
        fn = getattr(cls, name, None)
        if (cls, name) in self.seen or not inspect.isfunction(fn):
            return
        self.seen.add((cls, name))
        self.visit(ast.parse(textwrap.dedent(inspect.getsource(fn))), cls)


def reach_of(event: str) -> Reach:
    entries = _dispatch_entries()
    assert event in entries, f"commands/hostlink/dispatch.py: HANDLERS has no line for {event}"
    r = Reach(set(), set(), set())
    r.visit(entries[event], None)
    return r


# -- how each action is run on a unit world ------------------------------------------------
def _vm_with_disk(w: ComputeWorld) -> Any:
    vm_id = w.add_vm(memory=GiB)
    w.add_vm_disk(vm_id)
    return vm_id


def _remove_snapshot(w: ComputeWorld) -> Command:
    vm_id = _vm_with_disk(w)
    snap = w.run(vm_cmd.AddSnapshot(vm_id=vm_id, description="s"))
    w.run(vm_cmd.ReportSnapshot(vm_id=vm_id, snapshot_id=snap))
    return vm_cmd.RemoveSnapshot(vm_id=vm_id, snapshot_id=snap)


def _attach_storage(w: ComputeWorld) -> Command:
    sd = w.do(
        storage_rules.add_storage_domain,
        name="nfs2",
        address="nfs.example",
        path="/data2",
        available=1 << 40,
    )
    return storage_cmd.AttachStorageDomain(storage_domain_id=sd, data_center_id=w.dc)


# Command class -> the command of a row, on a world where it succeeds (a dc with two up
# hosts and active storage). A new row needs its line here.
SCENARIOS: dict[type[Command], Callable[[ComputeWorld], Command]] = {
    vm_cmd.StartVm: lambda w: vm_cmd.StartVm(vm_id=_vm_with_disk(w)),
    vm_cmd.StopVm: lambda w: vm_cmd.StopVm(vm_id=w.running_vm()),
    vm_cmd.MigrateVm: lambda w: vm_cmd.MigrateVm(vm_id=w.running_vm()),
    vm_cmd.AddSnapshot: lambda w: vm_cmd.AddSnapshot(vm_id=_vm_with_disk(w)),
    vm_cmd.RemoveSnapshot: _remove_snapshot,
    disk_cmd.AddDisk: lambda w: disk_cmd.AddDisk(
        name="d1", provisioned_size=GiB, storage_domain_id=w.sd
    ),
    host_cmd.AddHost: lambda w: host_cmd.AddHost(
        name="h3", address="10.0.0.3", cluster_id=w.cluster
    ),
    storage_cmd.AttachStorageDomain: _attach_storage,
    host_cmd.RefreshHost: lambda w: host_cmd.RefreshHost(host_id=w.hosts[0]),
}


# -- the tests -----------------------------------------------------------------------------
def test_the_table_holds_the_actions_issue_12_names() -> None:
    commands = [command_class(r) for r in ROWS]
    missing = REQUIRED - set(commands)
    assert not missing, f"no row for {sorted(c.__name__ for c in missing)}"
    assert len(commands) == len(set(commands)), "one row per action"
    assert set(SCENARIOS) == set(commands), "every row has its scenario, and no other"


@pytest.mark.parametrize("row", PARAMS)
def test_the_rest_path_names_the_command(row: Row) -> None:
    inp = input_for(row.rest)
    assert inp.command is command_class(row), (
        f"{row.rest} becomes {getattr(inp.command, '__name__', inp.command)}, not {row.command}"
    )


@pytest.mark.parametrize("row", PARAMS)
def test_the_handler_calls_the_domain_function_which_emits_the_events(
    row: Row, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = command_class(row)
    assert cls in HANDLERS, f"{row.command} has no handler (@handles)"
    module_name, _, fname = row.domain_function.rpartition(".")
    assert module_name.startswith("domain."), row.domain_function
    module = importlib.import_module(module_name)
    real = getattr(module, fname, None)
    assert inspect.isfunction(real), f"{row.domain_function} is not a function"
    assert real.__module__ == module_name, f"{row.domain_function} is defined in {real.__module__}"
    assert f".{fname}(" in inspect.getsource(HANDLERS[cls]), (
        f"the handler of {row.command} does not call {fname}"
    )
    expected = {event_class(e) for e in row.events}
    assert expected, f"{row.action}: no events"

    w = ComputeWorld()
    cmd = SCENARIOS[cls](w)
    assert type(cmd) is cls
    emitted: list[set[type[Event]]] = []

    def spy(tx: Any, *args: Any, **kw: Any) -> Any:
        n = len(tx.events)
        try:
            return real(tx, *args, **kw)
        finally:
            emitted.append({type(e) for e in tx.events[n:]})

    monkeypatch.setattr(module, fname, spy)
    w.run(cmd)
    assert emitted, f"running {row.command} did not call {row.domain_function}"
    missing = expected - emitted[0]
    assert not missing, f"{row.domain_function} did not emit {sorted(c.__name__ for c in missing)}"


@pytest.mark.parametrize("row", PARAMS)
def test_the_host_link_starts_the_flow_for_the_event(row: Row) -> None:
    assert row.hostlink_event in row.events
    ev = event_class(row.hostlink_event)
    assert ev in hostlink_dispatch.HANDLERS, f"the host link has no handler for {ev.__name__}"
    owner_name, _, method = row.flow.rpartition(".")
    owner = dotted(owner_name, "commands.hostlink")
    assert isinstance(owner, type), f"{owner_name} is not a class"
    assert inspect.isfunction(getattr(owner, method, None)), f"{row.flow} is not a method"
    assert (owner, method) in reach_of(ev.__name__).flows, (
        f"the dispatch line of {ev.__name__} does not call {row.flow}"
    )


@pytest.mark.parametrize("row", PARAMS)
def test_each_host_request_is_sent_by_the_flow_and_handled_by_hostd(row: Row) -> None:
    assert row.requests, f"{row.action}: no host requests"
    assert len(row.requests) == len(row.handlers), "one hostd handler per host request"
    sent = reach_of(row.hostlink_event).requests
    for req_name, handler_name in zip(row.requests, row.handlers, strict=True):
        req = getattr(P, req_name, None)
        assert isinstance(req, type) and issubclass(req, P.Request), (
            f"hostd.protocol has no request {req_name}"
        )
        assert req_name in sent, f"{row.flow} never sends {req_name} (it can send {sorted(sent)})"
        handler = dotted(handler_name, "hostd")
        assert hostd_dispatch.HANDLERS.get(req) is handler, (
            f"hostd.dispatch.HANDLERS maps {req_name} to "
            f"{getattr(hostd_dispatch.HANDLERS.get(req), '__qualname__', None)}, "
            f"not {handler_name}"
        )
