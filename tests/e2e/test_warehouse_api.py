"""The history warehouse through the API: read-only SQL on oVirt's DWH view names and the
canned reports as JSON or PNG (what a user may not do there: test_warehouse_guard.py)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.api_server import ADMIN_PASSWORD, running_server

pytestmark = pytest.mark.e2e


def _get(srv, path: str, user: str = "admin@internal", password: str = ADMIN_PASSWORD):
    import base64

    url = srv.url.replace("/ovirt-engine/api", "") + path
    req = urllib.request.Request(url)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_sql_and_reports(tmp_path: Path) -> None:
    with running_server(tmp_path, warehouse=True) as srv:
        q = urllib.parse.quote("SELECT datacenter_name FROM v4_4_latest_configuration_datacenters")
        deadline = time.monotonic() + 30
        while True:
            status, _, body = _get(srv, f"/orrery/warehouse/sql?query={q}")
            assert status == 200, body
            rows = json.loads(body)["rows"]
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ["Default"] in rows

        bad = urllib.parse.quote("DROP TABLE vm_samples_history")
        status, ctype, body = _get(srv, f"/orrery/warehouse/sql?query={bad}")
        assert (status == 400 and b"fault" in body) or b"error" in body.lower()

        status, ctype, body = _get(srv, "/orrery/warehouse/reports/top-vms?hours=48")
        assert status == 200 and set(json.loads(body)) >= {"title", "columns", "rows"}
        status, ctype, body = _get(srv, "/orrery/warehouse/reports/host-utilisation?format=png")
        assert status == 200 and ctype == "image/png" and body.startswith(b"\x89PNG")
        status, _, _ = _get(srv, "/orrery/warehouse/reports/nonsense")
        assert status == 404
        status, _, _ = _get(srv, "/orrery/warehouse/sql?query=x", password="wrong")
        assert status == 401
