"""A real Orrery API server on a loopback port for tests: bus + initialization + API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ADMIN_PASSWORD = "orrery-test-secret"


@contextmanager
def running_server(
    data_dir: Any, database_url: str | None = None, reads: str = "engine"
) -> Iterator[Any]:
    from api.reads import open_reads
    from api.server import Api, ServerThread, initialize
    from commands.bootstrap import open_bus

    bus = open_bus(database_url, data_dir)
    old = os.environ.get("ORRERY_ADMIN_PASSWORD")
    os.environ["ORRERY_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    try:
        password = initialize(bus, data_dir)
    finally:
        if old is None:
            os.environ.pop("ORRERY_ADMIN_PASSWORD", None)
        else:
            os.environ["ORRERY_ADMIN_PASSWORD"] = old
    view = open_reads(bus, reads, data_dir)
    api = Api(bus, admin_password=password, reads=view)
    srv = ServerThread(api).start()
    srv.bus = bus  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()
        read_side = getattr(view, "read", None)
        if read_side is not None:
            read_side.close()
        bus.stop()


def connection(srv: Any, user: str = "admin@internal", password: str = ADMIN_PASSWORD) -> Any:
    import ovirtsdk4 as sdk

    return sdk.Connection(url=srv.url, username=user, password=password, timeout=30)
