"""Replay protection for client JWTs: remember each ``jti`` (per ``iss``) until it expires.

Part of client-JWT verification (:mod:`cds_hooks.auth`, which re-exports both names).
Production injects a store shared by all instances; :class:`InMemoryJtiStore` is
for tests and single-process development. No Flask imports here.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections.abc import Callable
from datetime import datetime

__all__ = [
    "InMemoryJtiStore",
    "JtiStore",
]


class JtiStore(t.Protocol):
    """Remembers seen ``jti`` values (per ``iss``) until they expire: replay protection."""

    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti``; return True the first time, False if already seen and not yet expired."""
        ...


class InMemoryJtiStore:
    """A :class:`JtiStore` for tests and single-process development (not shared between instances)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}

    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` for ``iss`` until ``expires_at``; False if it is already recorded."""
        now = self._clock()
        with self._lock:
            if len(self._seen) >= 1024:
                self._seen = {key: until for key, until in self._seen.items() if until > now}
            previous = self._seen.get((iss, jti))
            if previous is not None and previous > now:
                return False
            self._seen[(iss, jti)] = expires_at.timestamp()
            return True

    def __len__(self) -> int:
        return len(self._seen)

