"""Resolve every prefetch key of a service (CDS Hooks 2.0.1 §Prefetch).

Each template key is in one of these states, and each is handled on its own (a present
prefetch is never assumed complete):

=====================================  ==========================================================
key in the request                     what we do
=====================================  ==========================================================
a resource                             use it
a Bundle without a ``next`` link       use its entries (an empty Bundle means "nothing found")
a Bundle with a ``next`` link          use its entries and fetch the rest by following ``next``
``null``                               the query ran and found nothing
an OperationOutcome                    the client could not fetch it: fetch it ourselves
absent                                 the client chose not to: fetch it ourselves
=====================================  ==========================================================

Fetching uses ``fhirServer`` (only when allow-listed) with ``fhirAuthorization`` if given,
all keys in parallel under one deadline. When the data cannot be had: 412.
"""

from __future__ import annotations

import logging
import re
import typing as t
from dataclasses import dataclass

import msgspec

from cds_hooks.catalog import ServiceDefinition, fill_template
from cds_hooks.errors import PayloadTooLarge, PrefetchUnavailable
from cds_hooks.hook_request import HookRequest
from cds_hooks.json_body import LazyBundle, decode_resource
from fhir_mapping.client import (
    FhirAccessError,
    FhirClient,
    FhirClientLimits,
    ServerNotAllowed,
)

log = logging.getLogger("backpain_cds.prefetch")


@dataclass(frozen=True)
class FetchPolicy:
    """How we may reach the EHR's FHIR server."""

    allowed_servers: tuple[str, ...] = ()
    limits: FhirClientLimits = FhirClientLimits()
    overall_timeout_seconds: float = 8.0
    max_workers: int = 16
    max_resources: int = 100_000
    page_size: int = 500  #: _count for fallback searches that have none (fewer round trips)


@dataclass(frozen=True)
class ResolvedData:
    """All resources of all prefetch keys, flattened, and how each key was obtained."""

    #: decoded resources (dicts) and, from a :class:`LazyBundle`, still undecoded ones
    resources: list[dict[str, t.Any] | msgspec.Raw]
    from_prefetch: tuple[str, ...]
    fetched: tuple[str, ...]

    def iter_resources(self) -> t.Iterator[dict[str, t.Any]]:
        """Each resource as a dict, decoded as it is reached; OperationOutcomes are skipped.

        Nothing is kept: a caller that drops each dict after use holds one resource at a time.
        """
        for item in self.resources:
            resource = decode_resource(item) if type(item) is msgspec.Raw else item
            if type(resource) is dict:
                rtype = resource.get("resourceType")
                if type(rtype) is str and rtype != "OperationOutcome":
                    yield resource


def resolve_prefetch(
    service: ServiceDefinition,
    request: HookRequest,
    policy: FetchPolicy,
    *,
    client_factory: t.Callable[..., FhirClient] = FhirClient,
) -> ResolvedData:
    """Collect every key's resources from the prefetch, fetching what is missing."""
    resources: list[dict[str, t.Any] | msgspec.Raw] = []
    present: list[str] = []
    to_fetch: dict[str, str] = {}
    continuations: set[str] = set()  #: keys whose to_fetch value is an absolute next link
    for key, template in service.prefetch.items():
        query = fill_template(template, request.context)
        if query is None:
            continue  # a token this request cannot fill (e.g. no encounterId): not required
        if key not in request.prefetch:
            to_fetch[key] = query
            continue
        value = request.prefetch[key]
        if value is None:
            present.append(key)
            continue
        if isinstance(value, LazyBundle):
            resources.extend(value.resources)
            next_url = next_url_of(value.link)
        elif value.get("resourceType") == "OperationOutcome":
            to_fetch[key] = query
            continue
        elif value.get("resourceType") == "Bundle":
            resources.extend(bundle_resources(value, where=f"prefetch.{key}"))
            next_url = next_url_of(value.get("link"))
        else:
            resources.append(value)
            present.append(key)
            continue
        if next_url is not None:
            to_fetch[key] = next_url
            continuations.add(key)
        else:
            present.append(key)

    if to_fetch:
        fetched = _fetch(request, to_fetch, continuations, policy, client_factory)
        for value in fetched.values():
            if value is None:
                continue
            if value.get("resourceType") == "Bundle":
                resources.extend(bundle_resources(value, where="FHIR server response"))
            else:
                resources.append(value)
    if len(resources) > policy.max_resources:
        raise PayloadTooLarge(
            f"the patient record has {len(resources)} resources, more than the limit of "
            f"{policy.max_resources}"
        )
    return ResolvedData(resources, tuple(present), tuple(to_fetch))


