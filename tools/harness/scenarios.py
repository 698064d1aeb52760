"""Synthetic patient records, built relative to a given 'now': the one builder the tests, the
benchmarks and ``tools/build_fixtures.py`` (the committed scenario fixtures) share.

:class:`SyntheticPatient` collects FHIR R4 resources for one patient, every id prefixed with
the patient id and every time given in days before ``now``. :func:`gcsf_bone_pain` and
:func:`mscc` are the two small records most tests start from.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from datetime import datetime, timedelta

Resource = dict[str, t.Any]

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

CHEMOTHERAPY = ("367336001", "Chemotherapy (procedure)")  #: SNOMED CT
LOW_BACK_PAIN = (ICD, "M54.50", "Low back pain, unspecified")
PAIN_SCORE = (LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")


def iso_at(moment: datetime) -> str:
    """``moment`` as FHIR dateTime: seconds precision, ``Z`` for UTC."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, t.Any]:
    out: dict[str, t.Any] = {"coding": [coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


class SyntheticPatient:
    """One synthetic patient: a Patient resource, then whatever the builder methods add.

    :param pid: the Patient id; every other resource id is ``<pid>-<rid>``
    :param now: the evaluation time; ``days_ago`` arguments count back from it
    :param tag: a ``meta.tag`` coding for the Patient (the committed fixtures carry one)
    :param named: give the Patient a name (``Fixture``, given name = pid)
    """

    def __init__(self, pid: str, now: datetime, *, tag: Mapping[str, str] | None = None, named: bool = False) -> None:
        self.pid = pid
        self.now = now
        patient: Resource = {"resourceType": "Patient", "id": pid}
        if tag is not None:
            patient["meta"] = {"tag": [tag]}
        if named:
            patient["name"] = [{"family": "Fixture", "given": [pid]}]
        patient.update({"gender": "female", "birthDate": "1961-04-02"})
        self.resources: list[Resource] = [patient]

    def ago(self, days: float) -> str:
        """The instant ``days`` days before ``now``, as FHIR dateTime."""
        return iso_at(self.now - timedelta(days=days))

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def add(self, resource: Resource) -> Resource:
        resource["id"] = f"{self.pid}-{resource['id']}"
        self.resources.append(resource)
        return resource

    # conditions ---------------------------------------------------------------------------
    def condition(self, rid: str, code: dict[str, t.Any], *, onset: float | None = None, recorded: float | None = None,
                  clinical: str | None = "active", verification: str | None = "confirmed",
                  body_site: dict[str, t.Any] | None = None) -> Resource:
        r: Resource = {"resourceType": "Condition", "id": rid}
        if clinical:
            r["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
        if verification:
            r["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
        r["code"] = code
        if body_site:
            r["bodySite"] = [body_site]
        r["subject"] = self.subject
        if onset is not None:
            r["onsetDateTime"] = self.ago(onset)
        if recorded is not None:
            r["recordedDate"] = self.ago(recorded)
        return self.add(r)

    def breast_cancer(self, *, text: str | None = "Right breast cancer", **kw: t.Any) -> Resource:
        code = concept(ICD, "C50.911", "Malignant neoplasm of unspecified site of right female breast", text)
        return self.condition("cancer", code, onset=kw.pop("onset", 150), **kw)

    def back_pain(self, onset: float, *, code: tuple[str, str, str] = LOW_BACK_PAIN,
                  rid: str = "backpain", text: str | None = None, **kw: t.Any) -> Resource:
        return self.condition(rid, concept(*code, text=text), onset=onset, recorded=kw.pop("recorded", onset), **kw)

    # procedures and medications -----------------------------------------------------------
    def chemo(self, days_ago: float, rid: str = "chemo", *, display: str = CHEMOTHERAPY[1]) -> Resource:
        return self.add({
            "resourceType": "Procedure", "id": rid, "status": "completed",
            "code": concept(SCT, CHEMOTHERAPY[0], display),
            "subject": self.subject, "performedDateTime": self.ago(days_ago),
        })

    def administration(self, rid: str, days_ago: float, medication: dict[str, t.Any], *, status: str = "completed",
                       contained: list[Resource] | None = None) -> Resource:
        r: Resource = {"resourceType": "MedicationAdministration", "id": rid}
        if contained:
            r["contained"] = contained
        r["status"] = status
        r.update(medication)
        r["subject"] = self.subject
        r["effectiveDateTime"] = self.ago(days_ago)
        return self.add(r)

    def peg(self, days_ago: float, rid: str = "peg", **kw: t.Any) -> Resource:
        med = {"medicationCodeableConcept": concept(RX, "727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe",
                                                    "Pegfilgrastim 6 mg subcutaneous")}
        return self.administration(rid, days_ago, med, **kw)

    def filgrastim(self, days_ago: float, rid: str) -> Resource:
        med = {"medicationCodeableConcept": concept(RX, "727535", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe",
                                                    "Filgrastim 300 micrograms subcutaneous")}
        return self.administration(rid, days_ago, med)

    def request(self, rid: str, medication: dict[str, t.Any], *, status: str = "active", intent: str = "order",
                authored: float | None = None, dosage: str | None = None) -> Resource:
        r: Resource = {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": intent}
        r.update(medication)
        r["subject"] = self.subject
        if authored is not None:
            r["authoredOn"] = self.ago(authored)
        if dosage:
            r["dosageInstruction"] = [{"text": dosage}]
        return self.add(r)

    def draft(self, rid: str, medication: dict[str, t.Any], dosage: str) -> Resource:
        return self.request(rid, medication, status="draft", authored=0, dosage=dosage)

    def draft_peg(self, rid: str = "draft-peg") -> Resource:
        med = {"medicationCodeableConcept": concept(RX, "727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe",
                                                    "Pegfilgrastim 6 mg subcutaneous")}
        return self.draft(rid, med, "6 mg subcutaneously once, 24 hours after chemotherapy")

    def draft_naproxen(self, rid: str = "draft-naproxen") -> Resource:
        return self.draft(rid, {"medicationCodeableConcept": {"text": "Naproxen 500 mg oral tablet"}},
                          "500 mg by mouth twice a day with food")

    def apixaban(self, *, status: str = "active", authored: float = 30) -> Resource:
        med = {"medicationCodeableConcept": concept(RX, "1364445", "apixaban 5 MG Oral Tablet", "Apixaban 5 mg tablet")}
        return self.request("apixaban", med, status=status, authored=authored, dosage="5 mg by mouth twice a day")

    # observations ---------------------------------------------------------------------------
    def observation(self, rid: str, code: dict[str, t.Any], days_ago: float, *, category: str | None = None,
                    status: str = "final", value: dict[str, t.Any] | None = None,
                    body_site: dict[str, t.Any] | None = None) -> Resource:
        r: Resource = {"resourceType": "Observation", "id": rid, "status": status}
        if category:
            r["category"] = [{"coding": [{"system": OBS_CATEGORY, "code": category}]}]
        r["code"] = code
        r["subject"] = self.subject
        r["effectiveDateTime"] = self.ago(days_ago)
        if value:
            r.update(value)
        if body_site:
            r["bodySite"] = body_site
        return self.add(r)

    def note(self, rid: str, text: str, days_ago: float = 0.5, code: str = "Nursing note") -> Resource:
        """A free-text exam Observation (``code.text`` = ``code``, ``valueString`` = ``text``)."""
        return self.observation(rid, {"text": code}, days_ago, category="exam", value={"valueString": text})

    def score(self, days_ago: float, score: int, rid: str | None = None, *, body_site: dict[str, t.Any] | None = None) -> Resource:
        value = {"valueQuantity": {"value": score, "unit": "{score}", "system": UCUM, "code": "{score}"}}
        return self.observation(rid or f"pain-{days_ago:g}d", concept(*PAIN_SCORE), days_ago, category="survey",
                                value=value, body_site=body_site)

    def platelets(self, value: float, days_ago: float = 1, unit: str = "10*3/uL") -> Resource:
        code = concept(LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count")
        return self.observation("platelets", code, days_ago, category="laboratory",
                                value={"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}})

    def egfr(self, value: float, days_ago: float = 1) -> Resource:
        code = concept(LOINC, "98979-8", "GFR/1.73 sq M.predicted by Creatinine-based formula (CKD-EPI 2021)")
        unit = "mL/min/{1.73_m2}"
        return self.observation("egfr", code, days_ago, category="laboratory",
                                value={"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}})

    def safe_labs(self) -> None:
        self.platelets(210)
        self.egfr(88)


# -- the small records most tests start from ---------------------------------------------------


def patient(pid: str) -> Resource:
    return SyntheticPatient(pid, datetime.min).resources[0]


def _gcsf_bone_pain(p: SyntheticPatient, score: int) -> SyntheticPatient:
    p.breast_cancer(text=None, onset=120)
    p.chemo(4, display="Chemotherapy")
    p.administration("peg", 3, {"medicationCodeableConcept": concept(RX, "338036", "pegfilgrastim", "pegfilgrastim 6 mg")})
    p.back_pain(2, verification=None)
    p.observation("pain", concept(*PAIN_SCORE), 1, category="survey", value={"valueInteger": score})
    return p


def gcsf_bone_pain(pid: str, now: datetime, *, score: int = 5) -> list[Resource]:
    """Breast cancer, chemotherapy 4 days ago, pegfilgrastim 3 days ago, low back pain 2 days ago."""
    return _gcsf_bone_pain(SyntheticPatient(pid, now), score).resources


def mscc(pid: str, now: datetime) -> list[Resource]:
    """The G-CSF scenario plus urinary retention yesterday: a red flag."""
    p = _gcsf_bone_pain(SyntheticPatient(pid, now), 5)
    p.condition("retention", concept(SCT, "267064002", "Retention of urine"), onset=1, verification=None)
    return p.resources


# -- bundles ----------------------------------------------------------------------------------


def transaction(resources: list[Resource], *, tag: Mapping[str, str] | None = None,
                urn_full_urls: bool = True) -> Resource:
    """A transaction Bundle that PUTs each resource under its id.

    ``fullUrl`` is ``urn:uuid:<type>-<id>`` by default, or ``<type>/<id>`` (the committed
    fixtures); ``tag`` becomes the Bundle's ``meta.tag``.
    """
    bundle: Resource = {"resourceType": "Bundle"}
    if tag is not None:
        bundle["meta"] = {"tag": [tag]}
    bundle["type"] = "transaction"
    bundle["entry"] = [
        {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}" if urn_full_urls else f"{r['resourceType']}/{r['id']}",
         "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    return bundle


def collection(resources: list[Resource]) -> Resource:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
