"""Admin Portal in a real browser (Playwright driving Debian's chromium) against
``orrery serve`` with ``--vms`` VMs (prepared through the command bus).

- ``list10k_ms``: navigation start to the first screen of rows plus the total count
  (the page's ``domContentLoadedEventEnd``: rows and count are in the HTML), median of
  ``--list-runs``; baseline in the same run: the same list from the REST API as JSON.
- ``live_ms_p99``: a REST update's acknowledgement to the change seen by a
  MutationObserver in the held page, p99 over ``--changes``; baseline: the same changes'
  delivery on the portal's event stream to the same page (an EventSource of its own).
Targets: list10k_ms <= 1000, live_ms_p99 <= 500.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PASSWORD = "bench-password"
CHROMIUM = os.environ.get("ORRERY_CHROMIUM", "/usr/bin/chromium")

_OBSERVE = """(marker) => {
  window.__seen = {};
  const live = document.getElementById('live');
  new MutationObserver(() => {
    const row = document.querySelector(`#list tbody tr[data-id='${marker}']`);
    const d = row && row.querySelector("td[data-col='description']");
    if (d && !(d.textContent in window.__seen)) window.__seen[d.textContent] = Date.now();
  }).observe(live, {childList: true, subtree: true, characterData: true});
  window.__stream = {};
  const es = new EventSource('/ovirt-engine/portal/stream');
  es.addEventListener('orrery', (m) => {
    const e = JSON.parse(m.data);
    if (e.object_id === marker) window.__stream[e.id] = Date.now();
  });
  return new Promise((ok) => { es.onopen = () => ok(true); });
}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--list-runs", type=int, default=5)
    parser.add_argument("--changes", type=int, default=200)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(data_dir: Path, n: int) -> float:
    from uuid import UUID

    from commands.bootstrap import open_bus
    from commands.messages import COMMAND_TYPES
    from commands.system import ensure_initialized
    from domain.cluster import Cluster

    bus = open_bus(None, data_dir)
    try:
        ensure_initialized(bus, admin_password=PASSWORD)
        cluster = next(c for c in bus.engine.all(Cluster) if c.name == "Default")
        add_vm = COMMAND_TYPES["AddVm"]
        t0 = time.perf_counter()
        futs = [
            bus.submit(
                add_vm(name=f"bench-vm-{i:05d}", cluster_id=cluster.id, template_id=UUID(int=0))
            )
            for i in range(n)
        ]
        for f in futs:
            f.result(600)
        return time.perf_counter() - t0
    finally:
        bus.stop()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("server did not come up")


def _rest(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[float, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{base}/ovirt-engine/api/{path}",
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.loads(r.read())
    return (time.perf_counter() - t0) * 1000, out


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": "admin@internal", "password": PASSWORD}
    ).encode()
    with urllib.request.urlopen(f"{base}/ovirt-engine/sso/oauth/token", form) as r:
        token = json.loads(r.read())["access_token"]
    status = urllib.request.Request(
        f"{base}/orrery/status", headers={"Authorization": f"Bearer {token}"}
    )
    for _ in range(600):  # the server's render cache warm, as for the API benchmark
        with urllib.request.urlopen(status) as r:
            if json.loads(r.read()).get("prewarmed"):
                break
        time.sleep(0.5)
    rest_ms = []
    for _ in range(args.list_runs):
        ms, body = _rest(base, token, "GET", "vms")
        rest_ms.append(ms)
    listed = len(body.get("vm", []))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/ovirt-engine/login?next=/ovirt-engine/webadmin/vms")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("#login-submit")
            page.wait_for_url("**/webadmin/vms")
            list_ms, total = [], ""
            for _ in range(args.list_runs):
                page.goto(f"{base}/ovirt-engine/webadmin/vms", wait_until="domcontentloaded")
                total = page.inner_text("#total")
                nav = page.evaluate(
                    "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                )
                list_ms.append(nav)
            rows = page.locator("#list tbody tr").count()
            marker = page.get_attribute("#list tbody tr", "data-id")
            page.evaluate(_OBSERVE, marker)
            live, stream = [], []
            for i in range(args.changes):
                text = f"change {i}"
                before = set(page.evaluate("Object.keys(window.__stream)"))
                _rest(base, token, "PUT", f"vms/{marker}", {"description": text})
                ack = time.time() * 1000
                seen = None
                deadline = time.monotonic() + 30
                while seen is None and time.monotonic() < deadline:
                    # (The CSP refuses wait_for_function's eval: poll; the time is the
                    # observer's own.)
                    seen = page.evaluate("(t) => window.__seen[t] || null", text)
                    if seen is None:
                        time.sleep(0.005)
                if seen is None:
                    raise TimeoutError(f"the page never showed {text!r}")
                got = page.evaluate("window.__stream")
                new = [v for k, v in got.items() if k not in before]
                live.append(seen - ack)
                if new:
                    stream.append(min(new) - ack)
        finally:
            browser.close()
    return {
        "vms_total_shown": int(total),
        "rows_on_first_screen": rows,
        "list10k_ms": round(statistics.median(list_ms), 1),
        "list10k_rest_json_ms": round(statistics.median(rest_ms), 1),
        "rest_vms_listed": listed,
        "live_ms_p50": round(_p(live, 0.5), 1),
        "live_ms_p99": round(_p(live, 0.99), 1),
        "stream_ms_p50": round(_p(stream, 0.5), 1) if stream else None,
        "stream_ms_p99": round(_p(stream, 0.99), 1) if stream else None,
        "changes": len(live),
        "live_what": "PUT /vms/{id} description -> the held list page's row (MutationObserver)",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    tmp = tempfile.TemporaryDirectory(prefix="orrery-bench-portal-")
    proc = None
    try:
        data_dir = Path(tmp.name)
        prepare_s = _prepare(data_dir, args.vms)
        port = _free_port()
        env = {**os.environ, "ORRERY_ADMIN_PASSWORD": PASSWORD, "PYTHONPATH": str(root)}
        cmd = [sys.executable, "-m", "api.cli", "serve", "--http", "--data-dir", str(data_dir)]
        cmd += ["--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"]
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL)
        _wait_port(port, proc)
        out = _measure(f"http://127.0.0.1:{port}", args)
        out["prepare_vms_s"] = round(prepare_s, 2)
        out["vms"] = args.vms
        return out
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
