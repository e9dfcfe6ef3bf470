"""``orrery serve`` as a real process: first start prints the generated admin password once,
HTTPS with --tls-cert/--tls-key, and the SDK works against it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ORRERY_ADMIN_PASSWORD"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {lines}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_first_start_password_and_restart(tmp_path):
    port = _port()
    proc = _serve(tmp_path, port)
    try:
        lines = _read_until(proc, "Orrery API on")
        pw_lines = [x for x in lines if "admin@internal password:" in x]
        assert len(pw_lines) == 1
        password = pw_lines[0].split("admin@internal password:", 1)[1].split()[0]
        c = sdk.Connection(
            url=f"http://127.0.0.1:{port}/ovirt-engine/api",
            username="admin@internal",
            password=password,
        )
        assert c.test(raise_exception=True)
        c.close()
    finally:
        _stop(proc)
    proc = _serve(tmp_path, port)
    try:
        lines = _read_until(proc, "Orrery API on")
        assert not any("password" in x for x in lines)  # printed once only
    finally:
        _stop(proc)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_serve_https(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = _port()
    proc = _serve(tmp_path / "data", port, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        lines = _read_until(proc, "Orrery API on")
        assert any("https://" in x for x in lines)
        password = next(
            x.split("admin@internal password:", 1)[1].split()[0]
            for x in lines
            if "admin@internal password:" in x
        )
        c = sdk.Connection(
            url=f"https://127.0.0.1:{port}/ovirt-engine/api",
            username="admin@internal",
            password=password,
            insecure=True,
        )
        assert c.test(raise_exception=True)
        c.close()
    finally:
        _stop(proc)
