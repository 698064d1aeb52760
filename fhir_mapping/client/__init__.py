"""FHIR R4 REST client for prefetch fallback and the SMART view (allow-list, paging, limits).

:mod:`~fhir_mapping.client.client` (:class:`FhirClient`; its docstring has the decisions),
:mod:`~fhir_mapping.client.fetch` (one bounded GET, the streamed body, paging, the limits),
:mod:`~fhir_mapping.client.urls` (base URLs, origins, query checks),
:mod:`~fhir_mapping.client.errors` (the exception hierarchy) and
:mod:`~fhir_mapping.client.watchdog` (hard per-request time limits).

The names below are the ones the layers above (``cds_hooks``, ``smart_launch``,
``backpain_cds``) use; they are re-exported here so that those layers do not depend on the split.
"""

from __future__ import annotations

from fhir_mapping.client.client import FhirClient
from fhir_mapping.client.errors import FhirAccessError, FhirFetchError, ServerNotAllowed
from fhir_mapping.client.fetch import FhirClientLimits
from fhir_mapping.client.urls import normalise_base_url

__all__ = [
    "FhirAccessError",
    "FhirClient",
    "FhirClientLimits",
    "FhirFetchError",
    "ServerNotAllowed",
    "normalise_base_url",
]
