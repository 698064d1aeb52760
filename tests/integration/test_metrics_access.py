"""/metrics access (issue 9, "Also noticed"): open, behind a bearer token, or on its own listener."""

from __future__ import annotations

import pytest

from backpain_cds.app import create_app
from backpain_cds.settings import ConfigError, Settings

TOKEN = "metrics-token-0123456789"


def _app(tmp_path, metrics=None, environ=None):
    data = {"database_url": f"sqlite:///{tmp_path / 'm.sqlite3'}"}
    if metrics is not None:
        data["metrics"] = metrics
    return create_app(Settings.from_mapping(data, environ=environ))


def test_metrics_are_open_by_default(tmp_path):
    assert _app(tmp_path).test_client().get("/metrics").status_code == 200


def test_a_bearer_token_guards_metrics(tmp_path):
    client = _app(tmp_path, {"bearer_token": TOKEN}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and "backpain_cds_hook_calls_total" in response.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200  # nothing else needs it


def test_the_token_may_come_from_the_environment(tmp_path):
    client = _app(tmp_path, environ={"BACKPAIN_CDS_METRICS_TOKEN": TOKEN}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_separate_listener_serves_metrics_and_nothing_else(tmp_path):
    client = _app(tmp_path, {"bind": "127.0.0.1:18499"}).test_client()
    on_metrics = {"SERVER_PORT": "18499"}
    on_main = {"SERVER_PORT": "8080"}
    assert client.get("/metrics", environ_overrides=on_main).status_code == 404
    assert client.get("/metrics", environ_overrides=on_metrics).status_code == 200
    assert client.get("/healthz", environ_overrides=on_metrics).status_code == 404
    assert client.get("/cds-services", environ_overrides=on_metrics).status_code == 404
    assert client.get("/healthz", environ_overrides=on_main).status_code == 200


@pytest.mark.parametrize("metrics", [{"bearer_token": "short"}, {"bearer_token": "has a space in it!!"},
                                     {"bind": "no-port"}, {"bind": "127.0.0.1:99999"}, {"other": 1}])
def test_bad_metrics_settings_are_refused(metrics):
    with pytest.raises(ConfigError):
        Settings.from_mapping({"metrics": metrics})
