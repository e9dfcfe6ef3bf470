"""Secrets the Manager holds outside the log: host enrollment secrets and console tickets.

Both the command side and the host link import this module (it imports nothing of ours),
so neither has to reach into the other:

- ``HostSecrets``: each host's enrollment secret, by host id, in a file only root can
  read (the API writes it once the host's ``AddHost`` has committed; the host link reads
  it to connect).
- ``ConsoleTickets`` / ``CONSOLE_TICKETS``: a console password on its way from the
  ``SetVmConsoleTicket`` handler that made it (``new_console_password``) to the host
  link, which hands it to hostd once the ``VmConsoleTicketSet`` event commits. Memory
  only; the event records protocol, host and expiry, never the password.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets as _secrets
import threading
import time
from pathlib import Path
from uuid import UUID


class ConsoleTickets:
    """Console passwords on their way from the command that made them to the host: in
    memory only, by (VM id, version of the VmConsoleTicketSet event), each dropped once
    handed over or once it expired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[UUID, int], tuple[str, float]] = {}

    def put(self, vm_id: UUID, version: int, password: str, ttl_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (_, until) in self._items.items() if until < now]:
                del self._items[k]
            self._items[(vm_id, version)] = (password, now + ttl_s)

    def take(self, vm_id: UUID, version: int) -> str | None:
        with self._lock:
            item = self._items.pop((vm_id, version), None)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]


CONSOLE_TICKETS = ConsoleTickets()


def new_console_password(protocol: str = "vnc") -> str:
    """A one-time console password: 8 characters for VNC (libvirt's limit), 16 for SPICE."""
    return _secrets.token_urlsafe(12)[: 8 if str(protocol) == "vnc" else 16]


class HostSecrets:
    """Host enrollment secrets, by host id, in a file only root can read.

    A secret is written once its host's ``AddHost`` has committed (a refused command
    stores nothing); ``put`` changes what ``get`` answers only once the file is written.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self._data = json.loads(self.path.read_text() or "{}")

    def get(self, host_id: UUID) -> str | None:
        return self._data.get(str(host_id))

    async def wait_for(self, host_id: UUID, timeout: float) -> str | None:
        """The host's secret, waiting up to ``timeout`` seconds for it to be stored."""
        deadline = time.monotonic() + timeout
        while (secret := self.get(host_id)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return secret

    def put(self, host_id: UUID, secret: str) -> None:
        """Stores a secret; raises OSError (nothing changed) when the file cannot be written."""
        with self._lock:
            self._write({**self._data, str(host_id): secret})

    def forget(self, host_id: UUID) -> None:
        with self._lock:
            if str(host_id) in self._data:
                self._write({k: v for k, v in self._data.items() if k != str(host_id)})

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
        self._data = data


__all__ = ["CONSOLE_TICKETS", "ConsoleTickets", "HostSecrets", "new_console_password"]
