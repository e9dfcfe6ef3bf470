"""The users CLI's pure parts: reading a password safely, and the table."""

from __future__ import annotations

import io

import pytest

from api.cli import build_parser
from api.cli_users import _Refused, format_table, read_password, user_rows
from commands.system import InitializeSystem
from commands.user import AddUser
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_from_stdin() -> None:
    assert read_password(True, stdin=io.StringIO("s3cret\n")) == "s3cret"
    assert read_password(True, stdin=io.StringIO("with space \r\n")) == "with space "
    with pytest.raises(_Refused):
        read_password(True, stdin=io.StringIO("\n"))


def test_password_prompt_needs_a_terminal_and_a_match() -> None:
    with pytest.raises(_Refused, match="--password-stdin"):
        read_password(False, stdin=io.StringIO(""))
    answers = iter(["pw1", "pw1"])
    assert read_password(False, stdin=_Tty(), prompt=lambda _: next(answers)) == "pw1"
    answers = iter(["pw1", "pw2"])
    with pytest.raises(_Refused, match="do not match"):
        read_password(False, stdin=_Tty(), prompt=lambda _: next(answers))


def test_table_and_rows_hide_the_hash() -> None:
    w = World()
    w.run(InitializeSystem(admin_password_hash=HASH))
    w.run(AddUser(user_name="jdoe@example.com", name="John", last_name="Doe", email="j@x.org"))
    rows = user_rows(w.engine)
    assert [r["user_name"] for r in rows] == ["admin@internal", "jdoe@example.com"]
    assert rows[0]["roles"] == ["SuperUser@system"] and rows[0]["has_password"]
    assert not rows[1]["has_password"] and rows[1]["domain"] == "example.com"
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == [
        "USER",
        "NAME",
        "NAME",
        "EMAIL",
        "PASSWORD",
        "ROLES",
        "LAST",
        "LOGIN",
    ]
    assert "John Doe" in lines[2] and "j@x.org" in lines[2]
    assert HASH not in text and HASH not in repr(rows)


def test_parser_knows_the_subcommands() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["users", "add", "bob@internal", "--password-stdin", "--role", "UserRole"]
    )
    assert (args.users_command, args.user_name, args.password_stdin, args.role) == (
        "add",
        "bob@internal",
        True,
        "UserRole",
    )
    args = parser.parse_args(["users", "list", "--json", "--data-dir", "/tmp/x"])
    assert (args.users_command, args.json, args.data_dir) == ("list", True, "/tmp/x")
