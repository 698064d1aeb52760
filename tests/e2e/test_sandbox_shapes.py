"""The CDS Hooks sandbox's exact request shapes against a real gunicorn and a real FHIR server.

What the sandbox (cds-hooks/sandbox @ 3b7e2554; its code is not in this repository) does, and
what :class:`SandboxClient` below reproduces:

* every call carries ``Authorization: Bearer <ES384 JWT>`` with header ``alg typ kid jku`` and
  claims ``iss aud exp iat jti``, ``aud`` the exact URL called (discovery, service, or the
  service URL + ``/feedback``), ``exp = iat + 300``, ``iat`` rounded to the second (so up to
  0.5 s in the future); here the ``jku`` is a JWK Set served on loopback and configured as the
  trusted client's ``jwks_url`` (``src/retrieve-data-helpers/jwt-generator.js``);
* discovery is kept as a map keyed by ``{discoveryUrl}/{service.id}``, and a hook calls the
  services of that map whose ``hook`` matches (``src/reducers/cds-services-reducers.js``,
  ``src/reducers/helpers/services-filter.js``);
* the sandbox runs the prefetch itself: each template filled, searches by POST
  ``{fhirServer}/{Type}/_search`` then GET, a key whose query failed is simply left out --
  never ``null`` -- and ``fhirServer`` is always sent, without ``fhirAuthorization`` for an
  open server (``src/retrieve-data-helpers/service-exchange.js``);
* order-select/order-sign put the draft in ``context.draftOrders``, a Bundle **without**
  ``type``, with ``selections`` on order-select (``src/components/RxView/rx-view.jsx``,
  ``src/reducers/medication-reducers.js``: id ``request-123``, status ``draft``);
* feedback: accepted -> ``{card, outcome, acceptedSuggestions: [{id}], outcomeTimestamp}``;
  dismissed -> ``{card, outcome: "overridden", outcomeTimestamp}`` plus, when a reason was
  picked, ``overrideReason: {reason: {code, system}}`` without ``display`` or ``userComment``
  (``src/components/CardList/card-list.jsx``).
"""

from __future__ import annotations

import time
import typing as t
import uuid
from datetime import UTC, datetime

import pytest
import requests

from backpain_cds.storage import SqlStore
from cds_hooks.schemas import validate_cds_response, validate_discovery
from tests.support.jwt_factory import JwksServer, TestSigner
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.fhir_server]

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
JWKS_PORTS = range(18440, 18460)  # this helper's loopback range


def _jwks_server(jwks: dict[str, t.Any]) -> JwksServer:
    for port in JWKS_PORTS:
        try:
            return JwksServer(jwks, path="/.well-known/jwks.json", port=port).start()
        except OSError:
            continue
    return JwksServer(jwks, path="/.well-known/jwks.json").start()  # range busy: any port


