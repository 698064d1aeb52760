"""compose.yaml's proxy for real: deploy/nginx/backpain-cds-compose.conf, as it is (the upstream
and listen lines marked "replaced in tests" pointed at loopback ports), in front of two real
``backpain-cds serve`` processes (2 workers each) on one PostgreSQL database migrated first by
``backpain-cds migrate``, as compose's one-shot ``migrate`` service does.

- calls through the proxy are spread over both instances;
- slow clients are buffered by the proxy: requests whose head or body trickles in never reach an
  instance, and normal calls keep being answered meanwhile;
- kill -9 of one instance (master and workers): the proxy still answers every call, from the
  other instance (fail-over). This test stops an instance, so it runs last in this module.

Needs nginx (Debian package; .ci/run installs it) and PostgreSQL
(BACKPAIN_CDS_TEST_POSTGRES_URL): skipped locally with the reason, failed under
BACKPAIN_CDS_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.e2e.test_slow_clients import SlowClients
from tests.support import hook_requests as hr
from tools.harness import scenarios
from tools.harness.live_service import LiveService, start_service, stop_service
from tools.harness.nginx import nginx_binary, start_nginx, stop_nginx
from tools.harness.servers import free_port, unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "backpain-cds-compose.conf"
SERVICE = "back-pain-after-chemo"


def _hook_calls(service: LiveService) -> float:
    """Hook calls this instance answered (its /metrics, summed over its workers)."""
    text = requests.get(service.url("/metrics"), timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("backpain_cds_hook_calls_total{"))


def _connections_to(*services: LiveService) -> int:
    """Established TCP connections to these instances' ports (Linux /proc/net/tcp)."""
    ports = {int(s.base_url.rsplit(":", 1)[1]) for s in services}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    count += 1
    return count


def _call(public: str, patient: str) -> requests.Response:
    body = hr.patient_view(patient, prefetch=hr.nothing_found_prefetch(scenarios.patient(patient)))
    return requests.post(f"{public}/cds-services/{SERVICE}", data=json.dumps(body),
                         headers={"Content-Type": "application/json"}, timeout=15)


def _kill_group(service: LiveService) -> None:
    if service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(postgres_url: str, tmp_path_factory):
    nginx = nginx_binary()
    if nginx is None:
        unavailable("nginx not installed (Debian package nginx; .ci/run installs it)")
    workdir = tmp_path_factory.mktemp("compose")
    # an empty schema of its own (compose's fresh volume), migrated once by the CLI
    schema = f"test_{secrets.token_hex(6)}"
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    database_url = url.render_as_string(hide_password=False)
    started: list[LiveService] = []
    proxy = None
    try:
        migrate = subprocess.run([sys.executable, "-m", "backpain_cds.cli", "migrate"], capture_output=True,
                                 text=True, timeout=60, env={**os.environ, "BACKPAIN_CDS_DATABASE_URL": database_url})
        assert migrate.returncode == 0, migrate.stderr
        proxy_port = free_port()
        public = f"http://127.0.0.1:{proxy_port}"
        config = f'database_url = "{database_url}"\n'
        for name in ("cds-1", "cds-2"):
            (workdir / name).mkdir()
            started.append(start_service(config, workdir / name, workers=2, public_base_url=public,
                                         new_session=True))
        site = CONF.read_text()
        for name, service in zip(("cds-1", "cds-2"), started, strict=True):
            line = f"server {name}:8080 max_fails=1 fail_timeout=10s;"
            assert line in site, line
            site = site.replace(line, f"server {service.base_url.removeprefix('http://')} max_fails=1 fail_timeout=10s;")
        assert "listen 8080;" in site
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{proxy_port};", 1)
        proxy = start_nginx(nginx, site, workdir, public + "/healthz")
        yield public, proxy_port, started
    finally:
        if proxy is not None:
            stop_nginx(proxy)
        for service in started:
            if service.process.poll() is None:
                stop_service(service)
            _kill_group(service)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_calls_through_the_proxy_are_spread_over_both_instances(deployment):
    public, _port, (a, b) = deployment
    before = _hook_calls(a), _hook_calls(b)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: _call(public, f"spread-{i}").status_code, range(40)))
    assert statuses == [200] * 40
    served = _hook_calls(a) - before[0], _hook_calls(b) - before[1]
    assert sum(served) == 40
    assert min(served) >= 10, served  # round robin: about half each


def test_slow_clients_are_buffered_by_the_proxy_and_never_reach_an_instance(deployment):
    public, port, (a, b) = deployment
    before = _hook_calls(a) + _hook_calls(b)
    path = f"/cds-services/{SERVICE}"
    heads, bodies = SlowClients(port), SlowClients(port)
    try:
        heads.start(32, f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 100}\r\n\r\n".encode())
        bodies.start(32, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000\r\n\r\n{".encode(), then_hold=True)
        time.sleep(1.5)
        # the proxy holds the 64 slow requests itself: it has opened no connection for them
        # (only its few kept-alive ones to the instances), so they hold no worker thread
        assert _connections_to(a, b) < 32
        for i in range(6):
            assert requests.get(public + "/healthz", timeout=5).status_code == 200
            assert _call(public, f"slow-{i}").status_code == 200
        # only the 6 whole calls reached the instances; the 64 slow ones are still at the proxy
        assert _hook_calls(a) + _hook_calls(b) - before == 6
    finally:
        heads.close()
        bodies.close()


def test_kill_9_of_one_instance_the_proxy_still_answers_from_the_other(deployment):
    """Runs last: instance A is gone afterwards."""
    public, _port, (a, b) = deployment
    _kill_group(a)
    before_b = _hook_calls(b)
    statuses = [_call(public, f"failover-{i}").status_code for i in range(20)]
    assert statuses == [200] * 20
    assert _hook_calls(b) - before_b == 20  # all answered by B
    with pytest.raises(requests.ConnectionError):
        requests.get(a.url("/healthz"), timeout=2)
    assert requests.get(public + "/readyz", timeout=5).status_code == 200
