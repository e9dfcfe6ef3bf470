"""List the raw event log, filtered by object, event type, user and time window."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api.cli import add_store_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--object", help="only events of this object id")
    p.add_argument("--type", action="append", help="event topic (repeatable), e.g. VmStarted")
    p.add_argument("--user", help="only events by this user (meta.actor)")
    p.add_argument("--since", help="ISO-8601 time: events at or after it")
    p.add_argument("--until", help="ISO-8601 time: events at or before it")
    p.add_argument("--after", type=int, default=0, help="only positions above this one")
    p.add_argument("--limit", type=int, default=None, help="at most this many (the last N)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    from collections import deque
    from uuid import UUID

    import msgspec

    from commands.bootstrap import database_url_from_env
    from commands.store import EventLog, decode_event
    from domain.base import redacted
    from projections.timetravel import parse_when

    try:
        since = parse_when(args.since) if args.since else None
        until = parse_when(args.until) if args.until else None
        oid = UUID(args.object) if args.object else None
    except ValueError as e:
        print(f"orrery events: {e}", file=sys.stderr)
        return 2
    topics = {t.split("/")[0] for t in args.type or ()}
    log = EventLog(database_url_from_env(args.database_url), args.data_dir)
    out: deque[dict[str, Any]] = deque(maxlen=args.limit if args.limit else None)
    after = args.after
    while True:
        notes = log.read_raw(after, 10_000)
        if not notes:
            break
        for n in notes:
            if topics and n.topic.split("/")[0] not in topics:
                continue
            if oid is not None and n.originator_id != oid:
                continue
            ev = decode_event(n.topic, n.state)
            if args.user and ev.meta.actor != args.user:
                continue
            ts = ev.timestamp
            if since is not None and ts < since:
                continue
            if until is not None and ts > until:
                continue
            out.append(
                {
                    "position": n.id,
                    "time": ts.isoformat(),
                    "topic": ev.TOPIC,
                    "object_id": str(ev.originator_id),
                    "version": ev.originator_version,
                    "user": ev.meta.actor,
                    "command": ev.meta.command,
                    "correlation_id": ev.meta.correlation_id,
                    "data": redacted(msgspec.to_builtins(ev.payload())),
                }
            )
        after = notes[-1].id
    if args.json:
        for entry in out:
            print(json.dumps(entry, default=str))
        return 0
    print(f"{'POSITION':>8}  {'TIME':<26} {'TOPIC':<28} {'OBJECT':<36} {'V':>3} {'USER':<18} DATA")
    for entry in out:
        data = json.dumps(entry["data"], default=str)
        if len(data) > 60:
            data = data[:57] + "..."
        print(
            f"{entry['position']:>8}  {entry['time'][:26]:<26} {entry['topic'][:28]:<28} "
            f"{entry['object_id']:<36} {entry['version']:>3} "
            f"{str(entry['user'] or '-')[:18]:<18} {data}"
        )
    return 0