class SandboxClient:
    """The sandbox's requests, as it builds them."""

    def __init__(self, discovery_url: str, fhir_server: str, signer: TestSigner, *,
                 unfilled: t.Callable[[str, str], bool] = lambda key, query: False) -> None:
        self.discovery_url = discovery_url
        self.fhir_server = fhir_server
        self.signer = signer
        self.unfilled = unfilled  #: keys whose prefetch "failed" in the sandbox (left out)
        self.services: dict[str, dict[str, t.Any]] = {}
        self.sent: list[dict[str, t.Any]] = []

    def _jwt(self, aud: str) -> str:
        now = round(time.time())  # Math.round(Date.now() / 1000)
        return self.signer.token(aud, iat=now, exp=now + 300)

    def discover(self) -> requests.Response:
        response = requests.get(self.discovery_url, timeout=30, headers={
            "Accept": "application/json", "Authorization": f"Bearer {self._jwt(self.discovery_url)}"})
        if response.ok:
            for service in response.json()["services"]:
                self.services[f"{self.discovery_url}/{service['id']}"] = {**service, "enabled": True}
        return response

    def services_for(self, hook: str) -> dict[str, dict[str, t.Any]]:
        return {url: s for url, s in self.services.items() if s["hook"] == hook and s["enabled"]}

    def _prefetch(self, templates: dict[str, str], context: dict[str, t.Any]) -> dict[str, t.Any]:
        out = {}
        for key, template in templates.items():
            query = template.replace("{{context.patientId}}", context["patientId"])
            query = query.replace("{{context.userId}}", context["userId"])
            if "{{" in query or self.unfilled(key, query):
                continue
            headers = {"Accept": "application/json+fhir"}
            path, _, params = query.partition("?")
            try:
                if params:
                    result = requests.post(f"{self.fhir_server}/{path}/_search", data=params, timeout=30,
                                           headers={**headers, "content-type": "application/x-www-form-urlencoded"})
                    if not result.ok:
                        result = requests.get(f"{self.fhir_server}/{path}?{params}", headers=headers, timeout=30)
                else:
                    result = requests.get(f"{self.fhir_server}/{path}", headers=headers, timeout=30)
            except requests.RequestException:
                continue
            if result.ok and result.content and result.json():
                out[key] = result.json()
        return out

    def call(self, url: str, hook: str, patient_id: str, extra: dict[str, t.Any] | None = None) -> requests.Response:
        context = {"patientId": patient_id, "userId": "Practitioner/COREPRACTITIONER1", **(extra or {})}
        body: dict[str, t.Any] = {"hookInstance": str(uuid.uuid4()), "hook": hook,
                                  "fhirServer": self.fhir_server, "context": context}
        prefetch = self._prefetch(self.services[url].get("prefetch", {}), context)
        if prefetch:
            body["prefetch"] = prefetch
        self.sent.append(body)
        return requests.post(url, json=body, timeout=60, headers={
            "Accept": "application/json", "Authorization": f"Bearer {self._jwt(url)}"})

    def feedback(self, url: str, entry: dict[str, t.Any]) -> requests.Response:
        endpoint = f"{url}/feedback"
        return requests.post(endpoint, json={"feedback": [entry]}, timeout=30, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._jwt(endpoint)}"})


