"""Card suggestions as FHIR R4 resources, built from ``knowledge/actions.toml``.

The catalogue is parsed and every action is test-built and validated with the
``fhir.resources.R4B`` models once, at start-up; building a suggestion on the hook path is
then plain dict assembly.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timedelta

OVERRIDE_REASON_SYSTEM = "https://backpain-cds.org/fhir/CodeSystem/override-reason"
_RESOURCE_TYPES = ("ServiceRequest", "MedicationRequest")
_KINDS = ("imaging", "nsaid", "other", "remove-draft")
#: kinds whose suggestion deletes the card's draft orders instead of creating a resource
DELETE_KINDS = frozenset({"remove-draft"})
_PRIORITIES = ("routine", "urgent", "asap", "stat")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1)}
_MAX_REASON_REFS = 10


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def to_json(self) -> dict[str, str]:
        data = {"system": self.system, "code": self.code}
        if self.display:
            data["display"] = self.display
        return data


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One suggestion the cards may offer."""

    key: str
    label: str
    description: str
    resource_type: str
    kind: str
    is_recommended: bool
    code_text: str
    codings: tuple[Coding, ...] = ()
    priority: str | None = None
    within: timedelta | None = None
    dosage_text: str | None = None
    within_unit: str | None = None  #: the configured unit of ``within`` ("h" or "d")

    @property
    def within_quantity(self) -> tuple[float, str] | None:
        """``within`` as configured (value, unit), for card texts' {action_within_*}."""
        if self.within is None or self.within_unit is None:
            return None
        return self.within / _UNITS[self.within_unit], self.within_unit


@dataclass(frozen=True)
class ActionCatalog:
    """All actions plus the override reasons each rule's card offers."""

    version: str
    actions: t.Mapping[str, ActionSpec]
    override_reasons: t.Mapping[str, tuple[Coding, ...]]  #: rule id -> reasons, in order
    imaging_category: Coding | None = None
    imaging_body_site: Coding | None = None
    #: rule id -> override reason code -> how long an override with it snoozes the rule for
    #: the patient (``snooze_days`` on the reason; README "Snooze and de-duplication")
    snooze_periods: t.Mapping[str, t.Mapping[str, timedelta]] = field(default_factory=dict)

    def build_resource(
        self, key: str, *, patient_id: str, now: datetime, reason_refs: t.Sequence[str] = ()
    ) -> dict[str, t.Any]:
        """The FHIR R4 resource that accepting suggestion ``key`` creates (a draft order)."""
        spec = self.actions[key]
        resource: dict[str, t.Any] = {
            "resourceType": spec.resource_type,
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": _iso(now),
        }
        code: dict[str, t.Any] = {"text": spec.code_text}
        if spec.codings:
            code["coding"] = [c.to_json() for c in spec.codings]
        if spec.priority:
            resource["priority"] = spec.priority
        refs = [{"reference": r} for r in reason_refs[:_MAX_REASON_REFS]]
        if spec.resource_type == "ServiceRequest":
            resource["code"] = code
            if spec.kind == "imaging":
                if self.imaging_category:
                    resource["category"] = [{"coding": [self.imaging_category.to_json()]}]
                if self.imaging_body_site:
                    resource["bodySite"] = [{"coding": [self.imaging_body_site.to_json()]}]
            if spec.within is not None:
                resource["occurrencePeriod"] = {"start": _iso(now), "end": _iso(now + spec.within)}
            if refs:
                resource["reasonReference"] = refs
        else:
            resource["medicationCodeableConcept"] = code
            if spec.dosage_text:
                resource["dosageInstruction"] = [{"text": spec.dosage_text}]
            if refs:
                resource["reasonReference"] = refs
        return resource


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_action_catalog(data: t.Mapping[str, t.Any]) -> tuple[ActionCatalog, list[str]]:
    """Parse actions.toml; return the catalogue and every problem found (empty when valid)."""
    problems: list[str] = []
    actions: dict[str, ActionSpec] = {}
    raw_actions = data.get("actions", {})
    if not isinstance(raw_actions, dict) or not raw_actions:
        problems.append("actions.toml: [actions] must define at least one action")
        raw_actions = {}
    for key, raw in raw_actions.items():
        spec = _parse_action(key, raw, problems)
        if spec is not None:
            actions[key] = spec
    reasons = _override_reasons(data.get("override_reasons"), problems)
    snoozes = _snooze_periods(data.get("override_reasons"), problems)
    defaults = data.get("imaging_defaults", {})
    catalog = ActionCatalog(
        version=str(data.get("version", "")),
        actions=actions,
        override_reasons=reasons,
        imaging_category=_coding(defaults.get("category"), "imaging_defaults.category", problems),
        imaging_body_site=_coding(defaults.get("body_site"), "imaging_defaults.body_site", problems),
        snooze_periods=snoozes,
    )
    problems.extend(_validate_built_resources(catalog))
    return catalog, problems


