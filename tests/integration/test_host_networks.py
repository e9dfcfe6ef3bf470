"""Host networks are set up reliably: bridges made by several hostds at once, a bridge
hostd did not make left alone, a failed setup that is the host's status detail and an
event with hostd's reason and is retried until the host comes up, and nothing left behind.

Real bridges in this machine's network namespace (as root), real harness hosts, the real
bus and HostLink; names are random so nothing here touches a bridge the machine has.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from commands import network as net_cmds
from domain.cluster import Cluster
from domain.host import Host, HostNetworkSetupFailed
from domain.statuses import HostStatus
from hostd import network
from hostd.protocol import BridgeSpec
from tests.integration.hostd_fixtures import need_libvirt, running_hosts
from tests.integration.test_manager_hosts import Manager

pytestmark = pytest.mark.integration


def _name() -> str:
    return "ort" + uuid.uuid4().hex[:8]


def _exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _del(name: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


@pytest.fixture
def bridge_name():
    need_libvirt()  # root and the ip tool, as the harness needs
    name = _name()
    yield name
    _del(name)


def _race(name: str, n: int) -> list[tuple[bool, bool, str]]:
    """n threads ask for the same bridge at the same moment: (ok, created, detail) each."""
    start = threading.Barrier(n)
    results: list[tuple[bool, bool, str]] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        st, created = network.setup(BridgeSpec(network=name))
        with lock:
            results.append((st.ok, created, st.detail))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_hostds_racing_for_one_bridge_all_succeed_and_one_made_it(bridge_name: str) -> None:
    for _round in range(6):
        results = _race(bridge_name, 6)
        assert [r for r in results if not r[0]] == [], results
        assert sum(1 for r in results if r[1]) == 1, results
        assert network.bridge_exists(bridge_name)
        _del(bridge_name)


def test_a_bridge_hostd_did_not_make_is_never_removed(bridge_name: str, tmp_path: Path) -> None:
    subprocess.run(["ip", "link", "add", bridge_name, "type", "bridge"], check=True)
    st, created = network.setup(BridgeSpec(network=bridge_name))
    assert st.ok and not created
    assert network.remove(bridge_name, created_here=False).ok
    assert network.bridge_exists(bridge_name)
    # A failure after finding the bridge (a port that does not exist) leaves it in place.
    st, created = network.setup(BridgeSpec(network=bridge_name, nic="ortnosuchnic0"))
    assert not st.ok and not created
    assert network.bridge_exists(bridge_name)
    # What a hostd records as created is what its clean-up removes, and only that.
    network.save_created(tmp_path, {bridge_name})
    assert network.remove_created(tmp_path) == [bridge_name]
    assert not _exists(bridge_name)
    assert network.load_created(tmp_path) == set()


def test_failed_network_setup_is_the_status_detail_an_event_and_is_retried(
    tmp_path: Path,
) -> None:
    net = _name()
    mgmt_before = _exists("ovirtmgmt")
    # An interface of the network's name that is not a bridge: hostd cannot make it.
    subprocess.run(
        ["ip", "link", "add", net, "type", "veth", "peer", "name", net + "p"], check=True
    )
    try:
        with running_hosts(2, ["--heartbeat-interval", "0.5"]) as hosts:
            m = Manager(tmp_path)
            m.link.network_retry_every = 1.0
            try:
                with m.bus.lock:
                    cluster = next(c for c in m.bus.engine.all(Cluster) if c.name == "Default")
                m.run(
                    net_cmds.AddNetwork(
                        name=net,
                        data_center_id=cluster.data_center_id,
                        cluster_ids=(cluster.id,),
                        required=True,
                        actor="admin@internal",
                    )
                )
                ids = [m.add_host(h, hosts.token, cluster.id) for h in hosts.hosts]

                def detail(h: uuid.UUID) -> str:
                    return m.get(Host, h).status_detail

                m.wait(
                    lambda: all(
                        m.get(Host, h).status == HostStatus.NON_OPERATIONAL
                        and "not a bridge" in detail(h)
                        for h in ids
                    ),
                    60,
                    "both hosts non_operational with hostd's reason",
                )
                for h in ids:
                    assert detail(h).startswith("network_unreachable: ")
                    assert net in detail(h)
                failures = [
                    ev
                    for _nid, ev in m.bus.log.read(0, 100_000)
                    if isinstance(ev, HostNetworkSetupFailed)
                ]
                assert {ev.originator_id for ev in failures} == set(ids)
                assert all(net in ev.networks and "not a bridge" in ev.reason for ev in failures)
                # The retries do not flood the log: one event per host and reason.
                time.sleep(2.5)  # a few retries (every second here)
                again = [
                    ev
                    for _nid, ev in m.bus.log.read(0, 100_000)
                    if isinstance(ev, HostNetworkSetupFailed)
                ]
                assert len(again) == len(failures) == 2
                # The obstacle goes: the next retry makes the bridge and the hosts come up.
                _del(net)
                m.wait(
                    lambda: all(m.get(Host, h).status == HostStatus.UP for h in ids),
                    60,
                    "both hosts up once the network could be set up",
                )
                assert network.bridge_exists(net)
                assert network.bridge_exists("ovirtmgmt")
            finally:
                m.close()
        # The harness removed what its hosts created.
        assert not _exists(net)
        if not mgmt_before:
            assert not _exists("ovirtmgmt")
    finally:
        _del(net)
