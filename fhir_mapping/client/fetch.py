"""How the FHIR REST client fetches: one bounded GET, the streamed body, searchset paging.

Used by :class:`fhir_mapping.client.client.FhirClient` (:mod:`fhir_mapping.client` re-exports
:class:`FhirClientLimits`); the decisions these functions implement -- no redirects, time and
size bounds, same-origin ``next`` links, never a silent truncation -- are documented in that
module's docstring. Every failure is a :class:`~fhir_mapping.client.errors.FhirFetchError`;
a set cancel flag raises the internal ``Cancelled`` between pages and between body chunks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
from requests.auth import AuthBase
from urllib3 import exceptions as urllib3_exceptions

from fhir_mapping.client.errors import Cancelled, FhirFetchError
from fhir_mapping.client.urls import url_origin
from fhir_mapping.client.watchdog import time_limit

__all__ = [
    "FhirClientLimits",
    "PageRequest",
    "check_resource",
    "check_searchset",
    "collect_pages",
    "next_link",
    "read_body",
    "request_json",
]

# The client's one logger (see client.py), named as before the split: log configuration selects it by name.
log = logging.getLogger("fhir_mapping.fhir_client")

_FHIR_JSON = "application/fhir+json"
_CHUNK_BYTES = 64 * 1024

#: ``(url, page number) -> (status, parsed JSON or None for 404/410)``: one page request.
PageRequest = Callable[[str, int], tuple[int, Any]]


@dataclass(frozen=True)
class FhirClientLimits:
    """Per-client limits; all of them end in a :class:`FhirFetchError`, never in truncation."""

    timeout_seconds: float = 5.0  # per HTTP request
    max_pages: int = 20  # per search, first page included
    max_response_bytes: int = 20 * 1024 * 1024  # per HTTP response, decoded
    max_resources: int = 50_000  # entries per search, all pages together

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        for name in ("max_pages", "max_response_bytes", "max_resources"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


# --------------------------------------------------------------------------- paging


def collect_pages(
    first_url: str,
    first_body: Any,
    *,
    request_page: PageRequest,
    origin: tuple[str, str, int] | None,
    limits: FhirClientLimits,
    key: str | None,
    query: str,
) -> dict[str, Any]:
    """Follow ``next`` links from the first searchset page; return one Bundle of all entries.

    :param request_page: fetches one further page (see :data:`PageRequest`)
    :param origin: the base URL's origin; every ``next`` link must share it
    """
    page = check_searchset(first_body, key, query)
    result = {k: v for k, v in page.items() if k not in ("entry", "link")}
    entries: list[Any] = []
    self_links = [link for link in page.get("link", []) if isinstance(link, dict)
                  and link.get("relation") == "self"]
    visited = {first_url}
    current_url = first_url
    pages = 1
    while True:
        page_entries = page.get("entry", [])
        entries.extend(page_entries)
        if len(entries) > limits.max_resources:
            raise FhirFetchError(
                f"more than {limits.max_resources} resources", key=key, query=query
            )
        next_url = next_link(page, current_url, origin, key, query)
        if next_url is None:
            break
        if pages >= limits.max_pages:
            raise FhirFetchError(
                f"more than {limits.max_pages} pages", key=key, query=query
            )
        if next_url in visited:
            raise FhirFetchError("next link loops to a page already read", key=key, query=query)
        visited.add(next_url)
        pages += 1
        status, body = request_page(next_url, pages)
        if status in (404, 410):
            raise FhirFetchError(f"HTTP {status} on page {pages}", key=key, query=query,
                                 status_code=status)
        page = check_searchset(body, key, query)
        current_url = next_url
    if entries:  # FHIR JSON forbids empty arrays: no matches means no "entry" key
        result["entry"] = entries
    if self_links:
        result["link"] = self_links
    log.debug("FHIR search key=%s pages=%d entries=%d", key, pages, len(entries))
    return result


def next_link(page: dict[str, Any], current_url: str, origin: tuple[str, str, int] | None,
              key: str | None, query: str) -> str | None:
    """Return the page's ``next`` link resolved to an absolute URL of ``origin``, or None."""
    links = page.get("link", [])
    if not isinstance(links, list):
        raise FhirFetchError("Bundle.link is not a list", key=key, query=query)
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            raw = link.get("url")
            if not isinstance(raw, str) or not raw:
                raise FhirFetchError("next link without url", key=key, query=query)
            # Absolute links are used verbatim; a relative one is resolved (RFC 3986)
            # against the page it came from, never rebuilt from parameters.
            next_url = urljoin(current_url, raw)
            if url_origin(next_url) != origin:
                raise FhirFetchError(
                    "next link points to another origin; refused", key=key, query=query
                )
            return next_url
    return None


