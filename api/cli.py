"""The ``orrery`` command: one subcommand per job, each in the module that owns it.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Keep the help a sentence a newcomer understands.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("api.cli_init", "Create the log and the first-start objects (Default DC, Blank)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrery",
        description="Orrery: an event-sourced virtualization manager (oVirt 4.4 compatible).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """The options that select an installation, shared by every subcommand."""
    p.add_argument(
        "--data-dir",
        default="./data",
        help="directory of the embedded SQLite log and DuckDB warehouse (default ./data)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL of the log (default: $ORRERY_DATABASE_URL, else SQLite)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
