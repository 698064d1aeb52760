"""FhirClient against a loopback HttpRecorder: allow-list, token, paging, limits, parallelism."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from fhir_mapping.client import (
    FhirAccessError,
    FhirClient,
    FhirClientLimits,
    FhirFetchError,
    ServerNotAllowed,
    normalise_base_url,
)
from tests.support.http_recorder import CannedResponse, HttpRecorder, RecordedRequest

TOKEN = "s3cr3t-token-value"
EHR = "https://ehr.example.org/fhir"
PATIENT = {"resourceType": "Patient", "id": "123"}


def searchset(entries: list[dict[str, Any]], next_url: str | None = None,
              total: int | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "link": [{"relation": "self", "url": "http://x/self"}]}
    if total is not None:
        bundle["total"] = total
    if entries:
        bundle["entry"] = [{"resource": r} for r in entries]
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def obs(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final"}


def client_for(rec: HttpRecorder, **kwargs: Any) -> FhirClient:
    base = rec.url("/fhir")
    kwargs.setdefault("allowed_servers", [base])
    return FhirClient(base, **kwargs)


# --------------------------------------------------------------------------- allow-list


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://EHR.Example.org/fhir/R4/", "https://ehr.example.org/fhir/R4"),
        ("HTTPS://ehr.example.org:443/fhir//", "https://ehr.example.org/fhir"),
        ("http://ehr.example.org:80/fhir", "http://ehr.example.org/fhir"),
        ("http://127.0.0.1:8090/fhir", "http://127.0.0.1:8090/fhir"),
        ("https://ehr.example.org", "https://ehr.example.org"),
        ("  https://ehr.example.org/fhir/  ", "https://ehr.example.org/fhir"),
        ("http://[::1]:8080/fhir/", "http://[::1]:8080/fhir"),
    ],
)
def test_normalise_base_url_lowercases_scheme_and_host_and_strips_trailing_slash(
    url: str, expected: str
) -> None:
    assert normalise_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["ftp://ehr.example.org/fhir", "ehr.example.org/fhir", "https:///fhir",
     "https://user:pw@ehr.example.org/fhir", "https://ehr.example.org/fhir?x=1",
     "https://ehr.example.org/fhir#frag", "https://ehr.example.org:99999/fhir"],
)
def test_normalise_base_url_rejects_what_is_not_a_plain_http_base(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_base_url(url)


def test_server_not_on_allow_list_is_refused_before_any_request(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    with pytest.raises(ServerNotAllowed) as err:
        FhirClient(http_recorder.url("/fhir"), allowed_servers=["https://ehr.example.org/fhir"],
                   access_token=TOKEN)
    assert isinstance(err.value, FhirAccessError)
    assert TOKEN not in str(err.value)
    time.sleep(0.05)
    assert http_recorder.requests == []


@pytest.mark.parametrize(
    "base_suffix", ["/fhir/", "/fhir", "/fhir//"],
)
def test_allow_list_matches_regardless_of_trailing_slash_and_host_case(
    http_recorder: HttpRecorder, base_suffix: str
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    allowed = [f"HTTP://127.0.0.1:{http_recorder.port}/fhir/"]
    client = FhirClient(http_recorder.url(base_suffix), allowed_servers=allowed)
    assert client.get("Patient/123") == PATIENT


def test_path_is_case_sensitive_in_the_allow_list(http_recorder: HttpRecorder) -> None:
    with pytest.raises(ServerNotAllowed):
        FhirClient(http_recorder.url("/FHIR"), allowed_servers=[http_recorder.url("/fhir")])
    assert http_recorder.requests == []


def test_other_port_on_same_host_is_not_allowed(http_recorder: HttpRecorder) -> None:
    with pytest.raises(ServerNotAllowed):
        FhirClient(f"http://127.0.0.1:{http_recorder.port + 1}/fhir",
                   allowed_servers=[http_recorder.url("/fhir")])


@pytest.mark.parametrize(
    "base", ["javascript:alert(1)", "", "http://user@127.0.0.1/fhir", "/fhir"],
)
def test_malformed_base_url_is_refused_as_not_allowed(base: str) -> None:
    with pytest.raises(ServerNotAllowed):
        FhirClient(base, allowed_servers=["http://127.0.0.1/fhir"])


# --------------------------------------------------------------------------- headers / token


def test_bearer_token_and_fhir_accept_header_go_to_the_allowed_server(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    client = client_for(http_recorder, access_token=TOKEN)
    assert client.get("Patient/123") == PATIENT
    (req,) = http_recorder.requests
    assert req.method == "GET"
    assert req.path == "/fhir/Patient/123"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["accept"] == "application/fhir+json"
    assert TOKEN not in repr(client)


def test_no_authorization_header_without_a_token(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    client_for(http_recorder).get("Patient/123")
    (req,) = http_recorder.requests
    assert "authorization" not in req.headers


def test_search_query_is_sent_as_given(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Observation", CannedResponse(body=searchset([obs(1)])))
    client = client_for(http_recorder)
    result = client.get("Observation?patient=123&code=http://loinc.org|72514-3")
    assert result is not None and [e["resource"]["id"] for e in result["entry"]] == ["o1"]
    (req,) = http_recorder.requests
    assert req.path == "/fhir/Observation"
    assert req.query in ("patient=123&code=http://loinc.org%7C72514-3",
                         "patient=123&code=http://loinc.org|72514-3")


# --------------------------------------------------------------------------- paging


def test_search_follows_next_links_verbatim_and_concatenates_pages(
    http_recorder: HttpRecorder,
) -> None:
    # Opaque, HAPI-style page tokens: the client must use the link, not rebuild it.
    page2 = http_recorder.url("/fhir?_getpages=abc&_getpagesoffset=2&_count=2")
    page3 = http_recorder.url("/fhir?_getpages=abc&_getpagesoffset=4&_count=2")
    http_recorder.route("/fhir/Observation?patient=123&_count=2",
                        CannedResponse(body=searchset([obs(1), obs(2)], page2, total=5)))
    http_recorder.route("/fhir?_getpages=abc&_getpagesoffset=2&_count=2",
                        CannedResponse(body=searchset([obs(3), obs(4)], page3, total=5)))
    http_recorder.route("/fhir?_getpages=abc&_getpagesoffset=4&_count=2",
                        CannedResponse(body=searchset([obs(5)], total=5)))
    client = client_for(http_recorder, access_token=TOKEN)

    bundle = client.get("Observation?patient=123&_count=2")

    assert bundle is not None
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 5
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o1", "o2", "o3", "o4", "o5"]
    assert not any(link["relation"] == "next" for link in bundle.get("link", []))
    targets = [r.target for r in http_recorder.requests]
    assert targets == ["/fhir/Observation?patient=123&_count=2",
                       "/fhir?_getpages=abc&_getpagesoffset=2&_count=2",
                       "/fhir?_getpages=abc&_getpagesoffset=4&_count=2"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in http_recorder.requests)


def test_empty_search_returns_a_bundle_without_entries(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Condition", CannedResponse(body=searchset([], total=0)))
    bundle = client_for(http_recorder).get("Condition?patient=123")
    assert bundle is not None and bundle["type"] == "searchset" and "entry" not in bundle


def test_next_link_to_another_origin_is_refused_and_that_origin_gets_nothing(
    http_recorder: HttpRecorder,
) -> None:
    with HttpRecorder() as other:
        other.route("/fhir/page2", CannedResponse(body=searchset([obs(2)])))
        http_recorder.route("/fhir/Observation",
                            CannedResponse(body=searchset([obs(1)], other.url("/fhir/page2"))))
        client = client_for(http_recorder, access_token=TOKEN)
        with pytest.raises(FhirFetchError, match="another origin") as err:
            client.get("Observation?patient=123")
        time.sleep(0.05)
        assert other.requests == []
    assert TOKEN not in str(err.value)
    assert len(http_recorder.requests) == 1


@pytest.mark.parametrize(
    "next_url",
    ["https://127.0.0.1:{port}/fhir/p2",  # other scheme
     "http://localhost:{port}/fhir/p2",  # other host spelling: origin is compared literally
     "http://user@127.0.0.1:{port}/fhir/p2",  # user info
     "file:///etc/passwd"],
)
def test_next_links_that_change_origin_are_refused(
    http_recorder: HttpRecorder, next_url: str
) -> None:
    url = next_url.format(port=http_recorder.port)
    http_recorder.route("/fhir/Observation", CannedResponse(body=searchset([obs(1)], url)))
    with pytest.raises(FhirFetchError, match="another origin"):
        client_for(http_recorder).get("Observation?patient=123")
    assert len(http_recorder.requests) == 1


def test_relative_next_link_is_resolved_against_the_page(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Observation", CannedResponse(body=searchset([obs(1)], "page2?x=1")))
    http_recorder.route("/fhir/page2?x=1", CannedResponse(body=searchset([obs(2)])))
    bundle = client_for(http_recorder).get("Observation?patient=123")
    assert bundle is not None and len(bundle["entry"]) == 2


def test_more_pages_than_max_pages_raises_instead_of_truncating(
    http_recorder: HttpRecorder,
) -> None:
    def page(req: RecordedRequest) -> CannedResponse:
        n = int(req.query.rsplit("=", 1)[1]) if "page=" in req.query else 1
        return CannedResponse(body=searchset([obs(n)], http_recorder.url(f"/fhir/p?page={n + 1}")))

    http_recorder.route("/fhir/Observation", page)
    http_recorder.route("/fhir/p", page)
    client = client_for(http_recorder, limits=FhirClientLimits(max_pages=3))
    with pytest.raises(FhirFetchError, match="more than 3 pages"):
        client.get("Observation?patient=123")
    assert len(http_recorder.requests) == 3


def test_next_link_loop_is_detected(http_recorder: HttpRecorder) -> None:
    loop = http_recorder.url("/fhir/p?page=2")
    http_recorder.route("/fhir/Observation", CannedResponse(body=searchset([obs(1)], loop)))
    http_recorder.route("/fhir/p", CannedResponse(body=searchset([obs(2)], loop)))
    with pytest.raises(FhirFetchError, match="loops"):
        client_for(http_recorder).get("Observation?patient=123")


def test_more_resources_than_max_resources_raises(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Observation",
                        CannedResponse(body=searchset([obs(i) for i in range(6)])))
    client = client_for(http_recorder, limits=FhirClientLimits(max_resources=5))
    with pytest.raises(FhirFetchError, match="more than 5 resources"):
        client.get("Observation?patient=123")


def test_search_answered_with_a_non_searchset_is_an_error(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Observation", CannedResponse(body=PATIENT))
    with pytest.raises(FhirFetchError, match="searchset"):
        client_for(http_recorder).get("Observation?patient=123")


# --------------------------------------------------------------------------- status / body


def test_read_of_missing_resource_returns_none(http_recorder: HttpRecorder) -> None:
    # The recorder answers unrouted paths with 404 + OperationOutcome.
    assert client_for(http_recorder).get("Patient/nope") is None


def test_read_of_deleted_resource_returns_none(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Patient/gone", CannedResponse(status=410))
    assert client_for(http_recorder).get("Patient/gone") is None


def test_search_404_is_an_error_not_an_empty_result(http_recorder: HttpRecorder) -> None:
    with pytest.raises(FhirFetchError) as err:
        client_for(http_recorder).get("Unknown?patient=1")
    assert err.value.status_code == 404


def test_operation_outcome_body_with_200_is_an_error(http_recorder: HttpRecorder) -> None:
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "processing"}]}
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=outcome))
    with pytest.raises(FhirFetchError, match="OperationOutcome"):
        client_for(http_recorder).get("Patient/123")


@pytest.mark.parametrize("status", [400, 401, 403, 500, 503])
def test_non_2xx_is_an_error_carrying_the_status(
    http_recorder: HttpRecorder, status: int
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(
        status=status, body={"resourceType": "OperationOutcome", "issue": []}))
    with pytest.raises(FhirFetchError) as err:
        client_for(http_recorder, access_token=TOKEN).get("Patient/123")
    assert err.value.status_code == status
    assert TOKEN not in str(err.value) and TOKEN not in err.value.reason


def test_redirect_is_not_followed(http_recorder: HttpRecorder) -> None:
    with HttpRecorder() as other:
        http_recorder.route("/fhir/Patient/123", CannedResponse(
            status=302, headers={"Location": other.url("/fhir/Patient/123")}))
        with pytest.raises(FhirFetchError, match="redirect") as err:
            client_for(http_recorder, access_token=TOKEN).get("Patient/123")
        time.sleep(0.05)
        assert other.requests == []
    assert err.value.status_code == 302


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b"[1, 2]", b'{"no": "type"}'])
def test_non_fhir_json_body_is_an_error(http_recorder: HttpRecorder, body: bytes) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=body))
    with pytest.raises(FhirFetchError):
        client_for(http_recorder).get("Patient/123")


def test_read_returning_another_resource_type_is_an_error(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=obs(1)))
    with pytest.raises(FhirFetchError, match="expected 'Patient'"):
        client_for(http_recorder).get("Patient/123")


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "streamed"])
def test_response_over_the_byte_cap_is_aborted(
    http_recorder: HttpRecorder, send_length: bool
) -> None:
    big = {"resourceType": "Patient", "id": "123", "text": {"div": "x" * 300_000}}
    http_recorder.route("/fhir/Patient/123",
                        CannedResponse(body=big, send_content_length=send_length))
    client = client_for(http_recorder, limits=FhirClientLimits(max_response_bytes=100_000))
    with pytest.raises(FhirFetchError, match="larger than 100000 bytes"):
        client.get("Patient/123")


def test_response_under_the_byte_cap_is_read(http_recorder: HttpRecorder) -> None:
    big = {"resourceType": "Patient", "id": "123", "text": {"div": "x" * 300_000}}
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=big, send_content_length=False))
    client = client_for(http_recorder, limits=FhirClientLimits(max_response_bytes=400_000))
    assert client.get("Patient/123") == big


def test_slow_server_times_out(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT, delay=2.0))
    client = client_for(http_recorder, limits=FhirClientLimits(timeout_seconds=0.2))
    started = time.monotonic()
    with pytest.raises(FhirFetchError, match="timed out"):
        client.get("Patient/123")
    assert time.monotonic() - started < 1.5


def test_slow_drip_body_is_bounded_by_the_request_timeout(http_recorder: HttpRecorder) -> None:
    body = {"resourceType": "Patient", "id": "123", "text": {"div": "x" * 400_000}}
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=body, chunk_delay=0.15))
    client = client_for(http_recorder, limits=FhirClientLimits(timeout_seconds=0.4))
    started = time.monotonic()
    with pytest.raises(FhirFetchError, match="timed out"):
        client.get("Patient/123")
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_fetch_error() -> None:
    with HttpRecorder() as rec:
        base = rec.url("/fhir")
    client = FhirClient(base, allowed_servers=[base], limits=FhirClientLimits(timeout_seconds=1))
    with pytest.raises(FhirFetchError, match="connection failed"):
        client.get("Patient/123")


@pytest.mark.parametrize(
    "query",
    ["", "/Patient/1", "http://evil.example/Patient/1", "//evil.example/Patient/1",
     "Patient/../admin", "Patient/./1", "Patient//1", "Patient/1#x", "Patient/1 2",
     "Patient\\1", "patient/1", "Patient/%2e%2e/x", "Patient/http://evil/x"],
)
def test_malformed_relative_queries_are_refused_without_a_request(
    http_recorder: HttpRecorder, query: str
) -> None:
    with pytest.raises(FhirFetchError, match="invalid relative query"):
        client_for(http_recorder).get(query)
    assert http_recorder.requests == []


def test_errors_carry_key_query_and_reason_but_str_shows_no_query(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(status=500))
    with pytest.raises(FhirFetchError) as err:
        client_for(http_recorder).fetch_many({"patient": "Patient/123"}, deadline_seconds=5)
    assert err.value.key == "patient"
    assert err.value.query == "Patient/123"
    assert err.value.reason == "HTTP 500"
    assert "123" not in str(err.value).replace("HTTP 500", "")


def test_debug_log_has_keys_and_statuses_but_no_token_or_body(
    http_recorder: HttpRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    with caplog.at_level(logging.DEBUG):
        client_for(http_recorder, access_token=TOKEN).fetch_many(
            {"patient": "Patient/123"}, deadline_seconds=5)
    client_records = [r for r in caplog.records if r.name == "fhir_mapping.fhir_client"]
    assert client_records and all(r.levelno == logging.DEBUG for r in client_records)
    text = "\n".join(r.getMessage() for r in client_records)
    assert "key=patient" in text and "status=200" in text
    full_log = caplog.text
    assert TOKEN not in full_log and '"resourceType"' not in full_log


# --------------------------------------------------------------------------- fetch_many


def test_fetch_many_runs_queries_in_parallel(http_recorder: HttpRecorder) -> None:
    for i in range(4):
        http_recorder.route(f"/fhir/Patient/p{i}", CannedResponse(
            body={"resourceType": "Patient", "id": f"p{i}"}, delay=0.3))
    client = client_for(http_recorder)
    started = time.monotonic()
    results = client.fetch_many({f"k{i}": f"Patient/p{i}" for i in range(4)},
                                deadline_seconds=5, max_workers=4)
    elapsed = time.monotonic() - started
    assert {k: v["id"] for k, v in results.items() if v} == {f"k{i}": f"p{i}" for i in range(4)}
    assert list(results) == ["k0", "k1", "k2", "k3"]
    assert elapsed < 0.9, f"4 x 300 ms took {elapsed:.2f} s: not parallel"


def test_fetch_many_returns_none_for_missing_reads_and_bundles_for_searches(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT))
    http_recorder.route("/fhir/Observation", CannedResponse(body=searchset([obs(1)])))
    results = client_for(http_recorder).fetch_many(
        {"patient": "Patient/123", "enc": "Encounter/none", "obs": "Observation?patient=123"},
        deadline_seconds=5)
    assert results["patient"] == PATIENT
    assert results["enc"] is None
    assert results["obs"] is not None and results["obs"]["type"] == "searchset"


def test_fetch_many_deadline_names_the_slow_key(http_recorder: HttpRecorder) -> None:
    # No wall-clock bound: the slow key's server holds its answer until the test releases it,
    # so the call can only end through the deadline; it must end while the answer is held.
    release = threading.Event()

    def held(_request):
        release.wait(60)
        return CannedResponse(body=searchset([]))

    http_recorder.route("/fhir/Patient/fast", CannedResponse(body=PATIENT))
    http_recorder.route("/fhir/Observation", held)
    client = client_for(http_recorder)
    try:
        with pytest.raises(FhirFetchError, match="deadline|timed out") as err:
            client.fetch_many({"patient": "Patient/fast", "slow": "Observation?patient=1"},
                              deadline_seconds=0.4)
        assert not release.is_set()  # ended by the deadline, not by the answer
    finally:
        release.set()
    assert err.value.key == "slow"
    assert err.value.keys == ("slow",)
    assert "slow" in str(err.value) and "patient" not in str(err.value)


def test_fetch_many_first_failure_is_raised_with_its_key(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT, delay=0.2))
    http_recorder.route("/fhir/Condition", CannedResponse(status=500))
    with pytest.raises(FhirFetchError) as err:
        client_for(http_recorder).fetch_many(
            {"patient": "Patient/123", "conditions": "Condition?patient=123"},
            deadline_seconds=5)
    assert err.value.key == "conditions"
    assert err.value.status_code == 500


def test_fetch_many_failure_cancels_queries_not_started(http_recorder: HttpRecorder) -> None:
    http_recorder.route("/fhir/Condition", CannedResponse(status=500))
    http_recorder.route("/fhir/Patient/123", CannedResponse(body=PATIENT, delay=0.3))
    queries = {"bad": "Condition?patient=123"}
    queries.update({f"p{i}": "Patient/123" for i in range(6)})
    with pytest.raises(FhirFetchError) as err:
        client_for(http_recorder).fetch_many(queries, deadline_seconds=5, max_workers=1)
    assert err.value.key == "bad"
    time.sleep(0.5)
    assert len(http_recorder.requests) == 1  # the six reads never started


def test_fetch_many_with_no_queries_returns_empty() -> None:
    client = FhirClient(EHR, allowed_servers=[EHR])
    assert client.fetch_many({}, deadline_seconds=1) == {}


def test_fetch_many_rejects_a_non_positive_deadline() -> None:
    client = FhirClient(EHR, allowed_servers=[EHR])
    with pytest.raises(ValueError):
        client.fetch_many({"p": "Patient/1"}, deadline_seconds=0)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        FhirClientLimits(timeout_seconds=0)
    with pytest.raises(ValueError):
        FhirClientLimits(max_pages=0)


def test_module_does_not_import_upper_layers() -> None:
    import ast
    import inspect

    import fhir_mapping.client.client as module

    tree = ast.parse(inspect.getsource(module))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"flask", "cds_hooks", "backpain_cds", "smart_launch", "tests"}
