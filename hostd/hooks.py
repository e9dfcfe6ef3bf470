"""VDSM-style hooks: executables in ``<data-dir>/hooks/<phase>/``, run in name order.

Each gets the domain XML in a file named by ``$_hook_domxml`` (it may rewrite it; the next
hook and the action see the new XML) and the VM's custom properties as environment
variables. A hook that exits non-zero (or times out) fails the action; its stderr is the
error message.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

PHASES = (
    "before_vm_start",
    "after_vm_start",
    "before_vm_destroy",
    "after_vm_destroy",
    "before_vm_pause",
    "after_vm_pause",
    "before_vm_cont",
    "after_vm_cont",
    "before_vm_hibernate",
    "after_vm_hibernate",
    "before_vm_dehibernate",
    "after_vm_dehibernate",
    "before_vm_migrate_source",
    "after_vm_migrate_source",
    "after_vm_migrate_destination",
    "before_vm_set_ticket",
    "after_vm_set_ticket",
    "before_vm_snapshot",
    "after_vm_snapshot",
)


class HookError(Exception):
    def __init__(self, phase: str, hook: str, message: str) -> None:
        super().__init__(f"hook {phase}/{hook} failed: {message}")
        self.phase = phase
        self.hook = hook


def _env_name(k: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in k)


class Hooks:
    def __init__(self, root: Path, timeout: float = 60.0) -> None:
        self.root = root
        self.timeout = timeout

    def scripts(self, phase: str) -> list[Path]:
        d = self.root / phase
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.is_file() and os.access(p, os.X_OK))

    def listing(self) -> dict[str, list[str]]:
        return {ph: [p.name for p in s] for ph in PHASES if (s := self.scripts(ph))}

    def run(
        self,
        phase: str,
        domxml: str,
        props: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> str:
        """Run the hooks of ``phase``; answers the (possibly rewritten) XML."""
        scripts = self.scripts(phase)
        if not scripts:
            return domxml
        fd, name = tempfile.mkstemp(prefix=f"hook-{phase}-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(domxml)
            env = dict(os.environ)
            for k, v in (props or {}).items():
                env[_env_name(k)] = v
            env.update(extra_env or {})
            env["_hook_domxml"] = name
            env["_hook_phase"] = phase
            for script in scripts:
                try:
                    p = subprocess.run(
                        [str(script)],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=self.timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired as e:
                    raise HookError(phase, script.name, f"timed out after {self.timeout}s") from e
                except OSError as e:
                    raise HookError(phase, script.name, str(e)) from e
                if p.returncode != 0:
                    msg = p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}"
                    raise HookError(phase, script.name, msg)
            return Path(name).read_text()
        finally:
            os.unlink(name)
