"""``backpain-cds audit`` and ``backpain-cds purge`` (README "Audit and retention").

Both read the database URL like the other commands (``--config``, ``$BACKPAIN_CDS_CONFIG``,
``$BACKPAIN_CDS_DATABASE_URL``) and refuse a database not at this release's schema revision
with the line ``serve`` uses; neither creates a database (a SQLite file that is not there is
``no database at <path>: ...``). A problem is one line on stderr, exit status 2. Nothing
here logs: the audit's output holds patient ids and goes to stdout only.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing as t
from datetime import UTC, date, datetime

from backpain_cds.settings import Settings

if t.TYPE_CHECKING:
    import sqlalchemy as sa

# The database modules (SQLAlchemy, Alembic) are imported when a command runs, not when the
# command line is parsed: every other command stays as quick to start as before.

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")

AUDIT_HELP = """\
One row per card the service produced (delivered, shadow or suppressed) with the feedback
stored on it, ordered by time then card uuid. The output contains patient ids: it is the audit.
Treat it as patient data (it is printed to stdout only, never logged). Feedback on cards never
issued or never shown is kept apart in feedback_unmatched: counted in the text summary, never
listed. DATE: YYYY-MM-DD (midnight UTC) or an RFC 3339 date-time with a zone, e.g.
2026-03-01T09:00:00Z."""

PURGE_HELP = """\
Delete what is older than [retention] days (default 365): card audit rows with the feedback on
them (a card is kept while an unexpired snooze refers to it or feedback on it is within
retention), unmatched feedback, the call log, expired snoozes created before the cut-off, every
expired JWT id, expired SMART sessions and launch states. One transaction; prints the rows per
table."""


class CommandError(Exception):
    """A problem to report in one line (exit status 2)."""


def register(sub: t.Any) -> None:
    """Add ``audit`` and ``purge`` to the ``backpain-cds`` subcommands."""
    audit = sub.add_parser("audit", help="print the card audit with its feedback (contains patient ids)",
                           description=AUDIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("--config")
    audit.add_argument("--patient", metavar="ID", help="only this patient id")
    audit.add_argument("--rule", metavar="R", help="only this rule id (one of the engine's, or one found in "
                                                   "the audit)")
    audit.add_argument("--since", metavar="DATE", help="cards produced at or after DATE")
    audit.add_argument("--until", metavar="DATE", help="cards produced before DATE")
    audit.add_argument("--format", choices=("text", "json", "csv"), default="text",
                       help="text: an aligned table and a summary line (default); json: an array; csv")
    audit.set_defaults(handler=_one_line_errors(_audit))

    purge = sub.add_parser("purge", help="delete audit, feedback and call-log rows past [retention] days",
                           description=PURGE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    purge.add_argument("--config")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    purge.set_defaults(handler=_one_line_errors(_purge))


def _one_line_errors(handler: t.Callable[[argparse.Namespace], int]) -> t.Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        from backpain_cds.storage import StorageError

        try:
            return handler(args)
        except (CommandError, StorageError) as exc:  # SchemaError is a StorageError
            print(f"backpain-cds: error: {exc}", file=sys.stderr)
            return 2
        except sa.exc.SQLAlchemyError as exc:
            print(f"backpain-cds: error: the database failed: {exc.__class__.__name__}", file=sys.stderr)
            return 2

    return run


def _audit(args: argparse.Namespace) -> int:
    from assessment.config import RULE_IDS
    from backpain_cds import audit_log

    since, until = parse_date(args.since, "--since"), parse_date(args.until, "--until")
    if since is not None and until is not None and since >= until:
        raise CommandError("--since must be before --until")
    where = audit_log.AuditFilter(patient_id=args.patient, rule_id=args.rule, since=since, until=until)
    engine = _open(Settings.load(args.config, environ=os.environ))
    try:
        # a mistyped rule id is named, not answered with an empty audit
        if args.rule is not None and args.rule not in RULE_IDS and not audit_log.rule_is_audited(engine, args.rule):
            raise CommandError(f"unknown rule id {args.rule!r} (known: {', '.join(sorted(RULE_IDS))})")
        rows = audit_log.read_audit(engine, where)
        if args.format == "json":
            audit_log.write_json(rows, sys.stdout)
        elif args.format == "csv":
            audit_log.write_csv(rows, sys.stdout)
        else:
            audit_log.write_text(rows, audit_log.count_unmatched(engine, where), sys.stdout)
    finally:
        engine.dispose()
    return 0


def _purge(args: argparse.Namespace) -> int:
    from backpain_cds import audit_log, retention

    settings = Settings.load(args.config, environ=os.environ)
    engine = _open(settings)
    try:
        result = retention.purge(engine, days=settings.retention.days, now=now(), dry_run=args.dry_run)
    finally:
        engine.dispose()
    what = "dry run, nothing deleted; rows it would delete" if result.dry_run else "rows deleted"
    print(f"retention {settings.retention.days} days, cut-off {audit_log.rfc3339(result.cutoff)}; {what}:")
    for name, count in result.counts.items():
        print(f"  {name:<20}{count:>8}")
    print(f"  {'total':<20}{result.total:>8}")
    if result.kept_cards:
        print(f"kept past the cut-off: {result.kept_cards} card_audit row(s) that an unexpired snooze or "
              "feedback within retention refers to")
    return 0


def now() -> datetime:
    """The purge's clock (tests replace it)."""
    return datetime.now(UTC).replace(microsecond=0)


def parse_date(value: str | None, option: str) -> datetime | None:
    """YYYY-MM-DD (midnight UTC) or an RFC 3339 date-time with a zone, as an aware datetime."""
    if value is None:
        return None
    try:
        if _DATE.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        if _DATE_TIME.fullmatch(value):
            return datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        pass
    raise CommandError(f"{option} {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 date-time with a zone "
                       "(e.g. 2026-03-01T09:00:00Z)")


def _open(settings: Settings) -> sa.Engine:
    """The database's engine, once its schema is this release's; never creates a database."""
    from backpain_cds.schema import require_current_read_only
    from backpain_cds.storage import SqlStore

    engine = SqlStore(settings.database_url).engine
    try:
        require_current_read_only(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
