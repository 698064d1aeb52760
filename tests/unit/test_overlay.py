"""Site overlays: one deep merge (fhir_mapping.overlay) for every TOML knowledge file.

rules.toml, actions.toml, matching.toml, clinical_text.toml and differential.toml have their own
overlay tests (test_rule_config, test_extract_record, ...); here are the merge itself and the two
files that used to be replaced whole by an overlay's copy: services.toml and detail_view.toml.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_hooks.catalog import load_catalog
from fhir_mapping.knowledge import PACKAGED_KNOWLEDGE, load_knowledge
from fhir_mapping.overlay import merge_overlay, read_overlaid_toml
from fhir_mapping.valuesets import ValueSetIndex
from smart_launch.view_text import ViewTextError, load_view_text

_tables = st.recursive(
    st.integers(0, 9) | st.lists(st.integers(0, 9), max_size=2),
    lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from("abc"), _tables, max_size=3),
       st.dictionaries(st.sampled_from("abc"), _tables, max_size=3))
def test_merge_is_identity_for_empty_overlay_and_overlay_leaves_win(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    assert merge_overlay(base, {}) == base
    assert merge_overlay(base, base) == base
    merged = merge_overlay(base, overlay)
    for key, value in overlay.items():
        if not (isinstance(value, dict) and isinstance(base.get(key), dict)):
            assert merged[key] == value
    for key in base.keys() - overlay.keys():
        assert merged[key] == base[key]


def test_an_unreadable_overlay_file_is_named_and_left_out(tmp_path: Path) -> None:
    (tmp_path / "services.toml").write_text("[templates\n", encoding="utf-8")
    data, files, problems = read_overlaid_toml([PACKAGED_KNOWLEDGE, tmp_path], "services.toml")
    assert files == [PACKAGED_KNOWLEDGE / "services.toml", tmp_path / "services.toml"]
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'services.toml'}: ")
    assert data == read_overlaid_toml([PACKAGED_KNOWLEDGE], "services.toml")[0]


# -- services.toml ---------------------------------------------------------------------------

SITE_CONDITIONS = "Condition?patient={{context.patientId}}&clinical-status=active"


@pytest.fixture(scope="module")
def valuesets() -> ValueSetIndex:
    return load_knowledge().valuesets


def test_a_services_overlay_changes_one_template_and_keeps_the_rest(tmp_path: Path, valuesets: ValueSetIndex) -> None:
    ours, problems = load_catalog([PACKAGED_KNOWLEDGE], valuesets)
    assert problems == []
    (tmp_path / "services.toml").write_text(f'[templates]\nconditions = {{ query = "{SITE_CONDITIONS}" }}\n',
                                            encoding="utf-8")
    site, problems = load_catalog([PACKAGED_KNOWLEDGE, tmp_path], valuesets)
    assert problems == []
    assert [(s.id, s.hook, s.deprecated) for s in site.services] == [(s.id, s.hook, s.deprecated) for s in ours.services]
    for before, after in zip(ours.services, site.services, strict=True):
        assert dataclasses.replace(after, prefetch={}) == dataclasses.replace(before, prefetch={})
        assert after.prefetch.keys() == before.prefetch.keys()
        for key, query in after.prefetch.items():
            assert query == (SITE_CONDITIONS if key == "conditions" else before.prefetch[key]), key
    assert any("conditions" in s.prefetch for s in site.services)


def test_a_services_overlay_with_services_replaces_the_array_and_keeps_the_templates(
    tmp_path: Path, valuesets: ValueSetIndex
) -> None:
    (tmp_path / "services.toml").write_text(
        '[[services]]\nid = "site-triage"\nhook = "patient-view"\ntitle = "T"\ndescription = "D"\n'
        'prefetch = ["patient", "conditions"]\n', encoding="utf-8")
    site, problems = load_catalog([PACKAGED_KNOWLEDGE, tmp_path], valuesets)
    assert problems == []
    assert [(s.id, s.hook) for s in site.services] == [("site-triage", "patient-view")]
    ours, _ = load_catalog([PACKAGED_KNOWLEDGE], valuesets)
    published = next(s for s in ours.services if s.id == "back-pain-after-chemo")
    assert dict(site.services[0].prefetch) == {k: published.prefetch[k] for k in ("patient", "conditions")}


# -- detail_view.toml ------------------------------------------------------------------------


def test_a_detail_view_overlay_changes_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    ours = load_view_text([PACKAGED_KNOWLEDGE])
    (tmp_path / "detail_view.toml").write_text('[safety_netting]\ntitle = "Site safety-netting"\n', encoding="utf-8")
    site = load_view_text([PACKAGED_KNOWLEDGE, tmp_path])
    assert site.safety_netting.title == "Site safety-netting" != ours.safety_netting.title
    assert dataclasses.replace(site.safety_netting, title=ours.safety_netting.title) == ours.safety_netting
    assert site.handout == ours.handout


def test_a_detail_view_overlay_of_the_wrong_type_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "detail_view.toml").write_text("[safety_netting]\ntitle = 1\n", encoding="utf-8")
    with pytest.raises(ViewTextError, match=r"detail_view\.toml \+ .*detail_view\.toml: TypeError"):
        load_view_text([PACKAGED_KNOWLEDGE, tmp_path])
