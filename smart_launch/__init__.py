"""SMART App Launch 2.x detail view (EHR launch with PKCE, iss allow-list, appContext).

Not built yet: it lands with its own issue. Until then cards carry ``smart`` links only when
``[[smart.ehrs]]`` is configured, and no route answers ``/smart/launch``.
Import rule: may import fhir_mapping and assessment; never cds_hooks.
"""
