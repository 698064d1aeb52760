"""The documented reverse-proxy deployment (deploy/nginx/backpain-cds.conf) in front of gunicorn.

nginx comes from Debian's ``nginx`` package (``.ci/run`` installs it). Without it these tests
are skipped, or fail when ``BACKPAIN_CDS_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.test_slow_clients import SlowClients
from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import start_service, stop_service
from tools.harness.nginx import nginx_binary, start_nginx, stop_nginx
from tools.harness.servers import free_port, unavailable

pytestmark = pytest.mark.e2e

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "backpain-cds.conf"
NGINX_PORTS = range(18460, 18480)  # this helper's loopback range
PER_ADDRESS = 8  # the conf's per-address limit (100) made small for the test


def _proxy_port() -> int:
    for port in NGINX_PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    return free_port()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    nginx = nginx_binary()
    if nginx is None:
        unavailable("nginx not installed (Debian package nginx; .ci/run installs it)")
    workdir = tmp_path_factory.mktemp("proxy")
    proxy_port = _proxy_port()
    public = f"http://127.0.0.1:{proxy_port}"
    # the service, told the URL its clients use (the proxy's): the JWT aud is built from it
    service = start_service(f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
                            "[limits]\nmax_body_bytes = 200000\n", workdir, workers=1,
                            public_base_url=public)
    upstream_port = int(service.base_url.rsplit(":", 1)[1])
    site = CONF.read_text()
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};", 1)
    site = site.replace("listen 127.0.0.1:8443;", f"listen 127.0.0.1:{proxy_port};", 1)
    site = site.replace("client_max_body_size 16m;", "client_max_body_size 195k;", 1)
    assert "limit_conn backpain_cds_per_address 100;" in site
    site = site.replace("limit_conn backpain_cds_per_address 100;", f"limit_conn backpain_cds_per_address {PER_ADDRESS};", 1)
    process = start_nginx(nginx, site, workdir, public + "/healthz")
    yield public, service, proxy_port
    stop_nginx(process)
    stop_service(service)


def test_calls_through_the_proxy_reach_the_service_with_the_public_url(proxied):
    public, _service, _port = proxied
    discovery = requests.get(public + "/cds-services", timeout=10)
    assert discovery.status_code == 200 and len(discovery.json()["services"]) == 4
    body = hr.patient_view("px1", prefetch=hr.nothing_found_prefetch(scenarios.patient("px1")))
    response = requests.post(public + "/cds-services/back-pain-after-chemo", json=body, timeout=10)
    assert response.status_code == 200, response.text


def test_the_proxy_refuses_an_oversized_body_with_an_operation_outcome(proxied):
    public, _service, _port = proxied
    body = json.dumps({"feedback": []}).encode() + b" " * 300_000
    response = requests.post(public + "/cds-services/back-pain-after-chemo/feedback", data=body,
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


def test_slow_clients_at_the_proxy_never_reach_the_service(proxied):
    public, _service, port = proxied
    slow = SlowClients(port)
    try:
        slow.start(64, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n")
        time.sleep(1.5)
        for _ in range(3):
            assert requests.get(public + "/healthz", timeout=5).status_code == 200
            body = hr.patient_view("px2", prefetch=hr.nothing_found_prefetch(scenarios.patient("px2")))
            assert requests.post(public + "/cds-services/back-pain-after-chemo", json=body, timeout=5).status_code == 200
    finally:
        slow.close()


def _post_from(source: str, port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """A complete POST from the client address ``source`` (any 127.x address is loopback)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_requests_in_progress_are_limited_per_client_address(proxied):
    """PER_ADDRESS requests from 127.0.0.2 whose bodies never finish hold its whole allowance:
    its next call is 429 with an OperationOutcome, while calls from 127.0.0.1 are answered."""
    public, _service, port = proxied
    body = json.dumps(hr.patient_view("px3", prefetch=hr.nothing_found_prefetch(scenarios.patient("px3")))).encode()
    path = "/cds-services/back-pain-after-chemo"
    assert _post_from("127.0.0.2", port, path, body)[0] == 200  # under the limit: answered
    held = SlowClients(port, source="127.0.0.2")
    try:
        held.start(PER_ADDRESS, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: 100000\r\n\r\n{".encode(), then_hold=True)
        time.sleep(1.5)  # every held request's head has been read: each counts
        status, answer = _post_from("127.0.0.2", port, path, body)
        assert status == 429, answer[:200]
        assert json.loads(answer)["issue"][0]["code"] == "throttled"
        assert _post_from("127.0.0.1", port, path, body)[0] == 200  # another address is not limited
    finally:
        held.close()
    limit = time.monotonic() + 15  # the held requests end (client gone): the allowance is back
    while (status := _post_from("127.0.0.2", port, path, body)[0]) == 429 and time.monotonic() < limit:
        time.sleep(0.2)
    assert status == 200
