"""The ``[server]`` table: how gunicorn meets the network in front of it.

Parsed with the value checks of :class:`backpain_cds.settings.SettingsParser` (passed in, so
this module does not import the settings module that imports it).
"""

from __future__ import annotations

import ipaddress
import typing as t
from dataclasses import dataclass

#: loopback only: a reverse proxy on the same host (README "Serving")
DEFAULT_FORWARDED_ALLOW_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn settings an operator chooses (``backpain-cds serve``)."""

    #: the addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-Proto (the
    #: request's scheme) and forwarder headers gunicorn believes; from any other peer they are
    #: ignored. gunicorn's ``forwarded_allow_ips``; README "Scaling out"
    forwarded_allow_ips: tuple[str, ...] = DEFAULT_FORWARDED_ALLOW_IPS

    def gunicorn_forwarded_allow_ips(self) -> str:
        """The value as gunicorn's setting takes it (comma-separated; empty: trust nobody)."""
        return ",".join(self.forwarded_allow_ips)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: where unsigned development calls may come."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Parser(t.Protocol):
    """What is used of :class:`backpain_cds.settings.SettingsParser`."""

    problems: list[str]

    def unknown_keys(self, data: t.Mapping[str, t.Any], allowed: set[str], prefix: str) -> None: ...

    def text_list(self, value: t.Any, key: str) -> tuple[str, ...]: ...


def parse_server(parser: _Parser, data: t.Mapping[str, t.Any]) -> ServerSettings:
    """``[server]``; every problem names its key."""
    parser.unknown_keys(data, set(ServerSettings.__dataclass_fields__), "server.")
    raw = data.get("forwarded_allow_ips", list(DEFAULT_FORWARDED_ALLOW_IPS))
    if raw == []:  # nobody's forwarded headers are believed (no proxy in front)
        return ServerSettings(forwarded_allow_ips=())
    values = parser.text_list(raw, "server.forwarded_allow_ips")
    allowed = []
    for i, value in enumerate(values):
        key = f"server.forwarded_allow_ips[{i}]"
        if value.strip() == "*":
            parser.problems.append(
                f"{key}: '*' would believe X-Forwarded-* headers from any client; list the "
                "proxy's addresses or networks (e.g. 10.0.0.0/8)")
            continue
        try:
            ipaddress.ip_network(value.strip())  # strict: 10.1.2.3/8 (host bits set) is a mistake
        except ValueError as exc:
            parser.problems.append(f"{key}: {value!r} is not an IP address or network: {exc}")
            continue
        allowed.append(value.strip())
    return ServerSettings(forwarded_allow_ips=tuple(allowed))


def server_warnings(server: ServerSettings) -> list[str]:
    """Valid but almost certainly wrong: a network that contains every address."""
    return [
        f"server.forwarded_allow_ips contains {value}, every address: any client that reaches the "
        "service directly can claim to have called over https; list the proxy's addresses"
        for value in server.forwarded_allow_ips
        if ipaddress.ip_network(value).prefixlen == 0
    ]
