"""Replay protection across instances: two gunicorn processes share one PostgreSQL database.

A JWT accepted by instance A must be refused by instance B (its ``jti`` is in the shared
``seen_jti`` table), while a fresh token is accepted by B. Both instances are configured with
the same ``public_base_url`` (as behind one load balancer), so the token's ``aud`` is valid
for either.
"""

from __future__ import annotations

import pytest
import requests

from tests.support import hook_requests as hr
from tests.support.jwt_factory import TestSigner
from tools.harness.live_service import start_service, stop_service
from tools.harness.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

ISS = "https://ehr.example.org"
SERVICE = "back-pain-after-chemo"


@pytest.fixture(scope="module")
def signer():
    return TestSigner(alg="ES384", iss=ISS)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_url, signer):
    shared = tmp_path_factory.mktemp("jti-shared")
    jwks = signer.write_jwks(shared / "ehr-jwks.json")
    # The public URL both instances answer for (what a load balancer would expose).
    public = f"http://127.0.0.1:{free_port()}"
    config = (
        f'database_url = "{postgres_url}"\n'
        "[[auth.trusted_clients]]\n"
        f'iss = "{ISS}"\n'
        f'jwks_file = "{jwks}"\n'
    )
    env = {"BACKPAIN_CDS_PUBLIC_BASE_URL": public}
    a = start_service(config, tmp_path_factory.mktemp("instance-a"), env=env)
    try:
        b = start_service(config, tmp_path_factory.mktemp("instance-b"), env=env)
    except BaseException:
        stop_service(a)
        raise
    yield public, a, b
    stop_service(a)
    stop_service(b)


@pytest.fixture(scope="module")
def empty_prefetch():
    """Every prefetch key answered with null ("the query found nothing"): a 200, no cards."""
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    service = load_service_catalog(load_knowledge()).resolve(SERVICE, "patient-view")
    return {key: None for key in service.prefetch}


def _call(instance, token: str, prefetch) -> requests.Response:
    return requests.post(
        instance.url(f"/cds-services/{SERVICE}"),
        json=hr.patient_view(prefetch=prefetch),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_token_used_on_one_instance_is_a_replay_on_the_other(pair, signer, empty_prefetch):
    public, a, b = pair
    aud = f"{public}/cds-services/{SERVICE}"
    token = signer.token(aud)
    first = _call(a, token, empty_prefetch)
    assert first.status_code == 200, first.text
    assert first.json() == {"cards": []}
    assert _call(b, token, empty_prefetch).status_code == 401  # jti seen by A, in the shared table
    assert _call(a, token, empty_prefetch).status_code == 401
    assert _call(b, signer.token(aud), empty_prefetch).status_code == 200  # a fresh token is fine


def test_a_token_for_the_instance_own_url_is_refused(pair, signer, empty_prefetch):
    """aud is built from the shared public URL, not from the address the instance listens on."""
    _, a, _ = pair
    assert _call(a, signer.token(a.url(f"/cds-services/{SERVICE}")), empty_prefetch).status_code == 401


def test_discovery_tokens_are_shared_too(pair, signer):
    public, a, b = pair
    token = signer.token(f"{public}/cds-services")
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(a.url("/cds-services"), headers=headers, timeout=30).status_code == 200
    assert requests.get(b.url("/cds-services"), headers=headers, timeout=30).status_code == 401
