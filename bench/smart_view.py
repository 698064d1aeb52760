"""SMART detail view: time to render ``/smart/view/<id>`` for a large record.

    python bench/smart_view.py                  # 5,000 resources, 15 renders
    python bench/smart_view.py --ignore-filters # worst case: the server ignores code/category
    python bench/smart_view.py --short          # CI smoke mode (300 resources, 3 renders)

Set-up, all on 127.0.0.1: a FHIR stub serving the record of ``bench/data.py`` (synthetic
source) — one page per search, honouring ``patient``, ``code`` and ``category`` as a FHIR server
would — behind the in-repo test EHR (``tools/harness/fake_ehr.py``: authlib authorization
server + FHIR proxy that checks the app's token). The app is built in-process
(``create_app``, SQLite store) with that EHR under ``[[smart.ehrs]]``. One full EHR launch gives
a view URL; then the view is fetched ``--iterations`` times with the Flask test client. Every
render re-reads all the patient-view queries in parallel with the app's token (through the EHR
proxy, which adds one hop), maps, assesses and renders the page.

Target (issue 10): under 1 s for 5,000 resources on this machine. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402  (also puts the repo root on sys.path)
import orjson  # noqa: E402
import requests  # noqa: E402
from flask import Flask, Response, request  # noqa: E402
from hook_latency import machine  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from backpain_cds.app import create_app  # noqa: E402
from backpain_cds.settings import Settings  # noqa: E402
from tools.harness.fake_ehr import TestEhr  # noqa: E402

TARGET_MS = 1000.0
PUBLIC_BASE = "http://127.0.0.1:18590"


def _codings(node: object) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for coding in node.get("coding") or []:
            if isinstance(coding, dict):
                out.add(f"{coding.get('system')}|{coding.get('code')}")
                out.add(str(coding.get("code")))
    return out


def fhir_stub(record: list[dict], *, ignore_filters: bool = False) -> Flask:
    """Searches by type with patient/code/category filters; reads by id. One page each."""
    by_type: dict[str, list[dict]] = {}
    for resource in record:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    app = Flask("fhir_stub")

    @app.get("/fhir/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Response:
        for resource in by_type.get(rtype, []):
            if resource.get("id") == rid:
                return Response(orjson.dumps(resource), mimetype="application/fhir+json")
        return Response(status=404)

    @app.get("/fhir/<rtype>")
    def search(rtype: str) -> Response:
        codes = set(",".join(request.args.getlist("code")).split(",")) - {""}
        categories = set(",".join(request.args.getlist("category")).split(",")) - {""}
        if ignore_filters:  # worst case: a server that ignores code/category
            codes, categories = set(), set()
        hits = []
        for resource in by_type.get(rtype, []):
            if codes and not codes & _codings(resource.get("code")):
                continue
            if categories and not any(categories & _codings(c) for c in resource.get("category") or []):
                continue
            hits.append({"resource": resource})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(hits)}
        if hits:
            bundle["entry"] = hits
        return Response(orjson.dumps(bundle), mimetype="application/fhir+json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--ignore-filters", action="store_true",
                        help="the stub ignores code/category: every Observation under each of the three Observation keys")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    if args.short:
        args.size, args.iterations = min(args.size, 300), min(args.iterations, 3)
    now = datetime.now(UTC)
    record = data.build_record(args.size, "synthetic", now)
    stub = make_server("127.0.0.1", 0, fhir_stub(record, ignore_filters=args.ignore_filters), threaded=True)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    stub_url = f"http://127.0.0.1:{stub.server_port}/fhir"
    mode = "filters ignored" if args.ignore_filters else "filters honoured"
    lines = [f"# smart_view: {args.size} resources, {args.iterations} renders, {mode}", f"machine: {machine()}"]
    try:
        with TestEhr(stub_url, redirect_uri=f"{PUBLIC_BASE}/smart/callback") as ehr, \
                tempfile.TemporaryDirectory() as tmp:
            settings = Settings.from_mapping({
                "public_base_url": PUBLIC_BASE,
                "database_url": f"sqlite:///{tmp}/bench.sqlite3",
                "smart": {"secret": "bench-secret-0123456789-0123456789-0123",
                          "client_id": "backpain-cds", "ehrs": [{"iss": ehr.fhir_url}]},
            })
            browser = create_app(settings).test_client()
            first = browser.get("/smart/launch", query_string={"iss": ehr.fhir_url,
                                                               "launch": ehr.add_launch(data.PATIENT_ID)})
            with requests.Session() as http:
                http.trust_env = False
                callback = http.get(first.headers["Location"], allow_redirects=False, timeout=30).headers["Location"]
            parts = urlsplit(callback)
            answer = browser.get(parts.path, query_string={k: v[0] for k, v in parse_qs(parts.query).items()})
            view_path = urlsplit(answer.headers["Location"]).path
            timings = []
            html = ""
            for _ in range(args.iterations + 1):
                started = time.perf_counter()
                page = browser.get(view_path)
                html = page.get_data(as_text=True)
                timings.append((time.perf_counter() - started) * 1000)
                if page.status_code != 200:
                    raise RuntimeError(f"view answered {page.status_code}")
            timings = timings[1:]  # the first render warms caches
            read = re.search(r'data-resources-read="(\d+)"', html)
            rules = sorted({part.split('"')[0] for part in html.split('data-rule="')[1:]})
            fhir_requests = sum(1 for _, path in ehr.hits if path.startswith("/fhir/") and ".well-known" not in path)
            lines += [
                f"rules on the page: {', '.join(rules) or 'none'}",
                f"resources read per render: {read.group(1) if read else '?'} of {args.size} in the record",
                f"FHIR requests through the EHR proxy: {fhir_requests} for {args.iterations + 1} renders",
                f"render ms: median {statistics.median(timings):.0f}, min {min(timings):.0f}, "
                f"max {max(timings):.0f} (target < {TARGET_MS:.0f})",
                f"ratio median / target: {statistics.median(timings) / TARGET_MS:.2f}",
            ]
    finally:
        stub.shutdown()
    data.emit_report(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
