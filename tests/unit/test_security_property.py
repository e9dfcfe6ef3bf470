"""Property: on a random object hierarchy with random users, groups, roles and grants,
``is_permitted`` and ``visible_object_ids`` agree with a brute-force reference that knows
the hierarchy from how it was generated (not from the contract attribute names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.permission import AddPermission, AddRole
from commands.user import AddGroup, AddUser, AddUserToGroup
from domain.base import AGGREGATE_TYPES, Aggregate, Ctx, DomainError, Meta, Tx
from domain.rules.access_rules import is_permitted, visible_object_ids
from domain.user import EVERYONE_GROUP_ID, add_everyone_group
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

PERMITS = ["login", "vm_basic_operations", "delete_vm", "edit_host_configuration", "create_vm"]
CHECKED = [*PERMITS, "configure_engine"]  # the last one no generated role holds


class _PropAtt(msgspec.Struct, frozen=True):
    disk_id: UUID


class PropDc(Aggregate, frozen=True, kw_only=True):
    KIND = "data_center"


class PropCluster(Aggregate, frozen=True, kw_only=True):
    KIND = "cluster"
    data_center_id: UUID


class PropHost(Aggregate, frozen=True, kw_only=True):
    KIND = "host"
    cluster_id: UUID


class PropPool(Aggregate, frozen=True, kw_only=True):
    KIND = "vm_pool"
    cluster_id: UUID


class PropVm(Aggregate, frozen=True, kw_only=True):
    KIND = "vm"
    cluster_id: UUID
    pool_id: UUID | None = None
    disk_attachments: tuple[_PropAtt, ...] = ()


class PropSd(Aggregate, frozen=True, kw_only=True):
    KIND = "storage_domain"
    data_center_id: UUID | None = None


class PropDisk(Aggregate, frozen=True, kw_only=True):
    KIND = "disk"
    storage_domain_id: UUID


class PropNet(Aggregate, frozen=True, kw_only=True):
    KIND = "network"
    data_center_id: UUID


class PropProfile(Aggregate, frozen=True, kw_only=True):
    KIND = "vnic_profile"
    network_id: UUID


class PropTemplate(Aggregate, frozen=True, kw_only=True):
    KIND = "template"
    data_center_id: UUID | None = None


# The stand-ins are registered (so kind lookups find them) only while this module's tests
# run: other modules' tests see the real aggregate registry.
_STANDINS = [
    PropDc,
    PropCluster,
    PropHost,
    PropPool,
    PropVm,
    PropSd,
    PropDisk,
    PropNet,
    PropProfile,
    PropTemplate,
]
for _cls in _STANDINS:
    AGGREGATE_TYPES.pop(_cls.__name__, None)


@pytest.fixture(autouse=True, scope="module")
def _standins_registered() -> Iterator[None]:
    for cls in _STANDINS:
        AGGREGATE_TYPES[cls.__name__] = cls
    yield
    for cls in _STANDINS:
        AGGREGATE_TYPES.pop(cls.__name__, None)


class Hierarchy:
    """Objects put into a World's engine, with the reference parent relation beside them."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.kind: dict[UUID, str] = {}
        self.up: dict[UUID, list[UUID]] = {}

    def put(self, cls: type[Aggregate], parents: list[UUID | None], **fields: Any) -> UUID:
        oid = self.w.next_id()
        self.w.engine.restore(oid, cls(id=oid, version=1, **fields), None)
        self.kind[oid] = cls.KIND
        self.up[oid] = [p for p in parents if p is not None]
        return oid

    def ancestors(self, oid: UUID | None) -> set[UUID | None]:
        out: set[UUID | None] = {None}
        todo = [oid] if oid is not None else []
        while todo:
            cur = todo.pop()
            if cur in out:
                continue
            out.add(cur)
            todo.extend(self.up[cur])
        return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_dc = draw(st.integers(1, 3))
    clusters = draw(st.lists(st.integers(0, n_dc - 1), min_size=1, max_size=4))
    nc = len(clusters)
    pools = draw(st.lists(st.integers(0, nc - 1), max_size=2))
    vms = draw(
        st.lists(
            st.tuples(st.integers(0, nc - 1), st.none() | st.integers(0, max(len(pools) - 1, 0))),
            max_size=5,
        )
    )
    sds = draw(st.lists(st.none() | st.integers(0, n_dc - 1), max_size=3))
    disks = (
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(sds) - 1),
                    st.sets(st.integers(0, max(len(vms) - 1, 0)), max_size=2),
                ),
                max_size=4,
            )
        )
        if sds
        else []
    )
    return {
        "n_dc": n_dc,
        "clusters": clusters,
        "hosts": draw(st.lists(st.integers(0, nc - 1), max_size=3)),
        "pools": pools,
        "vms": vms,
        "sds": sds,
        "disks": disks,
        "nets": (nets := draw(st.lists(st.integers(0, n_dc - 1), max_size=2))),
        "profiles": draw(st.lists(st.integers(0, len(nets) - 1), max_size=2)) if nets else [],
        "templates": draw(st.lists(st.none() | st.integers(0, n_dc - 1), max_size=2)),
        "roles": draw(
            st.lists(
                st.tuples(st.sets(st.sampled_from(PERMITS), min_size=1), st.booleans()),
                min_size=1,
                max_size=3,
            )
        ),
        "membership": draw(st.lists(st.sets(st.integers(0, 1)), min_size=3, max_size=3)),
        "grants": draw(
            st.lists(
                # principal: 0-2 users, 3-4 groups, 5 Everyone; object: index or None (system)
                st.tuples(st.integers(0, 5), st.integers(0, 2), st.none() | st.integers(0, 60)),
                max_size=8,
            )
        ),
    }


