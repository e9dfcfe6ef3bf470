"""Rebuild every projection from the log; --verify checks the live view against a rebuild.

Without --verify the view's tables are dropped and rebuilt from notification 0 (stop the
Manager first). With --verify the rebuild goes into side tables up to the live view's
position, the content digests are compared table by table, the first differing row is
named, and the exit status is 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from api.cli import add_store_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument(
        "--verify",
        action="store_true",
        help="rebuild beside the live view and compare digests; exit 1 on a difference",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class Bar:
    """A text progress bar on stderr: [#####.....] 52% 520000/1000000 events."""

    def __init__(self, total: int, quiet: bool = False, width: int = 40) -> None:
        self.total = max(total, 1)
        self.quiet = quiet or total == 0
        self.width = width
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = -1

    def __call__(self, position: int, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if final and self._shown == position:
            sys.stderr.write("\n")
            sys.stderr.flush()
            return
        if not final and now - self._last < 0.2 and position < self.total:
            return
        self._last = now
        self._shown = position
        frac = min(position / self.total, 1.0)
        done = int(frac * self.width)
        rate = position / max(now - self.start, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * done}{'.' * (self.width - done)}] {frac * 100:5.1f}% "
            f"{position}/{self.total} events {rate:,.0f}/s"
        )
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from commands.bootstrap import database_url_from_env
    from commands.store import EventLog
    from projections import replay

    url = database_url_from_env(args.database_url)
    log = EventLog(url, args.data_dir)
    head = log.head()
    bar = Bar(head, args.quiet)
    t0 = time.monotonic()
    if args.verify:
        try:
            result = replay.verify(log, url, args.data_dir, progress=bar)
        except (LookupError, RuntimeError) as e:
            print(f"orrery replay --verify: {e}", file=sys.stderr)
            return 2
        bar(result.position, final=True)
        out = {
            "ok": result.ok,
            "position": result.position,
            "differences": result.differences,
            "digests": result.live,
        }
        if args.json:
            print(json.dumps(out, indent=2))
        elif result.ok:
            print(f"view matches a fresh replay at position {result.position}")
        else:
            print(f"view differs from a fresh replay at position {result.position}:")
            for d in result.differences:
                print(f"  {d}")
        return 0 if result.ok else 1
    digests = replay.rebuild(log, url, args.data_dir, progress=bar)
    bar(head, final=True)
    seconds = time.monotonic() - t0
    out = {"position": head, "seconds": round(seconds, 3), "digests": digests}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"rebuilt every projection to position {head} in {seconds:.2f} s")
    return 0
