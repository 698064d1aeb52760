"""G-CSF windows: the periods after G-CSF exposure in which back pain is attributed to it.

Pure, like ``concepts``: facts + settings in, frozen windows out; a window ``[start, end]``
includes both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from assessment.config import ContextSettings
from assessment.facts import DrugClass, GcsfClass, MedicationFact, MedicationSource, PatientRecord
from assessment.rules.concepts import is_text_match, usable


@dataclass(frozen=True)
class GcsfWindow:
    """A period after G-CSF exposure in which back pain is attributed to it (ends included)."""

    start: datetime
    end: datetime
    doses: tuple[MedicationFact, ...]  #: one long-acting dose, or a daily course

    def contains(self, time: datetime) -> bool:
        """Return whether ``time`` falls in the window."""
        return self.start <= time <= self.end

    @property
    def label(self) -> str:
        """Return the product name for card texts."""
        return self.doses[0].label or "G-CSF"

    @property
    def refs(self) -> tuple[str, ...]:
        """Return the dose references."""
        return tuple(d.ref for d in self.doses)

    @property
    def low_confidence(self) -> bool:
        """Return whether any dose was recognised from text only."""
        return any(is_text_match(d) for d in self.doses)


def gcsf_windows(record: PatientRecord, settings: ContextSettings) -> tuple[GcsfWindow, ...]:
    """Build G-CSF windows from doses given or ordered (not drafts, not plans), by start time.

    Long-acting dose at D: [D, D + window]; an on-body injector applied at A delivers the dose
    at D = A + delay. Daily doses are grouped into courses (a gap longer than the course gap
    starts a new one): [first, last + tail]; an administration / statement with an effective
    period (``last_dose``) of a daily product is a dose on every day from start to end, a
    long-acting product one dose at the start. A window starts at its first dose, so a dose
    after the back-pain onset never explains that pain.
    A G-CSF fact with no class is treated as long-acting (the longer window).
    """
    gcsf = settings.gcsf
    doses = sorted(
        (
            (time, m)
            for m in record.medications
            if m.drug_class is DrugClass.GCSF and usable(m, settings) and (time := m.time) is not None
        ),
        key=lambda pair: pair[0],
    )
    doses = _without_recorded_twice(doses, gcsf.same_dose_within)
    windows: list[GcsfWindow] = []
    course: list[tuple[datetime, MedicationFact]] = []

    last_of_course: list[datetime] = []  # latest dose time of the open course

    def close_course() -> None:
        if course:
            end = last_of_course[0] + gcsf.daily_tail
            windows.append(GcsfWindow(course[0][0], end, tuple(d for _, d in course)))
            course.clear()
            last_of_course.clear()

    for time, dose in doses:
        if dose.gcsf_class is GcsfClass.DAILY:
            if course and time - last_of_course[0] > gcsf.daily_course_gap:
                close_course()
            course.append((time, dose))
            last = dose.last_dose if dose.last_dose is not None and dose.last_dose > time else time
            if not last_of_course:
                last_of_course.append(last)
            elif last > last_of_course[0]:
                last_of_course[0] = last
        else:
            start = time + gcsf.on_body_injector_delay if dose.on_body_injector else time
            windows.append(GcsfWindow(start, start + gcsf.long_acting_window, (dose,)))
    close_course()
    return tuple(sorted(windows, key=lambda w: w.start))


def _without_recorded_twice(
    doses: list[tuple[datetime, MedicationFact]], within: timedelta
) -> list[tuple[datetime, MedicationFact]]:
    """Drop long-acting G-CSF orders that are the same dose as an administration or statement
    within ``within`` of them (the order, then what was given: one dose, one window, and the
    card says "given"). Daily doses are grouped into courses anyway."""
    given = [
        t for t, m in doses
        if m.gcsf_class is not GcsfClass.DAILY and m.source is not MedicationSource.REQUEST
    ]
    return [
        (t, m) for t, m in doses
        if not (
            m.source is MedicationSource.REQUEST
            and m.gcsf_class is not GcsfClass.DAILY
            and any(abs(t - g) <= within for g in given)
        )
    ]


def window_at(windows: tuple[GcsfWindow, ...], time: datetime) -> GcsfWindow | None:
    """Return the latest-starting window containing ``time``, if any."""
    hits = [w for w in windows if w.contains(time)]
    return hits[-1] if hits else None


def longest_consecutive_run(windows: tuple[GcsfWindow, ...], times: list[datetime]) -> list[GcsfWindow]:
    """Return the longest run of consecutive windows (by start) that each hold one of ``times``."""
    best: list[GcsfWindow] = []
    run: list[GcsfWindow] = []
    for window in windows:
        if any(window.contains(t) for t in times):
            run.append(window)
            if len(run) > len(best):
                best = list(run)
        else:
            run = []
    return best