def bundle_resources(bundle: t.Mapping[str, t.Any], *, where: str) -> list[dict[str, t.Any]]:
    """The resources (JSON objects) in a Bundle's entries; entries without one are skipped.

    Like a :class:`LazyBundle`'s, they still include OperationOutcomes and objects without a
    ``resourceType`` (they count towards ``max_resources``); ``iter_resources`` drops those.
    """
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise PrefetchUnavailable(f"{where}: Bundle.entry must be an array", field=where)
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            resource = entry.get("resource")
            if isinstance(resource, dict):
                out.append(resource)
    return out


def next_url_of(links: t.Any) -> str | None:
    """The ``next`` URL among a Bundle's ``link`` elements, if any."""
    if not links or not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def _with_page_size(query: str, page_size: int) -> str:
    """Ask for big pages on a search that does not say (a read or an explicit _count is kept)."""
    if not page_size or "?" not in query or re.search(r"[?&]_count=", query):
        return query
    return f"{query}&_count={page_size}"


def _relative_query(key: str, next_url: str, fhir_server: str) -> str:
    """A prefetch ``next`` link as a query relative to fhirServer; refuse any other server."""
    query = next_url
    base = fhir_server.rstrip("/") + "/"
    if query.startswith(base):
        return query[len(base):]
    raise PrefetchUnavailable(
        f"the prefetch Bundle for {key} has a next link outside fhirServer; it was not followed",
        field=f"prefetch.{key}",
    )


def _fetch(
    request: HookRequest,
    queries: dict[str, str],
    continuations: set[str],
    policy: FetchPolicy,
    client_factory: t.Callable[..., FhirClient],
) -> dict[str, dict[str, t.Any] | None]:
    keys = ", ".join(sorted(queries))
    #: one OperationOutcome issue per key that is still missing (``prefetch.<key>``)
    missing = tuple(f"prefetch.{key}" for key in sorted(queries))
    if request.fhir_server is None:
        raise PrefetchUnavailable(
            f"prefetch is missing or incomplete for {keys} and the request has no fhirServer "
            "to fetch it from",
            fields=missing,
        )
    queries = {
        key: _relative_query(key, q, request.fhir_server)
        if key in continuations
        else _with_page_size(q, policy.page_size)
        for key, q in queries.items()
    }
    token = request.fhir_authorization.access_token if request.fhir_authorization else None
    try:
        client = client_factory(
            request.fhir_server,
            allowed_servers=policy.allowed_servers,
            access_token=token,
            limits=policy.limits,
        )
    except ServerNotAllowed:
        log.warning(
            "fhirServer not allow-listed; not contacted",
            extra={"hookInstance": request.hook_instance},
        )
        raise PrefetchUnavailable(
            f"prefetch is missing or incomplete for {keys} and fhirServer is not on this "
            "service's allow-list (fhir.allowed_servers), so it was not contacted",
            fields=missing,
        ) from None
    try:
        with client:
            return client.fetch_many(
                queries,
                deadline_seconds=policy.overall_timeout_seconds,
                max_workers=policy.max_workers,
            )
    except FhirAccessError as exc:
        log.warning(
            "FHIR fallback failed: %s",
            getattr(exc, "reason", exc.__class__.__name__),
            extra={"hookInstance": request.hook_instance},
        )
        raise PrefetchUnavailable(
            f"data for {keys} could not be obtained from fhirServer: "
            f"{getattr(exc, 'reason', None) or exc.__class__.__name__}",
            fields=missing,
        ) from None
