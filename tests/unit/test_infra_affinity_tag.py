"""Affinity groups (without VMs) and tags."""

from __future__ import annotations

import pytest

from commands.affinity import AddAffinityGroup, RemoveAffinityGroup, UpdateAffinityGroup
from commands.cluster import RemoveCluster
from commands.host import DeactivateHost, RemoveHost
from commands.tag import AddTag, AttachTag, DetachTag, RemoveTag, UpdateTag
from domain.affinity import AffinityGroup
from domain.tag import Tag, tags_of
from tests.unit.helpers import World
from tests.unit.test_infra_world import cluster, dc, host, rejects

pytestmark = pytest.mark.unit


def test_affinity_group_names_unique_per_cluster() -> None:
    w = World()
    d = dc(w)
    c1, c2 = cluster(w, d, "c1"), cluster(w, d, "c2")
    g = w.run(AddAffinityGroup(name="g", cluster_id=c1))
    obj = w.engine.get(AffinityGroup, g)
    assert (obj.positive, obj.enforcing, obj.hosts_positive, obj.hosts_enforcing) == (
        True,
        True,
        True,
        False,
    )
    rejects(w, AddAffinityGroup(name="g", cluster_id=c1), "name is already in use")
    w.run(AddAffinityGroup(name="g", cluster_id=c2))
    g2 = w.run(AddAffinityGroup(name="h", cluster_id=c1))
    rejects(w, UpdateAffinityGroup(affinity_group_id=g2, name="g"), "already in use")


def test_hosts_in_group_and_host_removal_drops_them() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    h1, h2 = host(w, c, "h1", port=1), host(w, c, "h2", port=2)
    g = w.run(AddAffinityGroup(name="g", cluster_id=c, host_ids=(h1, h2)))
    rejects(w, AddAffinityGroup(name="x", cluster_id=c, host_ids=(h1, h1)), "listed twice")
    w.run(DeactivateHost(host_id=h1))
    w.run(RemoveHost(host_id=h1))
    assert w.engine.get(AffinityGroup, g).host_ids == (h2,)
    w.run(UpdateAffinityGroup(affinity_group_id=g, hosts_enforcing=True, description="d"))
    assert w.engine.get(AffinityGroup, g).hosts_enforcing
    w.run(RemoveAffinityGroup(affinity_group_id=g))
    assert w.engine.find(AffinityGroup, g) is None


def test_cluster_removal_removes_its_groups() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    g = w.run(AddAffinityGroup(name="g", cluster_id=c))
    w.run(RemoveCluster(cluster_id=c))
    assert w.engine.find(AffinityGroup, g) is None


def test_tag_hierarchy_and_cycles() -> None:
    w = World()
    root = w.run(AddTag(name="env"))
    prod = w.run(AddTag(name="prod", parent_id=root))
    eu = w.run(AddTag(name="prod-eu", parent_id=prod))
    rejects(w, AddTag(name="env"), "name is already in use")
    rejects(w, UpdateTag(tag_id=root, parent_id=eu), "its own ancestor", field="parent")
    rejects(w, UpdateTag(tag_id=root, parent_id=root), "its own ancestor")
    w.run(UpdateTag(tag_id=eu, parent_id=root, description="moved"))
    assert w.engine.get(Tag, eu).parent_id == root
    w.run(UpdateTag(tag_id=eu, parent_id=None))
    assert w.engine.get(Tag, eu).parent_id is None


def test_remove_tag_removes_subtags() -> None:
    w = World()
    root = w.run(AddTag(name="env"))
    prod = w.run(AddTag(name="prod", parent_id=root))
    leaf = w.run(AddTag(name="leaf", parent_id=prod))
    keep = w.run(AddTag(name="keep"))
    w.run(RemoveTag(tag_id=root))
    assert [w.engine.find(Tag, t) for t in (root, prod, leaf)] == [None, None, None]
    assert w.engine.find(Tag, keep) is not None


def test_attach_detach_tags_to_hosts_only_taggable_objects() -> None:
    w = World()
    d = dc(w)
    c = cluster(w, d)
    h = host(w, c)
    t = w.run(AddTag(name="rack1"))
    w.run(AttachTag(tag_id=t, object_id=h))
    assert [x.name for x in tags_of(w.engine, h)] == ["rack1"]
    rejects(w, AttachTag(tag_id=t, object_id=h), "already attached")
    rejects(w, AttachTag(tag_id=t, object_id=c), "cannot be tagged")
    rejects(w, AttachTag(tag_id=t, object_id=w.next_id()), "not found")
    w.run(DetachTag(tag_id=t, object_id=h))
    rejects(w, DetachTag(tag_id=t, object_id=h), "not attached")
    w.run(AttachTag(tag_id=t, object_id=h))
    w.run(DeactivateHost(host_id=h))
    w.run(RemoveHost(host_id=h))
    assert w.engine.get(Tag, t).object_ids == ()
