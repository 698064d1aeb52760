"""The ``backpain-cds`` command: serve, migrate, discovery, replay, check-config (and audit,
purge: backpain_cds/audit_commands.py; report: backpain_cds/report/command.py).

Exit status: 0 success; 1 a check failed (``replay --expect`` mismatch, ``check-config``
problems, ``migrate --check`` on a database that needs migrating or a SQLite file not there
yet); 2 bad input, configuration or database schema (one clear line on stderr); 141 the reader
of standard output went away (``backpain-cds audit | head -1``: quietly, as 128 + SIGPIPE, the
status a shell shows for ``cat`` in the same place).
"""

from __future__ import annotations

import argparse
import os
import sys
import typing as t
from datetime import datetime
from pathlib import Path

import orjson

from backpain_cds.settings import DEFAULT_HOST, DEFAULT_PORT, ConfigError, Settings


class CliError(Exception):
    """A problem to report in one line, with its exit status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then the BrokenPipeError below
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except CliError as exc:
        print(f"backpain-cds: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"backpain-cds: error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


#: the exit status when standard output's reader has gone (128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141


def _stdout_closed() -> int:
    """Stop quietly once the reader of stdout has closed it (the recipe of the Python docs,
    "Note on SIGPIPE"): stdout goes to /dev/null so that the interpreter's last flush at exit
    cannot fail again and print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests capture it)
        pass
    return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backpain-cds",
        description="CDS Hooks service for back pain after chemotherapy and G-CSF bone pain.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service under gunicorn")
    serve.add_argument("--config", help="TOML config file (default: $BACKPAIN_CDS_CONFIG)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    serve.add_argument("--migrate", action="store_true",
                       help="upgrade the database schema first (without it, serve refuses a database "
                            "that is not at this release's revision; a new SQLite file is created)")
    serve.set_defaults(handler=_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to this release (Alembic)")
    migrate.add_argument("--config")
    migrate.add_argument("--sql", action="store_true",
                         help="print the upgrade's SQL for a DBA instead; never connects to the database")
    migrate.add_argument("--from", dest="from_revision", metavar="REV",
                         help="with --sql: the revision the database is at (default: an empty database)")
    migrate.add_argument("--check", action="store_true",
                         help="only say where the database stands, changing nothing (a missing SQLite "
                              "file is not created): exit 0 current, 1 needs migrating (or no database "
                              "yet), 2 newer or unusable")
    migrate.set_defaults(handler=_migrate)

    discovery = sub.add_parser("discovery", help="print the discovery JSON")
    discovery.add_argument("--config")
    discovery.set_defaults(handler=_discovery)

    replay = sub.add_parser("replay", help="run request files or patient Bundles in-process")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--config")
    replay.add_argument("--service", help="service id (default by hook)")
    replay.add_argument("--hook", help="hook (default: the service's first hook)")
    replay.add_argument("--now", help="evaluate as of this ISO date-time (default: now)")
    replay.add_argument("--json", action="store_true", help="print the CDS response JSON")
    replay.add_argument("--expect", help='expected cards: {"cards": [{"rule": ..., "indicator": ...}]}')
    replay.set_defaults(handler=_replay)

    check = sub.add_parser("check-config", help="validate configuration and knowledge")
    check.add_argument("--config")
    check.set_defaults(handler=_check_config)

    from backpain_cds import audit_commands

    audit_commands.register(sub)  # audit, purge
    from backpain_cds.report.command import register as register_report

    register_report(sub)
    return parser


def _settings(path: str | None) -> Settings:
    import os

    return Settings.load(path, environ=os.environ)


def _serve(args: argparse.Namespace) -> int:
    from backpain_cds.server import metrics_directory

    # The workers' metric files go to a fresh private directory, named in the environment
    # before prometheus_client is imported (by backpain_cds.app) and before gunicorn forks.
    with metrics_directory():
        return _serve_in(args)


def _serve_in(args: argparse.Namespace) -> int:
    from backpain_cds.app import create_app
    from backpain_cds.logs import configure_logging
    from backpain_cds.schema import missing_sqlite_file, upgrade
    from backpain_cds.server import run_gunicorn
    from backpain_cds.settings import check_bind_allowed
    from backpain_cds.storage import SqlStore, StorageError
    from fhir_mapping.knowledge import KnowledgeError

    configure_logging()
    settings = _settings(args.config)
    check_bind_allowed(settings, args.host)
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    _check_port_free(args.host, args.port)  # before create_app: a failed start creates no database file
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None and not missing.creatable:  # a missing file is created; a missing directory not
        raise CliError(str(missing))
    try:
        store = SqlStore(settings.database_url)
        if args.migrate:
            _log_migration(*upgrade(store.engine))
        # create_app refuses (SchemaError, one line) a database not at this release's revision
        app = create_app(settings, store=store)
    except KnowledgeError as exc:
        raise CliError(f"invalid knowledge: {exc}") from None
    except StorageError as exc:
        raise CliError(str(exc)) from None
    return run_gunicorn(app, host=args.host, port=args.port, workers=args.workers)


def _log_migration(before: t.Any, after: t.Any) -> None:
    import logging

    if before.state is not after.state:
        logging.getLogger("backpain_cds.schema").info(
            "database migrated to revision %s (it was %s)", after.head, before.state.value)


def _migrate(args: argparse.Namespace) -> int:
    from backpain_cds.schema import State, missing_sqlite_file, status, upgrade, upgrade_sql
    from backpain_cds.storage import SqlStore, StorageError

    if args.from_revision and not args.sql:
        raise CliError("--from goes with --sql (a connected migrate reads the revision itself)")
    if args.sql and args.check:
        raise CliError("--sql and --check exclude each other")
    settings = _settings(args.config)
    try:
        if args.sql:
            upgrade_sql(settings.database_url, sys.stdout, from_revision=args.from_revision)
            return 0
        # connecting creates a missing SQLite file: --check must not, and neither can make one
        # in a directory that is not there
        missing = missing_sqlite_file(settings.database_url)
        if missing is not None and args.check:
            print(missing)
            return 1 if missing.creatable else 2
        if missing is not None and not missing.creatable:
            raise CliError(str(missing))
        store = SqlStore(settings.database_url)
        try:
            if args.check:
                found = status(store.engine)
                print(found.describe())
                return {State.CURRENT: 0, State.NEWER: 2}.get(found.state, 1)
            before, after = upgrade(store.engine)
        finally:
            store.engine.dispose()
    except StorageError as exc:
        raise CliError(str(exc)) from None
    if before.state is State.CURRENT:
        print(f"the database is already at revision {after.head}; nothing to do")
    elif before.state is State.PRE_MIGRATION:
        print(f"adopted a database made before migrations (its rows are kept) and migrated it to "
              f"revision {after.head}")
    else:
        was = f"revision {before.revision}" if before.revision else before.state.value
        print(f"migrated the database from {was} to revision {after.head}")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a bad or busy port in one line (gunicorn would print a traceback or retry five times)."""
    import socket

    if not 1 <= port <= 65535:
        raise CliError(f"--port {port} is not a TCP port (1-65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _discovery(args: argparse.Namespace) -> int:
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import KnowledgeError, load_knowledge

    settings = _settings(args.config)
    try:
        catalog = load_service_catalog(load_knowledge(settings.knowledge_path))
    except KnowledgeError as exc:
        raise CliError(f"invalid knowledge: {exc}") from None
    sys.stdout.write(orjson.dumps(catalog.discovery(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from backpain_cds.app import build_service
    from backpain_cds.replay import (
        ReplayInputError,
        build_call,
        card_keys,
        compare,
        expected_keys,
        table,
    )
    from cds_hooks.errors import CdsHooksError
    from cds_hooks.schemas import validate_cds_response
    from fhir_mapping.knowledge import KnowledgeError, load_knowledge

    settings = _settings(args.config)
    expected = None
    now_text, hook = args.now, args.hook
    if args.expect:
        document = _read_json(args.expect)
        try:
            expected = expected_keys(document)
        except ReplayInputError as exc:
            raise CliError(f"{args.expect}: {exc}") from None
        # Fixtures carry their evaluation time and hook: the command line wins where it gives them.
        if now_text is None and isinstance(document.get("now"), str):
            now_text = document["now"]
        if hook is None and isinstance(document.get("hook"), str):
            hook = document["hook"]
    now = _parse_now(now_text)
    try:
        service = build_service(settings, load_knowledge(settings.knowledge_path), apply_deadline=False)
    except KnowledgeError as exc:
        raise CliError(f"invalid knowledge: {exc}") from None
    known_hooks = sorted({s.hook for s in service.catalog.services})
    if hook is not None and hook not in known_hooks:
        raise CliError(f"unknown hook {hook!r}; the hooks this service runs on: {', '.join(known_hooks)}")
    status = 0
    for file in args.files:
        try:
            call = build_call(_read_json(file), service.catalog, service_id=args.service, hook=hook)
            outcome = service.invoke(call.service_id, call.body, now=now)
        except (ReplayInputError, CdsHooksError) as exc:
            raise CliError(f"{file}: {exc}") from None
        validate_cds_response(outcome.response)
        if args.json:
            sys.stdout.write(orjson.dumps(outcome.response, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(f"# {file} ({call.service_id}, {outcome.request.hook})")
            print(table(outcome.response))
        if expected is not None:
            diff = compare(card_keys(outcome.response), expected)
            if diff:
                print(f"MISMATCH {file} against {args.expect}:", *diff, sep="\n")
                status = 1
            else:
                print(f"OK {file} matches {args.expect}")
    return status


def _check_config(args: argparse.Namespace) -> int:
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import KnowledgeError, check_knowledge, load_knowledge

    try:
        settings = _settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}")
        print(f"{len(exc.problems)} problem(s) found")
        return 1
    from backpain_cds.app import build_authenticator
    from cds_hooks.auth import InMemoryJtiStore

    problems = []
    try:
        authenticator = build_authenticator(settings, InMemoryJtiStore())
        if authenticator is not None:
            authenticator.close()
    except ConfigError as exc:
        problems += [f"config: {p}" for p in exc.problems]
    problems += [f"knowledge: {p}" for p in check_knowledge(settings.knowledge_path)]
    knowledge = None
    if not problems:
        try:
            knowledge = load_knowledge(settings.knowledge_path)
            load_service_catalog(knowledge)
        except KnowledgeError as exc:
            problems += [f"knowledge: {p}" for p in exc.problems]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 1
    mode = "development mode (unsigned calls, loopback only)" if settings.auth.development_mode else (
        f"{len(settings.auth.trusted_clients)} trusted client(s)"
    )
    from backpain_cds.app import shadow_warnings, snooze_warnings
    from backpain_cds.settings import config_warnings

    warnings = config_warnings(settings)
    if knowledge is not None:
        warnings += shadow_warnings(settings, knowledge) + snooze_warnings(settings, knowledge)
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"configuration and knowledge are valid; {mode}")
    return 0


def _read_json(path: str) -> t.Any:
    try:
        return orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON: {exc}") from None


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--now {value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise CliError("--now needs a time zone, e.g. 2025-03-01T09:00:00Z")
    return moment


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
