"""Passwords: argon2id hashing, constant-time verification, re-hash on parameter change,
and the plain password never reaching an event, the engine, a repr or a message."""

from __future__ import annotations

from uuid import UUID

import pytest
from argon2 import PasswordHasher, Type

from commands.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password,
    hash_password,
    is_password_hash,
    needs_rehash,
    validate_password,
    verify_password,
)
from commands.store import encode_event
from commands.system import InitializeSystem
from commands.user import (
    AddUser,
    ChangeUserPassword,
    RecordLoginSuccess,
    prehashed,
)
from domain.base import DomainError, InvalidInput
from domain.user import User, UserAdded, UserPasswordChanged, find_user
from tests.unit.helpers import World

pytestmark = pytest.mark.unit

PLAIN = "correct horse battery staple 7"
NEW_PLAIN = "Tr0ub4dor&3-another-secret"


@pytest.fixture(scope="module")
def one_hash() -> str:
    return hash_password(PLAIN)


def test_hash_is_argon2id_with_memory_hard_parameters(one_hash: str) -> None:
    assert one_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PLAIN not in one_hash
    assert is_password_hash(one_hash)
    assert not needs_rehash(one_hash)
    # Salted: the same password hashes differently each time.
    assert hash_password(PLAIN) != one_hash


def test_verify_accepts_only_the_right_password(one_hash: str) -> None:
    assert verify_password(one_hash, PLAIN)
    assert not verify_password(one_hash, PLAIN + " ")
    assert not verify_password(one_hash, "")
    assert not verify_password(None, PLAIN)
    assert not verify_password("$argon2id$garbage", PLAIN)
    assert not verify_password("plain-text-stored-by-mistake", "plain-text-stored-by-mistake")
    # Our constant-time verification agrees with the library's own.
    assert PasswordHasher().verify(one_hash, PLAIN)


def test_outdated_parameters_are_rehashed_on_success() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    old = weak.hash(PLAIN)
    assert needs_rehash(old)
    bad = check_password(old, "nope")
    assert (bad.ok, bad.rehash) == (False, None)
    good = check_password(old, PLAIN)
    assert good.ok and good.rehash is not None
    assert good.rehash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(good.rehash, PLAIN)
    assert PLAIN not in repr(good)
    current = check_password(good.rehash, PLAIN)
    assert (current.ok, current.rehash) == (True, None)


def test_bad_passwords_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidInput) as e:
        validate_password("")
    assert e.value.field == "password"
    long = "s3cr3t" * (MAX_PASSWORD_LENGTH // 6 + 1)
    with pytest.raises(InvalidInput) as e:
        validate_password(long)
    assert "s3cr3t" not in str(e.value)


def test_commands_hide_secrets_in_repr(one_hash: str) -> None:
    cmds = [
        AddUser(user_name="bob@internal", password=PLAIN),
        AddUser(user_name="bob@internal", password_hash=one_hash),
        ChangeUserPassword(user_name="bob@internal", password=PLAIN),
        InitializeSystem(admin_password=PLAIN),
        InitializeSystem(admin_password_hash=one_hash),
        RecordLoginSuccess(user_id=UUID(int=7), rehash=one_hash),
    ]
    for c in cmds:
        for text in (repr(c), str(c), f"{c!r}", repr(list(c.__rich_repr__()))):
            assert PLAIN not in text
            assert one_hash not in text
            assert "***" in text
    assert "bob@internal" in repr(cmds[0])  # the rest stays readable


def _encoded(world: World) -> list[bytes]:
    return [topic.encode() + b" " + state for topic, state in map(encode_event, world.log)]


def test_events_of_user_creation_and_password_change_never_hold_the_password() -> None:
    w = World()
    w.run(InitializeSystem(admin_password=PLAIN))
    uid = w.run(AddUser(user_name="carol@internal", password=PLAIN, email="c@example.com"))
    w.run(ChangeUserPassword(user_id=uid, password=NEW_PLAIN))
    w.run(ChangeUserPassword(user_name="admin@internal", password=NEW_PLAIN))
    blobs = _encoded(w)
    assert blobs
    for blob in blobs:
        assert PLAIN.encode() not in blob
        assert NEW_PLAIN.encode() not in blob
    snapshot = repr(w.engine.snapshot())
    assert PLAIN not in snapshot and NEW_PLAIN not in snapshot
    # The hashes in the events are the ones that verify.
    added = next(e for e in w.log if isinstance(e, UserAdded) and e.originator_id == uid)
    assert added.password_hash is not None and verify_password(added.password_hash, PLAIN)
    changed = [e for e in w.log if isinstance(e, UserPasswordChanged)]
    assert len(changed) == 2
    for e in changed:
        assert verify_password(e.password_hash, NEW_PLAIN)
        assert not verify_password(e.password_hash, PLAIN)
    carol = w.engine.get(User, uid)
    assert verify_password(carol.password_hash, NEW_PLAIN)
    assert carol.password_changed_at
    assert "$argon2id$" not in repr(carol)  # not even the hash in a User's repr


def test_failures_do_not_leak_the_password() -> None:
    w = World()
    w.run(AddUser(user_name="dave@internal", password=PLAIN))
    for cmd in (
        AddUser(user_name="dave@internal", password=PLAIN),  # exists
        AddUser(user_name="erin@example.com", password=PLAIN),  # directory user
        ChangeUserPassword(user_name="nobody@internal", password=PLAIN),
        AddUser(user_name="x@internal", password=PLAIN, password_hash="$argon2id$x"),
        AddUser(user_name="x@internal", password_hash=PLAIN),  # not a hash
    ):
        with pytest.raises(DomainError) as e:
            w.run(cmd)
        assert PLAIN not in str(e.value) and PLAIN not in repr(e.value)


def test_validation_errors_do_not_leak_the_password() -> None:
    from commands.messages import parse_command

    secret = "x" * (MAX_PASSWORD_LENGTH + 1)
    with pytest.raises(InvalidInput) as e:
        parse_command(AddUser, {"user_name": "f@internal", "password": secret})
    assert secret not in str(e.value)
    assert e.value.field == "password"


def test_prehashed_moves_the_work_off_the_writer() -> None:
    cmd = prehashed(AddUser(user_name="gina@internal", password=PLAIN))
    assert cmd.password is None and cmd.password_hash is not None
    assert verify_password(cmd.password_hash, PLAIN)
    w = World()
    uid = w.run(cmd)
    assert w.engine.get(User, uid).password_hash == cmd.password_hash
    assert find_user(w.engine, "gina").id == uid
    again = ChangeUserPassword(user_id=uid, password_hash=cmd.password_hash)
    assert prehashed(again) is again  # nothing to hash


def test_crafted_hashes_and_odd_text_are_refused(one_hash: str) -> None:
    greedy = one_hash.replace("m=65536", "m=4194304")  # 4 GiB per attempt
    assert not is_password_hash(greedy)
    assert not verify_password(greedy, PLAIN)  # refused without running it
    assert not is_password_hash(one_hash.replace("$argon2id$", "$argon2i$"))
    assert not is_password_hash("")
    w = World()
    with pytest.raises(InvalidInput, match="not an argon2id hash"):
        w.run(AddUser(user_name="h@internal", password_hash=greedy))
    lone_surrogate = "pass\ud800word"
    assert not verify_password(one_hash, lone_surrogate)
    with pytest.raises(InvalidInput) as e:
        validate_password(lone_surrogate)
    assert "\ud800" not in str(e.value) and "pass\ud800" not in str(e.value)
