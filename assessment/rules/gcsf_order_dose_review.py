"""``gcsf-order-dose-review``: a G-CSF order for a patient who had G-CSF bone pain before.

When: a draft G-CSF order (the selected drafts on order-select) and an earlier episode of back
or bone pain (any clinical status, or a back-pain score) whose time falls in a G-CSF window,
within the last 180 days.
Then: warning card: review the G-CSF dose, product or schedule; analgesic prophylaxis with
paracetamol, naproxen only when NSAIDs are safe (R4), loratadine.
"""

from __future__ import annotations

from assessment.facts import DrugClass
from assessment.findings import Reason
from assessment.rules import concepts, gcsf_windows, nsaid_safety
from assessment.rules.situation import FindingParts, OrderSituation, Outcome, build_finding

RULE_ID = "gcsf-order-dose-review"
NSAID_ACTIONS = frozenset({"naproxen"})


def evaluate(situation: OrderSituation) -> Outcome:
    """Fire on a draft G-CSF order after an earlier in-window pain episode."""
    settings = situation.config.rule(RULE_ID)
    drafts = tuple(d for d in situation.drafts if d.drug_class is DrugClass.GCSF)
    if not drafts:
        return Outcome(note=f"{RULE_ID}: no draft G-CSF order")
    lookback = settings.duration("episode_lookback")
    history = concepts.back_pain_history(situation.record, situation.now, lookback)
    episodes = [(t, ref, w) for t, ref in history if (w := gcsf_windows.window_at(situation.windows, t))]
    if not episodes:
        days = concepts.whole_days(lookback)
        return Outcome(note=f"{RULE_ID}: no back or bone pain inside a G-CSF window in the last {days} days")
    reasons = [Reason(f"Draft order: {d.label or 'G-CSF'}", d.ref) for d in drafts]
    for time, ref, window in episodes:
        text = (
            f"Back or bone pain on {concepts.day_text(time)}, inside the window of "
            f"{window.label} {window.doses[0].verb} on {concepts.day_text(window.start)}"
        )
        reasons += [Reason(text, ref), Reason(text, window.doses[0].ref)]
    last_time, _, last_window = episodes[-1]
    safety = situation.nsaid
    parts = FindingParts(
        evidence=tuple(d.ref for d in drafts)
        + tuple(ref for _, ref, _ in episodes)
        + tuple(ref for _, _, w in episodes for ref in w.refs),
        reasons_for=tuple(reasons),
        actions=tuple(a for a in settings.actions if safety.safe or a not in NSAID_ACTIONS),
        variables={
            "gcsf": drafts[0].label or "G-CSF",
            "previous_gcsf": last_window.label,
            "previous_verb": f"{last_window.doses[0].verb} on {concepts.day_text(last_window.start)}",
            "episode_date": concepts.day_text(last_time),
            "episode_count": str(len({w.start for _, _, w in episodes})),
            "nsaid_advice": nsaid_safety.nsaid_advice(safety, situation.config.texts),
        },
        nsaid=safety,
    )
    return Outcome(finding=build_finding(settings, situation.record, parts))
