"""``[server] forwarded_allow_ips`` over a real ``backpain-cds serve``.

gunicorn lets a trusted proxy set the request's scheme (X-Forwarded-Proto) and its forwarder
headers (``SCRIPT_NAME``, ``PATH_INFO``); the app shows no scheme, so the observable here is a
``SCRIPT_NAME`` header: believed, it takes ``/prefix`` off the path (``/prefix/healthz`` is
answered as ``/healthz``); ignored, the path stays ``/prefix/healthz`` (404). The service listens
on 127.0.0.1 and trusts only 127.0.0.2 (any 127.x address is loopback on Linux).
"""

from __future__ import annotations

import http.client

import pytest

from tools.harness.live_service import start_service, stop_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("forwarded")
    live = start_service(f'database_url = "sqlite:///{workdir / "cds.sqlite3"}"\n'
                         '[server]\nforwarded_allow_ips = ["127.0.0.2"]\n', workdir, workers=1)
    yield live
    stop_service(live)


def _get_from(source: str, port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_forwarder_headers_are_believed_from_the_listed_proxy_only(service):
    port = int(service.base_url.rsplit(":", 1)[1])
    forwarded = {"SCRIPT_NAME": "/prefix"}
    assert _get_from("127.0.0.2", port, "/prefix/healthz", forwarded) == 200  # the trusted proxy
    assert _get_from("127.0.0.1", port, "/prefix/healthz", forwarded) == 404  # anyone else: ignored
    assert _get_from("127.0.0.1", port, "/healthz", forwarded) == 200  # and the call goes on as sent
