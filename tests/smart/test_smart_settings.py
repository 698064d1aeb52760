"""The [smart] settings: what start-up refuses, defaults, the CSP they produce."""

from __future__ import annotations

import pytest

from backpain_cds.settings import ConfigError, Settings
from backpain_cds.smart_settings import smart_app_config

ISS = "https://ehr.example.org/fhir/r4"
SECRET = "a-long-random-secret-for-signing-0123456789"
TRUSTED = {"trusted_clients": [{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]}


def _settings(smart: dict, **top) -> Settings:
    return Settings.from_mapping({"smart": smart, **top})


def test_outside_development_mode_a_secret_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        _settings({"client_id": "c", "ehrs": [{"iss": ISS}]}, auth=TRUSTED,
                  public_base_url="https://cds.example.org")
    assert any("smart.secret is required" in p for p in info.value.problems)
    ok = _settings({"client_id": "c", "secret": SECRET, "ehrs": [{"iss": ISS}]}, auth=TRUSTED,
                   public_base_url="https://cds.example.org")
    assert ok.smart.secret == SECRET


def test_development_mode_runs_without_a_secret_on_a_per_process_one() -> None:
    settings = _settings({"client_id": "c", "ehrs": [{"iss": ISS}]})
    config = smart_app_config(settings)
    assert len(config.secret) >= 32
    assert smart_app_config(settings).secret == config.secret  # cards and view agree


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        _settings({"client_id": "c", "secret": "short", "ehrs": [{"iss": ISS}]})


def test_plain_http_is_allowed_on_loopback_only() -> None:
    with pytest.raises(ConfigError, match="must be https"):
        _settings({"client_id": "c", "secret": SECRET, "ehrs": [{"iss": ISS}]},
                  public_base_url="http://cds.example.org")
    _settings({"client_id": "c", "secret": SECRET, "ehrs": [{"iss": ISS}]},
              public_base_url="http://127.0.0.1:8080")


def test_client_id_defaults_and_per_ehr_overrides() -> None:
    settings = _settings({"client_id": "default-id", "client_secret": "default-secret", "ehrs": [
        {"iss": ISS}, {"iss": "https://other.example.org/fhir", "client_id": "own", "client_secret": "own-s"}]})
    first, second = settings.smart_ehrs
    assert (first.client_id, first.client_secret) == ("default-id", "default-secret")
    assert (second.client_id, second.client_secret) == ("own", "own-s")


@pytest.mark.parametrize("smart, words", [
    ({"ehrs": [{"iss": ISS}]}, "client_id is required"),
    ({"client_id": "c", "ehrs": [{"iss": ISS}, {"iss": ISS + "/"}]}, "configured twice"),
    ({"client_id": "c", "ehrs": [{"iss": ISS, "scope": "x"}]}, "scope is not a known setting"),
    ({"client_id": "c", "frame_ancestors": ["https://ehr.example.org; script-src *"], "ehrs": []}, "frame_ancestors[0]"),
    ({"client_id": "c", "frame_ancestors": ["*"], "ehrs": []}, "frame_ancestors[0]"),
    ({"client_id": "c", "session_minutes": 0, "ehrs": []}, "session_minutes"),
    ({"client_id": "c", "ehrs": [{"iss": "ftp://x"}]}, "absolute http(s) URL"),
])
def test_bad_smart_settings_name_their_key(smart, words) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(smart)
    assert any(words in p for p in info.value.problems), info.value.problems


def test_frame_ancestors_default_to_self_and_the_ehr_origins() -> None:
    config = smart_app_config(_settings({"client_id": "c", "ehrs": [{"iss": ISS}]}))
    assert config.csp_frame_ancestors() == "'self' https://ehr.example.org"
    configured = smart_app_config(_settings({"client_id": "c", "ehrs": [{"iss": ISS}],
                                             "frame_ancestors": ["https://portal.example.org"]}))
    assert configured.csp_frame_ancestors() == "https://portal.example.org"


def test_without_smart_ehrs_cards_have_no_smart_link_and_no_route(client) -> None:
    assert client.get("/smart/launch?iss=x&launch=y").status_code == 404


def test_a_broken_detail_view_overlay_is_a_knowledge_error(tmp_path) -> None:
    from backpain_cds.app import create_app
    from fhir_mapping.knowledge import KnowledgeError

    (tmp_path / "detail_view.toml").write_text("[safety_netting]\ntitle = 1\n")
    settings = Settings.from_mapping({
        "database_url": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        "knowledge": {"path": str(tmp_path)},
        "smart": {"client_id": "c", "ehrs": [{"iss": ISS}]},
    })
    with pytest.raises(KnowledgeError, match="detail_view.toml"):
        create_app(settings)