def draft_order(patient_id: str, name: str, code: str) -> dict[str, t.Any]:
    """``createFhirResource`` for R4, a prescribable chosen, no dispense request."""
    return {
        "resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": datetime.now(UTC).strftime("%Y-%m-%d"),
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org",
                                                                 "code": "{pill}"}}]}],
        "medicationCodeableConcept": {"text": name, "coding": [
            {"display": name, "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]},
    }


@pytest.fixture(scope="module")
def sandbox_setup(tmp_path_factory, fhir_server):
    workdir = tmp_path_factory.mktemp("sandbox")
    signer = TestSigner("ES384", kid=SANDBOX_KID, iss=SANDBOX_ISS)
    jwks = _jwks_server(signer.jwks())
    signer.jku = jwks.url
    db = workdir / "cds.sqlite3"
    config = (
        f'database_url = "sqlite:///{db}"\n'
        "validate_responses = true\n"
        'cors_origins = ["http://localhost:8080"]\n'
        "[fhir]\n"
        f'allowed_servers = ["{fhir_server.base_url}"]\n'
        "[[auth.trusted_clients]]\n"
        f'iss = "{SANDBOX_ISS}"\n'
        f'jwks_url = "{jwks.url}"\n'
    )
    service = start_service(config, workdir, workers=2)
    yield service, fhir_server, signer, jwks, f"sqlite:///{db}"
    stop_service(service)
    jwks.stop()


@pytest.fixture
def sandbox(sandbox_setup):
    service, fhir, signer, _jwks, _db = sandbox_setup
    client = SandboxClient(service.url("/cds-services"), fhir.base_url, signer,
                           unfilled=lambda key, query: "code=" in query)  # some keys left out
    assert client.discover().status_code == 200
    return client


def test_discovery_keyed_by_id_like_the_sandbox_reaches_all_four_hooks(sandbox_setup, sandbox):
    service = sandbox_setup[0]
    response = requests.get(service.url("/cds-services"), timeout=10, headers={
        "Authorization": f"Bearer {sandbox._jwt(service.url('/cds-services'))}"})
    validate_discovery(response.json())
    assert len(sandbox.services) == len(response.json()["services"])  # nothing replaced in the map
    hooks = {s["hook"] for s in sandbox.services.values()}
    assert hooks == {"patient-view", "encounter-start", "order-select", "order-sign"}
    for hook in hooks:
        assert len(sandbox.services_for(hook)) == 1


def test_discovery_without_the_sandbox_jwt_is_401(sandbox_setup):
    service = sandbox_setup[0]
    assert requests.get(service.url("/cds-services"), timeout=10).status_code == 401


def test_patient_view_with_omitted_prefetch_keys_falls_back_to_the_fhir_server(sandbox_setup, sandbox):
    _service, fhir, _signer, jwks, _db = sandbox_setup
    pid = f"sbx-{uuid.uuid4().hex[:8]}"
    fhir.load(scenarios.transaction(scenarios.mscc(pid, datetime.now(UTC))))
    (url, definition), = sandbox.services_for("patient-view").items()
    response = sandbox.call(url, "patient-view", pid)
    assert response.status_code == 200, response.text
    validate_cds_response(response.json())
    sent = sandbox.sent[-1]
    omitted = {k for k, q in definition["prefetch"].items() if "code=" in q}
    assert omitted and not omitted & set(sent["prefetch"])  # the sandbox left them out
    assert "fhirAuthorization" not in sent
    cards = response.json()["cards"]
    assert [(c["extension"]["backpain-cds"]["rule"], c["indicator"]) for c in cards][0] == ("mscc-red-flags", "critical")
    assert jwks.total_hits >= 1  # the key came from the jku (= the configured jwks_url)


def test_encounter_start_is_reached_through_its_own_id(sandbox_setup, sandbox):
    fhir = sandbox_setup[1]
    pid = f"sbx-{uuid.uuid4().hex[:8]}"
    fhir.load(scenarios.transaction(scenarios.mscc(pid, datetime.now(UTC))))
    (url, _definition), = sandbox.services_for("encounter-start").items()
    assert url.endswith("/back-pain-after-chemo-encounter")
    response = sandbox.call(url, "encounter-start", pid, {"encounterId": "enc-1"})
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_order_hooks_accept_draft_orders_without_bundle_type(sandbox_setup, sandbox, hook):
    fhir = sandbox_setup[1]
    pid = f"sbx-{uuid.uuid4().hex[:8]}"
    fhir.load(scenarios.transaction(scenarios.gcsf_bone_pain(pid, datetime.now(UTC))))
    draft = draft_order(pid, "Naproxen sodium 220 MG Oral Tablet", "849574")
    extra: dict[str, t.Any] = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    if hook == "order-select":
        extra["selections"] = ["MedicationRequest/request-123"]
    (url, _definition), = sandbox.services_for(hook).items()
    response = sandbox.call(url, hook, pid, extra)
    assert "type" not in sandbox.sent[-1]["context"]["draftOrders"]
    assert response.status_code == 200, response.text
    validate_cds_response(response.json())


def test_feedback_calls_shaped_like_the_sandbox_are_stored(sandbox_setup, sandbox):
    _service, fhir, _signer, _jwks, db = sandbox_setup
    pid = f"sbx-{uuid.uuid4().hex[:8]}"
    fhir.load(scenarios.transaction(scenarios.mscc(pid, datetime.now(UTC))))
    (url, _definition), = sandbox.services_for("patient-view").items()
    card = sandbox.call(url, "patient-view", pid).json()["cards"][0]
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # toISOString()
    suggestions = [s for s in card.get("suggestions", []) if s.get("uuid")]
    if suggestions:
        accepted = {"card": card["uuid"], "outcome": "accepted",
                    "acceptedSuggestions": [{"id": suggestions[0]["uuid"]}], "outcomeTimestamp": now}
        assert sandbox.feedback(url, accepted).status_code == 200
    reason = card["overrideReasons"][0]
    dismissed = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now,
                 "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"]}}}
    response = sandbox.feedback(url, dismissed)
    assert response.status_code == 200, response.text
    assert response.json()["unmatched"] == 0
    rows = [r for r in SqlStore(db).feedback_rows() if r["card_uuid"] == card["uuid"]]
    assert {r["outcome"] for r in rows} == ({"accepted", "overridden"} if suggestions else {"overridden"})
    assert [r["override_code"] for r in rows if r["outcome"] == "overridden"] == [reason["code"]]
    # the JWT of a service call is not valid for its feedback endpoint (aud is the exact URL)
    wrong = requests.post(f"{url}/feedback", json={"feedback": [dismissed]}, timeout=10, headers={
        "Authorization": f"Bearer {sandbox._jwt(url)}"})
    assert wrong.status_code == 401
