"""SMART App Launch 2.x detail view: EHR launch with PKCE, iss allow-list, signed appContext,
the signed-in user from a validated OpenID Connect id_token.

``setup.install_smart_app`` registers ``/smart/*`` (``launch.py``) when ``[[smart.ehrs]]`` is
configured: discovery checks (``discovery.py``), id_token validation against the EHR's JWKS
(``identity.py``), launch state and view sessions in SQL
(``session_store.py``), the card's signed handle (``app_context.py``), the view's data
(``views.py``, ``timeline.py``, ``view_text.py``) and its pages (``pages.py``, ``templates/``).
Import rule: may import fhir_mapping and assessment; never cds_hooks or backpain_cds.
"""
