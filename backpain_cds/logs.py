"""Structured (JSON-lines) logging with the hook call's ids, never tokens or clinical values."""

from __future__ import annotations

import logging
import sys
import typing as t

import orjson

#: extra fields a log call may attach; anything else passed as ``extra`` is dropped
ALLOWED_EXTRAS = (
    "hookInstance", "service", "hook", "cards", "fetched", "ms", "status", "iss", "kid", "jti",
    "reason", "path", "method",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, t.Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ALLOWED_EXTRAS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send the service's logs to stderr as JSON lines (idempotent)."""
    root = logging.getLogger("backpain_cds")
    if any(getattr(h, "_backpain_cds", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._backpain_cds = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
