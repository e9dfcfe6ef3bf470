"""hostd's enrollment secret comes from a file or the environment; one on the command
line works but is warned about (every local user sees it in the process list), and a
secret file other users can read is refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from hostd.cli import TokenError, add_arguments, load_token, run

pytestmark = pytest.mark.unit


def _file(tmp_path: Path, text: str, mode: int) -> Path:
    f = tmp_path / "secret"
    f.write_text(text)
    f.chmod(mode)
    return f


def test_the_token_file_comes_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ORRERY_HOSTD_TOKEN", "from-env")
    f = _file(tmp_path, "from-file\n", 0o600)
    assert load_token("from-args", tmp_path / "data", f) == "from-file"


def test_a_token_file_others_can_read_is_refused(tmp_path) -> None:
    f = _file(tmp_path, "s3cret\n", 0o644)
    with pytest.raises(TokenError, match="0644"):
        load_token(None, tmp_path / "data", f)
    with pytest.raises(TokenError, match="cannot read"):
        load_token(None, tmp_path / "data", tmp_path / "missing")
    with pytest.raises(TokenError, match="no enrollment secret"):
        load_token(None, tmp_path / "data", _file(tmp_path, "\n", 0o600))


def test_the_environment_and_the_command_line(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("ORRERY_HOSTD_TOKEN", "from-env")
    assert load_token(None, tmp_path / "data") == "from-env"
    with caplog.at_level(logging.WARNING, logger="hostd"):
        assert load_token("from-args", tmp_path / "data") == "from-args"
    assert any("process list" in r.getMessage() for r in caplog.records)
    assert "from-args" not in caplog.text  # the warning never repeats the secret


def test_a_generated_secret_is_made_0600(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ORRERY_HOSTD_TOKEN", raising=False)
    token = load_token(None, tmp_path / "data")
    f = tmp_path / "data" / "token"
    assert f.read_text().strip() == token and os.stat(f).st_mode & 0o777 == 0o600
    assert load_token(None, tmp_path / "data") == token


def test_run_refuses_a_loose_token_file_with_a_message(tmp_path, capsys) -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    f = _file(tmp_path, "s3cret\n", 0o640)
    args = p.parse_args(["--data-dir", str(tmp_path / "data"), "--token-file", str(f)])
    assert run(args) == 2
    err = capsys.readouterr().err
    assert "readable by other users" in err and "s3cret" not in err
