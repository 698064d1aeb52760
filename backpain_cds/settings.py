"""One typed, frozen settings object: TOML file + two environment overrides.

Only this module reads the environment. Every problem names its TOML key, so a broken
configuration stops start-up with a message an informaticist can act on.
"""

from __future__ import annotations

import tomllib
import typing as t
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from backpain_cds.retention import RetentionSettings, parse_retention
from backpain_cds.server_settings import ServerSettings, is_loopback_host, parse_server, server_warnings
from backpain_cds.smart_settings import SmartEhrSettings, SmartSettings, check_smart, parse_smart
from cds_hooks.auth import AuthPolicy
from cds_hooks.suppression import SuppressionPolicy
from fhir_mapping.client import normalise_base_url

ENV_CONFIG = "BACKPAIN_CDS_CONFIG"
ENV_PUBLIC_BASE_URL = "BACKPAIN_CDS_PUBLIC_BASE_URL"
ENV_DATABASE_URL = "BACKPAIN_CDS_DATABASE_URL"
ENV_METRICS_TOKEN = "BACKPAIN_CDS_METRICS_TOKEN"

_POLICY = AuthPolicy()

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists each one, naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TrustedClientSettings:
    """One EHR (CDS client) whose signed JWTs we accept."""

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class AuthSettings:
    """Client JWT verification (CDS Hooks "Trusting CDS Clients")."""

    # Defaults are the verifier's own (cds_hooks.auth.AuthPolicy), so the two cannot drift.
    trusted_clients: tuple[TrustedClientSettings, ...] = ()
    algorithms: tuple[str, ...] = _POLICY.algorithms
    leeway_seconds: int = _POLICY.leeway_seconds
    iat_future_leeway_seconds: int = _POLICY.iat_future_leeway_seconds
    max_token_age_seconds: int | None = _POLICY.max_token_age_seconds
    jwks_ttl_seconds: int = _POLICY.jwks_ttl_seconds
    jwks_min_refresh_seconds: int = _POLICY.jwks_min_refresh_seconds
    #: ignore (never fetch) the jku of clients pinned to a jwks_file (the CDS Hooks sandbox)
    allow_jku_with_jwks_file: bool = _POLICY.allow_jku_with_jwks_file

    @property
    def development_mode(self) -> bool:
        """True when no trusted client is configured: unsigned calls are accepted."""
        return not self.trusted_clients


@dataclass(frozen=True)
class FhirSettings:
    """Access to the EHR's FHIR server when prefetch is incomplete."""

    allowed_servers: tuple[str, ...] = ()
    timeout_seconds: float = 5.0  #: per HTTP request
    overall_timeout_seconds: float = 8.0  #: all fallback queries of one hook call
    max_pages: int = 50  #: next links followed per query before giving up (412)
    max_workers: int = 16  #: parallel queries per hook call (>= the number of prefetch keys)
    page_size: int = 500  #: _count added to fallback searches without one (0: add none)
    max_response_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on what one request may contain."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_prefetch_resources: int = 100_000
    hook_deadline_seconds: float = 5.0
    #: time a client has to send a whole request (headers and body) once it has connected or
    #: a kept-alive connection has become readable; past it 408 (backpain_cds.gunicorn_worker)
    request_read_seconds: float = 15.0
    #: after SIGTERM, how long the workers have to finish the calls in flight (they accept no
    #: new connections) before they are killed: gunicorn's graceful_timeout (README "Scaling out")
    shutdown_grace_seconds: int = 10


