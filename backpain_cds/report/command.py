"""``backpain-cds report``: the governance report over one window of the database.

DATE is ``YYYY-MM-DD`` (midnight UTC) or an RFC 3339 date-time with its offset; ``--since`` is
inclusive, ``--until`` exclusive; without them the window is the 30 days before now (an
``--until`` alone: the 30 days before it; a ``--since`` alone: from it to now). The database
must be at this release's schema revision (the same one-line refusal as ``serve``); the report
only reads, and never creates a database. The override reasons (their displays, which rule's card
offers which) come from the knowledge with the configuration's ``[knowledge] path`` overlay.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import typing as t
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from backpain_cds.report import queries
from backpain_cds.report.figures import OfferedReason, Report, Window, build_report

if t.TYPE_CHECKING:
    from fhir_mapping.knowledge import Knowledge

FORMATS = ("text", "json", "csv", "html")
DEFAULT_DAYS = 30
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


class ReportError(Exception):
    """A problem reported in one line on stderr, exit status 2 (as the CLI's other errors)."""


def register(sub: t.Any) -> None:
    """Add the ``report`` subcommand to the CLI's subparsers."""
    parser = sub.add_parser("report", help="governance report: per rule and per service, over a window")
    parser.add_argument("--config", help="TOML config file (default: $BACKPAIN_CDS_CONFIG)")
    parser.add_argument("--since", metavar="DATE", help="start, inclusive: YYYY-MM-DD (UTC) or RFC 3339 "
                                                        "(default: 30 days before --until)")
    parser.add_argument("--until", metavar="DATE", help="end, exclusive (default: now)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    parser.set_defaults(handler=run)


def parse_date(option: str, value: str) -> datetime:
    """A DATE of the command line, in UTC; ReportError naming the option otherwise."""
    text = value.strip()
    try:
        if _DATE.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        if _DATETIME.fullmatch(text):
            return datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        pass
    raise ReportError(f"{option} {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 date-time "
                   "(e.g. 2026-03-01T00:00:00Z)")


def window(since: str | None, until: str | None, now: datetime) -> Window:
    end = parse_date("--until", until) if until is not None else now.astimezone(UTC)
    start = parse_date("--since", since) if since is not None else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ReportError(f"--since ({start:%Y-%m-%dT%H:%M:%SZ}) must be before --until ({end:%Y-%m-%dT%H:%M:%SZ})")
    return Window(start, end)


def offered_reasons(knowledge: Knowledge) -> dict[str, tuple[OfferedReason, ...]]:
    """The override reasons each rule's card offers, from the knowledge (site overlay included)."""
    snoozing = knowledge.actions.snooze_periods
    return {rule: tuple(OfferedReason(c.code, c.display or c.code, c.code in snoozing.get(rule, {})) for c in codings)
            for rule, codings in knowledge.actions.override_reasons.items()}


@functools.cache
def _packaged_reasons() -> dict[str, tuple[OfferedReason, ...]]:
    from fhir_mapping.knowledge import load_knowledge

    return offered_reasons(load_knowledge())


def read_report(engine: sa.Engine, win: Window, *, generated_at: datetime | None = None,
                reasons: t.Mapping[str, t.Sequence[OfferedReason]] | None = None) -> Report:
    """The report's figures from the database (one read transaction). ``reasons``: the override
    reasons of each rule (:func:`offered_reasons`); by default the packaged knowledge's."""
    from assessment.config import RULE_IDS
    from fhir_mapping.suggestions import OVERRIDE_REASON_SYSTEM

    offered = _packaged_reasons() if reasons is None else reasons
    with engine.connect() as conn:
        return build_report(win, queries.cards(conn, win), queries.feedback_on_returned_cards(conn, win),
                            queries.calls(conn, win), queries.unmatched_feedback(conn, win),
                            known_rules=RULE_IDS, offered=offered, snoozes=queries.snoozes_started(conn, win),
                            reason_system=OVERRIDE_REASON_SYSTEM,
                            generated_at=generated_at)


def render(report: Report, fmt: str) -> str:
    from backpain_cds.report import render as formats

    if fmt == "html":
        from backpain_cds.report.html import render_html

        return render_html(report)
    return {"text": formats.render_text, "json": formats.render_json, "csv": formats.render_csv}[fmt](report)


def require_current_schema(engine: sa.Engine) -> None:
    """Refuse, as ``serve`` does (one line), a database not at this release's revision; never
    create one (a missing SQLite file is named, not made)."""
    from backpain_cds.schema import SchemaError, require_current_read_only

    try:
        require_current_read_only(engine)
    except SchemaError as exc:
        raise ReportError(str(exc)) from None


def run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    """The command; a bad date, database or output file: one line on stderr, exit 2."""
    try:
        return _run(args, now=now)
    except ReportError as exc:
        print(f"backpain-cds: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    from backpain_cds.settings import Settings
    from backpain_cds.storage import SqlStore, StorageError
    from fhir_mapping.knowledge import KnowledgeError, load_knowledge

    win = window(args.since, args.until, now or datetime.now(UTC))
    settings = Settings.load(args.config, environ=os.environ)
    try:  # the override reasons' displays, as the service offers them (before the database)
        reasons = offered_reasons(load_knowledge(settings.knowledge_path))
    except KnowledgeError as exc:
        raise ReportError(f"invalid knowledge: {exc}") from None
    try:
        store = SqlStore(settings.database_url)
    except StorageError as exc:
        raise ReportError(str(exc)) from None
    try:
        require_current_schema(store.engine)
        try:
            report = read_report(store.engine, win, reasons=reasons)
        except sa.exc.SQLAlchemyError as exc:
            raise ReportError(f"cannot read the database: {exc.__class__.__name__}") from None
    finally:
        store.engine.dispose()
    text = render(report, args.format)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"{args.output}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0
