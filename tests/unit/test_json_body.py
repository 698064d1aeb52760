"""cds_hooks.json_body: prefetch Bundles left undecoded, everything else as a full parse."""

from __future__ import annotations

import json
import tracemalloc

import msgspec
import orjson
import pytest

from cds_hooks.errors import InvalidRequest
from cds_hooks.json_body import LazyBundle, decode_hook_body, decode_json_body
from cds_hooks.prefetch import ResolvedData


def _body(prefetch: object, **extra: object) -> bytes:
    return orjson.dumps({"hook": "patient-view", "context": {"patientId": "p1"}, "prefetch": prefetch, **extra})


def _resources(bundle: LazyBundle) -> list[dict]:
    return list(ResolvedData(list(bundle.resources), (), ()).iter_resources())


CONDITION = {"resourceType": "Condition", "id": "c1", "code": {"text": "back pain"}}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "valueInteger": 7}


def test_a_prefetch_bundle_becomes_a_lazy_bundle_and_the_rest_is_decoded():
    raw = _body(
        {
            "conditions": {"resourceType": "Bundle", "type": "searchset", "total": 2,
                           "link": [{"relation": "self", "url": "x"}],
                           "entry": [{"fullUrl": "u1", "resource": CONDITION, "search": {"mode": "match"}},
                                     {"resource": OBSERVATION}]},
            "patient": {"resourceType": "Patient", "id": "p1", "link": [{"other": {"reference": "x"}}]},
            "nothing": None,
        },
        extension={"x": [1, 2]},
    )
    body = decode_hook_body(raw)
    assert body["hook"] == "patient-view"
    assert body["context"] == {"patientId": "p1"}
    assert body["extension"] == {"x": [1, 2]}
    lazy = body["prefetch"]["conditions"]
    assert isinstance(lazy, LazyBundle)
    assert all(type(r) is msgspec.Raw for r in lazy.resources)
    assert lazy.link == [{"relation": "self", "url": "x"}]
    assert _resources(lazy) == [CONDITION, OBSERVATION]
    # a single resource (even one with a link element) and null are decoded as usual
    assert body["prefetch"]["patient"] == {"resourceType": "Patient", "id": "p1", "link": [{"other": {"reference": "x"}}]}
    assert body["prefetch"]["nothing"] is None


def test_the_undecoded_resources_are_views_of_the_body_not_copies():
    entries = [{"resource": {**OBSERVATION, "id": f"o{i}", "note": [{"text": "x" * 500}]}} for i in range(2000)]
    raw = _body({"k": {"resourceType": "Bundle", "entry": entries}})
    tracemalloc.start()
    try:
        lazy = decode_hook_body(raw)["prefetch"]["k"]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(lazy.resources) == 2000
    assert held < len(raw) / 5  # about 50 bytes per entry, none of the 500-byte texts


@pytest.mark.parametrize(
    "value",
    [
        {"resourceType": "Bundle", "entry": {}},  # not an array: the ordinary path decides
        {"resourceType": "Bundle", "entry": "x"},
        {"resourceType": "Bundle", "entry": [5, {"resource": CONDITION}]},
        {"resourceType": "OperationOutcome", "issue": []},
        {"resourceType": 5},
        [1, 2],
        "Bundle",
        7,
    ],
)
def test_irregular_prefetch_values_are_decoded_in_full(value):
    body = decode_hook_body(_body({"k": value}))
    assert body["prefetch"]["k"] == value


def test_entries_without_an_object_resource_are_left_out_and_non_resources_are_skipped_later():
    entries = [{"resource": None}, {"resource": [1]}, {"fullUrl": "x"}, {"resource": {"a": 1}},
               {"resource": {"resourceType": "OperationOutcome"}}, {"resource": CONDITION}]
    lazy = decode_hook_body(_body({"k": {"resourceType": "Bundle", "entry": entries}}))["prefetch"]["k"]
    assert len(lazy.resources) == 3  # the three objects; they count towards max_resources
    assert _resources(lazy) == [CONDITION]


def test_null_or_missing_entry_is_an_empty_bundle():
    for bundle in ({"resourceType": "Bundle"}, {"resourceType": "Bundle", "entry": None}):
        lazy = decode_hook_body(_body({"k": bundle}))["prefetch"]["k"]
        assert lazy == LazyBundle(resources=[], link=None)


def test_whitespace_and_escaped_member_names_are_understood():
    raw = (b' {"hook" : "patient-view", "pre\\u0066etch" : { "k" :\n {"resource\\u0054ype": "Bundle",'
           b' "entry": [ { "res\\u006furce" :\t{"resourceType":"Condition","id":"c1"} } ] } } } ')
    lazy = decode_hook_body(raw)["prefetch"]["k"]
    assert _resources(lazy) == [{"resourceType": "Condition", "id": "c1"}]


def test_a_body_that_is_not_an_object_decodes_as_itself():
    assert decode_hook_body(b"[1, 2]") == [1, 2]
    assert decode_hook_body(b'{"prefetch": [1]}') == {"prefetch": [1]}
    assert decode_hook_body(b'{"prefetch": null}') == {"prefetch": None}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"fullUrl": "\xff", "resource": {}}]}}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"fullUrl": nul}]}}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"search": {"score": 01}}]}}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": {"a": 1,}}]}}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"fullUrl": "\\ud800"}]}}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"fullUrl": "a\x01b"}]}}}',
        b'{"prefetch": {}} trailing',
        b'\xef\xbb\xbf{"prefetch": {}}',
        b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": ' + b"[" * 70 + b"]" * 70 + b"}]}}}",
    ],
    ids=["empty", "utf8-in-skipped", "literal-in-skipped", "number-in-skipped", "trailing-comma",
         "lone-surrogate", "control-char", "trailing-data", "bom", "too-deep"],
)
def test_what_the_full_parse_refuses_is_refused_even_where_it_is_skipped(raw):
    with pytest.raises(InvalidRequest):
        decode_json_body(raw)
    with pytest.raises(InvalidRequest):
        decode_hook_body(raw)


def test_a_number_beyond_double_range_is_refused_where_it_is_read_only():
    """Documented difference: RFC 8259 allows such numbers; msgspec refuses to decode them,
    and a value that is skipped is never decoded (the full parse refuses the whole body)."""
    skipped = _body({"k": {"resourceType": "Bundle", "entry": [{"search": {"score": 0}, "resource": CONDITION}]}})
    skipped = skipped.replace(b'"score":0', b'"score":1e999')
    assert len(_resources(decode_hook_body(skipped)["prefetch"]["k"])) == 1
    read = _body({"k": {"resourceType": "Bundle", "entry": [{"resource": {**OBSERVATION, "valueInteger": 0}}]}})
    lazy = decode_hook_body(read.replace(b'"valueInteger":0', b'"valueInteger":1e999'))["prefetch"]["k"]
    with pytest.raises(InvalidRequest):
        _resources(lazy)


def test_non_ascii_text_is_fine():
    resource = {**CONDITION, "code": {"text": "Rückenschmerzen – 背痛"}}
    raw = json.dumps({"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": resource}]}}},
                     ensure_ascii=False).encode()
    assert _resources(decode_hook_body(raw)["prefetch"]["k"]) == [resource]
