"""Settings: embedded defaults, TOML file, KANTOOR_* overrides, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kantoor.config import ConfigError, load_settings


def test_embedded_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.data_dir == (tmp_path / "kantoor-data").resolve()
    assert settings.database_url.startswith("sqlite:///")
    assert all(1024 < port < 65536 for port in vars(settings.ports).values())
    assert {"free", "standard", "professional"} <= set(settings.plans)


def test_toml_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[ports]\nimap = 2143\nsmtp = 2526\n[plans.tiny]\nmail_bytes = 10\nimap = true\n')
    settings = load_settings(path, environ={"KANTOOR_PORTS_IMAP": "3143"})
    assert settings.ports.imap == 3143  # environment wins over the file
    assert settings.ports.smtp == 2526
    assert settings.plans["tiny"].mail_bytes == 10 and settings.plans["tiny"].allows("imap")


def test_default_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kantoor.toml").write_text('[server]\nhostname = "mail.example.org"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).server.hostname == "mail.example.org"


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ('[ports]\nimap = "many"\n', {}, "ports.imap"),
        ("[ports]\nimap = 70000\n", {}, "ports.imap"),
        ("[nonsense]\nx = 1\n", {}, "nonsense"),
        ("[ports]\nimapp = 1\n", {}, "ports.imapp"),
        ("", {"KANTOOR_LIMITS_MAX_MESSAGE_BYTES": "-5"}, "limits.max_message_bytes"),
        ("", {"KANTOOR_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK": "perhaps"}, "auth.allow_plaintext_on_loopback"),
        ('[accounts]\ndefault_plan = "gold"\n', {}, "accounts.default_plan"),
        ("[ports\nimap = 1\n", {}, "not valid TOML"),
    ],
)
def test_invalid_value_names_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path, environ=env)


def test_malformed_toml_stops_startup_with_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[ports]\nimap = 'x'\n")
    result = subprocess.run([sys.executable, "-m", "kantoor", "--config", str(path), "serve"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "ports.imap" in result.stderr and "expected an integer" in result.stderr
    assert "Traceback" not in result.stderr
