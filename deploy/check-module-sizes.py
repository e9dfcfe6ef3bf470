#!/usr/bin/env python3
"""Fails when a Python module of the project passes 600 lines without an entry in
deploy/module-sizes.txt (each entry says why), or when an entry's module has come under
the limit (so the allow-list only shrinks). Run by `make check`."""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 600
ROOTS = ("domain", "commands", "projections", "hostd", "history", "api", "bench", "tests")


def main() -> int:
    top = Path(__file__).resolve().parent.parent
    allowed: dict[str, str] = {}
    for line in (top / "deploy" / "module-sizes.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, _, why = line.partition(" ")
            if not why.strip():
                print(f"module-sizes.txt: {path} has no reason", file=sys.stderr)
                return 1
            allowed[path] = why.strip()
    problems = []
    sizes = {}
    for root in ROOTS:
        for f in sorted((top / root).rglob("*.py")):
            rel = f.relative_to(top).as_posix()
            sizes[rel] = sum(1 for _ in f.open(encoding="utf-8"))
    for rel, n in sizes.items():
        if n > LIMIT and rel not in allowed:
            problems.append(f"{rel}: {n} lines (limit {LIMIT}): split it, or list it with why")
    for rel in allowed:
        if sizes.get(rel, 0) <= LIMIT:
            problems.append(f"{rel} is listed in deploy/module-sizes.txt but is not over {LIMIT}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
