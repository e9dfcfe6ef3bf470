"""The Admin Portal in a real browser against two real hosts (libvirtd + hostd each,
QEMU/KVM): a VM made in the New VM dialog with a disk and a NIC, run from the toolbar,
seen turning ``up`` on the page it was started from (no reload: the test holds the page
and waits on the DOM), migrated with the host column changing, suspended and resumed,
rebooted, shut down, powered off, removed, and its history read after removal.
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
SUSPENDED = re.compile(r"^\s*suspended\s*$")


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


@pytest.fixture(scope="module")
def manager(hosts: HostCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Manager with both hosts up and an active data domain, an SDK connection to it
    (``srv.conn``) and a browser (``srv.browser``)."""
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
    data = tmp_path_factory.mktemp("portal-hosts")
    try:
        with running_server(data, hostlink_options=options) as srv, chromium() as browser:
            conn = connection(srv)
            try:
                _hosts_and_storage(conn, hosts, sd_dir, uris)
                srv.conn, srv.browser = conn, browser
                yield srv
            finally:
                conn.close()
    finally:
        shutil.rmtree(sd_dir, ignore_errors=True)


def test_vm_lifecycle_in_the_admin_portal_on_real_hosts(manager: Any, hosts: HostCluster):
    import ovirtsdk4.types as types

    srv, conn = manager, manager.conn
    ctx = manager.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
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
        # In the system tree (another tab), the VM sits under the host running it.
        tree = ctx.new_page()
        tree.goto(base_url(srv) + "/ovirt-engine/webadmin/tree")
        host_li = tree.locator("#system-tree li", has=tree.locator(f"a:text-is('{first}')"))
        assert host_li.last.locator(f"a[href$='/vms/{vm.id}']").count() == 1
        tree.close()

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

        # Suspend and run again (resume), reboot, shut down (the OS-less guest
        # does not answer ACPI: powered off after the timeout), run, power off.
        status = _cell(page, vm.id, "status")
        page.click("button[data-action='suspend']")
        status.filter(has_text=SUSPENDED).wait_for(timeout=60_000)
        assert vm_service.get().status == types.VmStatus.SUSPENDED
        page.click("button[data-action='start']")
        status.filter(has_text=UP).wait_for(timeout=60_000)
        page.click("button[data-action='reboot']")
        page.locator(".toast.success", has_text="Reboot requested").wait_for()
        status.filter(has_text=UP).wait_for(timeout=60_000)
        page.click("button[data-action='shutdown']")
        status.filter(has_text=DOWN).wait_for(timeout=60_000)
        page.click("button[data-action='start']")
        status.filter(has_text=UP).wait_for(timeout=60_000)
        page.click("button[data-action='stop']")
        status.filter(has_text=DOWN).wait_for(timeout=60_000)
        assert page.locator(".toast.error").count() == 0
        assert page.evaluate("window.__held") == "same page"
        # Then remove it through the dialog.
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
    finally:
        ctx.close()


def test_user_takes_a_vm_from_a_pool_and_runs_it(manager: Any) -> None:
    import ovirtsdk4.types as types

    system = manager.conn.system_service()
    u = system.users_service().add(
        types.User(user_name="erin", domain=types.Domain(name="internal"), password="pw-erin")
    )
    pool = system.vm_pools_service().add(
        types.VmPool(
            name="erin-pool",
            cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"),
            size=2,
        )
    )
    system.vm_pools_service().pool_service(pool.id).permissions_service().add(
        types.Permission(role=types.Role(name="UserRole"), user=types.User(id=u.id))
    )
    ctx = manager.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = login(ctx, manager, "erin", "pw-erin", "/ovirt-engine/web-ui/")
        page.wait_for_url("**/ovirt-engine/web-ui/")
        page.wait_for_selector("body[data-stream='open']")
        assert page.locator(".pool-card .card-name").all_inner_texts() == ["erin-pool"]
        assert page.locator(".vm-card").count() == 0  # the pool's VMs show once taken
        page.click(f".pool-card[data-id='{pool.id}'] [data-pool-take]")
        card = page.locator(".vm-card").first
        card.wait_for(timeout=60_000)
        name = card.locator(".card-name").inner_text()
        assert name.startswith("erin-pool")
        # Taking a VM runs it; its card turns up without reload.
        card.locator(".status-text").filter(has_text=UP).wait_for(timeout=90_000)
        vm = system.vms_service().list(search=f"name={name}")[0]
        assert vm.status == types.VmStatus.UP
        shot(page, "vm-portal-pool")
        # Her card's Power off goes through the API's permission check (UserRole).
        # (An automatic pool takes a VM that goes down back: its card then leaves.)
        card.locator("[data-vm-action='stop']").click()
        vm_service = system.vms_service().vm_service(vm.id)
        poll(vm_service.get, lambda v: v.status == types.VmStatus.DOWN, "pool VM down")
        page.locator(".vm-card .status-text").filter(has_text=UP).wait_for(
            state="detached", timeout=30_000
        )
        assert page.locator(".toast.error").count() == 0
    finally:
        ctx.close()
