"""The backpain-cds command: discovery, check-config, replay (request files and Bundles)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backpain_cds.cli import main
from tests.support import hook_requests as hr
from tools.harness import scenarios

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def _write(tmp_path: Path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_discovery_prints_one_id_per_hook(capsys):
    assert main(["discovery"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {s["id"]: s["hook"] for s in body["services"]} == {
        "back-pain-after-chemo": "patient-view",
        "back-pain-after-chemo-encounter": "encounter-start",
        "gcsf-order-select": "order-select",
        "gcsf-order-review": "order-sign",
    }


def test_the_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "backpain_cds.cli", "discovery"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "back-pain-after-chemo" in result.stdout


def test_check_config_accepts_the_shipped_knowledge(capsys):
    assert main(["check-config"]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_config_lists_every_problem(tmp_path, capsys):
    config = _write(tmp_path, "bad.toml", 'public_base_url = "nope"\ncors_origins = 5\n')
    assert main(["check-config", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "public_base_url" in out and "cors_origins" in out and "2 problem(s)" in out


def test_check_config_reports_a_broken_knowledge_overlay(tmp_path, capsys):
    overlay = tmp_path / "site"
    overlay.mkdir()
    (overlay / "actions.toml").write_text('[actions.bad]\nlabel = "x"\n')
    config = _write(tmp_path, "c.toml", f'[knowledge]\npath = "{overlay}"\n')
    assert main(["check-config", "--config", config]) == 1
    assert "actions.bad" in capsys.readouterr().out


def test_replay_of_a_bundle_prints_the_cards(tmp_path, capsys):
    bundle = _write(tmp_path, "b.json", scenarios.transaction(scenarios.gcsf_bone_pain("r1", NOW)))
    assert main(["replay", bundle, "--now", "2025-03-10T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "gcsf-bone-pain" in out and "info" in out


def test_replay_json_is_a_valid_cds_response(tmp_path, capsys):
    from cds_hooks.schemas import validate_cds_response

    bundle = _write(tmp_path, "b.json", scenarios.collection(scenarios.mscc("r2", NOW)))
    assert main(["replay", bundle, "--now", "2025-03-10T09:00:00Z", "--json"]) == 0
    response = json.loads(capsys.readouterr().out)
    validate_cds_response(response)
    assert response["cards"][0]["extension"]["backpain-cds"]["rule"] == "mscc-red-flags"


def test_replay_of_a_request_file(tmp_path, capsys):
    request = _write(tmp_path, "req.json", hr.patient_view("r3", prefetch=hr.nothing_found_prefetch(scenarios.patient("r3"))))
    assert main(["replay", request, "--now", "2025-03-10T09:00:00Z"]) == 0
    assert "no cards" in capsys.readouterr().out


def test_replay_expect_passes_and_fails(tmp_path, capsys):
    bundle = _write(tmp_path, "b.json", scenarios.transaction(scenarios.gcsf_bone_pain("r4", NOW)))
    good = _write(tmp_path, "good.json", {"cards": [{"rule": "gcsf-bone-pain", "indicator": "info"}]})
    bad = _write(tmp_path, "bad.json", {"cards": [{"rule": "mscc-red-flags", "indicator": "critical"}]})
    assert main(["replay", bundle, "--now", "2025-03-10T09:00:00Z", "--expect", good]) == 0
    assert main(["replay", bundle, "--now", "2025-03-10T09:00:00Z", "--expect", bad]) == 1
    out = capsys.readouterr().out
    assert "missing card: mscc-red-flags (critical)" in out
    assert "unexpected card: gcsf-bone-pain (info)" in out


def test_replay_of_an_order_hook_uses_draft_resources(tmp_path, capsys):
    resources = [scenarios.patient("r5"), hr.draft_medication_request("d1", "Paracetamol 500 mg", "r5")]
    bundle = _write(tmp_path, "b.json", scenarios.collection(resources))
    assert main(["replay", bundle, "--service", "gcsf-order-review", "--hook", "order-select", "--json", "--now", "2025-03-10T09:00:00Z"]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{oops", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"resourceType": "Patient"}', "neither a CDS Hooks request"),
        ('{"resourceType": "Bundle", "entry": []}', "exactly one Patient"),
        ('{"hook": "patient-view", "context": {}}', "hookInstance"),
    ],
)
def test_replay_of_a_bad_file_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = str(tmp_path / "missing.json") if content is None else _write(tmp_path, "in.json", content)
    assert main(["replay", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_replay_rejects_a_bad_now(tmp_path, capsys):
    bundle = _write(tmp_path, "b.json", scenarios.collection([scenarios.patient("x")]))
    assert main(["replay", bundle, "--now", "yesterday"]) == 2
    assert main(["replay", bundle, "--now", "2025-03-10T09:00:00"]) == 2


def test_serve_refuses_a_non_loopback_bind_without_trusted_clients(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "backpain_cds.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_serve_with_an_invalid_config_names_the_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[fhir]\ntimeout_seconds = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "backpain_cds.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "fhir.timeout_seconds" in result.stderr


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_replay_expect_takes_now_and_hook_from_the_expected_file(capsys):
    # As the README shows it: no --now, no --hook; the fixture carries its evaluation time.
    fixtures = sorted(FIXTURES.glob("in-*.expected.json"))[:3] + sorted(FIXTURES.glob("out-*.expected.json"))[:3]
    assert fixtures
    for expected in fixtures:
        bundle = str(expected).replace(".expected.json", ".json")
        assert main(["replay", bundle, "--expect", str(expected)]) == 0, expected.name
    assert "MISMATCH" not in capsys.readouterr().out


def test_replay_names_an_unknown_hook_and_lists_the_valid_ones(tmp_path, capsys):
    bundle = _write(tmp_path, "b.json", scenarios.transaction(scenarios.gcsf_bone_pain("r6", NOW)))
    assert main(["replay", bundle, "--hook", "order-foo"]) == 2
    err = capsys.readouterr().err
    assert "unknown hook 'order-foo'" in err
    assert "patient-view" in err and "order-sign" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("port", ["99999", "0"])
def test_serve_refuses_a_bad_port_in_one_line(tmp_path, port):
    result = subprocess.run(
        [sys.executable, "-m", "backpain_cds.cli", "serve", "--port", port],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"backpain-cds: error: --port {port} is not a TCP port (1-65535)"]
    assert not list(tmp_path.iterdir()), "a failed start must not create the SQLite file"


def test_serve_refuses_a_port_in_use_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "backpain_cds.cli", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"backpain-cds: error: cannot listen on 127.0.0.1:{port}")
    assert not list(tmp_path.iterdir()), "a failed start must not create the SQLite file"


@pytest.mark.parametrize(("base_url", "warned"), [(None, True), ("https://cds.example.org", False)])
def test_check_config_warns_when_trusted_clients_meet_a_loopback_public_base_url(tmp_path, capsys, base_url, warned):
    from tests.support.jwt_factory import TestSigner

    TestSigner(iss="https://ehr.example.org").write_jwks(tmp_path / "jwks.json")
    top = f'public_base_url = "{base_url}"\n' if base_url else ""
    config = _write(tmp_path, "c.toml", top + '[[auth.trusted_clients]]\niss = "https://ehr.example.org"\njwks_file = "jwks.json"\n')
    assert main(["check-config", "--config", config]) == 0
    out = capsys.readouterr().out
    assert ("warning: trusted clients are configured but public_base_url is http://127.0.0.1:8080" in out) is warned


def _serve_without_gunicorn(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """``backpain-cds serve --config CONFIG`` up to the point where gunicorn would start (its
    ``run_gunicorn`` is replaced by a stub in the child process), on a free port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = (
        "import sys, backpain_cds.server as server\n"
        "server.run_gunicorn = lambda app, **kw: 0\n"
        "from backpain_cds.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", child, "serve", "--config", config, "--port", str(port)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


@pytest.mark.parametrize(("base_url", "warned"), [(None, True), ("https://cds.example.org", False)])
def test_serve_warns_when_trusted_clients_meet_a_loopback_public_base_url(tmp_path, base_url, warned):
    from tests.support.jwt_factory import TestSigner

    TestSigner(iss="https://ehr.example.org").write_jwks(tmp_path / "jwks.json")
    top = f'public_base_url = "{base_url}"\n' if base_url else ""
    config = _write(tmp_path, "c.toml", top + '[[auth.trusted_clients]]\niss = "https://ehr.example.org"\njwks_file = "jwks.json"\n')
    result = _serve_without_gunicorn(tmp_path, config)
    assert result.returncode == 0, result.stderr
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    warnings = [r["message"] for r in logged if r.get("level") == "WARNING" and "public_base_url" in r.get("message", "")]
    assert bool(warnings) is warned, result.stderr
    if warned:
        assert "trusted clients are configured but public_base_url is http://127.0.0.1:8080" in warnings[0]


_SMART = '[smart]\nclient_id = "c"\nehrs = [{iss = "https://ehr.example.org/fhir/r4"}]\n'


@pytest.mark.parametrize(
    ("files", "config", "error"),
    [
        # a site overlay of the SMART view's text that does not parse as one
        ({"overlay/detail_view.toml": "[safety_netting]\ntitle = 1\n"},
         '[knowledge]\npath = "overlay"\n' + _SMART, "detail_view.toml"),
        # a site overlay of the service catalogue with an incomplete service
        ({"overlay/services.toml": '[[services]]\nid = "x"\n'}, '[knowledge]\npath = "overlay"\n', "services.toml"),
        # a trusted client whose key file is no JWK Set
        ({"jwks.json": "not json"},
         '[[auth.trusted_clients]]\niss = "https://ehr.example.org"\njwks_file = "jwks.json"\n', "auth:"),
    ],
)
def test_serve_that_fails_on_knowledge_or_configuration_leaves_no_database_file(tmp_path, files, config, error):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    database = tmp_path / "data" / "cds.sqlite3"
    database.parent.mkdir()
    path = _write(tmp_path, "c.toml", f'database_url = "sqlite:///{database}"\n' + config)
    result = _serve_without_gunicorn(tmp_path, path)
    assert result.returncode == 2, result.stderr
    assert error in result.stderr
    assert not list(database.parent.iterdir()), "a failed start must not create the SQLite file"


def test_serve_on_a_sqlite_path_in_a_missing_directory_is_one_line(tmp_path):
    database = tmp_path / "nodir" / "cds.sqlite3"
    result = _serve_without_gunicorn(tmp_path, _write(tmp_path, "c.toml", f'database_url = "sqlite:///{database}"\n'))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (f"backpain-cds: error: no database at {database}: no such directory "
                                              f"{database.parent} (check database_url)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
