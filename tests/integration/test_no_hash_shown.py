"""Password hashes live in the log (logins survive replay) but no tool shows them: not
`orrery events`, not `orrery state`, not the per-object history API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from api.cli import main
from commands.bootstrap import open_bus
from commands.system import ensure_initialized
from projections.history import diff

pytestmark = pytest.mark.integration


def test_cli_tools_mask_the_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bus = open_bus(None, tmp_path)
    ensure_initialized(bus, admin_password="a-password")
    raw = b"".join(n.state for n in bus.log.read_raw(0, 10_000))
    bus.stop()
    assert b"$argon2id$" in raw  # the hash is in the log...
    for argv in (
        ["events", "--data-dir", str(tmp_path), "--json"],
        ["state", "--data-dir", str(tmp_path), "--as-of", "2100-01-01T00:00:00Z", "--json"],
    ):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "$argon2" not in out and "***" in out, argv  # ...and shown by no tool


def test_history_api_masks_the_hash(tmp_path: Path) -> None:
    from tests.e2e.api_server import ADMIN_PASSWORD, running_server

    with running_server(tmp_path) as srv:
        admin = next(
            u
            for u in srv.bus.engine.objects.values()
            if getattr(u, "user_name", "") == "admin@internal"
        )
        url = srv.url.replace("/ovirt-engine/api", "") + f"/orrery/history/users/{admin.id}"
        req = urllib.request.Request(url)
        import base64

        token = base64.b64encode(f"admin@internal:{ADMIN_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read().decode()
        assert "$argon2" not in body and json.loads(body)
    # The projections' own diff masks it too.
    d = diff(None, admin)
    assert d["password_hash"][1] == "***"
