"""Parse FHIR ``date``, ``dateTime`` and ``instant`` strings into timezone-aware datetimes.

Partial dates (``2024``, ``2024-05``, ``2024-05-01``) give the start of that period, in the
zone :data:`assessment.facts.DATE_ONLY` (UTC, marked: the hour is unknown, so calendar days
count the day as written). A dateTime without a zone is taken as UTC (FHIR says the zone of a date is unknown; UTC is the service's
convention, see :mod:`assessment.facts`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from assessment.facts import DATE_ONLY

__all__ = ["parse_fhir_datetime"]

_UTC = UTC


def parse_fhir_datetime(value: object) -> datetime | None:
    """Return the aware datetime a FHIR date/dateTime/instant string denotes, or None.

    :param value: the raw JSON value; anything that is not a well-formed string gives None.
    """
    if not isinstance(value, str):
        return None
    n = len(value)
    try:
        if n == 4:
            return datetime(int(value), 1, 1, tzinfo=DATE_ONLY)
        if n == 7 and value[4] == "-":
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=DATE_ONLY)
        if n == 10 and value[4] == "-" and value[7] == "-":
            return datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), tzinfo=DATE_ONLY)
        if n < 16:
            return None
        # Python 3.11 fromisoformat reads "Z", offsets and any number of fraction digits.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)
    return parsed
