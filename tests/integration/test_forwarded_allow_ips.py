"""``[server] forwarded_allow_ips``: which peers' X-Forwarded-* headers gunicorn believes.

The setting is parsed and checked (check-config names each bad entry), handed to gunicorn by
``backpain_cds.server.gunicorn_options``, and gunicorn's own request parser, configured with
exactly those options, believes X-Forwarded-Proto from a listed peer and ignores it from any
other. tests/e2e/test_forwarded_headers.py does the same over a real ``serve``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from backpain_cds.cli import main
from backpain_cds.server import gunicorn_options
from backpain_cds.settings import ConfigError, Settings, config_warnings


def _settings(toml: str) -> Settings:
    import tomllib

    return Settings.from_mapping(tomllib.loads(toml), environ={})


def test_the_default_trusts_loopback_only():
    assert Settings().server.forwarded_allow_ips == ("127.0.0.1", "::1")
    assert _settings("").server.forwarded_allow_ips == ("127.0.0.1", "::1")


def test_addresses_and_networks_are_read():
    settings = _settings('[server]\nforwarded_allow_ips = ["10.0.0.0/8", "172.30.12.10", "fd00::/8"]\n')
    assert settings.server.forwarded_allow_ips == ("10.0.0.0/8", "172.30.12.10", "fd00::/8")
    assert settings.server.gunicorn_forwarded_allow_ips() == "10.0.0.0/8,172.30.12.10,fd00::/8"


def test_an_empty_list_trusts_nobody():
    assert _settings("[server]\nforwarded_allow_ips = []\n").server.forwarded_allow_ips == ()


@pytest.mark.parametrize("value, named", [
    ('["*"]', "server.forwarded_allow_ips[0]: '*' would believe"),
    ('["10.1.2.3/8"]', "server.forwarded_allow_ips[0]: '10.1.2.3/8' is not an IP address or network"),
    ('["127.0.0.1", "proxy.example.org"]', "server.forwarded_allow_ips[1]: 'proxy.example.org'"),
    ('"10.0.0.0/8"', "server.forwarded_allow_ips must be an array of non-empty strings"),
])
def test_bad_entries_are_named(value, named):
    with pytest.raises(ConfigError) as caught:
        _settings(f"[server]\nforwarded_allow_ips = {value}\n")
    assert any(p.startswith(named) for p in caught.value.problems), caught.value.problems


def test_an_unknown_server_key_is_refused():
    with pytest.raises(ConfigError, match="server.workers is not a known setting"):
        _settings("[server]\nworkers = 4\n")


def test_a_network_of_every_address_is_a_warning():
    assert config_warnings(_settings('[server]\nforwarded_allow_ips = ["0.0.0.0/0"]\n'))[0].startswith(
        "server.forwarded_allow_ips contains 0.0.0.0/0, every address")
    assert config_warnings(_settings('[server]\nforwarded_allow_ips = ["10.0.0.0/8"]\n')) == []


def test_check_config_lists_the_bad_entry(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[server]\nforwarded_allow_ips = ["10.0.0.0/8", "*"]\n')
    assert main(["check-config", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "config: server.forwarded_allow_ips[1]: '*' would believe" in out and "1 problem(s) found" in out


def _gunicorn_config(settings: Settings) -> Config:
    """gunicorn's Config with the options ``serve`` would give it."""
    app = SimpleNamespace(extensions={"backpain_cds": {"settings": settings}})
    cfg = Config()
    for key, value in gunicorn_options(app, host="127.0.0.1", port=8080, workers=1).items():  # type: ignore[arg-type]
        if key in cfg.settings:
            cfg.set(key, value)
    return cfg


def _scheme(cfg: Config, peer: str) -> str:
    raw = b"GET /healthz HTTP/1.1\r\nHost: cds.example.org\r\nX-Forwarded-Proto: https\r\n\r\n"
    request = next(iter(RequestParser(cfg, iter([raw]), (peer, 40000))))
    return request.scheme


def test_x_forwarded_proto_is_believed_only_from_the_listed_proxies():
    cfg = _gunicorn_config(_settings('[server]\nforwarded_allow_ips = ["10.0.0.0/8"]\n'))
    assert _scheme(cfg, "10.20.30.40") == "https"  # the proxy
    assert _scheme(cfg, "192.0.2.7") == "http"  # anyone else: the header is ignored
    assert _scheme(cfg, "127.0.0.1") == "http"  # loopback is no longer listed


def test_by_default_only_a_loopback_proxy_is_believed():
    cfg = _gunicorn_config(Settings())
    assert _scheme(cfg, "127.0.0.1") == "https"
    assert _scheme(cfg, "10.20.30.40") == "http"