def check_resource(body: Any, key: str | None, query: str) -> dict[str, Any]:
    """Return ``body`` if it is a FHIR resource other than an OperationOutcome."""
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirFetchError("response is not a FHIR resource", key=key, query=query)
    if body["resourceType"] == "OperationOutcome":
        raise FhirFetchError("server answered with an OperationOutcome", key=key, query=query)
    return body


def check_searchset(body: Any, key: str | None, query: str) -> dict[str, Any]:
    """Return ``body`` if it is a searchset Bundle whose entries are objects."""
    resource = check_resource(body, key, query)
    if resource["resourceType"] != "Bundle" or resource.get("type") != "searchset":
        raise FhirFetchError("search did not return a searchset Bundle", key=key, query=query)
    entries = resource.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FhirFetchError("Bundle.entry is not a list of objects", key=key, query=query)
    return resource


# --------------------------------------------------------------------------- one request


def request_json(
    session: requests.Session,
    url: str,
    *,
    auth: AuthBase | None,
    limits: FhirClientLimits,
    key: str | None,
    query: str,
    cancel: threading.Event | None,
    deadline: float | None,
    page: int,
) -> tuple[int, Any]:
    """GET one URL; return (status, parsed JSON or None for 404/410)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled
    timeout = limits.timeout_seconds
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise FhirFetchError("deadline passed", key=key, query=query)
    stop_at = time.monotonic() + timeout

    def fail(reason: str, status: int | None = None) -> FhirFetchError:
        return FhirFetchError(reason, key=key, query=query, status_code=status)

    with time_limit(stop_at):
        return _get_and_read(session, url, auth, limits, key, page, timeout, stop_at, cancel, fail)


def _get_and_read(
    session: requests.Session,
    url: str,
    auth: AuthBase | None,
    limits: FhirClientLimits,
    key: str | None,
    page: int,
    timeout: float,
    stop_at: float,
    cancel: threading.Event | None,
    fail: Callable[..., FhirFetchError],
) -> tuple[int, Any]:
    try:
        response = session.get(
            url,
            headers={"Accept": _FHIR_JSON},
            auth=auth,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        raise fail(f"timed out after {timeout:.3g} s") from None
    except requests.RequestException as exc:
        if time.monotonic() >= stop_at:
            raise fail(f"timed out after {timeout:.3g} s") from None
        raise fail(f"connection failed: {type(exc).__name__}") from None

    with response:
        status = response.status_code
        log.debug("FHIR GET key=%s page=%d status=%d", key, page, status)
        if 300 <= status < 400:
            raise fail(f"HTTP {status} redirect not followed", status)
        if status in (404, 410):
            return status, None
        if not 200 <= status < 300:
            raise fail(f"HTTP {status}", status)
        body = read_body(response, limits.max_response_bytes, stop_at, cancel, fail)
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        raise fail("response body is not JSON", status) from None


def read_body(
    response: requests.Response,
    cap: int,
    stop_at: float,
    cancel: threading.Event | None,
    fail: Callable[[str, int | None], FhirFetchError],
) -> bytes:
    """Stream the body, aborting past ``cap`` decoded bytes, past ``stop_at`` or on cancel.

    ``stop_at`` is a limit on the whole download, not per read: each read takes what has
    arrived (``read1``, one socket receive, not a full 64 KiB chunk that a server dripping one
    byte at a time would never complete), and the socket's timeout is lowered to the time
    left before every read, so a read can never wait past ``stop_at``.
    """
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise fail(f"response larger than {cap} bytes", response.status_code)
    raw = response.raw
    buf = bytearray()
    try:
        while True:
            left = stop_at - time.monotonic()
            if left <= 0:
                raise fail("timed out reading the response body", response.status_code)
            if cancel is not None and cancel.is_set():
                raise Cancelled
            _limit_socket_wait(raw, left)
            chunk = raw.read1(_CHUNK_BYTES, decode_content=True)
            if not chunk:  # end of the body, or the watchdog shut the socket at stop_at
                if time.monotonic() >= stop_at:
                    raise fail("timed out reading the response body", response.status_code)
                break
            buf += chunk
            if len(buf) > cap:
                raise fail(f"response larger than {cap} bytes", response.status_code)
    except Cancelled:
        raise
    except FhirFetchError:
        raise
    except (requests.Timeout, TimeoutError, urllib3_exceptions.TimeoutError):
        raise fail("timed out reading the response body", response.status_code) from None
    except (requests.RequestException, urllib3_exceptions.HTTPError, OSError) as exc:
        if time.monotonic() >= stop_at:  # the watchdog shut the socket at the time limit
            raise fail("timed out reading the response body", response.status_code) from None
        raise fail(f"reading the response failed: {type(exc).__name__}",
                   response.status_code) from None
    return bytes(buf)


def _limit_socket_wait(raw: Any, seconds: float) -> None:
    """Lower the response socket's timeout to ``seconds`` (best effort: urllib3 internals)."""
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(fp, "_sock", None)
    if sock is not None:
        try:
            current = sock.gettimeout()
            if current is None or current > seconds:
                sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass
