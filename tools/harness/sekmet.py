"""sekmet-fhir test FHIR server: start/stop helpers and the session-scoped ``fhir_server`` fixture.

Which server the fixture yields (first match wins):

1. ``BACKPAIN_CDS_TEST_FHIR_URL`` is set (e.g. ``http://127.0.0.1:8090/fhir``): that server,
   started by someone else (CI). It must answer ``GET {url}/metadata`` within 30 s.
   ``reset()`` is not available then (``supports_reset`` is False): use ids of your own.
2. Otherwise we start ``sekmet serve -c <tmp settings.yaml>`` on a free loopback port with a
   temporary data directory, the simulator off, inbound validation ``warn`` and the traffic log
   off; binary from ``SEKMET_BIN``, else ``/opt/sekmet/bin/sekmet``, else ``sekmet`` on PATH.
   It is terminated at the end of the session.
3. No sekmet anywhere: the tests that use the fixture are skipped with the reason shown —
   unless ``BACKPAIN_CDS_REQUIRE_SERVERS=1`` (CI), which turns the skip into a failure.

A server that exists but does not come up is always a failure, never a skip.

Gotchas handled here (see the design note ``FHIR_TEST_SERVER.md``): sekmet writes its ``base_url``
setting into every ``next`` link, so it must match the port it listens on; ``SEKMET_CONFIG``,
``SEKMET_PORT``, ``SEKMET_BASE_URL`` and ``SEKMET_DB`` in our environment would override the
settings file, so they are removed from the child's environment; sekmet resolves
``keys/...`` relative to its working directory, so it runs inside the temp directory.

``tests/conftest.py`` imports the fixture, so every test module has it; a test module names it
as a parameter and does not import it (an imported fixture is shadowed by that parameter)::

    @pytest.mark.fhir_server
    def test_x(fhir_server):
        fhir_server.load(bundle)           # POST a transaction bundle; raises on non-2xx
        url = fhir_server.base_url         # http://127.0.0.1:<port>/fhir

The store is shared by the whole session: give each test module its own patient ids (PUT with
fixed ids is idempotent, so reruns against a persistent CI server are fine). ``reset()`` wipes
the store of a server this module started (it runs ``sekmet reset --yes``, ~1.5 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tools.harness.servers import unavailable

__all__ = [
    "DEFAULT_SEKMET_BIN",
    "FhirTestServer",
    "SekmetProcess",
    "SekmetUnavailable",
    "find_sekmet",
    "fhir_server",
    "free_port",
    "start_sekmet",
    "wait_until_ready",
]

DEFAULT_SEKMET_BIN = "/opt/sekmet/bin/sekmet"
STARTUP_TIMEOUT_SECONDS = 30.0
_SEKMET_ENV_OVERRIDES = ("SEKMET_CONFIG", "SEKMET_PORT", "SEKMET_BASE_URL", "SEKMET_DB",
                         "SEKMET_PUBLIC_URL")


class SekmetUnavailable(RuntimeError):
    """No sekmet binary could be found."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_sekmet() -> str:
    """Return the sekmet executable: ``$SEKMET_BIN``, the default venv, or PATH.

    :raises SekmetUnavailable: none found.
    :raises RuntimeError: ``SEKMET_BIN`` is set but is not an executable file (misconfiguration).
    """
    configured = os.environ.get("SEKMET_BIN")
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise RuntimeError(f"SEKMET_BIN={configured!r} is not an executable file")
    if os.path.isfile(DEFAULT_SEKMET_BIN) and os.access(DEFAULT_SEKMET_BIN, os.X_OK):
        return DEFAULT_SEKMET_BIN
    on_path = shutil.which("sekmet")
    if on_path:
        return on_path
    raise SekmetUnavailable(
        f"sekmet-fhir not found (set SEKMET_BIN, install it at {DEFAULT_SEKMET_BIN}, or put "
        "'sekmet' on PATH; or set BACKPAIN_CDS_TEST_FHIR_URL to a running FHIR server)"
    )


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only: never route through an environment proxy
    return s


