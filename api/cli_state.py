"""Time travel: the engine or one object as of a moment or a log position."""

from __future__ import annotations

import argparse
import json
import sys

from api.cli import add_store_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--as-of", help="ISO-8601 time, e.g. 2026-11-26T10:00:00Z (default: now)")
    p.add_argument("--position", type=int, help="a log position (notification id) instead")
    p.add_argument("--object", help="the id of one object")
    p.add_argument("--kind", help="only objects of this kind (vm, host, data_center ...)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from commands.bootstrap import database_url_from_env
    from commands.store import EventLog
    from projections import timetravel

    if args.as_of is not None and args.position is not None:
        print("orrery state: give --as-of or --position, not both", file=sys.stderr)
        return 2
    try:
        when = timetravel.parse_when(args.as_of) if args.as_of else None
    except ValueError as e:
        print(f"orrery state: {e}", file=sys.stderr)
        return 2
    log = EventLog(database_url_from_env(args.database_url), args.data_dir)
    if args.object:
        try:
            obj = timetravel.object_at(log, args.object, args.position, when=when)
        except ValueError:
            print(f"orrery state: {args.object!r} is not an object id", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(obj, indent=2, default=str))
        elif obj is None:
            print(f"object {args.object} did not exist then")
        else:
            print(f"{obj['kind']} {obj.get('name', '')} ({obj['id']}) version {obj['version']}")
            for k, v in obj.items():
                if k not in ("kind",):
                    print(f"  {k}: {v}")
        return 0 if obj is not None else 1
    snap = timetravel.snapshot_at(log, args.position, when=when)
    objects = snap["objects"]
    if args.kind:
        objects = {k: v for k, v in objects.items() if v["kind"] == args.kind}
    if args.json:
        print(json.dumps({**snap, "objects": objects}, indent=2, default=str))
        return 0
    print(
        f"state at position {snap['position']} "
        f"({len(objects)} objects, digest {snap['digest'][:16]})"
    )
    rows = sorted(objects.values(), key=lambda o: (o["kind"], str(o.get("name", "")), o["id"]))
    print(f"{'KIND':<16} {'NAME':<24} {'STATUS':<16} {'VERSION':>7}  ID")
    for o in rows:
        print(
            f"{o['kind']:<16} {str(o.get('name', o.get('user_name', '')))[:24]:<24} "
            f"{o.get('status', '')!s:<16} {o['version']:>7}  {o['id']}"
        )
    return 0