def _override_reasons(raw: t.Any, problems: list[str]) -> dict[str, tuple[Coding, ...]]:
    """``[[override_reasons.<rule-id>]]`` tables: every rule needs its own reasons."""
    from assessment.config import RULE_IDS

    if not isinstance(raw, dict):
        problems.append("actions.toml: [override_reasons.<rule-id>] lists are required for every rule")
        return {}
    out: dict[str, tuple[Coding, ...]] = {}
    for rule_id, rows in raw.items():
        if rule_id not in RULE_IDS:
            problems.append(f"actions.toml: override_reasons.{rule_id}: unknown rule id")
            continue
        reasons = []
        for i, row in enumerate(rows if isinstance(rows, list) else []):
            where = f"actions.toml: override_reasons.{rule_id}[{i}]"
            if not isinstance(row, dict) or not row.get("code") or not row.get("display"):
                problems.append(f"{where} needs code and display (CDS Hooks requires display)")
                continue
            if len(row["display"]) > 80:
                problems.append(f"{where}.display is longer than 80 characters")
            reasons.append(Coding(row.get("system", OVERRIDE_REASON_SYSTEM), row["code"], row["display"]))
        out[rule_id] = tuple(reasons)
    for rule_id in RULE_IDS:
        if not out.get(rule_id):
            problems.append(f"actions.toml: override_reasons.{rule_id} needs at least one reason")
    return out


#: the longest snooze a reason may ask for: beyond it a snooze outlives any chemotherapy cycle
MAX_SNOOZE_DAYS = 42


def _snooze_periods(raw: t.Any, problems: list[str]) -> dict[str, dict[str, timedelta]]:
    """``snooze_days`` on an override reason: overriding the card with it snoozes the rule."""
    out: dict[str, dict[str, timedelta]] = {}
    if not isinstance(raw, dict):
        return out
    for rule_id, rows in raw.items():
        for i, row in enumerate(rows if isinstance(rows, list) else []):
            if not isinstance(row, dict) or "snooze_days" not in row:
                continue
            days = row["snooze_days"]
            if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_SNOOZE_DAYS:
                problems.append(f"actions.toml: override_reasons.{rule_id}[{i}].snooze_days must be a number "
                                f"of days above 0 and at most {MAX_SNOOZE_DAYS}")
                continue
            if row.get("code"):
                out.setdefault(rule_id, {})[str(row["code"])] = timedelta(days=days)
    return out


def _fill_within(text: str, fields: t.Mapping[str, str], where: str, problems: list[str]) -> str:
    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            problems.append(f"{where}: unknown placeholder {{{name}}} (use within_hours or within_days)")
            return match.group(0)
        return fields[name]

    return re.sub(r"\{([^{}]*)\}", field, text)


