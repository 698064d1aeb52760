"""Structured (JSON-lines) logging with the hook call's ids, never tokens or clinical values.

Three layers keep secrets and clinical data out of the log:

1. call sites log ids only (``hookInstance``, service, hook, rule ids, reasons) and put them
   in ``extra``; only the keys in :data:`ALLOWED_EXTRAS` are written, anything else is dropped;
2. exceptions are written as class names and code locations (:func:`safe_traceback`), never
   with their messages or source lines, since a message may quote a request value;
3. as a last net, every text written is passed through :func:`redact`, which blanks what
   looks like a JWT, a ``Bearer`` credential or an ``access_token`` value.

Patient ids belong in the card audit table (``backpain_cds.storage``), not in log lines.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import typing as t

import orjson

#: extra fields a log call may attach; anything else passed as ``extra`` is dropped
ALLOWED_EXTRAS = (
    "hookInstance", "service", "hook", "cards", "fetched", "ms", "status", "iss", "kid", "jti",
    "reason", "path", "method", "error", "traceback", "entries", "outcomes", "stored", "unmatched",
)

_REDACTIONS = (
    # a compact JWS/JWT: base64url JSON header ("{" encodes to "ey"), payload, signature
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(access_token|refresh_token|id_token|client_secret|authorization)"
                r"([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"), r"\1\2[redacted]"),
)
_MAX_FRAMES = 30


def redact(text: str) -> str:
    """Blank anything in ``text`` that looks like a token or a credential."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def safe_traceback(exc: BaseException) -> list[str]:
    """The exception chain as ``Class at file:line in function`` entries, without messages.

    Exception messages and local values may quote request content (a display text, a
    token), so only class names and code locations are kept; they are enough to find the bug.
    """
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(lines) < _MAX_FRAMES:
        seen.add(id(current))
        name = f"{current.__class__.__module__}.{current.__class__.__qualname__}"
        frames = traceback.extract_tb(current.__traceback__)[-_MAX_FRAMES:]
        where = " <- ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
        lines.append(f"{name} at {where}" if where else name)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return lines


def _short(filename: str) -> str:
    """A path from the package root (``cds_hooks/service.py``) or the file name."""
    parts = filename.replace("\\", "/").split("/")
    for i, part in enumerate(parts):
        if part in ("backpain_cds", "cds_hooks", "fhir_mapping", "assessment", "smart_launch"):
            return "/".join(parts[i:])
    return parts[-1]


def _clean(value: t.Any) -> t.Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line, nor raise in a handler
            message = str(record.msg)
        entry: dict[str, t.Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which gunicorn worker (metrics are summed over them)
            "message": redact(message),
        }
        for key in ALLOWED_EXTRAS:
            if key in record.__dict__:
                entry[key] = _clean(record.__dict__[key])
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, BaseException) and "traceback" not in entry:
            entry["error"] = exc.__class__.__name__
            entry["traceback"] = _clean(safe_traceback(exc))
        return orjson.dumps(entry, default=str).decode()

    def formatException(self, ei: t.Any) -> str:  # noqa: N802 - logging API
        """Never the messages: used if another handler borrows this formatter."""
        exc = ei[1] if isinstance(ei, tuple) else None
        return "\n".join(safe_traceback(exc)) if isinstance(exc, BaseException) else ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging API
        return ""


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
    # Werkzeug's request log (only used by its development server) writes request lines;
    # keep it quiet so no query string or path with data is ever logged from there.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


__all__ = ["ALLOWED_EXTRAS", "JsonFormatter", "configure_logging", "redact", "safe_traceback"]
