"""The benchmark runner: ``python -m bench NAME [--json] [--database-url URL] [options]``.

Every module ``bench/NAME.py`` that defines ``add_arguments(parser)`` and
``run(args) -> dict`` is a benchmark; the runner finds them itself. The result is one
JSON object (``--json``) or a readable table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from types import ModuleType

import bench
from bench.common import format_table

_NOT_BENCHMARKS = {"common"}


def discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(bench.__path__):
        name = info.name
        if name.startswith("_") or name in _NOT_BENCHMARKS or info.ispkg:
            continue
        mod = importlib.import_module(f"bench.{name}")
        if callable(getattr(mod, "add_arguments", None)) and callable(getattr(mod, "run", None)):
            found[name] = mod
    return found


def build_parser(benchmarks: dict[str, ModuleType]) -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--json", action="store_true", help="print one JSON object")
    shared.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: $ORRERY_DATABASE_URL, else deploy/dev-postgres.sh)",
    )
    parser = argparse.ArgumentParser(prog="python -m bench", parents=[shared])
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, mod in sorted(benchmarks.items()):
        doc = (mod.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, parents=[shared], help=doc[0] if doc else name)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    benchmarks = discover()
    args = build_parser(benchmarks).parse_args(argv)
    result = benchmarks[args.bench].run(args)
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        print(format_table(args.bench, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
