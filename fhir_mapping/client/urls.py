"""URLs of the FHIR REST client: base-URL normalisation, origins, and relative-query checks.

:func:`normalise_base_url` is the canonical form used for the fhirServer allow-list
(re-exported by :mod:`fhir_mapping.client`). The other helpers, for the client alone,
decide whether a filled prefetch template is a read or a search (:func:`is_read`), refuse a
template that could leave the base URL (:func:`check_query`), and give the origin a ``next``
link must share with the base (:func:`url_origin`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fhir_mapping.client.errors import FhirFetchError

__all__ = [
    "check_query",
    "is_read",
    "normalise_base_url",
    "url_origin",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]*")
_FORBIDDEN_QUERY_CHARS = re.compile(r"[\s\\#\x00-\x1f\x7f]")


def normalise_base_url(url: str) -> str:
    """Return the canonical form of a FHIR base URL for allow-list comparison.

    Lower-cases scheme and host, drops a default port (``:443`` for https, ``:80`` for http)
    and trailing slashes, keeps the path as it is.

    :raises ValueError: not an absolute http(s) URL, or it has user info, a query or a fragment.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed or non-IPv6 bracketed host
        raise ValueError("FHIR base URL is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("FHIR base URL must be http or https")
    if not parts.hostname:
        raise ValueError("FHIR base URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("FHIR base URL must not contain user info")
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise ValueError("FHIR base URL must not have a query or fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("FHIR base URL has an invalid port") from exc
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def url_origin(url: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of an absolute http(s) URL without user info, else None."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        if parts.username is not None or parts.password is not None:
            return None
        return scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None


def is_read(relative_query: str) -> bool:
    """True for ``Type/id`` and ``Type/id/_history/vid`` (with or without parameters such as
    ``_elements``); everything else (``Type?...``, ``Type``, ``Patient/1/Observation``,
    ``Patient/1/$everything``) is a search."""
    segments = relative_query.split("?", 1)[0].split("/")
    if len(segments) == 2:
        return not segments[1].startswith(("_", "$"))
    return len(segments) == 4 and segments[2] == "_history"


def check_query(relative_query: str, key: str | None) -> None:
    """Refuse a relative query that could leave the FHIR base (raises :class:`FhirFetchError`)."""

    def bad(why: str) -> FhirFetchError:
        return FhirFetchError(f"invalid relative query: {why}", key=key, query=relative_query)

    if not isinstance(relative_query, str) or not relative_query:
        raise bad("empty")
    if _FORBIDDEN_QUERY_CHARS.search(relative_query):
        raise bad("whitespace, control character, backslash or fragment")
    path = relative_query.split("?", 1)[0]
    if path.startswith("/") or "://" in path or ":" in path.split("/", 1)[0]:
        raise bad("must be relative to the FHIR base")
    segments = path.split("/")
    if not _RESOURCE_TYPE.fullmatch(segments[0]):
        raise bad("must start with a resource type")
    if any(seg in ("", ".", "..") for seg in segments[1:]) or "%2e" in path.lower():
        raise bad("empty or dot path segment")