def wait_until_ready(base_url: str, timeout: float = STARTUP_TIMEOUT_SECONDS,
                     process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``GET {base_url}/metadata`` until it answers 200.

    :raises RuntimeError: timeout, or ``process`` exited first.
    """
    stop_at = time.monotonic() + timeout
    last = "no answer"
    with _session() as s:
        while time.monotonic() < stop_at:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"sekmet exited with code {process.returncode} during start-up")
            try:
                r = s.get(f"{base_url}/metadata", timeout=2,
                          headers={"Accept": "application/fhir+json"})
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.1)
    raise RuntimeError(f"FHIR server at {base_url} not ready after {timeout:g} s ({last})")


@dataclass
class SekmetProcess:
    """A sekmet server we started; ``stop()`` terminates it."""

    binary: str
    workdir: Path
    config_path: Path
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def reset(self) -> None:
        """Delete every resource (``sekmet reset --yes`` on the same database)."""
        subprocess.run(
            [self.binary, "reset", "--yes", "-c", str(self.config_path)],
            cwd=self.workdir, env=_child_env(), check=True, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SEKMET_ENV_OVERRIDES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _settings_yaml(host: str, port: int, data_dir: Path) -> str:
    # json.dumps gives valid YAML scalars (double-quoted strings) whatever the path contains.
    return "\n".join([
        f"base_url: {json.dumps(f'http://{host}:{port}/fhir')}",
        f"host: {json.dumps(host)}",
        f"port: {port}",
        f"data_dir: {json.dumps(str(data_dir))}",
        "simulator: {enabled: false}",
        "validation: {inbound: warn}",
        "log_inbound: false",
        "",
    ])


def start_sekmet(
    workdir: Path | None = None,
    *,
    binary: str | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    attempts: int = 3,
) -> SekmetProcess:
    """Start sekmet on a free loopback port with a fresh store and wait until it is ready.

    Retries on a new port if the process dies at start-up (port taken between
    :func:`free_port` and bind).

    :raises SekmetUnavailable: no binary. :raises RuntimeError: it did not come up.
    """
    binary = binary or find_sekmet()
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sekmet-"))
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        port = free_port(host)
        run_dir = workdir / f"run{attempt}"
        data_dir = run_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "settings.yaml"
        config_path.write_text(_settings_yaml(host, port, data_dir))
        log_path = run_dir / "sekmet.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [binary, "serve", "-c", str(config_path)],
                cwd=run_dir, env=_child_env(), stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        server = SekmetProcess(binary, run_dir, config_path, f"http://{host}:{port}/fhir",
                               process, log_path)
        try:
            wait_until_ready(server.base_url, startup_timeout, process)
            return server
        except RuntimeError as exc:
            exited_early = process.poll() is not None  # e.g. the port was taken meanwhile
            server.stop()
            errors.append(f"attempt {attempt} (port {port}): {exc}\n{server.log_tail()}")
            if not exited_early:  # a hang will not be fixed by another port
                break
    raise RuntimeError("sekmet did not start:\n" + "\n".join(errors))


@dataclass
class FhirTestServer:
    """What the ``fhir_server`` fixture yields."""

    base_url: str  # no trailing slash, e.g. http://127.0.0.1:40123/fhir
    process: SekmetProcess | None = None  # None for an external server
    _http: requests.Session = field(default_factory=_session, repr=False)

    @property
    def supports_reset(self) -> bool:
        return self.process is not None

    def url(self, relative: str = "") -> str:
        return f"{self.base_url}/{relative.lstrip('/')}" if relative else self.base_url

    def load(self, bundle: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """POST a transaction (or batch) Bundle to the base URL; return the response Bundle.

        :raises RuntimeError: non-2xx answer (the message carries the OperationOutcome).
        """
        r = self._http.post(
            self.base_url,
            data=orjson.dumps(bundle),
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
            timeout=timeout,
        )
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"loading bundle failed: HTTP {r.status_code}: {r.text[:2000]}")
        result: dict[str, Any] = r.json()
        return result

    def reset(self) -> None:
        """Empty the store. Only for a server this module started.

        :raises RuntimeError: external server (``BACKPAIN_CDS_TEST_FHIR_URL``): use distinct ids.
        """
        if self.process is None:
            raise RuntimeError("reset() is not available for an external FHIR server; "
                               "use patient ids unique to your test module")
        self.process.reset()

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def running_fhir_server(workdir: Path | None = None) -> Iterator[FhirTestServer]:
    """Context-manager form of the fixture logic (for scripts); raises instead of skipping."""
    external = os.environ.get("BACKPAIN_CDS_TEST_FHIR_URL", "").strip()
    if external:
        base = external.rstrip("/")
        wait_until_ready(base)
        server = FhirTestServer(base)
        try:
            yield server
        finally:
            server.close()
        return
    process = start_sekmet(workdir)
    server = FhirTestServer(process.base_url, process)
    try:
        yield server
    finally:
        server.close()
        process.stop()


@dataclass
class _Shared:
    """One server per test process, however many modules import the fixture.

    Each ``from tools.harness.sekmet import fhir_server`` (conftest *and* test modules) makes
    pytest register a separate session fixture with its own cache; without this, each would
    start its own sekmet. The last user to tear down stops the server.
    """

    server: FhirTestServer | None = None
    stack: contextlib.ExitStack | None = None
    users: int = 0


_SHARED = _Shared()


def _start_shared(tmp_path_factory: pytest.TempPathFactory) -> FhirTestServer:
    """Start (or reuse) the shared server; skip or fail the way the module docstring says."""
    if _SHARED.server is not None:
        return _SHARED.server
    # pytest.skip/fail are called outside the except blocks to keep the report to one message.
    missing: str | None = None
    broken: str | None = None
    if not os.environ.get("BACKPAIN_CDS_TEST_FHIR_URL", "").strip():
        try:
            find_sekmet()
        except SekmetUnavailable as exc:
            missing = str(exc)
        except RuntimeError as exc:
            broken = str(exc)
    if missing:
        unavailable(missing)  # skip locally; fail when BACKPAIN_CDS_REQUIRE_SERVERS=1
    stack = contextlib.ExitStack()
    if broken is None:
        try:
            server = stack.enter_context(running_fhir_server(tmp_path_factory.mktemp("sekmet")))
        except RuntimeError as exc:
            broken = str(exc)
    if broken is not None:
        pytest.fail(broken, pytrace=False)
    _SHARED.server, _SHARED.stack = server, stack
    return server


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirTestServer]:
    """A running FHIR R4 test server for the session (see the module docstring)."""
    server = _start_shared(tmp_path_factory)
    _SHARED.users += 1
    try:
        yield server
    finally:
        _SHARED.users -= 1
        if _SHARED.users == 0 and _SHARED.stack is not None:
            stack, _SHARED.stack, _SHARED.server = _SHARED.stack, None, None
            stack.close()
