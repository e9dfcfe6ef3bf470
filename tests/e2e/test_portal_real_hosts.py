"""The Admin Portal in a real browser against two real hosts (libvirtd + hostd each,
QEMU/KVM): a VM made in the New VM dialog with a disk and a NIC, run from the toolbar,
seen turning ``up`` on the page it was started from (no reload: the test holds the page
and waits on the DOM), migrated with the host column changing, powered off, removed, and
its history read after removal.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from hostd.harness import Cluster as HostCluster
from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server
from tests.e2e.portal_browser import base_url, chromium, login, shot
from tests.integration.hostd_fixtures import running_hosts

pytestmark = pytest.mark.e2e

UP = re.compile(r"^\s*up\s*$")
DOWN = re.compile(r"^\s*down\s*$")


@pytest.fixture(scope="module")
def hosts() -> Iterator[HostCluster]:
    with running_hosts(2, ["--stats-interval", "5", "--heartbeat-interval", "0.5"]) as c:
        yield c


def poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if ok(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _hosts_and_storage(conn: Any, hosts: HostCluster, sd_dir: Path, uris: dict) -> None:
    """Two hosts up and an active posixfs data domain, through the REST API."""
    import ovirtsdk4.types as types

    system = conn.system_service()
    hosts_service = system.hosts_service()
    for h in hosts.hosts:
        added = hosts_service.add(
            types.Host(
                name=h.name,
                address="127.0.0.1",
                port=h.hostd_port,
                root_password=hosts.token,
                cluster=types.Cluster(name="Default"),
            )
        )
        uris[UUID(added.id)] = h.uri
    for h in hosts.hosts:
        poll(
            lambda h=h: hosts_service.list(search=f"name={h.name}")[0],
            lambda x: x.status == types.HostStatus.UP,
            f"{h.name} up",
        )
    sd = system.storage_domains_service().add(
        types.StorageDomain(
            name="data1",
            type=types.StorageDomainType.DATA,
            host=types.Host(name=hosts.hosts[0].name),
            storage=types.HostStorage(type=types.StorageType.POSIXFS, path=str(sd_dir)),
        )
    )
    dc = system.data_centers_service().list(search="name=Default")[0]
    attached = system.data_centers_service().data_center_service(dc.id).storage_domains_service()
    attached.add(types.StorageDomain(id=sd.id))
    poll(
        lambda: attached.storage_domain_service(sd.id).get(),
        lambda x: x.status == types.StorageDomainStatus.ACTIVE,
        "storage domain active",
    )


def _cell(page: Any, vm_id: str, col: str) -> Any:
    return page.locator(f"#list tbody tr[data-id='{vm_id}'] td[data-col='{col}']")


def test_vm_lifecycle_in_the_admin_portal_on_real_hosts(hosts: HostCluster, tmp_path: Path):
    import ovirtsdk4.types as types

    sd_dir = Path(tempfile.mkdtemp(prefix="orrery-portal-sd-"))
    sd_dir.chmod(0o777)
    uris: dict[UUID, str] = {}
    options = {
        "heartbeat_timeout": 3.0,
        "non_responsive_after": 3.0,
        "reconnect_every": 0.5,
        "shutdown_timeout": 2.0,
        "libvirt_uris": uris,
    }
    try:
        with running_server(tmp_path, hostlink_options=options) as srv, chromium() as browser:
            conn = connection(srv)
            try:
                _hosts_and_storage(conn, hosts, sd_dir, uris)
                ctx = browser.new_context(viewport={"width": 1280, "height": 800})
                page = login(ctx, srv, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
                page.wait_for_selector("body[data-stream='open']")
                page.evaluate("window.__held = 'same page'")

                # New VM with a disk and a NIC, through the dialog.
                page.click("#btn-new-vm")
                page.fill("#nv-name", "portal-web1")
                page.fill("#nv-memory", "64")
                page.fill("#nv-disk-size", "1")
                page.select_option("#nv-disk-domain", label="data1")
                page.select_option("#nv-nic-profile", label="ovirtmgmt")
                page.click("#nv-ok")
                page.locator("#list tbody tr", has_text="portal-web1").wait_for()
                vms = conn.system_service().vms_service()
                vm = vms.list(search="name=portal-web1")[0]
                vm_service = vms.vm_service(vm.id)
                atts = vm_service.disk_attachments_service().list()
                assert len(atts) == 1 and atts[0].bootable
                disk = conn.system_service().disks_service().disk_service(atts[0].disk.id)
                assert disk.get().provisioned_size == 1024**3
                assert [n.name for n in vm_service.nics_service().list()] == ["nic1"]
                poll(disk.get, lambda d: d.status == types.DiskStatus.OK, "disk ok")

                # Run from the toolbar; the row turns up on this page.
                page.check(f"input.row-select[data-id='{vm.id}']")
                page.click("button[data-action='start']")
                _cell(page, vm.id, "status").filter(has_text=UP).wait_for(timeout=90_000)
                assert _cell(page, vm.id, "status").inner_text().strip() == "up"
                first = _cell(page, vm.id, "host").inner_text().strip()
                assert first in {h.name for h in hosts.hosts}
                assert page.evaluate("window.__held") == "same page"
                assert vm_service.get().status == types.VmStatus.UP
                shot(page, "admin-vm-up")

                # Migrate (host chosen automatically): the host column changes.
                page.click("#btn-migrate")
                page.click("#mg-ok")
                other = next(h.name for h in hosts.hosts if h.name != first)
                _cell(page, vm.id, "host").filter(has_text=other).wait_for(timeout=90_000)
                _cell(page, vm.id, "status").filter(has_text=UP).wait_for(timeout=30_000)
                assert page.evaluate("window.__held") == "same page"
                got = vm_service.get()
                assert got.status == types.VmStatus.UP
                assert conn.follow_link(got.host).name == other

                # Power off, then remove through the dialog.
                page.click("button[data-action='stop']")
                _cell(page, vm.id, "status").filter(has_text=DOWN).wait_for(timeout=60_000)
                page.click("#btn-remove")
                page.click("#rm-ok")
                page.locator(f"#list tbody tr[data-id='{vm.id}']").wait_for(state="detached")
                assert not vms.list(search="name=portal-web1")
                assert page.evaluate("window.__held") == "same page"

                # The removed VM's history stays readable.
                page.goto(base_url(srv) + f"/ovirt-engine/webadmin/vms/{vm.id}")
                assert page.is_visible("#detail-removed")
                text = page.inner_text("#history")
                for topic in ("VmAdded", "VmRemoved"):
                    assert topic in text, text[:2000]
                shot(page, "admin-vm-removed-history")
                ctx.close()
            finally:
                conn.close()
    finally:
        shutil.rmtree(sd_dir, ignore_errors=True)
