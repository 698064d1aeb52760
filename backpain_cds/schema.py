"""The database's schema revision, read and upgraded through Alembic's API.

The migration scripts ship inside the package (``backpain_cds/migrations``). What a database
can be, and what ``serve`` and ``migrate`` do with it:

========================  ===================================================================
state                     meaning
========================  ===================================================================
``empty``                 none of the service's tables and no revision
``pre-migration``         the service's tables without an ``alembic_version`` row: made by a
                          release before migrations (``create_all``); adopted by ``migrate``
                          once its tables are checked to have the expected columns
``behind``                a revision this release knows, older than its newest
``current``               this release's newest revision (the only state ``serve`` runs on)
``newer``                 a revision this release does not know: made by a newer release;
                          refused, never downgraded
========================  ===================================================================

:func:`require_current` is the policy of ``create_app`` (and so of ``serve``): it runs on a
``current`` database, creates the schema itself only in a brand-new SQLite database (no table
at all: nothing to lose, nobody else using it), and refuses anything else with one line naming
the command to run. PostgreSQL is never migrated without ``migrate`` or ``serve --migrate``.
"""

from __future__ import annotations

import enum
import functools
import logging
import typing as t
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from backpain_cds.storage import StorageError

log = logging.getLogger("backpain_cds.schema")

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"

#: The tables, and their columns, that the last release before migrations (0.1.0) created with
#: ``create_all``. A database holding some of them and no revision is adopted by the baseline
#: revision only if each of those tables has all of its columns. Frozen: never edit.
PRE_MIGRATION_COLUMNS: t.Mapping[str, frozenset[str]] = {
    "feedback": frozenset({"id", "service_id", "card_uuid", "outcome", "outcome_timestamp",
                           "accepted_suggestions", "override_code", "override_system",
                           "override_comment", "received_at"}),
    "feedback_unmatched": frozenset({"id", "service_id", "card_uuid", "outcome", "outcome_timestamp",
                                     "accepted_suggestions", "override_code", "override_system",
                                     "override_comment", "received_at"}),
    "card_audit": frozenset({"card_uuid", "service_id", "hook", "hook_instance", "rule_id",
                             "rule_version", "indicator", "patient_id", "created_at"}),
    "seen_jti": frozenset({"iss", "jti", "expires_at"}),
    "smart_launch_state": frozenset({"state_hash", "browser_hash", "iss", "launch_enc", "verifier_enc",
                                     "issuer", "token_endpoint", "created_at", "expires_at", "used_at"}),
    "smart_session": frozenset({"view_hash", "browser_hash", "iss", "patient", "encounter", "token_enc",
                                "scope", "need_patient_banner", "smart_style_url", "app_context",
                                "fhir_context", "created_at", "expires_at"}),
}

MIGRATE_HINT = "run `backpain-cds migrate` first (or `backpain-cds serve --migrate`)"


class SchemaError(StorageError):
    """The database's schema is not one this release can run on, or cannot be migrated."""


class State(enum.Enum):
    EMPTY = "empty"
    PRE_MIGRATION = "pre-migration"
    BEHIND = "behind"
    CURRENT = "current"
    NEWER = "newer"


@dataclass(frozen=True)
class SchemaStatus:
    state: State
    revision: str | None  #: the database's revision(s), comma-separated; None without one
    head: str  #: this release's newest revision
    tables: frozenset[str] = frozenset()  #: every table in the database (default schema)
    problems: tuple[str, ...] = field(default=())  #: why a pre-migration database cannot be adopted

    def describe(self) -> str:
        """The state in words, one line (no URL, no credentials)."""
        if self.state is State.EMPTY:
            return "the database has no backpain-cds tables yet"
        if self.state is State.PRE_MIGRATION:
            return ("the database was made by a release before schema migrations "
                    "(backpain-cds tables without an alembic_version row)")
        if self.state is State.BEHIND:
            return f"the database schema is at revision {self.revision}, this release needs {self.head}"
        if self.state is State.NEWER:
            return (f"the database schema is at revision {self.revision}, which this release does not "
                    f"know (its newest is {self.head}): a newer backpain-cds migrated it")
        return f"the database schema is at revision {self.head} (current)"


