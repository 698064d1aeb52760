"""Rebuild knowledge/valuesets/*.json from the VSAC expansions and CLINICAL.md's verified rows.

Run from the repository root: ``python tools/build_valuesets.py [--check] [VSAC_DIR]`` (default:
the first of ``../shared/data/vsac`` and ``../../shared/data/vsac`` that exists). The output is
committed; this script documents the derivation (knowledge/README.md explains every filter) and
lets a reviewer regenerate it. ``--check`` writes nothing: it exits 1 and names every file whose
committed content differs from what the script would write (or that the script would not write).

Grades: VSAC-derived codes are VERIFIED-A (the source canonical is recorded per value set);
hand-picked rows carry a per-concept ``verification-status`` extension (VERIFIED-A/B) and, where
the row comes from CODES_2026-12.md, a ``code-source`` extension naming that source (CODES_2026-12.md
"Sources used" keys: CIBMTR-TX, CDC-ICD, VSAC-24, VSAC-R4-21, ...).
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = [a for a in sys.argv[1:] if a != "--check"]
CHECK = "--check" in sys.argv[1:]
_DEFAULT_VSAC = [ROOT.parent / "shared" / "data" / "vsac", ROOT.parent.parent / "shared" / "data" / "vsac"]
VSAC = Path(ARGS[0]) if ARGS else next((d for d in _DEFAULT_VSAC if d.is_dir()), _DEFAULT_VSAC[0])
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
CODE_SRC_EXT = "https://backpain-cds.org/fhir/StructureDefinition/code-source"
WRITTEN: dict[str, str] = {}  # file name -> content (``--check`` compares, else writes)
VERSION = "1.1.0"
DATE = "2026-12-04"

def vsac(name):
    d = json.loads((VSAC / name).read_text())
    return d, d["expansion"]["contains"]

def c(system, code, display, status, source=""):
    return {"system": system, "code": code, "display": display, "status": status, "source": source}

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
        seen.add(k)
        merged.append(x)
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
                if r.get("source"):
                    con["extension"].append({"url": CODE_SRC_EXT, "valueString": r["source"]})
            inc["concept"].append(con)
        res["compose"]["include"].append(inc)
    WRITTEN[f"{vid}.json"] = json.dumps(res, indent=1, ensure_ascii=False) + "\n"
    if not CHECK:
        print(vid, len(merged))

A, B = "VERIFIED-A", "VERIFIED-B"

# --- G-CSF --------------------------------------------------------------------------------
# RxNorm: every G-CSF concept of CODES_2026-12.md §2.3 (VERIFIED-A, CIBMTR-TX = the tx.fhir.org RxNorm
# 09032024 expansion cache of the NMDP CIBMTR Reporting IG), long-acting = pegylated (pegfilgrastim and
# its biosimilars, lipegfilgrastim); 1746487 pegbovigrastim (veterinary) is left out. Displays are the
# RxNorm ones: this fixes 727537 / 727545 ([Neupogen]), 2549333 ([Neulasta]) and 2595961 (the
# unbranded SCD; the Releuko SBD is 2595962). No RxNorm code exists in any stored source for
# Rolvedon, Stimufend, Ryzneuta, Nypozi or the Neulasta Onpro kit: text match only (matching.toml).
# HCPCS: only J2505 and J1442 are VERIFIED-B (CODES_2026-12.md §1.2); J2506, J1447, J1449, J9361 and
# the Q51xx biosimilar codes rest on one payer table (UNVERIFIED): not enumerated.
LA_RX = [  # (RxCUI, RxNorm display, TTY inferred): CODES_2026-12.md §2.3, CIBMTR-TX (tx.fhir.org RxNorm 09032024)
    ("338036", "pegfilgrastim", "IN/PIN"),
    ("350977", "pegfilgrastim 10 MG/ML", "SCDC"),
    ("353501", "Neulasta", "BN"),
    ("575870", "pegfilgrastim 10 MG/ML [Neulasta]", "SBDC"),
    ("727538", "pegfilgrastim Prefilled Syringe", "SCDF"),
    ("727539", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe", "SCD"),
    ("727541", "pegfilgrastim Prefilled Syringe [Neulasta]", "SBDF"),
    ("727542", "0.6 ML pegfilgrastim 10 MG/ML Prefilled Syringe [Neulasta]", "SBD"),
    ("1161380", "pegfilgrastim Injectable Product", "SCDG"),
    ("1182279", "Neulasta Injectable Product", "SBDG"),
    ("1440046", "lipegfilgrastim", "IN/PIN"),
    ("2048018", "pegfilgrastim-jmdb", "IN/PIN"),
    ("2048019", "pegfilgrastim-jmdb 10 MG/ML", "SCDC"),
    ("2048020", "0.6 ML pegfilgrastim-jmdb 10 MG/ML Prefilled Syringe", "SCD"),
    ("2048021", "Fulphila", "BN"),
    ("2048022", "pegfilgrastim-jmdb 10 MG/ML [Fulphila]", "SBDC"),
    ("2048023", "pegfilgrastim Prefilled Syringe [Fulphila]", "SBDF"),
    ("2048024", "Fulphila Injectable Product", "SBDG"),
    ("2048025", "0.6 ML pegfilgrastim-jmdb 10 MG/ML Prefilled Syringe [Fulphila]", "SBD"),
    ("2102692", "pegfilgrastim-cbqv", "IN/PIN"),
    ("2102695", "Udenyca", "BN"),
    ("2102697", "pegfilgrastim Prefilled Syringe [Udenyca]", "SBDF"),
    ("2102698", "Udenyca Injectable Product", "SBDG"),
    ("2102702", "pegfilgrastim-cbqv 10 MG/ML", "SCDC"),
    ("2102703", "0.6 ML pegfilgrastim-cbqv 10 MG/ML Prefilled Syringe", "SCD"),
    ("2102704", "pegfilgrastim-cbqv 10 MG/ML [Udenyca]", "SBDC"),
    ("2102705", "0.6 ML pegfilgrastim-cbqv 10 MG/ML Prefilled Syringe [Udenyca]", "SBD"),
    ("2260702", "pegfilgrastim-bmez", "IN/PIN"),
    ("2260703", "pegfilgrastim-bmez 10 MG/ML", "SCDC"),
    ("2260704", "0.6 ML pegfilgrastim-bmez 10 MG/ML Prefilled Syringe", "SCD"),
    ("2260705", "Ziextenzo", "BN"),
    ("2260706", "pegfilgrastim-bmez 10 MG/ML [Ziextenzo]", "SBDC"),
    ("2260707", "pegfilgrastim Prefilled Syringe [Ziextenzo]", "SBDF"),
    ("2260708", "Ziextenzo Injectable Product", "SBDG"),
    ("2260709", "0.6 ML pegfilgrastim-bmez 10 MG/ML Prefilled Syringe [Ziextenzo]", "SBD"),
    ("2469333", "pegfilgrastim-apgf", "IN/PIN"),
    ("2469334", "pegfilgrastim-apgf 10 MG/ML", "SCDC"),
    ("2469335", "0.6 ML pegfilgrastim-apgf 10 MG/ML Prefilled Syringe", "SCD"),
    ("2469336", "Nyvepria", "BN"),
    ("2469337", "pegfilgrastim-apgf 10 MG/ML [Nyvepria]", "SBDC"),
    ("2469338", "pegfilgrastim Prefilled Syringe [Nyvepria]", "SBDF"),
    ("2469339", "Nyvepria Injectable Product", "SBDG"),
    ("2469340", "0.6 ML pegfilgrastim-apgf 10 MG/ML Prefilled Syringe [Nyvepria]", "SBD"),
    ("2549330", "pegfilgrastim Injection", "SCDF"),
    ("2549331", "0.6 ML pegfilgrastim 10 MG/ML Injection", "SCD"),
    ("2549332", "pegfilgrastim Injection [Neulasta]", "SBDF"),
    ("2549333", "0.6 ML pegfilgrastim 10 MG/ML Injection [Neulasta]", "SBD"),
    ("2602779", "pegfilgrastim-pbbk", "IN/PIN"),
    ("2602780", "pegfilgrastim-pbbk 10 MG/ML", "SCDC"),
    ("2602781", "0.6 ML pegfilgrastim-pbbk 10 MG/ML Prefilled Syringe", "SCD"),
    ("2602783", "Fylnetra", "BN"),
    ("2602784", "pegfilgrastim-pbbk 10 MG/ML [Fylnetra]", "SBDC"),
    ("2602785", "Fylnetra Injectable Product", "SBDG"),
    ("2602786", "pegfilgrastim Prefilled Syringe [Fylnetra]", "SBDF"),
    ("2602787", "0.6 ML pegfilgrastim-pbbk 10 MG/ML Prefilled Syringe [Fylnetra]", "SBD"),
]
DAILY_RX = [  # (RxCUI, RxNorm display, TTY inferred): CODES_2026-12.md §2.3, CIBMTR-TX (tx.fhir.org RxNorm 09032024)
    ("68442", "filgrastim", "IN/PIN"),
    ("70167", "lenograstim", "IN/PIN"),
    ("227304", "Neupogen", "BN"),
    ("315932", "filgrastim 0.3 MG/ML", "SCDC"),
    ("331527", "filgrastim 0.6 MG/ML", "SCDC"),
    ("567845", "filgrastim 0.3 MG/ML [Neupogen]", "SBDC"),
    ("574887", "filgrastim 0.6 MG/ML [Neupogen]", "SBDC"),
    ("727534", "filgrastim Prefilled Syringe", "SCDF"),
    ("727535", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("727536", "filgrastim Prefilled Syringe [Neupogen]", "SBDF"),
    ("727537", "0.5 ML filgrastim 0.6 MG/ML Prefilled Syringe [Neupogen]", "SBD"),
    ("727544", "0.8 ML filgrastim 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("727545", "0.8 ML filgrastim 0.6 MG/ML Prefilled Syringe [Neupogen]", "SBD"),
    ("1159651", "filgrastim Injectable Product", "SCDG"),
    ("1162571", "lenograstim Injectable Product", "SCDG"),
    ("1182281", "Neupogen Injectable Product", "SBDG"),
    ("1433764", "tbo-filgrastim", "IN/PIN"),
    ("1433765", "tbo-filgrastim 0.6 MG/ML", "SCDC"),
    ("1433768", "0.5 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("1433771", "0.8 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("1442677", "Granix", "BN"),
    ("1442678", "tbo-filgrastim 0.6 MG/ML [Granix]", "SBDC"),
    ("1442679", "filgrastim Prefilled Syringe [Granix]", "SBDF"),
    ("1442680", "Granix Injectable Product", "SBDG"),
    ("1442681", "0.5 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe [Granix]", "SBD"),
    ("1442683", "0.8 ML tbo-filgrastim 0.6 MG/ML Prefilled Syringe [Granix]", "SBD"),
    ("1605064", "filgrastim-sndz", "IN/PIN"),
    ("1605065", "filgrastim-sndz 0.6 MG/ML", "SCDC"),
    ("1605066", "0.5 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("1605067", "Zarxio", "BN"),
    ("1605068", "filgrastim-sndz 0.6 MG/ML [Zarxio]", "SBDC"),
    ("1605069", "filgrastim Prefilled Syringe [Zarxio]", "SBDF"),
    ("1605070", "Zarxio Injectable Product", "SBDG"),
    ("1605071", "0.5 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe [Zarxio]", "SBD"),
    ("1605074", "0.8 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("1605075", "0.8 ML filgrastim-sndz 0.6 MG/ML Prefilled Syringe [Zarxio]", "SBD"),
    ("1649943", "filgrastim Injection", "SCDF"),
    ("1649944", "1 ML filgrastim 0.3 MG/ML Injection", "SCD"),
    ("1649945", "filgrastim Injection [Neupogen]", "SBDF"),
    ("1649946", "1 ML filgrastim 0.3 MG/ML Injection [Neupogen]", "SBD"),
    ("1649963", "1.6 ML filgrastim 0.3 MG/ML Injection", "SCD"),
    ("1649964", "1.6 ML filgrastim 0.3 MG/ML Injection [Neupogen]", "SBD"),
    ("2057198", "filgrastim-aafi", "IN/PIN"),
    ("2057199", "filgrastim-aafi 0.6 MG/ML", "SCDC"),
    ("2057200", "0.5 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("2057201", "Nivestym", "BN"),
    ("2057202", "filgrastim-aafi 0.6 MG/ML [Nivestym]", "SBDC"),
    ("2057203", "filgrastim Prefilled Syringe [Nivestym]", "SBDF"),
    ("2057204", "Nivestym Injectable Product", "SBDG"),
    ("2057205", "0.5 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe [Nivestym]", "SBD"),
    ("2057208", "filgrastim-aafi 0.3 MG/ML", "SCDC"),
    ("2057209", "1 ML filgrastim-aafi 0.3 MG/ML Injection", "SCD"),
    ("2057210", "filgrastim-aafi 0.3 MG/ML [Nivestym]", "SBDC"),
    ("2057211", "filgrastim Injection [Nivestym]", "SBDF"),
    ("2057212", "1 ML filgrastim-aafi 0.3 MG/ML Injection [Nivestym]", "SBD"),
    ("2057215", "0.8 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("2057216", "0.8 ML filgrastim-aafi 0.6 MG/ML Prefilled Syringe [Nivestym]", "SBD"),
    ("2057218", "1.6 ML filgrastim-aafi 0.3 MG/ML Injection", "SCD"),
    ("2057219", "1.6 ML filgrastim-aafi 0.3 MG/ML Injection [Nivestym]", "SBD"),
    ("2101455", "tbo-filgrastim 0.3 MG/ML", "SCDC"),
    ("2101456", "1 ML tbo-filgrastim 0.3 MG/ML Injection", "SCD"),
    ("2101457", "tbo-filgrastim 0.3 MG/ML [Granix]", "SBDC"),
    ("2101458", "filgrastim Injection [Granix]", "SBDF"),
    ("2101459", "1 ML tbo-filgrastim 0.3 MG/ML Injection [Granix]", "SBD"),
    ("2101464", "1.6 ML tbo-filgrastim 0.3 MG/ML Injection", "SCD"),
    ("2101465", "1.6 ML tbo-filgrastim 0.3 MG/ML Injection [Granix]", "SBD"),
    ("2595942", "filgrastim-ayow", "IN/PIN"),
    ("2595943", "filgrastim-ayow 0.6 MG/ML", "SCDC"),
    ("2595944", "0.5 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("2595946", "Releuko", "BN"),
    ("2595947", "filgrastim-ayow 0.6 MG/ML [Releuko]", "SBDC"),
    ("2595948", "Releuko Injectable Product", "SBDG"),
    ("2595949", "filgrastim Prefilled Syringe [Releuko]", "SBDF"),
    ("2595950", "0.5 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe [Releuko]", "SBD"),
    ("2595952", "filgrastim-ayow 0.3 MG/ML", "SCDC"),
    ("2595953", "1 ML filgrastim-ayow 0.3 MG/ML Injection", "SCD"),
    ("2595955", "filgrastim-ayow 0.3 MG/ML [Releuko]", "SBDC"),
    ("2595956", "filgrastim Injection [Releuko]", "SBDF"),
    ("2595957", "1 ML filgrastim-ayow 0.3 MG/ML Injection [Releuko]", "SBD"),
    ("2595959", "1.6 ML filgrastim-ayow 0.3 MG/ML Injection", "SCD"),
    ("2595960", "1.6 ML filgrastim-ayow 0.3 MG/ML Injection [Releuko]", "SBD"),
    ("2595961", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe", "SCD"),
    ("2595962", "0.8 ML filgrastim-ayow 0.6 MG/ML Prefilled Syringe [Releuko]", "SBD"),
]

CIB = "CODES_2026-12.md §2.3 (CIBMTR-TX, RxNorm 09032024)"
la = [c(RX, code, disp, A, CIB) for code, disp, _ in LA_RX]
la += [c(ATC, "L03AA13", "pegfilgrastim", A), c(ATC, "L03AA14", "lipegfilgrastim", A),
       c(ATC, "L03AA17", "pegteograstim", B), c(ATC, "L03AA18", "efbemalenograstim alfa", B),
       c(ATC, "L03AA19", "eflapegrastim", B),
       c(SCT, "385544005", "Pegfilgrastim (substance)", A),
       c(HCPCS, "J2505", "Injection, pegfilgrastim, 6 mg", B, "CODES_2026-12.md §1.2 (3 third-party sources agree)")]
build("gcsf-long-acting", "G-CSF, long-acting (once per cycle)",
      "Recognise long-acting (pegylated, once-per-cycle) G-CSF in medication resources; sets the D..D+7 attribution window.",
      la, clinical_ref="§1.2, §1.5, §1.6, §1.7 and CODES_2026-12.md §1.2, §2.3")

da = [c(RX, code, disp, A, CIB) for code, disp, _ in DAILY_RX]
da += [c(RX, "69634", "sargramostim", B), c(RX, "312903", "sargramostim 0.5 MG/ML Injectable Solution", B)]
da += [c(ATC, "L03AA02", "filgrastim", A), c(ATC, "L03AA03", "molgramostim", A),
       c(ATC, "L03AA09", "sargramostim", B), c(ATC, "L03AA10", "lenograstim", A),
       c(SCT, "386948008", "Filgrastim (substance)", B), c(SCT, "108967001", "Sargramostim (substance)", B),
       c(HCPCS, "J1442", "Injection, filgrastim (G-CSF), excludes biosimilars, 1 microgram", B,
         "CODES_2026-12.md §1.2 (code -> filgrastim agreed; exact CMS wording unverified)")]
build("gcsf-daily", "G-CSF / GM-CSF, daily (short-acting)",
      "Recognise daily (short-acting) G-CSF / GM-CSF in medication resources; sets the first-dose..last-dose+3 days attribution window.",
      da, clinical_ref="§1.2, §1.5, §1.6, §1.7 and CODES_2026-12.md §1.2, §2.3")

# --- chemotherapy ------------------------------------------------------------------------
rows, src = from_vsac("chemotherapy-administration.json")
if not any(r["code"] == "367336001" for r in rows):
    rows.append(c(SCT, "367336001", "Chemotherapy (procedure)", A))
build("chemotherapy-procedures", "Chemotherapy administration (procedures)",
      "Chemotherapy evidence from Procedure resources (oncology context, last 90 days).", rows, [src], "§4 (367336001)")
# Agents with common non-cancer uses (CLINICAL.md operational definitions: methotrexate,
# cyclophosphamide, rituximab) count only with a malignant cancer Condition or a reason naming a
# malignancy: their codes go to `chemotherapy-dual-use`, never to `chemotherapy-medications`.
DUAL_USE = re.compile(r"methotrexate|cyclophosphamide|rituximab", re.I)
rows, src = from_vsac("chemotherapy-agents-for-advanced-cancer.json")
dual_rows = [r for r in rows if DUAL_USE.search(r["display"])]
chemo_rows = [r for r in rows if not DUAL_USE.search(r["display"])]
# RxNorm ingredients (IN) of CODES_2026-12.md §3, VERIFIED-A only: cisplatin 2555 and pemetrexed
# 68446 are single-source (UNVERIFIED) and doxorubicin, epirubicin, docetaxel, capecitabine,
# vincristine, irinotecan have no stored IN code: those are matched by name (matching.toml).
CIB3, USC = "CODES_2026-12.md §3 (CIBMTR-TX)", "CODES_2026-12.md §3 (US Core allergy-substance VSAC expansion, VSAC-R4-21)"
chemo_in = [c(RX, "40048", "carboplatin", A, USC), c(RX, "12574", "gemcitabine", A, CIB3),
            c(RX, "4179", "etoposide", A, CIB3), c(RX, "5657", "ifosfamide", A, CIB3),
            c(RX, "3041", "cytarabine", A, CIB3), c(RX, "134547", "bendamustine", A, CIB3),
            c(RX, "1114693", "bendamustine hydrochloride", A, CIB3),
            c(RX, "56946", "paclitaxel", A, USC), c(RX, "32592", "oxaliplatin", A, USC),
            c(RX, "4492", "fluorouracil", A, USC), c(RX, "1828", "busulfan", A, CIB3),
            c(RX, "6718", "melphalan", A, CIB3), c(RX, "24698", "fludarabine", A, CIB3),
            c(RX, "10473", "thiotepa", A, CIB3), c(RX, "2105", "carmustine", A, CIB3)]
dual_in = [c(RX, "3002", "cyclophosphamide", A, CIB3), c(RX, "6851", "methotrexate", A, USC)]
# ATC codes of the three agents (WHO ATC as published in the MII Onkologie ValueSet
# mii-vs-onko-systemische-therapie-substanzen-2024, ATC-DE 2024): they must not fall to the L01 prefix rule.
MII = "MII Onkologie IG ValueSet mii-vs-onko-systemische-therapie-substanzen-2024 (ATC-DE 2024)"
dual_atc = [c(ATC, "L01AA01", "cyclophosphamide", A, MII), c(ATC, "L01BA01", "methotrexate", A, MII),
            c(ATC, "L01FA01", "rituximab", A, MII)]
build("chemotherapy-medications", "Chemotherapy agents (RxNorm products and ingredients)",
      "Chemotherapy evidence from medication resources: VSAC products without the dual-use agents, plus verified RxNorm "
      "ingredient codes; complemented by the ATC L01 prefix rule and agent names in matching.toml.",
      chemo_rows + chemo_in, [src], "CODES_2026-12.md §3")
build("chemotherapy-dual-use", "Antineoplastic agents with common non-cancer uses",
      "Methotrexate, cyclophosphamide and rituximab: chemotherapy evidence only with a malignant cancer Condition or a "
      "reason (reasonCode / reasonReference) naming a malignancy (CLINICAL.md operational definitions).",
      dual_rows + dual_in + dual_atc, [src], "CODES_2026-12.md §3")

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
d = json.loads((VSAC / "neurologic-impairment.json").read_text())
nsrc = (f"{d['url']}|{d['version']}", d["title"])
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
          c(SCT, "264552009", "Neurological deficit (finding)", A)]
# ICD-10-CM rows of CODES_2026-12.md §5 (CDC-ICD = the FY2026 April-1 tabular, VERIFIED-A), billable
# codes only (G82.2, R20, ... are headers). Left out on purpose: M62.81 and R53.1 (generalised
# weakness is not a limb red flag by itself), R20.3 hyperaesthesia and R20.8/R20.9 (not numbness),
# R29.818/R29.898 ("other symptoms", too unspecific).
CDC = "CODES_2026-12.md §5 (CDC ICD-10-CM tabular FY2026, April 1 2026)"
neuro += [c(ICD, "G82.20", "Paraplegia, unspecified", A, CDC), c(ICD, "G82.21", "Paraplegia, complete", A, CDC),
          c(ICD, "G82.22", "Paraplegia, incomplete", A, CDC),
          c(ICD, "G83.10", "Monoplegia of lower limb affecting unspecified side", A, CDC),
          c(ICD, "G83.11", "Monoplegia of lower limb affecting right dominant side", A, CDC),
          c(ICD, "G83.12", "Monoplegia of lower limb affecting left dominant side", A, CDC),
          c(ICD, "G83.13", "Monoplegia of lower limb affecting right nondominant side", A, CDC),
          c(ICD, "G83.14", "Monoplegia of lower limb affecting left nondominant side", A, CDC),
          c(ICD, "R20.0", "Anesthesia of skin", A, CDC), c(ICD, "R20.1", "Hypoesthesia of skin", A, CDC),
          c(ICD, "R20.2", "Paresthesia of skin", A, CDC),
          c(ICD, "R26.89", "Other abnormalities of gait and mobility", A, CDC)]
# SNOMED rows of CODES_2026-12.md §6 (VSAC Frailty Symptom sets, VERIFIED-A).
FRAIL = "CODES_2026-12.md §6 (VSAC Frailty Symptom 2.16.840.1.113883.3.464.1003.113.11.1311 / 113.12.1075)"
neuro += [c(SCT, "23042008", "Spinal paraparesis (finding)", A, FRAIL),
          c(SCT, "16018391000119104", "Paresis of left lower limb (finding)", A, FRAIL),
          c(SCT, "16018431000119109", "Paresis of right lower limb (finding)", A, FRAIL),
          c(SCT, "127378008", "Bilateral paresis (finding)", A, FRAIL),
          c(SCT, "22325002", "Abnormal gait (finding)", A, FRAIL),
          c(SCT, "22631008", "Unsteady when walking (finding)", A, FRAIL)]
build("red-flag-neurological", "MSCC red flags: neurological",
      "Neurological red flags (numbness, paraesthesia, weakness, deficit, gait, saddle anaesthesia, nerve-root compression). "
      "VSAC Neurologic impairment without traumatic injuries (injury, fracture, dislocation, subluxation, contusion, avulsion, traction) "
      "and without the cauda equina syndrome / compression codes (those are in mscc-diagnosis) and K59.2 (in red-flag-bladder-bowel).",
      neuro, [nsrc], "§3.1")
# Generalised weakness (CLINICAL.md: not a limb red flag by itself; with a lower-limb body site or
# text naming the legs it is). Bound in matching.toml [generalised_weakness]; fhir_mapping makes it a
# limb red flag only with a lower-limb body site or leg text.
build("generalised-weakness", "Generalised weakness (not a limb red flag by itself)",
      "Generalised weakness codes: a limb red flag only with a lower-limb body site or text naming the legs.",
      [c(ICD, "M62.81", "Muscle weakness (generalized)", A, CDC), c(ICD, "R53.1", "Weakness", A, CDC),
       c(SCT, "26544005", "Muscle weakness (finding)", A, "CODES_2026-12.md §6 (VSAC Frailty Symptom …113.11.1311)")],
      (), "operational definitions (red flag), CODES_2026-12.md §5, §6")
_, urows = vsac("urinary-retention.json")
d = json.loads((VSAC / "urinary-retention.json").read_text())
usrc = (f"{d['url']}|{d['version']}", d["title"])
bb = [c(r["system"], r["code"], r["display"], "VSAC") for r in urows] + bowel_v + [
    c(SCT, "165232002", "Urinary incontinence (finding)", A), c(SCT, "40492006", "Dysfunction of urinary bladder (finding)", A),
    c(SCT, "72042002", "Incontinence of feces (finding)", A), c(ICD, "R32", "Unspecified urinary incontinence", A, CDC),
    c(ICD, "R15.9", "Full incontinence of feces", A, CDC),
    # neuromuscular (neurogenic) bladder, billable N31 codes; R15.0-R15.2 (incomplete defecation, smearing,
    # urgency) are not incontinence and R39.1x (hesitancy, poor stream, ...) are not retention: left out.
    c(ICD, "N31.0", "Uninhibited neuropathic bladder, not elsewhere classified", A, CDC),
    c(ICD, "N31.1", "Reflex neuropathic bladder, not elsewhere classified", A, CDC),
    c(ICD, "N31.2", "Flaccid neuropathic bladder, not elsewhere classified", A, CDC),
    c(ICD, "N31.8", "Other neuromuscular dysfunction of bladder", A, CDC),
    c(ICD, "N31.9", "Neuromuscular dysfunction of bladder, unspecified", A, CDC),
    c(SCT, "236649000", "Acute-on-chronic retention of urine (disorder)", A, "CODES_2026-12.md §6 (VSAC Urinary retention …1248.371 | 20250312)"),
    c(SCT, "236650000", "Chronic retention of urine (disorder)", A, "CODES_2026-12.md §6 (VSAC Urinary retention …1248.371 | 20250312)")]
build("red-flag-bladder-bowel", "MSCC red flags: bladder / bowel",
      "Bladder or bowel red flags (retention, incontinence, neurogenic bowel). VSAC Urinary retention + K59.2 from VSAC Neurologic impairment.",
      bb, [usrc, nsrc], "§3.1")
mscc = [c(ICD, "G95.20", "Unspecified cord compression", A, CDC), c(ICD, "G95.29", "Other cord compression", A, CDC)] + mscc_v
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
    rows, src = from_vsac(f)
    allrows += rows
    srcs.append(src)
build("anticoagulant-medications", "Anticoagulants (RxNorm products)",
      "Active anticoagulant (NSAID caution). Union of five VSAC anticoagulant lists; ATC B01A prefix rule and names in matching.toml.",
      allrows, srcs)

# --- labs ----------------------------------------------------------------------------------
rows, src = from_vsac("platelet-count-lab-test.json", keep=lambda r: "Large" not in r["display"])
build("platelet-count", "Platelet count", "Platelet counts (normalised to 10*9/L) gating NSAID advice. VSAC Platelet Count minus 'Platelets Large' codes.",
      rows, [src], "§6")
# eGFR: the whole VSAC Estimated Glomerular Filtration Rate set (CODES_2026-12.md §4, VERIFIED-A; it
# also holds the race-based MDRD/CKD-EPI codes, still read). 33914-3 is in no VSAC set (UNVERIFIED): dropped.
EGFR_SRC = ("http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.6929.3.1000|20190531", "Estimated Glomerular Filtration Rate")
EGFR = "CODES_2026-12.md §4 (VSAC Estimated Glomerular Filtration Rate …6929.3.1000 | 20190531, VSAC-24)"
GFR = "Glomerular filtration rate/1.73 sq M.predicted"
build("egfr", "Estimated GFR", "eGFR results (mL/min/{1.73_m2}) gating NSAID advice.",
      [c(LOINC, "98979-8", f"{GFR} [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)", A, EGFR),
       c(LOINC, "62238-1", f"{GFR} [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)", A, EGFR),
       c(LOINC, "48642-3", f"{GFR} among non-blacks [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (MDRD)", A, EGFR),
       c(LOINC, "48643-1", f"{GFR} among blacks [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (MDRD)", A, EGFR),
       c(LOINC, "69405-9", f"{GFR} [Volume Rate/Area] in Serum, Plasma or Blood", A, EGFR),
       c(LOINC, "77147-7", f"{GFR} [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (MDRD)", A, EGFR),
       c(LOINC, "98980-6", f"{GFR} [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine and Cystatin C-based formula (CKD-EPI 2021)", A, EGFR),
       c(LOINC, "94677-2", "", A, EGFR), c(LOINC, "88293-6", "", A, EGFR), c(LOINC, "88294-4", "", A, EGFR),
       c(LOINC, "50044-7", "", A, EGFR), c(LOINC, "70969-1", "", A, EGFR), c(LOINC, "50210-4", "", A, EGFR)],
      [EGFR_SRC], "§6, CODES_2026-12.md §4")
build("creatinine", "Serum creatinine", "Serum/plasma creatinine (for eGFR computed with CKD-EPI 2021 when no eGFR is recorded).",
      [c(LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", A,
         "CODES_2026-12.md §4 (VSAC Creatinine Lab Test 2.16.840.1.113883.3.666.5.2363 | 20230214)")], (), "§6, CODES_2026-12.md §4")

# --- write (or --check) ------------------------------------------------------------------------
if CHECK:
    stale = sorted(name for name, text in WRITTEN.items()
                   if not (OUT / name).is_file() or (OUT / name).read_text() != text)
    stale += sorted(p.name for p in OUT.glob("*.json") if p.name not in WRITTEN)
    for name in stale:
        print(f"out of date: knowledge/valuesets/{name}")
    sys.exit(1 if stale else 0)
for name, text in WRITTEN.items():
    (OUT / name).write_text(text)
