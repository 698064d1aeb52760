"""Turn a FHIR Bundle (transaction, collection, searchset) into plain resources.

Transaction bundles from Synthea and friends refer to each other by ``urn:uuid:`` fullUrls;
a FHIR server rewrites those to ``Type/id`` when it stores them. We do the same, so that a
bundle replayed as prefetch looks like what the server would have returned.
"""

from __future__ import annotations

import copy
import re
import typing as t

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class BundleError(ValueError):
    """The input is not a usable Bundle."""


def bundle_to_resources(bundle: t.Any) -> list[dict[str, t.Any]]:
    """Resources of a Bundle with ids assigned and ``urn:uuid:`` references rewritten."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleError("not a FHIR Bundle")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise BundleError("the Bundle has no entry array")
    resources: list[dict[str, t.Any]] = []
    rewrites: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise BundleError(f"entry[{i}] has no resource")
        resource = copy.deepcopy(entry["resource"])
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or not kind:
            raise BundleError(f"entry[{i}].resource has no resourceType")
        full_url = entry.get("fullUrl")
        ident = resource.get("id")
        if not isinstance(ident, str) or not _ID.fullmatch(ident):
            ident = _id_from_full_url(full_url) or f"entry-{i}"
            resource["id"] = ident
        if isinstance(full_url, str) and full_url:
            rewrites[full_url] = f"{kind}/{ident}"
        resources.append(resource)
    if rewrites:
        for resource in resources:
            _rewrite_references(resource, rewrites)
    return resources


def _id_from_full_url(full_url: t.Any) -> str | None:
    if not isinstance(full_url, str):
        return None
    tail = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return tail if _ID.fullmatch(tail) else None


def _rewrite_references(node: t.Any, rewrites: t.Mapping[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in rewrites:
                node[key] = rewrites[value]
            else:
                _rewrite_references(value, rewrites)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, rewrites)
