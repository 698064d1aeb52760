"""A clock the tests move by hand: ``clock()`` returns epoch seconds, like ``time.time``."""

from __future__ import annotations

#: 2027-01-15T08:00:00Z: a fixed "now" far from any real clock, so a test that reads the real
#: clock by mistake fails.
DEFAULT_NOW = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = DEFAULT_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
