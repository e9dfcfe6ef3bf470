"""The ``orrery`` command: one subcommand per job, each in its own module ``api/cli_NAME.py``.

A subcommand module has a one-sentence docstring (its help line), ``add_arguments(parser)``
and ``run(args) -> int``; it imports its heavy dependencies inside ``run`` so ``--help``
stays fast. Subcommands are found by file name: add one by adding its module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def subcommands() -> dict[str, str]:
    """Subcommand name -> module, from the api/cli_*.py files."""
    import api

    return {
        m.name.removeprefix("cli_").replace("_", "-"): f"api.{m.name}"
        for m in sorted(pkgutil.iter_modules(api.__path__), key=lambda m: m.name)
        if m.name.startswith("cli_")
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrery",
        description="Orrery: an event-sourced virtualization manager (oVirt 4.4 compatible).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in subcommands().items():
        module = importlib.import_module(module_name)
        text = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=text, description=module.__doc__)
        p.set_defaults(_module=module_name)
        module.add_arguments(p)
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
