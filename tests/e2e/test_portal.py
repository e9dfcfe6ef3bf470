"""The Admin Portal and VM Portal in a real browser (Playwright driving Debian's chromium)
against a real Orrery server: login with the SSO, the session cookie and its CSRF token,
lists with the API's search language, the New VM dialog, live updates from the event
stream, permissions checked on the server, and user strings that stay text.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.api_server import ADMIN_PASSWORD, connection, running_server
from tests.e2e.portal_browser import (
    base_url,
    chromium,
    login,
    raw_request,
    session_cookie,
    shot,
)

pytestmark = pytest.mark.e2e

XSS_NAME = "<script>window.__xss=1</script>"
XSS_DESCRIPTION = '"><img src=x onerror="window.__xss=2">'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_server(tmp_path_factory.mktemp("portal")) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: Any) -> Iterator[Any]:
    conn = connection(server)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()


def _types() -> Any:
    import ovirtsdk4.types as types

    return types


def _add_vm(admin: Any, name: str, description: str = "") -> Any:
    types = _types()
    return (
        admin.system_service()
        .vms_service()
        .add(
            types.Vm(
                name=name,
                description=description,
                cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"),
            )
        )
    )


def _user_with_vm(admin: Any, user: str, password: str, vm_name: str) -> Any:
    """A user holding UserRole on one new VM; returns the VM."""
    types = _types()
    system = admin.system_service()
    u = system.users_service().add(
        types.User(user_name=user, domain=types.Domain(name="internal"), password=password)
    )
    vm = _add_vm(admin, vm_name)
    system.vms_service().vm_service(vm.id).permissions_service().add(
        types.Permission(role=types.Role(name="UserRole"), user=types.User(id=u.id))
    )
    return vm


def _csrf(page: Any) -> str:
    return page.get_attribute('meta[name="csrf-token"]', "content")


# -- login, session, welcome ---------------------------------------------------------------


def test_welcome_login_and_both_portals(server: Any, context: Any) -> None:
    page = context.new_page()
    resp = page.goto(base_url(server) + "/ovirt-engine/")
    assert resp.status == 200
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.get_attribute("#link-webadmin", "href") == "/ovirt-engine/webadmin/"
    assert page.get_attribute("#link-webui", "href") == "/ovirt-engine/web-ui/"
    shot(page, "welcome")
    page.click("#link-webadmin")
    page.wait_for_url("**/ovirt-engine/login?next=**")  # no session: the login form
    shot(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url("**/ovirt-engine/webadmin/vms")
    assert page.inner_text("#user-name") == "admin@internal"
    assert page.inner_text("h1.page-title") == "Virtual Machines"
    for section in ("Compute", "Network", "Storage", "Administration"):
        assert page.locator(".nav-title", has_text=section).count() == 1
    cookie = next(c for c in context.cookies() if c["name"] == "orrery_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP here; Secure under HTTPS
    # Every main list of the navigation answers, with its search bar.
    for nav in ("hosts", "clusters", "datacenters", "networks", "storagedomains", "events"):
        page.click(f'a[data-nav="{nav}"]')
        page.wait_for_url(f"**/webadmin/{nav}")
        if nav != "events":
            assert page.is_visible("#search")
    # Each object of a list opens its detail view, with its tabs.
    for nav in ("datacenters", "clusters", "networks", "vnicprofiles", "templates", "roles"):
        page.goto(base_url(server) + f"/ovirt-engine/webadmin/{nav}")
        href = page.get_attribute("#list tbody td a", "href")
        resp = page.goto(base_url(server) + href)
        assert resp.status == 200 and page.is_visible("#tab-general"), href
        if nav == "datacenters":
            for tab in ("permissions", "events", "history"):
                page.click(f"a[data-tab='{tab}']")
                page.wait_for_selector(f"#tab-{tab}")
    page.goto(base_url(server) + "/ovirt-engine/webadmin/clusters")
    assert page.locator("#list tbody tr", has_text="Default").count() == 1
    page.click("#list tbody td[data-col='name'] a")
    assert page.inner_text("dd[data-field='Data center']") == "Default"
    page.goto(base_url(server) + "/ovirt-engine/webadmin/clusters")
    shot(page, "admin-clusters")
    page.goto(base_url(server) + "/ovirt-engine/web-ui/")
    assert page.inner_text("h1.page-title") == "Virtual Machines"
    shot(page, "vm-portal-admin")
    # Logout ends the token itself: the old cookie no longer opens anything.
    token = session_cookie(context)
    page.click("#logout")
    page.wait_for_url("**/ovirt-engine/")
    status, _ = raw_request(
        server, "GET", "/ovirt-engine/webadmin/vms", {"Cookie": f"orrery_session={token}"}
    )
    assert status == 303
    status, _ = raw_request(
        server, "GET", "/ovirt-engine/portal/api/vms", {"Cookie": f"orrery_session={token}"}
    )
    assert status == 401


def test_wrong_password_is_refused(server: Any, context: Any) -> None:
    page = login(context, server, "admin", "not-the-password", "/ovirt-engine/webadmin/hosts")
    assert "incorrect" in page.inner_text("#login-error")
    # The form keeps where to go: the right password then leads there.
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url("**/ovirt-engine/webadmin/hosts")
    page.click("#logout")
    page.wait_for_url("**/ovirt-engine/")
    assert not [c for c in context.cookies() if c["name"] == "orrery_session"]
    resp = page.goto(base_url(server) + "/ovirt-engine/webadmin/vms")
    assert "/ovirt-engine/login" in resp.url


def test_state_changes_need_the_csrf_token_and_the_own_origin(
    server: Any, context: Any, admin: Any
) -> None:
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    token = session_cookie(context)
    csrf = _csrf(page)
    cookie = {"Cookie": f"orrery_session={token}", "Content-Type": "application/json"}
    body = json.dumps(
        {"name": "csrf-vm", "cluster": {"name": "Default"}, "template": {"name": "Blank"}}
    ).encode()
    # No token, a wrong token, another origin: refused, nothing created.
    assert raw_request(server, "POST", "/ovirt-engine/portal/api/vms", cookie, body)[0] == 403
    wrong = {**cookie, "X-CSRF-Token": "0" * 64}
    assert raw_request(server, "POST", "/ovirt-engine/portal/api/vms", wrong, body)[0] == 403
    evil = {**cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert raw_request(server, "POST", "/ovirt-engine/portal/api/vms", evil, body)[0] == 403
    site = {**cookie, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert raw_request(server, "POST", "/ovirt-engine/portal/api/vms", site, body)[0] == 403
    assert not admin.system_service().vms_service().list(search="name=csrf-vm")
    # Logout and login without their tokens are refused too.
    assert raw_request(server, "POST", "/ovirt-engine/logout", cookie, b"")[0] == 403
    form = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD}).encode()
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    assert raw_request(server, "POST", "/ovirt-engine/login", plain, form)[0] == 403
    # With the token from the page, from the own origin: created.
    ok = {**cookie, "X-CSRF-Token": csrf, "Accept": "application/json"}
    status, _ = raw_request(server, "POST", "/ovirt-engine/portal/api/vms", ok, body)
    assert status == 201
    assert admin.system_service().vms_service().list(search="name=csrf-vm")


def test_event_stream_from_another_origin_is_refused(server: Any, context: Any) -> None:
    login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    cookie = {"Cookie": f"orrery_session={session_cookie(context)}"}
    path = "/ovirt-engine/portal/stream"
    own = f"http://{server.host}:{server.port}"
    other = f"http://{server.host}:{server.port + 1}"  # same site, another origin
    assert raw_request(server, "GET", path, {**cookie, "Origin": other})[0] == 403
    assert raw_request(server, "GET", path, {**cookie, "Sec-Fetch-Site": "same-site"})[0] == 403
    assert raw_request(server, "GET", path, {})[0] == 401
    status, first = raw_request(server, "GET", path, {**cookie, "Origin": own})
    assert status == 200 and first.startswith(b": connected")


def test_event_stream_replays_after_a_reconnect(server: Any, context: Any, admin: Any) -> None:
    login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    vm = _add_vm(admin, "replayed-vm")
    newest = admin.system_service().events_service().list(max=1)[0]
    assert newest.vm is not None and newest.vm.id == vm.id
    headers = {
        "Cookie": f"orrery_session={session_cookie(context)}",
        "Last-Event-ID": str(int(newest.id) - 1),
    }
    status, first = raw_request(server, "GET", "/ovirt-engine/portal/stream", headers)
    assert status == 200
    assert first.startswith(f"id: {newest.id}\nevent: orrery\n".encode()), first[:200]
    assert vm.id.encode() in first


# -- Admin Portal ------------------------------------------------------------------------


def test_new_vm_dialog_creates_the_vm_with_its_nic(server: Any, context: Any, admin: Any) -> None:
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    page.wait_for_selector("body[data-stream='open']")
    page.evaluate("window.__held = 'same page'")
    page.click("#btn-new-vm")
    page.fill("#nv-name", "dialog-vm")
    page.fill("#nv-description", "made in the dialog")
    page.fill("#nv-memory", "512")
    page.fill("#nv-cpus", "2")
    page.select_option("#nv-os", label="Debian 12")
    page.select_option("#nv-nic-profile", label="ovirtmgmt")
    shot(page, "admin-new-vm-dialog")
    page.click("#nv-ok")
    row = page.locator("#list tbody tr", has_text="dialog-vm")
    row.wait_for()
    assert "512 MiB" in row.inner_text() and "made in the dialog" in row.inner_text()
    assert page.evaluate("window.__held") == "same page"
    vm = admin.system_service().vms_service().list(search="name=dialog-vm")[0]
    assert vm.memory == 512 * 1024 * 1024 and vm.cpu.topology.sockets == 2
    assert vm.os.type == "debian_12"
    nics = admin.system_service().vms_service().vm_service(vm.id).nics_service().list()
    assert [n.name for n in nics] == ["nic1"]
    # An error shows oVirt's message in a toast: the same name again.
    page.click("#btn-new-vm")
    page.fill("#nv-name", "dialog-vm")
    page.click("#nv-ok")
    toast = page.locator(".toast.error").first
    toast.wait_for()
    assert "name" in toast.inner_text().lower() and "in use" in toast.inner_text().lower()
    shot(page, "admin-fault-toast")


def test_a_vm_added_elsewhere_appears_without_reload(server: Any, context: Any, admin: Any):
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    page.wait_for_selector("body[data-stream='open']")
    page.evaluate("window.__held = 'same page'")
    _add_vm(admin, "from-the-sdk")
    page.locator("#list tbody tr", has_text="from-the-sdk").wait_for(timeout=5000)
    assert page.evaluate("window.__held") == "same page"


def test_search_sort_and_paging(server: Any, context: Any, admin: Any) -> None:
    for i in range(105):
        _add_vm(admin, f"page-{i:03d}")
    _add_vm(admin, "other-search")
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    page.fill("#search", "Vms: name=page-* sortby name desc")
    page.click("#search-go")
    page.wait_for_url("**search=**")
    assert page.inner_text("#total") == "105"
    names = page.locator("#list tbody td[data-col='name']").all_inner_texts()
    assert len(names) == 100 and names[0] == "page-104" and names[-1] == "page-005"
    assert "other-search" not in names
    page.click(".page-next")
    page.wait_for_url("**page=2**")
    names = page.locator("#list tbody td[data-col='name']").all_inner_texts()
    assert names == ["page-004", "page-003", "page-002", "page-001", "page-000"]
    # A column header sorts; clicking again turns the order round.
    page.click("th[data-col='name'] a")
    page.wait_for_url("**sort=name**")
    names = page.locator("#list tbody td[data-col='name']").all_inner_texts()
    assert names[:2] == ["page-000", "page-001"]
    page.click("th[data-col='name'] a")
    page.wait_for_url("**order=desc**")
    assert page.locator("#list tbody td[data-col='name']").first.inner_text() == "page-104"
    shot(page, "admin-vms-search")
    # A search the language does not accept shows the API's message.
    page.fill("#search", "name=")
    page.fill("#search", "sortby")
    page.click("#search-go")
    page.wait_for_selector("#search-error")
    assert "sortby" in page.inner_text("#search-error")


def test_vm_detail_tabs(server: Any, context: Any, admin: Any) -> None:
    vm = _add_vm(admin, "detail-vm", "the first words")
    admin.system_service().vms_service().vm_service(vm.id).update(
        _types().Vm(description="the second words")
    )
    page = login(context, server, "admin", ADMIN_PASSWORD, f"/ovirt-engine/webadmin/vms/{vm.id}")
    assert page.inner_text("#detail-status") == "down"
    assert page.inner_text("dd[data-field='Description']") == "the second words"
    assert page.inner_text("dd[data-field='Cluster']") == "Default"
    shot(page, "admin-vm-general")
    tabs = page.locator(".tabs .tab").all_inner_texts()
    assert tabs == [
        "General",
        "Disks",
        "Network Interfaces",
        "Snapshots",
        "Permissions",
        "Events",
        "History",
    ]
    page.click("a[data-tab='history']")
    page.wait_for_selector("#history")
    text = page.inner_text("#history")
    assert "VmUpdated" in text and "the first words" in text and "the second words" in text
    assert "admin@internal" in text
    shot(page, "admin-vm-history")
    page.click("a[data-tab='events']")
    page.wait_for_selector("#events")
    assert "detail-vm" in page.inner_text("#events")
    page.click("a[data-tab='permissions']")
    page.wait_for_selector("#permissions")
    # Edit: the dialog starts from the VM's values and changes them through PUT.
    page.click("a[data-tab='general']")
    page.click("#btn-edit-vm")
    assert page.input_value("#ev-description") == "the second words"
    assert page.input_value("#ev-memory") == "1024"
    page.fill("#ev-description", "edited in the dialog")
    page.fill("#ev-memory", "768")
    page.click("#ev-ok")
    page.locator("dd[data-field='Description']", has_text="edited in the dialog").wait_for()
    got = admin.system_service().vms_service().vm_service(vm.id).get()
    assert got.description == "edited in the dialog" and got.memory == 768 * 1024 * 1024
    # Snapshots of a down VM: create one through the dialog, see it listed.
    page.click("a[data-tab='snapshots']")
    page.click("#btn-snapshot")
    page.fill("#sn-description", "before the change")
    page.click("#sn-ok")
    page.locator("#snapshots td.snapshot-description", has_text="before the change").wait_for()
    snaps = admin.system_service().vms_service().vm_service(vm.id).snapshots_service().list()
    made = next(s for s in snaps if s.description == "before the change")
    # And remove it again from its row.
    page.click(f"#snapshots tr[data-id='{made.id}'] [data-snapshot-remove]")
    page.locator(f"#snapshots tr[data-id='{made.id}']").wait_for(state="detached")
    snaps = admin.system_service().vms_service().vm_service(vm.id).snapshots_service().list()
    assert "before the change" not in [s.description for s in snaps]


def test_user_strings_are_inert_on_admin_pages(server: Any, context: Any, admin: Any) -> None:
    # VM names are [\w.-]+ (the API refuses others); descriptions are free text, as are
    # snapshot descriptions, which VM Portal users set.
    vm = _add_vm(admin, "xss-vm", XSS_NAME)
    vms = admin.system_service().vms_service()
    vms.vm_service(vm.id).snapshots_service().add(_types().Snapshot(description=XSS_DESCRIPTION))
    errors: list[str] = []
    listed = "/ovirt-engine/webadmin/vms?search=name%3Dxss-vm"
    page = login(context, server, "admin", ADMIN_PASSWORD, listed)
    page.on("pageerror", lambda e: errors.append(str(e)))
    row = page.locator(f"#list tbody tr[data-id='{vm.id}']")
    assert XSS_NAME in row.inner_text()
    assert row.locator("script").count() == 0
    for url, text in (
        (f"/ovirt-engine/webadmin/vms/{vm.id}", XSS_NAME),
        (f"/ovirt-engine/webadmin/vms/{vm.id}?tab=snapshots", XSS_DESCRIPTION),
        (f"/ovirt-engine/webadmin/vms/{vm.id}?tab=history", XSS_NAME),
        ("/ovirt-engine/webadmin/events", "xss-vm"),
        ("/ovirt-engine/web-ui/", XSS_NAME),
    ):
        page.goto(base_url(server) + url)
        assert text in page.inner_text("main"), url
        assert page.locator("main img").count() == 0, url
        assert page.locator("main script").count() == 0, url
    # The live refresh swaps server-escaped fragments in: still text.
    page.goto(base_url(server) + listed)
    page.wait_for_selector("body[data-stream='open']")
    vms.vm_service(vm.id).update(_types().Vm(description=XSS_DESCRIPTION + " again"))
    page.locator("#list tbody tr", has_text="again").wait_for()
    assert page.locator("#list img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert not errors


# -- VM Portal and permissions ---------------------------------------------------------


def test_user_sees_only_their_vm_and_is_refused_admin_pages(
    server: Any, browser: Any, admin: Any
) -> None:
    mine = _user_with_vm(admin, "dora", "pw-dora", "dora-vm")
    other = _add_vm(admin, "not-doras-vm")
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = login(ctx, server, "dora", "pw-dora", "/ovirt-engine/webadmin/")
        page.wait_for_url("**/ovirt-engine/web-ui/")  # not an administrator: the VM Portal
        names = page.locator(".vm-card .card-name").all_inner_texts()
        assert names == ["dora-vm"]
        shot(page, "vm-portal-user")
        # Her event stream carries her VM's events, not the other one's.
        page.evaluate(
            """() => new Promise((ok) => {
                window.__got = [];
                const es = new EventSource('/ovirt-engine/portal/stream');
                es.addEventListener('orrery', (m) => window.__got.push(JSON.parse(m.data)));
                es.onopen = () => ok(true);
            })"""
        )
        vms = admin.system_service().vms_service()
        vms.vm_service(other.id).update(_types().Vm(description="not for dora"))
        vms.vm_service(mine.id).update(_types().Vm(description="for dora"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = page.evaluate("window.__got.map((e) => e.object_id)")
            if str(mine.id) in got:
                break
            time.sleep(0.1)
        assert str(mine.id) in got and str(other.id) not in got, got
        # Her VM's disks, NICs and snapshots; the other VM is not there for her.
        page.click(f".vm-card[data-id='{mine.id}'] .card-name a")
        page.wait_for_url(f"**/web-ui/vms/{mine.id}")
        assert page.inner_text("#nics tbody") == "No network interfaces"
        assert "Active VM" in page.inner_text("#snapshots")
        resp = page.goto(base_url(server) + f"/ovirt-engine/web-ui/vms/{other.id}")
        assert resp.status == 404
        # Every admin page and fragment is refused by the server, not just hidden.
        for url in (
            "/ovirt-engine/webadmin/vms",
            "/ovirt-engine/webadmin/vms?fragment=1",
            f"/ovirt-engine/webadmin/vms/{mine.id}",
            f"/ovirt-engine/webadmin/vms/{other.id}?fragment=1&tab=history",
            "/ovirt-engine/webadmin/events",
            "/ovirt-engine/webadmin/hosts",
            "/ovirt-engine/webadmin/tree",
        ):
            resp = page.goto(base_url(server) + url)
            assert resp.status == 403, url
            assert "not authorized" in page.inner_text("#error-detail"), url
        shot(page, "admin-refused")
        # Through the session's REST API: only her VM; the other one is not there.
        page.goto(base_url(server) + "/ovirt-engine/web-ui/")
        listed = page.evaluate(
            """async () => (await (await fetch('/ovirt-engine/portal/api/vms',
                {headers: {Accept: 'application/json'}})).json())"""
        )
        assert [v["name"] for v in listed.get("vm", [])] == ["dora-vm"]
        # An action on her VM goes through the API: no host can run it, and the toast
        # shows oVirt's message.
        page.click(f".vm-card[data-id='{mine.id}'] [data-vm-action='start']")
        toast = page.locator(".toast.error").first
        toast.wait_for()
        assert "Cannot run VM" in toast.inner_text()
        # Her powers end at her VM: removing the other one is refused.
        status = page.evaluate(
            """async ([id, csrf]) => (await fetch('/ovirt-engine/portal/api/vms/' + id,
                {method: 'DELETE', headers: {Accept: 'application/json',
                 'X-CSRF-Token': csrf}})).status""",
            [str(other.id), _csrf(page)],
        )
        assert status in (403, 404)
        assert admin.system_service().vms_service().list(search="name=not-doras-vm")
    finally:
        ctx.close()


def test_user_without_permissions_cannot_log_in(server: Any, context: Any, admin: Any) -> None:
    types = _types()
    admin.system_service().users_service().add(
        types.User(user_name="nobody", domain=types.Domain(name="internal"), password="pw-no")
    )
    page = login(context, server, "nobody", "pw-no", "/ovirt-engine/web-ui/")
    assert page.is_visible("#login-error")
    resp = page.goto(base_url(server) + "/ovirt-engine/web-ui/")
    assert "/ovirt-engine/login" in resp.url


def test_anonymous_gets_the_login_form_or_401(server: Any) -> None:
    some = "/ovirt-engine/webadmin/vms/00000000-0000-0000-0000-000000000000"
    for path in (
        "/ovirt-engine/webadmin/vms",
        "/ovirt-engine/webadmin/vms?fragment=1",
        some,
        "/ovirt-engine/webadmin/events",
        "/ovirt-engine/webadmin/tree",
        "/ovirt-engine/web-ui/",
        "/ovirt-engine/web-ui/?fragment=1",
        "/ovirt-engine/web-ui/vms/00000000-0000-0000-0000-000000000000",
    ):
        status, _ = raw_request(server, "GET", path, {})
        assert status == 303, path
    assert raw_request(server, "GET", "/ovirt-engine/portal/api/vms", {})[0] == 401
    assert raw_request(server, "POST", "/ovirt-engine/portal/api/vms", {}, b"{}")[0] == 401
    assert raw_request(server, "GET", "/ovirt-engine/portal/stream", {})[0] == 401
    # The welcome page, the login form and the assets need no session.
    for path in (
        "/ovirt-engine/",
        "/ovirt-engine/login",
        "/ovirt-engine/portal/static/portal.js",
        "/ovirt-engine/portal/vendor/patternfly/patternfly.min.css",
    ):
        assert raw_request(server, "GET", path, {})[0] == 200, path
    for path in (
        "/ovirt-engine/portal/static/../routes.py",
        "/ovirt-engine/portal/vendor/../routes.py",
        "/ovirt-engine/portal/vendor/%2e%2e/routes.py",
        "/ovirt-engine/portal/vendor/..%2f..%2fsession.py",
    ):
        status, body = raw_request(server, "GET", path, {})
        assert status == 404 and b"import" not in body, path


def test_system_tree(server: Any, context: Any, admin: Any) -> None:
    vm = _add_vm(admin, "tree-vm")
    vms = admin.system_service().vms_service()
    for i in range(max(0, 101 - len(vms.list()))):  # more than a tree node shows
        _add_vm(admin, f"tree-{i:03d}")
    total = len(vms.list())
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/vms")
    page.click("a[data-nav='tree']")
    page.wait_for_url("**/webadmin/tree")
    dc = page.locator("#system-tree > ul > li", has=page.locator("a", has_text="Default")).first
    cluster = dc.locator(":scope > ul > li").first
    assert cluster.locator(":scope > .tree-node a").inner_text() == "Default"
    shown = cluster.locator(":scope > ul > li > .tree-node a")
    # 100 VMs (down: under their cluster), then a link to the rest in the searched list.
    assert shown.count() == 101
    assert shown.first.get_attribute("href").startswith("/ovirt-engine/webadmin/vms/")
    more = shown.last
    assert more.inner_text() == f"{total - 100} more VMs"
    shot(page, "admin-tree")
    more.click()
    page.wait_for_url("**/webadmin/vms?search=**")
    assert page.inner_text("#total") == str(total)
    assert page.input_value("#search") == "Vms: cluster=Default"
    page.fill("#search", "name=tree-vm")
    page.click("#search-go")
    page.wait_for_url("**search=name**")
    assert page.locator(f"#list a[href='/ovirt-engine/webadmin/vms/{vm.id}']").count() == 1


def test_notification_drawer_shows_alerts_as_they_come(
    server: Any, context: Any, admin: Any
) -> None:
    types = _types()
    page = login(context, server, "admin", ADMIN_PASSWORD, "/ovirt-engine/webadmin/hosts")
    page.wait_for_selector("body[data-stream='open']")
    assert page.inner_text("#drawer-count") == "0"
    events = admin.system_service().events_service()
    events.add(
        types.Event(
            description="all is well", severity=types.LogSeverity.NORMAL, origin="t", custom_id=1
        )
    )
    text = "disk almost full " + XSS_DESCRIPTION
    events.add(
        types.Event(description=text, severity=types.LogSeverity.ALERT, origin="t", custom_id=2)
    )
    page.locator("#drawer-count", has_text="1").wait_for()
    page.click("#drawer-toggle")
    items = page.locator("#drawer-list li").all_inner_texts()
    assert len(items) == 1 and text in items[0]
    assert page.locator("#drawer img").count() == 0
    shot(page, "admin-notifications")
