"""Deprecated id/hook pairs (issue 13): hidden from discovery, same prefetch as the published one."""

from __future__ import annotations

import pytest

from cds_hooks.catalog import load_catalog
from fhir_mapping.knowledge import load_knowledge

BASE = """
[templates]
patient = { query = "Patient/{{context.patientId}}" }
conditions = { query = "Condition?patient={{context.patientId}}" }

[[services]]
id = "new-id"
hook = "encounter-start"
title = "T"
description = "D"
prefetch = ["patient", "conditions"]
"""


@pytest.fixture(scope="module")
def valuesets():
    return load_knowledge().valuesets


def _load(tmp_path, valuesets, extra: str):
    (tmp_path / "services.toml").write_text(BASE + extra, encoding="utf-8")
    return load_catalog([tmp_path], valuesets)


def test_same_as_takes_the_published_entry_and_stays_out_of_discovery(tmp_path, valuesets):
    catalog, problems = _load(tmp_path, valuesets, """
[[services]]
id = "old-id"
deprecated = true
hook = "encounter-start"
same_as = "new-id"
""")
    assert problems == []
    old = catalog.resolve("old-id", "encounter-start")
    new = catalog.resolve("new-id", "encounter-start")
    assert (old.title, old.description, dict(old.prefetch)) == (new.title, new.description, dict(new.prefetch))
    assert [s["id"] for s in catalog.discovery()["services"]] == ["new-id"]


def test_a_deprecated_pair_with_another_prefetch_is_refused(tmp_path, valuesets):
    _catalog, problems = _load(tmp_path, valuesets, """
[[services]]
id = "old-id"
deprecated = true
hook = "encounter-start"
title = "T"
description = "D"
prefetch = ["patient"]
""")
    assert any("another prefetch" in p and "same_as = 'new-id'" in p for p in problems)


@pytest.mark.parametrize(("extra", "message"), [
    ('[[services]]\nid = "old"\ndeprecated = true\nhook = "order-sign"\nsame_as = "new-id"\n', "names no published service"),
    ('[[services]]\nid = "x"\nhook = "patient-view"\nsame_as = "new-id"\ntitle = "T"\ndescription = "D"\n', "only for deprecated"),
])
def test_same_as_must_name_a_published_service_on_the_same_hook(tmp_path, valuesets, extra, message):
    _catalog, problems = _load(tmp_path, valuesets, extra)
    assert any(message in p for p in problems)


def test_the_shipped_deprecated_pairs_mirror_their_successors():
    from backpain_cds.app import load_service_catalog

    catalog = load_service_catalog(load_knowledge())
    pairs = {("back-pain-after-chemo", "encounter-start"): "back-pain-after-chemo-encounter",
             ("gcsf-order-review", "order-select"): "gcsf-order-select"}
    for (old_id, hook), new_id in pairs.items():
        old, new = catalog.resolve(old_id, hook), catalog.resolve(new_id, hook)
        assert old.deprecated and not new.deprecated
        assert dict(old.prefetch) == dict(new.prefetch)
