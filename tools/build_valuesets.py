"""Rebuild knowledge/valuesets/*.json from the VSAC expansions and CLINICAL.md's verified rows.

Run from the repository root: ``python tools/build_valuesets.py [VSAC_DIR]`` (default
``../shared/data/vsac``). The output is committed; this script documents the derivation
(knowledge/README.md explains every filter) and lets a reviewer regenerate it.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VSAC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "vsac"
OUT = ROOT / "knowledge" / "valuesets"
BASE = "https://backpain-cds.org/fhir/ValueSet/"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
SRC_EXT = "https://backpain-cds.org/fhir/StructureDefinition/source-valueset"
VER_EXT = "https://backpain-cds.org/fhir/StructureDefinition/verification-status"
VERSION = "1.0.0"
DATE = "2025-01-15"

def vsac(name):
    d = json.loads((VSAC / name).read_text())
    return d, d["expansion"]["contains"]

def c(system, code, display, status):
    return {"system": system, "code": code, "display": display, "status": status}

def from_vsac(name, keep=lambda x: True):
    d, rows = vsac(name)
    src = f"{d['url']}|{d['version']}"
    out = [c(r["system"], r["code"], r.get("display") or "", "VSAC") for r in rows if keep(r)]
    return out, (src, d["title"])

def build(vid, title, purpose, concepts, sources=(), clinical_ref=""):
    # merge by (system, code), keep first
    seen, merged = set(), []
    for x in concepts:
        k = (x["system"], x["code"])
        if k in seen:
            continue
        seen.add(k); merged.append(x)
    includes = {}
    for x in merged:
        includes.setdefault(x["system"], []).append(x)
    desc = [f"backpain-cds value set `{vid}`."]
    if clinical_ref:
        desc.append(f"Hand-picked rows: CLINICAL.md {clinical_ref} (only VERIFIED-A/B rows).")
    for url, t in sources:
        desc.append(f"Derived from VSAC '{t}' {url} (expansion as published with cqframework/ecqm-content-qicore-2024).")
    res = {
        "resourceType": "ValueSet",
        "id": vid,
        "url": BASE + vid,
        "version": VERSION,
        "name": "".join(p.capitalize() for p in re.split(r"[-]", vid)),
        "title": title,
        "status": "active",
        "experimental": False,
        "date": DATE,
        "publisher": "backpain-cds project",
        "description": " ".join(desc),
        "purpose": purpose,
    }
    if sources:
        res["extension"] = [{"url": SRC_EXT, "valueCanonical": u} for u, _ in sources]
    res["compose"] = {"include": []}
    for system, rows in includes.items():
        inc = {"system": system, "concept": []}
        for r in rows:
            con = {"code": r["code"]}
            if r["display"]:
                con["display"] = r["display"]
            if r["status"] != "VSAC":
                con["extension"] = [{"url": VER_EXT, "valueCode": r["status"]}]
            inc["concept"].append(con)
        res["compose"]["include"].append(inc)
    (OUT / f"{vid}.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print(vid, len(merged))

A, B = "VERIFIED-A", "VERIFIED-B"

# --- G-CSF long-acting ------------------------------------------------------------------
la = [c(RX, "338036", "pegfilgrastim", A), c(RX, "350977", "pegfilgrastim 10 MG/ML", A),
      c(RX, "1161380", "pegfilgrastim Injectable Product", A), c(RX, "2048018", "pegfilgrastim-jmdb", B),
      c(RX, "2469333", "pegfilgrastim-apgf", B)]
for code, disp in [("727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe"), ("727542", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe [Neulasta]"),
                   ("2549331", "0.6 ML pegfilgrastim 10 MG/ML Injection"), ("2549333", "0.6 ML pegfilgrastim 10 MG/ML Injection"),
                   ("2048020", "0.6 ML pegfilgrastim-jmdb 10 MG/ML Prefilled Syringe"), ("2048025", "0.6 ML pegfilgrastim-jmdb 10 MG/ML Prefilled Syringe [Fulphila]"),
                   ("2102703", "0.6 ML pegfilgrastim-cbqv 10 MG/ML Prefilled Syringe"), ("2102705", "0.6 ML pegfilgrastim-cbqv 10 MG/ML Prefilled Syringe [Udenyca]"),
                   ("2260704", "0.6 ML pegfilgrastim-bmez 10 MG/ML Prefilled Syringe"), ("2260709", "0.6 ML pegfilgrastim-bmez 10 MG/ML Prefilled Syringe [Ziextenzo]"),
                   ("2469335", "0.6 ML pegfilgrastim-apgf 10 MG/ML Prefilled Syringe"), ("2469340", "0.6 ML pegfilgrastim-apgf 10 MG/ML Prefilled Syringe [Nyvepria]")]:
    la.append(c(RX, code, disp, B))
la += [c(ATC, "L03AA13", "pegfilgrastim", A), c(ATC, "L03AA14", "lipegfilgrastim", A),
       c(ATC, "L03AA17", "pegteograstim", B), c(ATC, "L03AA18", "efbemalenograstim alfa", B),
       c(ATC, "L03AA19", "eflapegrastim", B),
       c(SCT, "385544005", "Pegfilgrastim (substance)", A),
       c(HCPCS, "J2506", "Injection, pegfilgrastim, excludes biosimilar, 0.5 mg", B)]
build("gcsf-long-acting", "G-CSF, long-acting (once per cycle)",
      "Recognise long-acting (pegylated, once-per-cycle) G-CSF in medication resources; sets the D..D+7 attribution window.",
      la, clinical_ref="§1.2, §1.3, §1.5, §1.6, §1.7")

# --- G-CSF daily ------------------------------------------------------------------------
da = [c(RX, "68442", "filgrastim", B), c(RX, "1605064", "filgrastim-sndz", A), c(RX, "69634", "sargramostim", B)]
for code, disp in [("727535", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe"), ("727537", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe"),
                   ("727544", "0.8 ML filgrastim 0.6 MG/ML Prefilled Syringe"), ("727545", "0.8 ML filgrastim 0.6 MG/ML Prefilled Syringe"),
                   ("1649944", "1 ML filgrastim 0.3 MG/ML Injection"), ("1649946", "1 ML filgrastim 0.3 MG/ML Injection [Neupogen]"),
                   ("1649963", "1.6 ML filgrastim 0.3 MG/ML Injection"), ("1649964", "1.6 ML filgrastim 0.3 MG/ML Injection [Neupogen]"),
                   ("1605066", "0.5 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe"), ("1605071", "0.5 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe [Zarxio]"),
                   ("1605074", "0.8 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe"), ("1605075", "0.8 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe [Zarxio]"),
                   ("2057200", "0.5 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe"), ("2057205", "0.5 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe [Nivestym]"),
                   ("2057215", "0.8 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe"), ("2057216", "0.8 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe [Nivestym]"),
                   ("2057209", "1 ML filgrastim-aafi 0.3 MG/ML Injection"), ("2057212", "1 ML filgrastim-aafi 0.3 MG/ML Injection [Nivestym]"),
                   ("2057218", "1.6 ML filgrastim-aafi 0.3 MG/ML Injection"), ("2595961", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe [Releuko]"),
                   ("1433768", "0.5 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe"), ("1442681", "0.5 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe [Granix]"),
                   ("1433771", "0.8 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe"), ("1442683", "0.8 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe [Granix]"),
                   ("2101456", "1 ML tbo-filgrastim 0.3 MG/ML Injection"), ("2101459", "1 ML tbo-filgrastim 0.3 MG/ML Injection [Granix]"),
                   ("312903", "sargramostim 0.5 MG/ML Injectable Solution")]:
    da.append(c(RX, code, disp, B))
da += [c(ATC, "L03AA02", "filgrastim", A), c(ATC, "L03AA03", "molgramostim", A),
       c(ATC, "L03AA09", "sargramostim", B), c(ATC, "L03AA10", "lenograstim", A),
       c(SCT, "386948008", "Filgrastim (substance)", B), c(SCT, "108967001", "Sargramostim (substance)", B),
       c(HCPCS, "J1442", "Injection, filgrastim (G-CSF), excludes biosimilars, 1 mcg", B),
       c(HCPCS, "J1447", "Injection, tbo-filgrastim, 1 mcg", B)]
build("gcsf-daily", "G-CSF / GM-CSF, daily (short-acting)",
      "Recognise daily (short-acting) G-CSF / GM-CSF in medication resources; sets the first-dose..last-dose+3 days attribution window.",
      da, clinical_ref="§1.2, §1.3, §1.5, §1.6, §1.7")

# --- chemotherapy ------------------------------------------------------------------------
rows, src = from_vsac("chemotherapy-administration.json")
if not any(r["code"] == "367336001" for r in rows):
    rows.append(c(SCT, "367336001", "Chemotherapy (procedure)", A))
build("chemotherapy-procedures", "Chemotherapy administration (procedures)",
      "Chemotherapy evidence from Procedure resources (oncology context, last 90 days).", rows, [src], "§4 (367336001)")
rows, src = from_vsac("chemotherapy-agents-for-advanced-cancer.json")
build("chemotherapy-medications", "Chemotherapy agents (RxNorm products)",
      "Chemotherapy evidence from medication resources; partial list, complemented by the ATC L01 prefix rule in matching.toml.",
      rows, [src])

# --- cancer --------------------------------------------------------------------------------
NONMALIGNANT = re.compile(r"benign|uncertain|unknown behavio|in situ", re.I)
rows, src = from_vsac("cancer.json", keep=lambda r: not (r["system"] == ICD and not r["code"].startswith("C"))
                      and not NONMALIGNANT.search(r.get("display") or ""))
build("cancer-malignant", "Malignant cancer (conditions)",
      "Oncology context: malignant neoplasm conditions (primary or secondary). VSAC Cancer minus ICD-10-CM D codes and "
      "SNOMED concepts whose display says benign, in situ or uncertain/unknown behaviour; ICD-10-CM C00-C96 is also a prefix rule in matching.toml.",
      rows, [src], "operational definitions (oncology context)")

# --- bone metastasis -----------------------------------------------------------------------
build("bone-metastasis", "Bone / spinal metastasis",
      "Known bone or spinal metastasis: a progressive feature of back pain in oncology patients.",
      [c(SCT, "94222008", "Secondary malignant neoplasm of bone (disorder)", A),
       c(SCT, "94217008", "Secondary malignant neoplasm of bone marrow", B),
       c(ICD, "C79.51", "Secondary malignant neoplasm of bone", A),
       c(ICD, "C79.52", "Secondary malignant neoplasm of bone marrow", A),
       c(ICD, "C7B.03", "Secondary carcinoid tumors of bone", A)], clinical_ref="§3.2")

# --- back pain -----------------------------------------------------------------------------
_, prow = vsac("pain-warranting-further-investigation-prostate-cancer.json")
psrc = None
d = json.loads((VSAC / "pain-warranting-further-investigation-prostate-cancer.json").read_text())
psrc = (f"{d['url']}|{d['version']}", d["title"])
pv = {(r["system"], r["code"]): r["display"] for r in prow}
def p(system, code):
    return c(system, code, pv[(system, code)], "VSAC")
thor = [p(ICD, "M54.6"), p(SCT, "267981009"), c(SCT, "136791000119103", "Chronic thoracic back pain", B)]
cerv = [c(ICD, "M54.2", "Cervicalgia", B)]
lumb = [c(ICD, "M54.50", "Low back pain, unspecified", B), c(ICD, "M54.51", "Vertebrogenic low back pain", B),
        c(ICD, "M54.59", "Other low back pain", B), c(ICD, "M54.5", "Low back pain (legacy code, invalid from 2021-10-01)", B),
        c(SCT, "279039007", "Low back pain (finding)", B), c(SCT, "278860009", "Chronic low back pain (finding)", B)]
other = [c(SCT, "161891005", "Backache (finding)", B), p(SCT, "48926009"), p(SCT, "12584003"), p(SCT, "282743009"),
         p(ICD, "M54.9"), p(ICD, "M54.89"), p(ICD, "G89.3")]
build("back-pain", "Back, spine or bone pain",
      "Back pain conditions and findings (any spinal level), incl. bone pain and neoplasm-related pain.",
      thor + cerv + lumb + other, [psrc], "§2.1, §2.2")
build("back-pain-thoracic", "Back pain: thoracic site", "Codes whose meaning fixes the site as thoracic (progressive feature).", thor, [psrc], "§2.1, §2.2")
build("back-pain-cervical", "Back pain: cervical site", "Codes whose meaning fixes the site as cervical (progressive feature).", cerv, (), "§2.2")
build("back-pain-lumbar", "Back pain: lumbar site", "Codes whose meaning fixes the site as lumbar / low back.", lumb, (), "§2.1, §2.2")

# --- body sites ----------------------------------------------------------------------------
build("body-site-cervical-spine", "Body site: cervical spine", "Condition/Observation bodySite meaning the cervical spine.",
      [c(SCT, "122494005", "Cervical spine structure", B)], (), "§2.1 body sites")
build("body-site-thoracic-spine", "Body site: thoracic spine", "Condition/Observation bodySite meaning the thoracic spine.",
      [c(SCT, "122495006", "Thoracic spine structure", B)], (), "§2.1 body sites")
build("body-site-lumbar-spine", "Body site: lumbar spine", "Condition/Observation bodySite meaning the lumbar spine.",
      [c(SCT, "122496007", "Lumbar spine structure", B)], (), "§2.1 body sites")
build("body-site-spine", "Body site: spine, level not given", "Condition/Observation bodySite meaning the vertebral column.",
      [c(SCT, "421060004", "Vertebral column structure", B)], (), "§2.1 body sites")

# --- pain scores ---------------------------------------------------------------------------
rows, src = from_vsac("standardized-pain-assessment-tool.json", keep=lambda r: r["code"] != "77565-0")
build("pain-severity-score", "Pain severity 0-10 scores",
      "Pain-score Observations giving a 0-10 severity (VAS in mm is divided by 10). 77565-0 (BPI interference) is excluded.",
      rows, [src], "§2.3")

# --- red flags -----------------------------------------------------------------------------
TRAUMA = re.compile(r"injury|fracture|dislocation|subluxation|contusion|avulsion|traction", re.I)
_, nrows = vsac("neurologic-impairment.json")
d = json.loads((VSAC / "neurologic-impairment.json").read_text()); nsrc = (f"{d['url']}|{d['version']}", d["title"])
MSCC_SCT = {"12454008", "16846261000119106", "192970008", "192971007", "267590006", "782388003", "782390002",
            "8663007", "764272007", "94242004", "363477002", "93743001"}
BOWEL = {"K59.2"}
neuro, mscc_v, bowel_v = [], [], []
for r in nrows:
    row = c(r["system"], r["code"], r["display"], "VSAC")
    if TRAUMA.search(r["display"]):
        continue
    if r["code"] in MSCC_SCT or r["code"] == "G83.4":
        mscc_v.append(row)
    elif r["code"] in BOWEL:
        bowel_v.append(row)
    else:
        neuro.append(row)
neuro += [c(SCT, "44077006", "Numbness (finding)", B), c(SCT, "91019004", "Paresthesia (finding)", B),
          c(SCT, "62507009", "Pins and needles (finding)", B), c(SCT, "26544005", "Muscle weakness (finding)", B),
          c(SCT, "264552009", "Neurological deficit (finding)", A), c(ICD, "R20.0", "Anesthesia of skin", B),
          c(ICD, "R26.89", "Other abnormalities of gait and mobility", B)]
build("red-flag-neurological", "MSCC red flags: neurological",
      "Neurological red flags (numbness, paraesthesia, weakness, deficit, gait, saddle anaesthesia, nerve-root compression). "
      "VSAC Neurologic impairment without traumatic injuries (injury, fracture, dislocation, subluxation, contusion, avulsion, traction) "
      "and without the cauda equina syndrome / compression codes (those are in mscc-diagnosis) and K59.2 (in red-flag-bladder-bowel).",
      neuro, [nsrc], "§3.1")
_, urows = vsac("urinary-retention.json")
d = json.loads((VSAC / "urinary-retention.json").read_text()); usrc = (f"{d['url']}|{d['version']}", d["title"])
bb = [c(r["system"], r["code"], r["display"], "VSAC") for r in urows] + bowel_v + [
    c(SCT, "165232002", "Urinary incontinence (finding)", A), c(SCT, "40492006", "Dysfunction of urinary bladder (finding)", A),
    c(SCT, "72042002", "Incontinence of feces (finding)", A), c(ICD, "R32", "Unspecified urinary incontinence", B),
    c(ICD, "R15.9", "Full incontinence of feces", A)]
build("red-flag-bladder-bowel", "MSCC red flags: bladder / bowel",
      "Bladder or bowel red flags (retention, incontinence, neurogenic bowel). VSAC Urinary retention + K59.2 from VSAC Neurologic impairment.",
      bb, [usrc, nsrc], "§3.1")
mscc = [c(ICD, "G95.20", "Unspecified cord compression", B), c(ICD, "G95.29", "Other cord compression", B)] + mscc_v
build("mscc-diagnosis", "Spinal cord compression / cauda equina diagnoses",
      "A cord compression or cauda equina diagnosis (incl. malignant / metastatic cauda equina neoplasm) counts as a red flag.",
      mscc, [nsrc], "§3.1")

# --- imaging -------------------------------------------------------------------------------
mri = [c(LOINC, code, disp, B) for code, disp in [
    ("36067-7", "MR Spine"), ("36531-2", "MR Spine WO contrast"), ("24935-9", "MR Cervical spine"),
    ("24937-5", "MR Cervical spine WO and W contrast IV"), ("24938-3", "MR Cervical spine W contrast IV"),
    ("24980-5", "MR Thoracic spine"), ("36532-0", "MR Thoracic spine WO contrast"), ("24982-1", "MR Thoracic spine W contrast IV"),
    ("24981-3", "MR Thoracic spine WO and W contrast IV"), ("24968-0", "MR Lumbar spine"), ("30679-5", "MR Lumbar spine WO contrast"),
    ("30678-7", "MR Lumbar spine W contrast IV"), ("24967-2", "MR Lumbar spine WO and W contrast IV")]]
mri += [c(SCT, code, disp, A) for code, disp in [
    ("241645008", "Magnetic resonance imaging of spine (procedure)"), ("431985004", "Magnetic resonance imaging of spine with contrast (procedure)"),
    ("411611000119102", "MRI of cervical, thoracic, and lumbar spine without contrast"), ("495741000119105", "MRI of cervical, thoracic, and lumbar spine with contrast"),
    ("396171000119100", "MRI of thoracic spine without contrast"), ("91333005", "MRI of thoracic spine with contrast"),
    ("394451000119106", "MRI of lumbar spine without contrast"), ("41333006", "MRI of lumbar spine with contrast"),
    ("571891000119109", "MRI of cervical spine without contrast"), ("60443006", "MRI of cervical spine with contrast")]]
mri += [c(CPT, code, "", A) for code in ["72146", "72147", "72157", "72148", "72149", "72158"]]
build("spine-mri", "MRI of the spine", "Spine MRI already ordered or done (answers the imaging recommendation).", mri, (), "§5.1")
rows, src = from_vsac("bone-scan.json", keep=lambda r: r["system"] == LOINC)
rows += [c(LOINC, "24578-7", "SPECT Bones", B), c(CPT, "78306", "", B)]
build("bone-scan", "Bone scan (skeletal scintigraphy)",
      "Bone scan already ordered or done. VSAC Bone Scan LOINC codes only: its CPT PET codes (78811-78816) and HCPCS PSMA PET tracers are not bone scans.",
      rows, [src], "§5.2")

# --- drugs for NSAID caution -----------------------------------------------------------------
rows, src = from_vsac("potentially-harmful-pain-medications-older-adults.json")
build("nsaid-medications", "NSAIDs (RxNorm products, partial)",
      "NSAID products from VSAC (indomethacin, ketorolac); other NSAIDs are matched by the ATC M01A prefix rule and by name in matching.toml.",
      rows, [src])
allrows, srcs = [], []
for f in ["anticoagulant-therapy.json", "oral-anticoagulant-medications.json", "warfarin.json", "unfractionated-heparin.json",
          "low-molecular-weight-heparin-vte-prophylaxis.json"]:
    rows, src = from_vsac(f); allrows += rows; srcs.append(src)
build("anticoagulant-medications", "Anticoagulants (RxNorm products)",
      "Active anticoagulant (NSAID caution). Union of five VSAC anticoagulant lists; ATC B01A prefix rule and names in matching.toml.",
      allrows, srcs)

# --- labs ----------------------------------------------------------------------------------
rows, src = from_vsac("platelet-count-lab-test.json", keep=lambda r: "Large" not in r["display"])
build("platelet-count", "Platelet count", "Platelet counts (normalised to 10*9/L) gating NSAID advice. VSAC Platelet Count minus 'Platelets Large' codes.",
      rows, [src], "§6")
build("egfr", "Estimated GFR", "eGFR results (mL/min/{1.73_m2}) gating NSAID advice.",
      [c(LOINC, "98979-8", "GFR/1.73 sq M.predicted by Creatinine-based formula (CKD-EPI 2021)", A),
       c(LOINC, "33914-3", "eGFR MDRD", B), c(LOINC, "62238-1", "eGFR CKD-EPI", B)], (), "§6")

# --- text helper: generalised weakness (issue 11) --------------------------------------------
# Not a limb red flag by itself (CLINICAL.md *Red flag*); fhir_mapping makes it one only with a
# lower-limb body site or text naming the legs. Codes VERIFIED-A in CODES_2026-12.md (ICD-10-CM
# 2026 tabular); 26544005 is the SNOMED concept already in red-flag-neurological.
build("generalised-weakness", "Generalised weakness (not a limb red flag by itself)",
      "Generalised weakness: a neurological red flag only with a lower-limb body site or text naming the legs.",
      [c(ICD, "M62.81", "Muscle weakness (generalized)", A), c(ICD, "R53.1", "Weakness", A),
       c(SCT, "26544005", "Muscle weakness (finding)", B)], (), "§3.1")