def _build(sc: dict[str, Any]) -> tuple[World, Hierarchy, dict[str, Any]]:
    w = World()
    tx = Tx(w.engine, Ctx(now=w.now, meta=Meta()), w.next_id)
    add_everyone_group(tx)
    w.engine.apply_all(tx.events)
    h = Hierarchy(w)
    dcs = [h.put(PropDc, []) for _ in range(sc["n_dc"])]
    cl = [h.put(PropCluster, [dcs[d]], data_center_id=dcs[d]) for d in sc["clusters"]]
    for c in sc["hosts"]:
        h.put(PropHost, [cl[c]], cluster_id=cl[c])
    pools = [h.put(PropPool, [cl[c]], cluster_id=cl[c]) for c in sc["pools"]]
    sds = [
        h.put(
            PropSd,
            [dcs[d] if d is not None else None],
            data_center_id=None if d is None else dcs[d],
        )
        for d in sc["sds"]
    ]
    disk_ids = [w.next_id() for _ in sc["disks"]]
    attached: dict[int, list[UUID]] = {}
    for disk_id, (_, vm_idx) in zip(disk_ids, sc["disks"], strict=True):
        for v in vm_idx:
            attached.setdefault(v, []).append(disk_id)
    vms = []
    for i, (c, p) in enumerate(sc["vms"]):
        pool = pools[p] if p is not None and pools else None
        atts = tuple(_PropAtt(d) for d in attached.get(i, []))
        vms.append(
            h.put(PropVm, [cl[c], pool], cluster_id=cl[c], pool_id=pool, disk_attachments=atts)
        )
    for disk_id, (s, vm_idx) in zip(disk_ids, sc["disks"], strict=True):
        vm_parents = [vms[v] for v in sorted(vm_idx) if v < len(vms)]
        w.engine.restore(disk_id, PropDisk(id=disk_id, version=1, storage_domain_id=sds[s]), None)
        h.kind[disk_id] = "disk"
        h.up[disk_id] = [sds[s], *vm_parents]
    nets = [h.put(PropNet, [dcs[d]], data_center_id=dcs[d]) for d in sc["nets"]]
    for n in sc["profiles"]:
        h.put(PropProfile, [nets[n]], network_id=nets[n])
    for d in sc["templates"]:
        h.put(
            PropTemplate,
            [dcs[d] if d is not None else None],
            data_center_id=None if d is None else dcs[d],
        )

    users = [w.run(AddUser(user_name=f"u{i}@internal")) for i in range(3)]
    groups = [w.run(AddGroup(name=f"g{i}")) for i in range(2)]
    for u, gs in zip(users, sc["membership"], strict=True):
        for g in sorted(gs):
            w.run(AddUserToGroup(user_id=u, group_id=groups[g]))
    roles = []
    for i, (permits, view) in enumerate(sc["roles"]):
        rid = w.run(
            AddRole(name=f"r{i}", administrative=True, permits=sorted(permits), view_children=view)
        )
        roles.append((rid, set(permits), view))
    principals = [*users, *groups, EVERYONE_GROUP_ID]
    objects = list(h.kind)
    grants = []
    for who, r, o in sc["grants"]:
        obj = objects[o % len(objects)] if o is not None else None
        kind = h.kind[obj] if obj is not None else "system"
        role_id, permits, view = roles[r % len(roles)]
        key = "user_id" if who < 3 else "group_id"
        try:
            w.run(
                AddPermission(
                    role_id=role_id, object_kind=kind, object_id=obj, **{key: principals[who]}
                )
            )
        except DomainError:  # the same grant twice
            continue
        grants.append((principals[who], obj, permits, view))
    members = {
        u: {u, EVERYONE_GROUP_ID, *(groups[g] for g in gs)}
        for u, gs in zip(users, sc["membership"], strict=True)
    }
    return w, h, {"users": users, "grants": grants, "members": members}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_is_permitted_matches_brute_force(sc: dict[str, Any]) -> None:
    w, h, ref = _build(sc)
    targets: list[tuple[str, UUID | None]] = [
        ("system", None),
        *((k, o) for o, k in h.kind.items()),
    ]
    for u in ref["users"]:
        who = ref["members"][u]
        for kind, obj in targets:
            above = h.ancestors(obj)
            for permit in CHECKED:
                expected = any(
                    p in who and g_obj in above and permit in permits
                    for p, g_obj, permits, _ in ref["grants"]
                )
                assert is_permitted(w.engine, u, permit, kind, obj) == expected, (kind, permit)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_visible_objects_match_brute_force(sc: dict[str, Any]) -> None:
    w, h, ref = _build(sc)
    for u in ref["users"]:
        who = ref["members"][u]
        for kind in ("vm", "host", "cluster", "disk", "vnic_profile", "template", "data_center"):
            expected = {
                o
                for o, k in h.kind.items()
                if k == kind
                and any(
                    p in who and (g_obj == o or (view and g_obj in h.ancestors(o) - {o}))
                    for p, g_obj, _, view in ref["grants"]
                )
            }
            assert visible_object_ids(w.engine, u, kind) == expected, kind
