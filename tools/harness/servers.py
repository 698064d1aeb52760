"""Shared helpers for tests that need a real server: skip locally, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_ENV = "BACKPAIN_CDS_REQUIRE_SERVERS"


def servers_required() -> bool:
    """CI sets BACKPAIN_CDS_REQUIRE_SERVERS=1: a missing server is then a failure, not a skip."""
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(reason: str) -> None:
    """Skip with a visible reason, or fail when servers are required."""
    if servers_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is an error)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
