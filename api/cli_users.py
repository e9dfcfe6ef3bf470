"""Manage users: add internal or directory users, list them, change a password, unlock.

  orrery users add NAME@internal [--password-stdin] [--role UserRole]
  orrery users add jdoe@example.com          (a directory user: no password here)
  orrery users list [--json]
  orrery users passwd NAME@internal [--password-stdin]
  orrery users unlock NAME@internal          (after too many failed logins)

Without --password-stdin the password is asked for (twice) when a terminal is attached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from api.cli import add_store_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the usage lines above
    sub = p.add_subparsers(dest="users_command", metavar="ACTION")
    a = sub.add_parser("add", help="add a user (NAME@internal gets a password)")
    add_store_arguments(a)
    a.add_argument("user_name", help="NAME@DOMAIN; a bare NAME means NAME@internal")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--name", default="", help="first name (default: the login name)")
    a.add_argument("--last-name", default="")
    a.add_argument("--email", default="")
    a.add_argument("--role", default=None, help="also give this role on the system, e.g. UserRole")

    ls = sub.add_parser("list", help="list users as a table")
    add_store_arguments(ls)
    ls.add_argument("--json", action="store_true", help="print a JSON array")

    pw = sub.add_parser("passwd", help="set an internal user's password")
    add_store_arguments(pw)
    pw.add_argument("user_name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    un = sub.add_parser("unlock", help="unlock a user locked after failed logins")
    add_store_arguments(un)
    un.add_argument("user_name")


class _Refused(Exception):
    pass


def read_password(from_stdin: bool, *, stdin: Any = None, prompt: Any = None) -> str:
    """One line from stdin, or asked twice at the terminal; never echoed."""
    stdin = stdin if stdin is not None else sys.stdin
    if from_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise _Refused("no password on stdin")
        return password
    if not stdin.isatty():
        raise _Refused("no terminal to ask for the password: use --password-stdin")
    ask = prompt or getpass.getpass
    first = ask("Password: ")
    if not first:
        raise _Refused("the password must not be empty")
    if ask("Repeat password: ") != first:
        raise _Refused("the passwords do not match")
    return str(first)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "users_command", None)
    if command is None:
        print("orrery users: choose add, list, passwd or unlock (see --help)", file=sys.stderr)
        return 2
    from commands.bootstrap import open_bus
    from domain.base import DomainError

    try:
        secret = None
        if command in ("add", "passwd") and _needs_password(command, args.user_name):
            secret = read_password(args.password_stdin)
    except _Refused as e:
        print(f"orrery users {command}: {e}", file=sys.stderr)
        return 2
    bus = open_bus(args.database_url, args.data_dir, start=False)
    try:
        if command == "list":
            return _list(bus, args)
        if command == "add":
            return _add(bus, args, secret)
        if command == "unlock":
            return _unlock(bus, args)
        return _passwd(bus, args, secret)
    except DomainError as e:
        print(f"orrery users {command}: {e.message}", file=sys.stderr)
        return 1
    finally:
        bus.stop()
        bus.log.close()


def _needs_password(command: str, user_name: str) -> bool:
    from domain.user import INTERNAL_DOMAIN, split_user_name

    return command == "passwd" or split_user_name(user_name)[1] == INTERNAL_DOMAIN


def _add(bus: Any, args: argparse.Namespace, secret: str | None) -> int:
    from commands.permission import AddPermission
    from commands.user import AddUser, prehashed
    from domain.base import NotFound
    from domain.role import find_role

    role = None
    if args.role:
        role = find_role(bus.engine, args.role)
        if role is None:
            raise NotFound(f"Role {args.role} not found.")
    cmd = prehashed(
        AddUser(
            user_name=args.user_name,
            password=secret,
            name=args.name,
            last_name=args.last_name,
            email=args.email,
            actor="orrery-cli",
        )
    )
    user_id = bus.execute(cmd).value
    if role is not None:
        bus.execute(AddPermission(role_id=role.id, user_id=user_id, actor="orrery-cli"))
    user = _user(bus, user_id)
    extra = f" with role {role.name} on the system" if role is not None else ""
    print(f"added {user.user_name} ({user_id}){extra}")
    return 0


def _passwd(bus: Any, args: argparse.Namespace, secret: str | None) -> int:
    from commands.user import ChangeUserPassword, prehashed
    from domain.user import normalize_user_name

    name = normalize_user_name(args.user_name)
    bus.execute(prehashed(ChangeUserPassword(user_name=name, password=secret, actor="orrery-cli")))
    print(f"password of {name} changed")
    return 0


def _unlock(bus: Any, args: argparse.Namespace) -> int:
    from commands.user import UnlockUser
    from domain.user import normalize_user_name

    name = normalize_user_name(args.user_name)
    bus.execute(UnlockUser(user_name=name, actor="orrery-cli"))
    print(f"{name} unlocked")
    return 0


def _user(bus: Any, user_id: Any) -> Any:
    from domain.user import User

    return bus.engine.get(User, user_id)


def user_rows(engine: Any) -> list[dict[str, Any]]:
    """Every user as plain data (no password hash), sorted by user name."""
    from domain.permission import Permission
    from domain.role import Role
    from domain.user import Group, User

    roles_of: dict[Any, list[str]] = {}
    for p in engine.all(Permission):
        role = engine.find(Role, p.role_id)
        if role is None or p.user_id is None:
            continue
        where = "system" if p.object_id is None else f"{p.object_kind}:{p.object_id}"
        roles_of.setdefault(p.user_id, []).append(f"{role.name}@{where}")
    rows = []
    for u in sorted(engine.all(User), key=lambda u: u.user_name):
        groups = [g.name for g in (engine.find(Group, gid) for gid in u.group_ids) if g]
        rows.append(
            {
                "id": str(u.id),
                "user_name": u.user_name,
                "domain": u.domain,
                "name": u.name,
                "last_name": u.last_name,
                "email": u.email,
                "has_password": u.password_hash is not None,
                "groups": groups,
                "roles": sorted(roles_of.get(u.id, [])),
                "last_login_at": u.last_login_at or None,
                "failed_logins": u.failed_logins,
                "locked_until": u.locked_until or None,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    headers = ["USER NAME", "NAME", "EMAIL", "PASSWORD", "ROLES", "LAST LOGIN"]
    body = [
        [
            r["user_name"],
            " ".join(x for x in (r["name"], r["last_name"]) if x),
            r["email"],
            "yes" if r["has_password"] else "-",
            ", ".join(r["roles"]) or "-",
            (r["last_login_at"] or "never")[:19],
        ]
        for r in rows
    ]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body
    ]
    return "\n".join(lines)


def _list(bus: Any, args: argparse.Namespace) -> int:
    rows = user_rows(bus.engine)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    else:
        print("no users (the installation is not initialized yet)")
    return 0
