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
  than one socket timeout. The body download has a total-time limit (each read waits at most
  the time left), and a watchdog shuts down a connection still reading when its request's
  limit passes (a server dripping its status line or headers), see
  :mod:`fhir_mapping.client.watchdog`.
* **Sizes.** Each response body is streamed and aborted past ``max_response_bytes`` (decoded
  bytes, so a gzip bomb is caught too). A search is aborted past ``max_pages`` pages or
  ``max_resources`` entries — never silently truncated.
* **Logging.** Query keys, page numbers and status codes only, at debug level. Never the token,
  never a URL (it carries patient ids), never a body.

Layout (:mod:`fhir_mapping.client`): errors in :mod:`~fhir_mapping.client.errors`, base-URL
normalisation and query checks in :mod:`~fhir_mapping.client.urls`, the bounded GET, body
reading, paging and :class:`FhirClientLimits` in :mod:`~fhir_mapping.client.fetch`, the hard
per-request time limits in :mod:`~fhir_mapping.client.watchdog`; this module holds
:class:`FhirClient`. The package re-exports the names the other layers use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from fhir_mapping.client.errors import Cancelled, CancelledFetch, FhirFetchError, ServerNotAllowed
from fhir_mapping.client.fetch import FhirClientLimits, check_resource, collect_pages, request_json
from fhir_mapping.client.urls import check_query, is_read, normalise_base_url, url_origin
from fhir_mapping.client.watchdog import install_tracking

__all__ = ["FhirClient"]

# The client's one logger (also used by fetch.py), under its name from before the package:
# log configuration selects it by name.
log = logging.getLogger("fhir_mapping.fhir_client")


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
        self._origin = url_origin(base)
        self._auth = _BearerAuth(access_token) if access_token else None
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session()

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _new_session() -> requests.Session:
        s = requests.Session()
        s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless: no cookies
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        install_tracking(adapter)  # hard per-request time limits (watchdog.py)
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
                    elif isinstance(exc, CancelledFetch):
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


    def _get(
        self,
        relative_query: str,
        *,
        key: str | None,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> dict[str, Any] | None:
        check_query(relative_query, key)
        url = f"{self.base_url}/{relative_query}"
        single_read = is_read(relative_query)

        def request_page(page_url: str, page: int) -> tuple[int, Any]:
            return request_json(
                self._session,
                page_url,
                auth=self._auth,
                limits=self.limits,
                key=key,
                query=relative_query,
                cancel=cancel,
                deadline=deadline,
                page=page,
            )

        try:
            status, body = request_page(url, 1)
        except Cancelled:
            raise CancelledFetch("cancelled", key=key, query=relative_query) from None

        if single_read:
            if status in (404, 410):
                return None
            resource = check_resource(body, key, relative_query)
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
            return collect_pages(
                url,
                body,
                request_page=request_page,
                origin=self._origin,
                limits=self.limits,
                key=key,
                query=relative_query,
            )
        except Cancelled:
            raise CancelledFetch("cancelled", key=key, query=relative_query) from None
