"""Cheap structural bounds on untrusted JSON, checked before anything walks the parsed tree.

Deep nesting breaks code that recurses: the JSON parser itself (msgspec stops only at
Python's recursion limit, 1000 by default), ``copy.deepcopy``, schema validators, FHIR
mappers. :func:`json_depth_exceeds` bounds the depth far lower (64 by default: real CDS Hooks
bodies with FHIR Bundles in prefetch are about 10 deep) without walking the tree in Python:
it works on the raw bytes with a handful of C-level ``bytes`` operations.

It runs on the raw request body *before* the parse (:mod:`cds_hooks.json_body`, with msgspec).
For valid JSON the answer is exact; on invalid JSON it may pass or refuse, and the parse that
follows refuses what it passes, so either way the caller answers 400. The steps:

1. every byte except ``"`` and the four brackets is deleted (multi-byte UTF-8 sequences
   contain no ASCII bytes, so they go too); when the body has backslashes, each one is kept
   with the character it escapes, the pairs ``\\\\`` then ``\\"`` are removed left to right
   (as a parser pairs them), and the rest of the escapes is deleted afterwards;
2. ``""`` is removed (two adjacent quotes never change which brackets are outside strings);
   if quotes remain, some strings hold brackets, and only the even-numbered pieces between
   quotes (outside strings) are kept;
3. ``{}`` become ``[]``, and each pass of ``replace(b"[]", b"")`` removes exactly one level
   from every innermost container, so after ``max_depth`` passes anything left is deeper.

Measured when the body was still parsed with orjson, on a 5.3 MB CDS Hooks body (FHIR Bundle
prefetch, 2-core CI-class machine): about 10 ms against about 150 ms for ``orjson.loads``
(roughly 7 %); a walk of the parsed tree in Python costs about 3 times the parse. Current
figures for the whole decode: ``bench/README.md`` (H6, "Still open").
"""

from __future__ import annotations

import re

#: default cap on JSON nesting (objects and arrays together)
MAX_JSON_DEPTH = 64

#: a service id in the URL path: what discovery ids may look like
SERVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_STRUCTURE = b'"[]{}'
#: after a backslash, valid JSON has one of these; kept so escapes pair up as in the original
_ESCAPED = b'\\"/bfnrtu'
_DELETE_PLAIN = bytes(b for b in range(256) if b not in _STRUCTURE)
_DELETE_ESCAPES = bytes(b for b in range(256) if b not in _STRUCTURE + _ESCAPED)
_ESCAPE_LEFTOVERS = b"\\/bfnrtu"
_BRACES_TO_BRACKETS = bytes.maketrans(b"{}", b"[]")


def json_depth_exceeds(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON document ``raw`` nests deeper than ``max_depth`` (exact for valid JSON;
    invalid JSON may pass, for the parser to refuse)."""
    if max_depth < 0:
        raise ValueError("max_depth must be >= 0")
    if raw.find(b"\\") < 0:
        skeleton = raw.translate(None, _DELETE_PLAIN)
    else:
        # Keep each backslash with the character it escapes, pair them off left to right as
        # a parser does, then drop what is left of the escapes.
        skeleton = raw.translate(None, _DELETE_ESCAPES)
        skeleton = skeleton.replace(b"\\\\", b"").replace(b'\\"', b"")
        skeleton = skeleton.translate(None, _ESCAPE_LEFTOVERS)
    # Strings without brackets are now ``""``: drop them (dropping two adjacent quotes never
    # changes which brackets are outside strings). What remains are strings holding brackets.
    skeleton = skeleton.replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])
    skeleton = skeleton.translate(_BRACES_TO_BRACKETS)
    for _ in range(max_depth):
        if not skeleton:
            return False
        shorter = skeleton.replace(b"[]", b"")
        if len(shorter) == len(skeleton):
            return False  # unbalanced, so not valid JSON after all: the parser's problem
        skeleton = shorter
    return bool(skeleton)


def json_depth(value: object) -> int:
    """The nesting depth of a parsed JSON value, iteratively (for tests and small inputs)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            stack.extend((child, depth) for child in item.values())
        elif isinstance(item, list):
            depth += 1
            stack.extend((child, depth) for child in item)
        deepest = max(deepest, depth)
    return deepest
