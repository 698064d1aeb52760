from __future__ import annotations

from pathlib import Path

import pytest

from backpain_cds.server_settings import is_loopback_host
from backpain_cds.settings import ConfigError, Settings, check_bind_allowed


def test_defaults_are_sqlite_on_loopback_in_development_mode():
    settings = Settings.load(None, environ={})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert settings.auth.development_mode
    assert settings.cors_origins == ()


def test_a_toml_file_is_read_and_environment_overrides_the_two_top_keys(tmp_path: Path):
    jwks = tmp_path / "ehr-jwks.json"
    jwks.write_text('{"keys": []}')
    config = tmp_path / "config.toml"
    config.write_text(
        """
public_base_url = "https://cds.example.org"
database_url = "sqlite:///x.sqlite3"
cors_origins = ["http://localhost:3000"]
[[auth.trusted_clients]]
iss = "https://ehr.example.org"
jwks_file = "ehr-jwks.json"
[fhir]
allowed_servers = ["https://ehr.example.org/fhir/r4/"]
timeout_seconds = 3
"""
    )
    settings = Settings.load(
        config,
        environ={
            "BACKPAIN_CDS_PUBLIC_BASE_URL": "https://cds.internal.example.org/",
            "BACKPAIN_CDS_DATABASE_URL": "postgresql+psycopg://u@db/cds",
        },
    )
    assert settings.public_base_url == "https://cds.internal.example.org"
    assert settings.database_url == "postgresql+psycopg://u@db/cds"
    assert settings.auth.trusted_clients[0].jwks_file == jwks
    assert not settings.auth.development_mode
    assert settings.fhir.allowed_servers == ("https://ehr.example.org/fhir/r4/",)
    assert settings.fhir.timeout_seconds == 3.0
    assert settings.limits.shutdown_grace_seconds == 10  # the default


def test_the_shutdown_grace_is_read_from_limits(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[limits]\nshutdown_grace_seconds = 25\n")
    assert Settings.load(config, environ={}).limits.shutdown_grace_seconds == 25


def test_the_config_file_can_come_from_the_environment(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('public_base_url = "https://a.example.org"\n')
    assert Settings.load(None, environ={"BACKPAIN_CDS_CONFIG": str(config)}).public_base_url == "https://a.example.org"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('public_base_url = "not a url"', "public_base_url"),
        ("cors_origins = 3", "cors_origins"),
        ("[fhir]\ntimeout_seconds = -1", "fhir.timeout_seconds"),
        ('[fhir]\nallowed_servers = ["ftp://x"]', "fhir.allowed_servers[0]"),
        ('[[auth.trusted_clients]]\niss = "https://e"', "auth.trusted_clients[0]"),
        ('[[auth.trusted_clients]]\niss = "https://e"\njwks_file = "missing.json"', "auth.trusted_clients[0].jwks_file"),
        ('[auth]\nalgorithms = ["HS256"]', "auth.algorithms"),
        ('[auth]\nalgorithms = ["none"]', "auth.algorithms"),
        ("typo_key = 1", "typo_key"),
        ('[knowledge]\npath = "no-such-dir"', "knowledge.path"),
        ("[limits]\nmax_body_bytes = 10", "limits.max_body_bytes"),
        ("[limits]\nshutdown_grace_seconds = 0", "limits.shutdown_grace_seconds"),
        ("[limits]\nshutdown_grace_seconds = 2.5", "limits.shutdown_grace_seconds"),  # gunicorn wants whole seconds
    ],
)
def test_an_invalid_setting_is_reported_by_its_key(tmp_path: Path, toml: str, key: str):
    config = tmp_path / "bad.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        Settings.load(config, environ={})
    assert any(p.startswith(key) for p in info.value.problems), info.value.problems


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('public_base_url = "x"\ncors_origins = 1\n[fhir]\nmax_pages = 0\n')
    with pytest.raises(ConfigError) as info:
        Settings.load(config, environ={})
    assert len(info.value.problems) == 3


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(broken, environ={})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_recognised(host: str):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "example.org"])
def test_development_mode_refuses_a_non_loopback_bind(host: str):
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError, match="refusing to bind"):
        check_bind_allowed(Settings(), host)


def test_with_trusted_clients_any_bind_is_allowed(tmp_path: Path):
    jwks = tmp_path / "j.json"
    jwks.write_text('{"keys": []}')
    settings = Settings.from_mapping({"auth": {"trusted_clients": [{"iss": "https://e", "jwks_file": str(jwks)}]}})
    check_bind_allowed(settings, "0.0.0.0")