def _parse_action(key: str, raw: t.Any, problems: list[str]) -> ActionSpec | None:
    where = f"actions.toml: actions.{key}"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a table")
        return None
    if raw.get("kind") in DELETE_KINDS:
        missing = [f for f in ("label", "description") if not raw.get(f)]
        if missing:
            problems.append(f"{where} is missing {', '.join(missing)}")
            return None
        return ActionSpec(
            key=key, label=raw["label"], description=raw["description"], resource_type="",
            kind=raw["kind"], is_recommended=bool(raw.get("is_recommended", True)), code_text="",
        )
    missing = [f for f in ("label", "description", "resource_type", "kind", "code") if f not in raw]
    if missing:
        problems.append(f"{where} is missing {', '.join(missing)}")
        return None
    if raw["resource_type"] not in _RESOURCE_TYPES:
        problems.append(f"{where}.resource_type must be one of {', '.join(_RESOURCE_TYPES)}")
    if raw["kind"] not in _KINDS:
        problems.append(f"{where}.kind must be one of {', '.join(_KINDS)}")
    priority = raw.get("priority")
    if priority is not None and priority not in _PRIORITIES:
        problems.append(f"{where}.priority must be one of {', '.join(_PRIORITIES)}")
    within = None
    if "within" in raw:
        w = raw["within"]
        if not isinstance(w, dict) or w.get("unit") not in _UNITS or not isinstance(w.get("value"), int) or w["value"] <= 0:
            problems.append(f"{where}.within must be {{ value = <positive integer>, unit = \"h\" | \"d\" }}")
        else:
            within = _UNITS[w["unit"]] * w["value"]
    code = raw["code"]
    codings: list[Coding] = []
    if not isinstance(code, dict) or not code.get("text"):
        problems.append(f"{where}.code needs a text")
        code = {"text": ""}
    for i, c in enumerate(code.get("coding", [])):
        coding = _coding(c, f"actions.{key}.code.coding[{i}]", problems)
        if coding:
            codings.append(coding)
    label, description = raw["label"], raw["description"]
    if "within" in raw and within is not None:
        # the deadline stated in the label and description is the configured one: {within_hours}
        # / {within_days}; a literal copy of it is refused (an overlay would make it lie)
        value, unit = raw["within"]["value"], raw["within"]["unit"]
        hours, days = within / timedelta(hours=1), within / timedelta(days=1)
        fields = {"within_hours": f"{hours:g}", "within_days": f"{days:g}"}
        for name, text in (("label", label), ("description", description)):
            prose = re.sub(r"\{[^{}]*\}", " ", text)
            if re.search(rf"(?<![\w.]){value}(?![\w.])", prose):
                problems.append(
                    f"{where}.{name}: literal number {value} equals within ({value} {unit}); "
                    "write {within_hours} or {within_days}"
                )
        label, description = (_fill_within(text, fields, f"{where}", problems) for text in (label, description))
    if len(label) > 200:
        problems.append(f"{where}.label is longer than 200 characters")
    return ActionSpec(
        key=key,
        label=label,
        description=description,
        resource_type=raw["resource_type"],
        kind=raw["kind"],
        is_recommended=bool(raw.get("is_recommended", False)),
        code_text=code.get("text", ""),
        codings=tuple(codings),
        priority=priority,
        within=within,
        dosage_text=raw.get("dosage_text"),
        within_unit=raw["within"]["unit"] if within is not None else None,
    )


def _coding(raw: t.Any, where: str, problems: list[str]) -> Coding | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("system") or not raw.get("code"):
        problems.append(f"actions.toml: {where} needs system and code")
        return None
    return Coding(raw["system"], raw["code"], raw.get("display"))


def _validate_built_resources(catalog: ActionCatalog) -> list[str]:
    """Build every action once and validate it with the FHIR R4B models."""
    from datetime import UTC

    from fhir.resources.R4B import get_fhir_model_class

    problems = []
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for key, spec in catalog.actions.items():
        if spec.kind in DELETE_KINDS:
            continue
        resource = catalog.build_resource(
            key, patient_id="example", now=now, reason_refs=["Condition/example"]
        )
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as exc:  # pydantic's ValidationError; report, never crash start-up
            problems.append(f"actions.toml: actions.{key} does not build a valid FHIR R4 resource: {exc}")
    return problems
