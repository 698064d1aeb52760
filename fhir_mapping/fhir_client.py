"""FHIR R4 REST client for prefetch fallback: allow-list, paging, time and size limits.

The CDS Hooks prefetch resolver (``cds_hooks``) calls this when a prefetch key is absent or
holds an OperationOutcome (CDS Hooks 2.0 §"Prefetch", see ``CDS_HOOKS.md`` §1.4–1.5).

Exception hierarchy::

    FhirAccessError            base; .key, .query, .reason, .status_code
     ├── ServerNotAllowed      fhirServer not allow-listed (raised before any network I/O)
     └── FhirFetchError        timeout, connection error, non-2xx, redirect, bad JSON,
                               OperationOutcome body, caps exceeded, foreign next link, deadline

Decisions (documented here because the resolver relies on them):

* **Redirects are never followed.** Any 3xx answer is a :class:`FhirFetchError`. FHIR servers
  do not redirect reads or searches in practice; following one would risk sending the bearer
  token somewhere else, and a same-origin-only follower buys little.
* **Bearer token only to the allowed origin.** The token rides on each request (never on the
  session), and every URL we request is either ``base_url + relative query`` or a ``next`` link
  whose origin (scheme, host, port) equals the base's — checked *before* the request is made.
* **One** :class:`requests.Session` **per client**, shared by the ``fetch_many`` worker threads.
  urllib3's connection pool is thread-safe; we only issue GETs and never mutate session state
  (headers and auth are passed per request). A session we create blocks cookies and gets a pool
  as large as the worker count. An injected session is used as it is (the caller owns it).
* **Time bounds.** Each HTTP request gets ``timeout_seconds`` (connect and per-read) and the
  body download is also checked against ``timeout_seconds`` in total. In ``fetch_many`` every
  request's timeout is further capped by the time left to the deadline, and a cancel flag stops
  workers between pages and between body chunks, so no thread outlives the deadline by more
  than one socket timeout.
* **Sizes.** Each response body is streamed and aborted past ``max_response_bytes`` (decoded
  bytes, so a gzip bomb is caught too). A search is aborted past ``max_pages`` pages or
  ``max_resources`` entries — never silently truncated.
* **Logging.** Query keys, page numbers and status codes only, at debug level. Never the token,
  never a URL (it carries patient ids), never a body.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

__all__ = [
    "FhirAccessError",
    "FhirClient",
    "FhirClientLimits",
    "FhirFetchError",
    "ServerNotAllowed",
    "normalise_base_url",
]

log = logging.getLogger(__name__)

_FHIR_JSON = "application/fhir+json"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK_BYTES = 64 * 1024
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]*")
_FORBIDDEN_QUERY_CHARS = re.compile(r"[\s\\#\x00-\x1f\x7f]")


# --------------------------------------------------------------------------- errors


class FhirAccessError(Exception):
    """Base of every error this client raises; the message never contains the token or a body."""

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        query: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.reason = reason
        self.key = key
        self.query = query
        self.status_code = status_code
        super().__init__(reason)

    def __str__(self) -> str:
        # The query is kept as an attribute only: it carries patient ids.
        return f"{self.reason} (key={self.key})" if self.key is not None else self.reason


class ServerNotAllowed(FhirAccessError):
    """The FHIR base URL is not on the allow-list (raised before any network I/O)."""


class FhirFetchError(FhirAccessError):
    """A fetch failed: network, HTTP status, body, limits, paging or deadline."""

    def __init__(
        self,
        reason: str,
        *,
        key: str | None = None,
        query: str | None = None,
        status_code: int | None = None,
        keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__(reason, key=key, query=query, status_code=status_code)
        #: For a ``fetch_many`` deadline: every key that had not finished.
        self.keys = keys or ((key,) if key is not None else ())


class _Cancelled(Exception):
    """Internal: a fetch_many worker noticed the cancel flag."""


class _CancelledFetch(FhirFetchError):
    """Internal: a fetch_many key stopped because another key failed or time ran out."""


# --------------------------------------------------------------------------- config / URLs


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


def normalise_base_url(url: str) -> str:
    """Return the canonical form of a FHIR base URL for allow-list comparison.

    Lower-cases scheme and host, drops a default port (``:443`` for https, ``:80`` for http)
    and trailing slashes, keeps the path as it is.

    :raises ValueError: not an absolute http(s) URL, or it has user info, a query or a fragment.
    """
    parts = urlsplit(url.strip())
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


def _origin(url: str) -> tuple[str, str, int] | None:
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


def _is_read(relative_query: str) -> bool:
    """True for ``Type/id`` and ``Type/id/_history/vid`` (with or without parameters such as
    ``_elements``); everything else (``Type?...``, ``Type``, ``Patient/1/Observation``,
    ``Patient/1/$everything``) is a search."""
    segments = relative_query.split("?", 1)[0].split("/")
    if len(segments) == 2:
        return not segments[1].startswith(("_", "$"))
    return len(segments) == 4 and segments[2] == "_history"


# --------------------------------------------------------------------------- client


class _BearerAuth(AuthBase):
    """Set the Authorization header per request (keeps the token off the shared session)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class FhirClient:
    """Read and search one allow-listed FHIR server, optionally with a bearer token.

    >>> client = FhirClient("https://ehr.example.org/fhir/r4",
    ...                     allowed_servers=["https://ehr.example.org/fhir/r4"],
    ...                     access_token=token)                     # doctest: +SKIP
    >>> client.fetch_many({"patient": "Patient/123"}, deadline_seconds=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        allowed_servers: Collection[str],
        access_token: str | None = None,
        limits: FhirClientLimits = FhirClientLimits(),
        session: requests.Session | None = None,
    ) -> None:
        """Check ``base_url`` against ``allowed_servers``; no network I/O happens here.

        :raises ServerNotAllowed: ``base_url`` is malformed or not on the allow-list.
        :raises ValueError: an allow-list entry is not a valid http(s) base URL (configuration).
        """
        allowed = {normalise_base_url(s) for s in allowed_servers}
        try:
            base = normalise_base_url(base_url)
        except ValueError as exc:
            raise ServerNotAllowed(f"FHIR server URL rejected: {exc}") from None
        if base not in allowed:
            raise ServerNotAllowed("FHIR server is not on the allow-list")
        self.base_url = base
        self.limits = limits
        self._origin = _origin(base)
        self._auth = _BearerAuth(access_token) if access_token else None
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session()

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _new_session() -> requests.Session:
        s = requests.Session()
        s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless: no cookies
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        return s

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r}, token={'yes' if self._auth else 'no'})"

    # ------------------------------------------------------------------ public API

    def get(self, relative_query: str) -> dict[str, Any] | None:
        """Run one filled prefetch template relative to the base URL.

        A read (``Type/id``) returns the resource, or None on 404/410. Anything else is a
        search and returns one ``searchset`` Bundle holding the entries of all pages, in
        order (``total`` and ``id`` as on the first page, ``link`` reduced to ``self``, no
        ``entry`` key when nothing matched, as FHIR JSON has no empty arrays).

        :raises FhirFetchError: on any failure (see the module docstring).
        """
        return self._get(relative_query, key=None, cancel=None, deadline=None)

    def fetch_many(
        self,
        queries: Mapping[str, str],
        *,
        deadline_seconds: float,
        max_workers: int = 8,
    ) -> dict[str, dict[str, Any] | None]:
        """Run :meth:`get` for every ``key: query`` in parallel within ``deadline_seconds``.

        :returns: ``{key: resource/Bundle/None}`` for every key.
        :raises FhirFetchError: the first failing key (``.key``), after cancelling the rest; or
            the deadline passed (``.keys`` lists every unfinished key, ``.key`` the first).
        """
        if deadline_seconds <= 0:
            raise ValueError("deadline_seconds must be > 0")
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        if not queries:
            return {}
        deadline = time.monotonic() + deadline_seconds
        cancel = threading.Event()
        pool = ThreadPoolExecutor(
            max_workers=min(max_workers, len(queries)), thread_name_prefix="fhir-fetch"
        )
        futures: dict[Future[dict[str, Any] | None], str] = {}
        try:
            for key, query in queries.items():
                future = pool.submit(self._get_in_pool, query, key, cancel, deadline)
                futures[future] = key
            order = {key: i for i, key in enumerate(queries)}
            results: dict[str, dict[str, Any] | None] = {}
            pending = set(futures)
            # Keys stopped by the cancel flag only echo another key's failure: report that one.
            echoes: list[FhirFetchError] = []
            while pending:
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    done, pending = wait(pending, timeout=remaining, return_when=FIRST_EXCEPTION)
                else:  # deadline reached: collect whatever finished meanwhile, then give up
                    done = {f for f in pending if f.done()}
                    pending -= done
                failures: list[FhirFetchError] = []
                for future in sorted(done, key=lambda f: order[futures[f]]):
                    exc = future.exception()
                    if exc is None:
                        results[futures[future]] = future.result()
                    elif isinstance(exc, _CancelledFetch):
                        echoes.append(exc)
                    elif isinstance(exc, FhirFetchError):
                        failures.append(exc)
                    else:
                        wrapped = self._as_fetch_error(exc, futures[future], queries)
                        wrapped.__cause__ = exc
                        failures.append(wrapped)
                if failures:
                    raise failures[0]
                if remaining <= 0:
                    break
            if echoes and not pending:  # pragma: no cover - a cancel always has a cause
                raise echoes[0]
            if pending:
                unfinished = tuple(sorted((futures[f] for f in pending), key=order.__getitem__))
                log.debug("FHIR fetch deadline passed; unfinished keys=%s", unfinished)
                raise FhirFetchError(
                    f"deadline of {deadline_seconds:g} s passed; still running: "
                    + ", ".join(unfinished),
                    key=unfinished[0],
                    query=queries[unfinished[0]],
                    keys=unfinished,
                )
            return {key: results[key] for key in queries}
        finally:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals

    def _get_in_pool(
        self, query: str, key: str, cancel: threading.Event, deadline: float
    ) -> dict[str, Any] | None:
        """Worker body: a failure raises the cancel flag at once, so queued work never starts
        a request even before the coordinating thread has noticed the failure."""
        try:
            return self._get(query, key=key, cancel=cancel, deadline=deadline)
        except BaseException:
            cancel.set()
            raise

    @staticmethod
    def _as_fetch_error(exc: BaseException, key: str, queries: Mapping[str, str]) -> FhirFetchError:
        """Wrap an exception that is not ours (a bug) so the caller still sees the key."""
        return FhirFetchError(f"unexpected {type(exc).__name__}", key=key, query=queries[key])

    def _check_query(self, relative_query: str, key: str | None) -> None:
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

    def _get(
        self,
        relative_query: str,
        *,
        key: str | None,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> dict[str, Any] | None:
        self._check_query(relative_query, key)
        url = f"{self.base_url}/{relative_query}"
        is_read = _is_read(relative_query)
        try:
            status, body = self._request(url, key, relative_query, cancel, deadline, page=1)
        except _Cancelled:
            raise _CancelledFetch("cancelled", key=key, query=relative_query) from None

        if is_read:
            if status in (404, 410):
                return None
            resource = self._check_resource(body, key, relative_query)
            expected_type = relative_query.split("/", 1)[0]
            if resource.get("resourceType") != expected_type:
                raise FhirFetchError(
                    f"read returned {resource.get('resourceType')!r}, expected {expected_type!r}",
                    key=key,
                    query=relative_query,
                )
            return resource
        if status in (404, 410):
            raise FhirFetchError(f"HTTP {status} on search", key=key, query=relative_query,
                                 status_code=status)
        try:
            return self._collect_pages(url, body, key, relative_query, cancel, deadline)
        except _Cancelled:
            raise _CancelledFetch("cancelled", key=key, query=relative_query) from None

    def _collect_pages(
        self,
        first_url: str,
        first_body: Any,
        key: str | None,
        query: str,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> dict[str, Any]:
        limits = self.limits
        page = self._check_searchset(first_body, key, query)
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
            next_url = self._next_link(page, current_url, key, query)
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
            status, body = self._request(next_url, key, query, cancel, deadline, page=pages)
            if status in (404, 410):
                raise FhirFetchError(f"HTTP {status} on page {pages}", key=key, query=query,
                                     status_code=status)
            page = self._check_searchset(body, key, query)
            current_url = next_url
        if entries:  # FHIR JSON forbids empty arrays: no matches means no "entry" key
            result["entry"] = entries
        if self_links:
            result["link"] = self_links
        log.debug("FHIR search key=%s pages=%d entries=%d", key, pages, len(entries))
        return result

    def _next_link(self, page: dict[str, Any], current_url: str, key: str | None,
                   query: str) -> str | None:
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
                if _origin(next_url) != self._origin:
                    raise FhirFetchError(
                        "next link points to another origin; refused", key=key, query=query
                    )
                return next_url
        return None

    def _check_resource(self, body: Any, key: str | None, query: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FhirFetchError("response is not a FHIR resource", key=key, query=query)
        if body["resourceType"] == "OperationOutcome":
            raise FhirFetchError("server answered with an OperationOutcome", key=key, query=query)
        return body

    def _check_searchset(self, body: Any, key: str | None, query: str) -> dict[str, Any]:
        resource = self._check_resource(body, key, query)
        if resource["resourceType"] != "Bundle" or resource.get("type") != "searchset":
            raise FhirFetchError("search did not return a searchset Bundle", key=key, query=query)
        entries = resource.get("entry", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise FhirFetchError("Bundle.entry is not a list of objects", key=key, query=query)
        return resource

    def _request(
        self,
        url: str,
        key: str | None,
        query: str,
        cancel: threading.Event | None,
        deadline: float | None,
        *,
        page: int,
    ) -> tuple[int, Any]:
        """GET one URL; return (status, parsed JSON or None for 404/410)."""
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        timeout = self.limits.timeout_seconds
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise FhirFetchError("deadline passed", key=key, query=query)
        stop_at = time.monotonic() + timeout

        def fail(reason: str, status: int | None = None) -> FhirFetchError:
            return FhirFetchError(reason, key=key, query=query, status_code=status)

        try:
            response = self._session.get(
                url,
                headers={"Accept": _FHIR_JSON},
                auth=self._auth,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            raise fail(f"timed out after {timeout:.3g} s") from None
        except requests.RequestException as exc:
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
            body = self._read_body(response, stop_at, cancel, fail)
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise fail("response body is not JSON", status) from None

    def _read_body(
        self,
        response: requests.Response,
        stop_at: float,
        cancel: threading.Event | None,
        fail: Callable[[str, int | None], FhirFetchError],
    ) -> bytes:
        cap = self.limits.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise fail(f"response larger than {cap} bytes", response.status_code)
        buf = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                buf += chunk
                if len(buf) > cap:
                    raise fail(f"response larger than {cap} bytes", response.status_code)
                if time.monotonic() > stop_at:
                    raise fail("timed out reading the response body", response.status_code)
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
        except requests.Timeout:
            raise fail("timed out reading the response body", response.status_code) from None
        except requests.RequestException as exc:
            raise fail(f"reading the response failed: {type(exc).__name__}",
                       response.status_code) from None
        return bytes(buf)
