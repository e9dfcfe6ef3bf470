"""Open (and create) the log, rebuild the engine from it, and report what is there."""

from __future__ import annotations

import argparse
import json

from api.cli import add_store_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    from commands.bootstrap import open_bus

    bus = open_bus(args.database_url, args.data_dir, start=False)
    out = {"position": bus.engine.position, "objects": len(bus.engine.objects)}
    print(json.dumps(out) if args.json else f"log at {out['position']}, {out['objects']} objects")
    return 0