@dataclass(frozen=True)
class MissingDatabase:
    """A SQLite ``database_url`` whose file is not there (:func:`missing_sqlite_file`)."""

    path: Path  #: absolute
    reason: str
    creatable: bool  #: ``migrate`` would create the file (its directory exists)

    def __str__(self) -> str:
        return f"no database at {self.path}: {self.reason}"


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite ``database_url`` names, absolute (as the driver opens it: relative to the
    working directory); None for another database, an in-memory one, or a URL that does not parse.
    A ``file:`` URI (``sqlite:///file:PATH?uri=true``) names the file of its path."""
    try:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.get_driver_name() != "pysqlite":
            return None
        with warnings.catch_warnings():  # query arguments the driver ignores: said when it connects
            warnings.simplefilter("ignore")
            (filename, *_), options = parsed.get_dialect()().create_connect_args(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError):
        return None
    if options.get("uri") and filename.startswith("file:"):
        uri = urllib.parse.urlsplit(filename)
        if "memory" in urllib.parse.parse_qs(uri.query).get("mode", []):
            return None
        filename = urllib.parse.unquote(uri.path)
    if filename in ("", ":memory:"):
        return None
    return Path(filename).absolute()


def missing_sqlite_file(url: str) -> MissingDatabase | None:
    """Why the SQLite file ``url`` names is no database, or None (it exists, or ``url`` names no
    SQLite file). Read from the file system alone: connecting would create a missing file."""
    path = sqlite_path(url)
    if path is None or (path.exists() and not path.is_dir()):
        return None
    if path.is_dir():
        return MissingDatabase(path, "that is a directory (check database_url)", creatable=False)
    if not path.parent.is_dir():
        return MissingDatabase(path, f"no such directory {path.parent} (check database_url)", creatable=False)
    return MissingDatabase(path, "no such file (check database_url, or create the database with "
                                 "`backpain-cds migrate`)", creatable=True)


def model_metadata() -> sa.MetaData:
    """Every table the code reads and writes, in one MetaData (for autogenerate and checks)."""
    from backpain_cds.storage import metadata as store_metadata
    from smart_launch.session_store import metadata as smart_metadata

    combined = sa.MetaData()
    for metadata in (store_metadata, smart_metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


def alembic_config(*, engine: sa.Engine | None = None, url: str | None = None,
                   script_location: Path | None = None, output: t.TextIO | None = None) -> Config:
    """An Alembic config on the packaged scripts, no ini file; env.py reads engine/url from it."""
    config = Config(output_buffer=output, stdout=output) if output is not None else Config()
    config.set_main_option("script_location", str(script_location or SCRIPT_LOCATION))
    if engine is not None:
        config.attributes["engine"] = engine
    if url is not None:
        config.attributes["url"] = url
    return config


@functools.lru_cache(maxsize=8)
def _scripts(location: Path) -> ScriptDirectory:
    return ScriptDirectory(str(location))


def head(*, script_location: Path | None = None) -> str:
    """This release's newest revision."""
    heads = _scripts(script_location or SCRIPT_LOCATION).get_heads()
    if len(heads) != 1:  # pragma: no cover - a packaging mistake, caught by the tests
        raise SchemaError(f"the migration scripts have {len(heads)} heads; expected one")
    return heads[0]


def status(engine: sa.Engine, *, script_location: Path | None = None) -> SchemaStatus:
    """Where the database stands against this release's migrations (reads, never writes)."""
    location = script_location or SCRIPT_LOCATION
    newest = head(script_location=location)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
            inspector = sa.inspect(conn)
            tables = frozenset(inspector.get_table_names())
            ours = tables & PRE_MIGRATION_COLUMNS.keys()
            problems = () if current else _adoption_problems(inspector, ours)
    except sa.exc.SQLAlchemyError as exc:
        raise SchemaError(f"cannot read the database schema: {exc.__class__.__name__}") from exc
    revision = ",".join(current) or None
    if not current:
        state = State.PRE_MIGRATION if ours else State.EMPTY
    else:
        known = {script.revision for script in _scripts(location).walk_revisions()}
        if not set(current) <= known:
            state = State.NEWER
        else:
            state = State.CURRENT if current == (newest,) else State.BEHIND
    return SchemaStatus(state, revision, newest, tables, problems)


def _adoption_problems(inspector: t.Any, present: t.AbstractSet[str]) -> tuple[str, ...]:
    problems = []
    for name in sorted(present):
        columns = {column["name"] for column in inspector.get_columns(name)}
        missing = PRE_MIGRATION_COLUMNS[name] - columns
        if missing:
            problems.append(f"table {name} lacks column(s) {', '.join(sorted(missing))}")
    return tuple(problems)


def upgrade(engine: sa.Engine, *, script_location: Path | None = None) -> tuple[SchemaStatus, SchemaStatus]:
    """Upgrade to this release's newest revision; returns the status before and after.

    A pre-migration database is adopted by the baseline revision (its rows stay) once its tables
    are checked; a ``newer`` one is refused. On PostgreSQL the upgrade is one transaction under
    an advisory lock (``migrations/env.py``), so concurrent callers migrate once.
    """
    before = status(engine, script_location=script_location)
    if before.state is State.NEWER:
        raise SchemaError(f"{before.describe()}; refusing to migrate it")
    if before.problems:
        raise SchemaError(f"{before.describe()}, but not one this service can adopt: "
                          f"{'; '.join(before.problems)}")
    if before.state is not State.CURRENT:
        try:
            command.upgrade(alembic_config(engine=engine, script_location=script_location), "head")
        except sa.exc.SQLAlchemyError as exc:
            raise SchemaError(f"cannot migrate the database: {exc.__class__.__name__}") from exc
        except CommandError as exc:
            raise SchemaError(f"cannot migrate the database: {exc}") from exc
    return before, status(engine, script_location=script_location)


def upgrade_sql(url: str, output: t.TextIO, *, from_revision: str | None = None,
                script_location: Path | None = None) -> None:
    """Write the SQL of the upgrade to ``output`` (Alembic's offline mode): never connects.

    From an empty (or pre-migration) database unless ``from_revision`` says where it stands.
    """
    target = f"{from_revision}:head" if from_revision else "head"
    config = alembic_config(url=url, script_location=script_location, output=output)
    try:
        command.upgrade(config, target, sql=True)
    except CommandError as exc:
        raise SchemaError(f"cannot write the migration SQL: {exc}") from exc
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SchemaError(f"database_url is not usable: {exc.__class__.__name__}") from exc


def require_current(engine: sa.Engine, *, script_location: Path | None = None) -> SchemaStatus:
    """The schema check of ``create_app``: pass on ``current``, create a brand-new SQLite
    database's schema, otherwise raise :class:`SchemaError` with one line saying what to do."""
    found = status(engine, script_location=script_location)
    if found.state is State.CURRENT:
        return found
    if found.state is State.EMPTY and engine.dialect.name == "sqlite" and not found.tables:
        _, after = upgrade(engine, script_location=script_location)
        log.info("created the database schema (revision %s) in a new SQLite database", after.head)
        return after
    raise _refusal(found)


def require_current_read_only(engine: sa.Engine) -> SchemaStatus:
    """The schema check of the commands that only read or delete rows (audit, purge, report):
    ``serve``'s refusal line for a database not at this release's revision, and a SQLite file
    that is not there named (:func:`missing_sqlite_file`), never created, and no schema made."""
    missing = missing_sqlite_file(engine.url.render_as_string(hide_password=False))
    if missing is not None:  # SQLite would create the file on connect
        raise SchemaError(str(missing))
    found = status(engine)
    if found.state is not State.CURRENT:
        raise _refusal(found)
    return found


def _refusal(found: SchemaStatus) -> SchemaError:
    if found.state is State.NEWER:
        return SchemaError(f"{found.describe()}; run that release (this one never downgrades)")
    return SchemaError(f"{found.describe()}: {MIGRATE_HINT}")
