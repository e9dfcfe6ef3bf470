"""A real browser for the portal tests: Playwright (PyPI) driving Debian's chromium.

No browser is downloaded (no ``playwright install``): ``executable_path`` points at the
system's chromium, which ``deploy/system-deps.sh test`` installs. Screenshots go to
``tests/e2e/screenshots/`` (git-ignored; the README's copies are in docs/screenshots/).
"""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

CHROMIUM = os.environ.get("ORRERY_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).parent / "screenshots"


def need_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        msg = f"{CHROMIUM} is missing: run deploy/system-deps.sh test"
        if os.environ.get("ORRERY_REQUIRE_SERVICES"):
            pytest.fail(msg)
        pytest.skip(msg)


@contextmanager
def chromium() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def base_url(srv: Any) -> str:
    return f"http://{srv.host}:{srv.port}"


def login(context: Any, srv: Any, user: str, password: str, path: str = "/ovirt-engine/") -> Any:
    """A page of ``context`` logged in through the portal's login form."""
    page = context.new_page()
    page.goto(base_url(srv) + "/ovirt-engine/login?next=" + quote(path, safe="/"))
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()
    return page


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def session_cookie(context: Any) -> str:
    for c in context.cookies():
        if c["name"] == "orrery_session":
            return c["value"]
    raise AssertionError("no session cookie")


def raw_request(
    srv: Any, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    """One HTTP request with exactly these headers (no browser adding Origin or cookies);
    reads only the first bytes of the answer, so an event stream does not hold it."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read1(4096) if hasattr(resp, "read1") else resp.read(64)
    finally:
        conn.close()
