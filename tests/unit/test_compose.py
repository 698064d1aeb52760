"""compose.yaml against the contract it deploys (no Docker here: its structure is checked).

Two service instances after a one-shot ``migrate``, PostgreSQL with a healthcheck and a named
volume, the buffering proxy whose configuration file exists and names exactly the instances;
commands parsed by the real CLI parser and equal to the Dockerfile's; healthchecks on the port
``serve`` listens on; the mounted service configuration valid and trusting only the proxy's
forwarded headers; no secret in the repository. The compose proxy configuration is compared
directive by directive with the documented single-host one (deploy/nginx/backpain-cds.conf).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from backpain_cds.cli import _parser
from backpain_cds.settings import Settings, check_bind_allowed

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
INSTANCES = {name: s for name, s in SERVICES.items() if s.get("command", [None, None])[1] == "serve"}
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _cli(command: list[str]):
    assert command[0] == "backpain-cds"
    return _parser().parse_args(command[1:])


def _mount(service: dict, target: str) -> Path:
    """The host file a service mounts at ``target`` (bind mounts, short syntax)."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def _dockerfile_env(name: str) -> str:
    found = re.search(rf"\b{name}=(\S+)", DOCKERFILE)
    assert found, name
    return found.group(1)


def _port(serve_args) -> int:
    return int(serve_args.port)


def test_the_deployment_has_its_five_parts():
    assert set(SERVICES) == {"postgres", "migrate", "cds-1", "cds-2", "proxy"}
    assert sorted(INSTANCES) == ["cds-1", "cds-2"]


def test_postgres_has_a_healthcheck_and_a_named_volume():
    postgres = SERVICES["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume, _, target = postgres["volumes"][0].partition(":")
    assert volume in COMPOSE["volumes"] and target == "/var/lib/postgresql/data"


def test_migrate_runs_the_cli_migrate_once_postgres_is_healthy():
    migrate = SERVICES["migrate"]
    args = _cli(migrate["command"])
    assert args.command == "migrate" and not args.sql and not args.check
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", ["cds-1", "cds-2"])
def test_an_instance_serves_after_migrate_with_a_readiness_check_on_its_port(name):
    instance = INSTANCES[name]
    args = _cli(instance["command"])
    assert args.command == "serve" and not args.migrate  # migrate ran once, before
    assert args.host == "0.0.0.0" and args.workers >= 2
    # the Dockerfile's CMD, so `docker run` and compose serve alike
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))
    assert instance["command"] == cmd
    assert instance["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert instance["depends_on"]["postgres"] == {"condition": "service_healthy"}
    check = " ".join(instance["healthcheck"]["test"])
    assert f"http://127.0.0.1:{_port(args)}/readyz" in check
    assert instance["read_only"] is True and "/tmp" in instance["tmpfs"]
    assert instance["image"] == SERVICES["migrate"]["image"] and instance["build"] == "."


def test_the_instances_and_migrate_share_one_database_and_the_mounted_configuration():
    urls = {name: SERVICES[name]["environment"]["BACKPAIN_CDS_DATABASE_URL"] for name in ("migrate", *INSTANCES)}
    assert len(set(urls.values())) == 1
    url = urls["migrate"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert ":" not in url.split("//", 1)[1].split("@", 1)[0], "no password in the URL (PGPASSWORD)"
    target = _dockerfile_env("BACKPAIN_CDS_CONFIG")
    assert {_mount(SERVICES[name], target) for name in ("migrate", *INSTANCES)} == {ROOT / "deploy/compose/config.toml"}


def test_the_mounted_configuration_is_valid_for_instances_behind_the_proxy():
    instance = INSTANCES["cds-1"]
    config = _mount(instance, _dockerfile_env("BACKPAIN_CDS_CONFIG"))
    settings = Settings.load(config, environ=instance["environment"])
    check_bind_allowed(settings, _cli(instance["command"]).host)  # trusted clients: may bind 0.0.0.0
    assert settings.database_url == instance["environment"]["BACKPAIN_CDS_DATABASE_URL"]
    proxy_address = SERVICES["proxy"]["networks"]["backend"]["ipv4_address"]
    assert settings.server.forwarded_allow_ips == (proxy_address,)
    grace = tomllib.loads(config.read_text())["limits"]["shutdown_grace_seconds"]
    assert settings.limits.shutdown_grace_seconds == grace
    for inst in INSTANCES.values():
        assert int(inst["stop_grace_period"].rstrip("s")) > grace


def test_fixed_addresses_lie_in_the_subnet_outside_the_dynamic_range():
    ipam = COMPOSE["networks"]["backend"]["ipam"]["config"][0]
    subnet, dynamic = ipaddress.ip_network(ipam["subnet"]), ipaddress.ip_network(ipam["ip_range"])
    fixed = [ipaddress.ip_address(SERVICES[n]["networks"]["backend"]["ipv4_address"]) for n in ("proxy", *INSTANCES)]
    assert len(set(fixed)) == 3
    assert all(a in subnet and a not in dynamic for a in fixed)


def _directives(conf: str) -> list[str]:
    """nginx statements in order, comments and layout removed."""
    text = re.sub(r"#[^\n]*", "", conf)
    return [" ".join(part.split()) for part in re.split(r"[;{}]", text) if part.strip()]


def test_the_proxy_configuration_names_exactly_the_instances_on_their_port():
    proxy = SERVICES["proxy"]
    conf_path = _mount(proxy, "/etc/nginx/conf.d/default.conf")
    assert conf_path.is_file() and conf_path.parent == ROOT / "deploy" / "nginx"
    directives = _directives(conf_path.read_text())
    upstream = directives.index("upstream backpain_cds")
    servers = [d.split()[1] for d in directives[upstream + 1:] if d.startswith("server ")]
    assert servers == [f"{name}:{_port(_cli(s['command']))}" for name, s in INSTANCES.items()]
    listen = [d for d in directives if d.startswith("listen ")]
    published = proxy["ports"][0].rsplit(":", 1)[1]
    assert listen == [f"listen {published}"]
    assert {n: d["condition"] for n, d in proxy["depends_on"].items()} == {n: "service_healthy" for n in INSTANCES}
    assert "proxy_next_upstream error timeout" in directives  # fail-over


def test_the_compose_proxy_is_the_documented_proxy_with_two_upstreams():
    """Only the upstream servers, the listen address and the fail-over lines differ."""
    def common(path: str) -> list[str]:
        return [d for d in _directives((ROOT / path).read_text())
                if not d.startswith(("server ", "listen ", "proxy_next_upstream"))]

    assert common("deploy/nginx/backpain-cds-compose.conf") == common("deploy/nginx/backpain-cds.conf")


def test_no_secret_is_committed():
    text = (ROOT / "compose.yaml").read_text()
    variables = re.findall(r"\$\{([A-Z_]+)(:?[?-])?", text)
    secret = [v for v, _ in variables if "PASSWORD" in v]
    assert secret and all(mode == ":?" for v, mode in variables if "PASSWORD" in v), "required, no default"
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${BACKPAIN_CDS_DB_PASSWORD:?")
    for name in ("migrate", *INSTANCES):
        assert SERVICES[name]["environment"]["PGPASSWORD"].startswith("${BACKPAIN_CDS_DB_PASSWORD:?")
    example = (ROOT / "deploy/compose/env.example").read_text()
    assert re.search(r"^BACKPAIN_CDS_DB_PASSWORD=$", example, re.M), "the example leaves the password empty"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"