@dataclass(frozen=True)
class MetricsSettings:
    """Who may read ``GET /metrics`` (README "Metrics")."""

    #: if set, /metrics needs ``Authorization: Bearer <token>`` (else 401); also from the
    #: environment variable BACKPAIN_CDS_METRICS_TOKEN, which wins
    bearer_token: str | None = None
    #: if set (``host:port``), /metrics is served only on this extra listener, and only
    #: /metrics is served there; the main address answers 404 for it
    bind: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with."""

    public_base_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    database_url: str = "sqlite:///backpain-cds.sqlite3"
    cors_origins: tuple[str, ...] = ()
    auth: AuthSettings = field(default_factory=AuthSettings)
    fhir: FhirSettings = field(default_factory=FhirSettings)
    smart: SmartSettings = field(default_factory=SmartSettings)
    knowledge_path: Path | None = None
    limits: LimitSettings = field(default_factory=LimitSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)  #: backpain-cds purge
    #: gunicorn's view of the network: which proxies' X-Forwarded-* headers it believes
    server: ServerSettings = field(default_factory=ServerSettings)
    #: validate every CDS response against the schema before sending (tests turn it on)
    validate_responses: bool = False
    #: shadow mode for every rule: cards are produced, audited and counted, never returned
    #: (README "Shadow mode"; one rule: ``shadow = true`` in its rules.toml table)
    shadow: bool = False
    #: snoozes and order-session de-duplication (README "Snooze and de-duplication")
    suppression: SuppressionPolicy = field(default_factory=SuppressionPolicy)

    @property
    def smart_ehrs(self) -> tuple[SmartEhrSettings, ...]:
        """The EHRs that may launch the SMART detail view (``[[smart.ehrs]]``)."""
        return self.smart.ehrs

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: t.Mapping[str, str] | None = None
    ) -> Settings:
        """Read the TOML file (``path``, else ``$BACKPAIN_CDS_CONFIG``, else defaults)."""
        environ = {} if environ is None else environ
        path = path or environ.get(ENV_CONFIG) or None
        data: dict[str, t.Any] = {}
        base_dir = Path.cwd()
        if path is not None:
            file = Path(path)
            try:
                data = tomllib.loads(file.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError([f"config file {file} does not exist"]) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([f"config file {file} cannot be read: {exc}"]) from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError([f"config file {file} is not valid TOML: {exc}"]) from None
            base_dir = file.resolve().parent
        return cls.from_mapping(data, environ=environ, base_dir=base_dir)

    @classmethod
    def from_mapping(
        cls,
        data: t.Mapping[str, t.Any],
        *,
        environ: t.Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> Settings:
        """Build settings from a parsed TOML mapping; relative paths resolve against ``base_dir``."""
        parser = SettingsParser(base_dir or Path.cwd())
        settings = parser.settings(data, environ or {})
        if parser.problems:
            raise ConfigError(parser.problems)
        return settings


_TOP_KEYS = {
    "public_base_url", "database_url", "cors_origins", "auth", "fhir", "smart", "knowledge",
    "limits", "validate_responses", "metrics", "shadow", "suppression", "retention", "server",
}
_AUTH_KEYS = {
    "trusted_clients", "algorithms", "leeway_seconds", "iat_future_leeway_seconds",
    "max_token_age_seconds", "jwks_ttl_seconds", "jwks_min_refresh_seconds",
    "allow_jku_with_jwks_file",
}
_FORBIDDEN_ALGS = {"none", "HS256", "HS384", "HS512"}


class SettingsParser:
    """Collects every problem instead of stopping at the first.

    The value checks (:meth:`text`, :meth:`url`, :meth:`integer`, ...) are public: the
    ``[smart]`` table is parsed with them by :func:`backpain_cds.smart_settings.parse_smart`.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def settings(self, data: t.Mapping[str, t.Any], environ: t.Mapping[str, str]) -> Settings:
        self.unknown_keys(data, _TOP_KEYS, "")
        base_url = environ.get(ENV_PUBLIC_BASE_URL) or data.get("public_base_url")
        db_url = environ.get(ENV_DATABASE_URL) or data.get("database_url")
        defaults = Settings()
        knowledge = self.table(data, "knowledge")
        self.unknown_keys(knowledge, {"path"}, "knowledge.")
        knowledge_path = self.path(knowledge.get("path"), "knowledge.path", must_be_dir=True)
        settings = Settings(
            public_base_url=self.url(base_url, "public_base_url") or defaults.public_base_url,
            database_url=self.text(db_url, "database_url") or defaults.database_url,
            cors_origins=self.text_list(data.get("cors_origins", []), "cors_origins"),
            auth=self._auth(self.table(data, "auth")),
            fhir=self._fhir(self.table(data, "fhir")),
            smart=parse_smart(self, self.table(data, "smart")),
            knowledge_path=knowledge_path,
            limits=self._limits(self.table(data, "limits")),
            metrics=self._metrics(self.table(data, "metrics"), environ),
            retention=parse_retention(self, self.table(data, "retention")),
            server=parse_server(self, self.table(data, "server")),
            validate_responses=self.flag(
                data.get("validate_responses", False), "validate_responses"
            ),
            shadow=self.flag(data.get("shadow", False), "shadow"),
            suppression=self._suppression(self.table(data, "suppression")),
        )
        check_smart(settings.smart, settings.public_base_url, self.problems,
                    development_mode=settings.auth.development_mode)
        return settings

    # --- sections -------------------------------------------------------------------------
    def _auth(self, data: t.Mapping[str, t.Any]) -> AuthSettings:
        self.unknown_keys(data, _AUTH_KEYS, "auth.")
        d = AuthSettings()
        clients = []
        raw_clients = data.get("trusted_clients", [])
        if not isinstance(raw_clients, list):
            self.problems.append("auth.trusted_clients must be an array of tables")
            raw_clients = []
        seen: set[str] = set()
        for i, raw in enumerate(raw_clients):
            key = f"auth.trusted_clients[{i}]"
            if not isinstance(raw, dict):
                self.problems.append(f"{key} must be a table")
                continue
            self.unknown_keys(raw, {"iss", "jwks_url", "jwks_file", "tenant"}, f"{key}.")
            iss = self.text(raw.get("iss"), f"{key}.iss", required=True)
            jwks_url = self.url(raw.get("jwks_url"), f"{key}.jwks_url")
            jwks_file = self.path(raw.get("jwks_file"), f"{key}.jwks_file", must_be_file=True)
            if (jwks_url is None) == (raw.get("jwks_file") is None):
                self.problems.append(f"{key} needs exactly one of jwks_url or jwks_file")
            if iss and iss in seen:
                self.problems.append(f"{key}.iss {iss!r} is configured twice")
            seen.add(iss or "")
            tenant = self.text(raw.get("tenant"), f"{key}.tenant")
            clients.append(TrustedClientSettings(iss or "", jwks_url, jwks_file, tenant))
        algorithms = self.text_list(data.get("algorithms", list(d.algorithms)), "auth.algorithms")
        for alg in algorithms:
            if alg in _FORBIDDEN_ALGS or alg.upper().startswith("HS") or alg.lower() == "none":
                self.problems.append(
                    f"auth.algorithms: {alg!r} is never allowed (CDS Hooks forbids none and HMAC)"
                )
        if not algorithms:
            self.problems.append("auth.algorithms must list at least one algorithm")
        max_age = data.get("max_token_age_seconds")
        return AuthSettings(
            trusted_clients=tuple(clients),
            algorithms=algorithms,
            leeway_seconds=self.integer(data.get("leeway_seconds", d.leeway_seconds), "auth.leeway_seconds", 0, 600),
            iat_future_leeway_seconds=self.integer(data.get("iat_future_leeway_seconds", d.iat_future_leeway_seconds), "auth.iat_future_leeway_seconds", 0, 300),
            allow_jku_with_jwks_file=self.flag(data.get("allow_jku_with_jwks_file", d.allow_jku_with_jwks_file), "auth.allow_jku_with_jwks_file"),
            max_token_age_seconds=None if max_age is None else self.integer(max_age, "auth.max_token_age_seconds", 1, 86400),
            jwks_ttl_seconds=self.integer(data.get("jwks_ttl_seconds", d.jwks_ttl_seconds), "auth.jwks_ttl_seconds", 1, 86400 * 7),
            jwks_min_refresh_seconds=self.integer(data.get("jwks_min_refresh_seconds", d.jwks_min_refresh_seconds), "auth.jwks_min_refresh_seconds", 0, 86400),
        )

    def _fhir(self, data: t.Mapping[str, t.Any]) -> FhirSettings:
        d = FhirSettings()
        self.unknown_keys(data, set(FhirSettings.__dataclass_fields__), "fhir.")
        servers = self.text_list(data.get("allowed_servers", []), "fhir.allowed_servers")
        for i, server in enumerate(servers):
            if self.url(server, f"fhir.allowed_servers[{i}]") is not None:
                try:
                    normalise_base_url(server)
                except ValueError as exc:
                    self.problems.append(f"fhir.allowed_servers[{i}]: {exc}")
        return FhirSettings(
            allowed_servers=servers,
            timeout_seconds=self.number(data.get("timeout_seconds", d.timeout_seconds), "fhir.timeout_seconds", 0.1, 120),
            overall_timeout_seconds=self.number(data.get("overall_timeout_seconds", d.overall_timeout_seconds), "fhir.overall_timeout_seconds", 0.1, 300),
            max_pages=self.integer(data.get("max_pages", d.max_pages), "fhir.max_pages", 1, 10_000),
            max_workers=self.integer(data.get("max_workers", d.max_workers), "fhir.max_workers", 1, 64),
            page_size=self.integer(data.get("page_size", d.page_size), "fhir.page_size", 0, 10_000),
            max_response_bytes=self.integer(data.get("max_response_bytes", d.max_response_bytes), "fhir.max_response_bytes", 1024, 1 << 31),
        )

    def _metrics(self, data: t.Mapping[str, t.Any], environ: t.Mapping[str, str]) -> MetricsSettings:
        self.unknown_keys(data, set(MetricsSettings.__dataclass_fields__), "metrics.")
        token = environ.get(ENV_METRICS_TOKEN) or self.text(data.get("bearer_token"), "metrics.bearer_token")
        if token is not None and (len(token) < 16 or any(c.isspace() for c in token)):
            self.problems.append("metrics.bearer_token must be at least 16 characters, without spaces")
        bind = self.text(data.get("bind"), "metrics.bind")
        if bind is not None:
            host, _, port = bind.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                self.problems.append("metrics.bind must be host:port, e.g. 127.0.0.1:9464")
        return MetricsSettings(bearer_token=token or None, bind=bind)

    def _suppression(self, data: t.Mapping[str, t.Any]) -> SuppressionPolicy:
        self.unknown_keys(data, {"enabled", "order_session_minutes"}, "suppression.")
        minutes = self.integer(data.get("order_session_minutes", 60), "suppression.order_session_minutes", 1, 24 * 60)
        return SuppressionPolicy(enabled=self.flag(data.get("enabled", True), "suppression.enabled"),
                                 order_session=timedelta(minutes=minutes))

    def _limits(self, data: t.Mapping[str, t.Any]) -> LimitSettings:
        d = LimitSettings()
        self.unknown_keys(data, set(LimitSettings.__dataclass_fields__), "limits.")
        return LimitSettings(
            max_body_bytes=self.integer(data.get("max_body_bytes", d.max_body_bytes), "limits.max_body_bytes", 1024, 1 << 31),
            max_prefetch_resources=self.integer(data.get("max_prefetch_resources", d.max_prefetch_resources), "limits.max_prefetch_resources", 1, 10_000_000),
            hook_deadline_seconds=self.number(data.get("hook_deadline_seconds", d.hook_deadline_seconds), "limits.hook_deadline_seconds", 0.05, 300),
            request_read_seconds=self.number(data.get("request_read_seconds", d.request_read_seconds), "limits.request_read_seconds", 0.5, 600),
            shutdown_grace_seconds=self.integer(data.get("shutdown_grace_seconds", d.shutdown_grace_seconds), "limits.shutdown_grace_seconds", 1, 600),
        )

    # --- scalar checks ---------------------------------------------------------------------
    def unknown_keys(self, data: t.Mapping[str, t.Any], allowed: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                self.problems.append(f"{prefix}{key} is not a known setting")

    def table(self, data: t.Mapping[str, t.Any], key: str) -> t.Mapping[str, t.Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problems.append(f"{key} must be a table")
            return {}
        return value

    def text(self, value: t.Any, key: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.problems.append(f"{key} is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{key} must be a non-empty string")
            return None
        return value

    def url(self, value: t.Any, key: str, *, required: bool = False) -> str | None:
        text = self.text(value, key, required=required)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{key} must be an absolute http(s) URL, got {text!r}")
            return None
        return text.rstrip("/")

    def text_list(self, value: t.Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problems.append(f"{key} must be an array of non-empty strings")
            return ()
        return tuple(value)

    def flag(self, value: t.Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.problems.append(f"{key} must be true or false")
            return False
        return value

    def integer(self, value: t.Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problems.append(f"{key} must be an integer from {low} to {high}")
            return low
        return value

    def number(self, value: t.Any, key: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.problems.append(f"{key} must be a number from {low} to {high}")
            return low
        return float(value)

    def path(
        self, value: t.Any, key: str, *, must_be_dir: bool = False, must_be_file: bool = False
    ) -> Path | None:
        text = self.text(value, key)
        if text is None:
            return None
        path = Path(text)
        if not path.is_absolute():
            path = (self.base_dir / path).resolve()
        if must_be_dir and not path.is_dir():
            self.problems.append(f"{key}: directory {path} does not exist")
        if must_be_file and not path.is_file():
            self.problems.append(f"{key}: file {path} does not exist")
        return path


def config_warnings(settings: Settings) -> list[str]:
    """Settings that are valid but almost certainly wrong for a real deployment."""
    warnings = server_warnings(settings.server)
    if not settings.auth.development_mode:
        host = urlsplit(settings.public_base_url).hostname or ""
        if is_loopback_host(host):
            warnings.append(
                f"trusted clients are configured but public_base_url is {settings.public_base_url}: "
                "every EHR's JWT aud names the URL it calls, so their calls will fail with 401; "
                "set public_base_url (or BACKPAIN_CDS_PUBLIC_BASE_URL) to the service's public URL"
            )
    return warnings


def check_bind_allowed(settings: Settings, host: str) -> None:
    """Refuse to serve unsigned calls anywhere but loopback (development mode rule)."""
    if settings.auth.development_mode and not is_loopback_host(host):
        raise ConfigError(
            [
                f"refusing to bind {host}: no [[auth.trusted_clients]] are configured, so the "
                "service would accept unsigned calls; bind 127.0.0.1 or configure trusted clients"
            ]
        )
