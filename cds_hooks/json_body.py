"""Request bodies from bytes to Python, with the prefetch Bundles' resources left undecoded.

A hook request is mostly prefetch: thousands of FHIR resources, most of which the rules never
read (vital signs, unrelated labs). Decoding the whole body into dicts at once costs about 5
times the body in memory. :func:`decode_hook_body` decodes everything except the resources in
the prefetch Bundles: those stay :class:`msgspec.Raw` slices of the body (no copy), and the
mapping decodes them one at a time and drops each as soon as its facts are taken
(:meth:`cds_hooks.prefetch.ResolvedData.iter_resources`). Peak memory is then the body plus
one resource plus the facts, and it is also faster (small dicts freed at once stay in cache).

Nothing is accepted that the full parse would refuse: the body is checked for nesting depth
and UTF-8 first, and msgspec checks the JSON syntax of every value it skips. Every value
whose shape is not the usual one (a body that is not an object, a Bundle whose ``entry`` is
not an array of objects, ...) is decoded in full and takes the ordinary path, so the request
validation reports it exactly as before.

One difference remains, on purpose: a number beyond the range of a double (``1e999``; valid
JSON per RFC 8259, but msgspec refuses to decode it) is refused only where it is decoded. In a
member the service never reads (``entry.search.score``, ``Bundle.total``) it passes, where the
full parse used to refuse the whole body; in a resource it is still a 400.
"""

from __future__ import annotations

import codecs
import typing as t
from dataclasses import dataclass

import msgspec

from cds_hooks.errors import InvalidRequest
from cds_hooks.limits import MAX_JSON_DEPTH, json_depth_exceeds

_ANY = msgspec.json.Decoder()
_OBJECT_OF_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
_NULL = msgspec.Raw(b"null")
_OPEN_BRACE = ord("{")


class _Entry(msgspec.Struct):
    """A Bundle entry: only its resource matters here (fullUrl, search, ... are skipped)."""

    resource: msgspec.Raw = _NULL


class _BundleShell(msgspec.Struct):
    """The members of a prefetch value that say what it is; unknown members are skipped."""

    resourceType: t.Any = None  # noqa: N815 (FHIR's name)
    link: t.Any = None
    entry: list[_Entry] | None = None


_SHELL = msgspec.json.Decoder(_BundleShell)


@dataclass(frozen=True, slots=True)
class LazyBundle:
    """A prefetch Bundle whose entries' resources are still JSON text (``msgspec.Raw``).

    Deliberately not a dict: code that does not know about it fails loudly instead of seeing a
    Bundle without entries.
    """

    #: ``entry[].resource`` values that are JSON objects, in order, undecoded
    resources: list[msgspec.Raw]
    #: ``Bundle.link`` as sent (decoded; small)
    link: t.Any


def decode_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> t.Any:
    """Parse a request body (bytes) as JSON, or raise a 400 naming the problem."""
    _check_bytes(raw, max_depth)
    return _decode(raw)


def decode_hook_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> t.Any:
    """Parse a hook request; each prefetch Bundle becomes a :class:`LazyBundle`.

    Any other prefetch value (a single resource, ``null``, something invalid) and every other
    member of the body are decoded as :func:`decode_json_body` would.
    """
    _check_bytes(raw, max_depth)
    members = _decode_shaped(_OBJECT_OF_RAW, raw)
    if members is None:
        return _decode(raw)  # not an object: the request validation says so
    body: dict[str, t.Any] = {}
    for name, value in members.items():
        body[name] = _prefetch(value) if name == "prefetch" else _decode(value)
    return body


def decode_resource(raw: msgspec.Raw) -> t.Any:
    """Decode one resource a :class:`LazyBundle` holds."""
    return _decode(raw)


def _prefetch(raw: msgspec.Raw) -> t.Any:
    values = _decode_shaped(_OBJECT_OF_RAW, raw)
    if values is None:
        return _decode(raw)  # not an object: the request validation says so
    return {key: _prefetch_value(value) for key, value in values.items()}


def _prefetch_value(raw: msgspec.Raw) -> t.Any:
    if memoryview(raw)[0] != _OPEN_BRACE:
        return _decode(raw)  # null, or something the request validation refuses
    shell = _decode_shaped(_SHELL, raw)
    if shell is None:
        return _decode(raw)  # e.g. an entry that is not an object: the ordinary path decides
    if shell.resourceType != "Bundle":
        return _decode(raw)  # a single resource (small), or an OperationOutcome
    entries = shell.entry or ()
    return LazyBundle(
        resources=[e.resource for e in entries if memoryview(e.resource)[0] == _OPEN_BRACE],
        link=shell.link,
    )


def _check_bytes(raw: bytes, max_depth: int) -> None:
    if not raw:
        raise InvalidRequest("the request body is empty; a JSON object is required")
    # Depth first: the check is cheap and the parser recurses. (On invalid JSON it may pass or
    # refuse; either way the answer is a 400.)
    if json_depth_exceeds(raw, max_depth):
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels")
    # msgspec checks UTF-8 only in the strings it decodes, not in the values it skips
    if not raw.isascii() and not _is_utf8(raw):
        raise InvalidRequest("the request body is not valid JSON: it is not valid UTF-8")


def _is_utf8(raw: bytes, chunk: int = 1 << 16) -> bool:
    """Strict UTF-8 check in chunks (no decoded copy of the whole body)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(0, len(view), chunk):
            decoder.decode(view[start : start + chunk])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _decode_shaped(decoder: msgspec.json.Decoder[t.Any], raw: bytes | msgspec.Raw) -> t.Any | None:
    """Decode into the decoder's type; None when the JSON has another shape (400 if invalid)."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError as exc:
        raise _invalid_json(exc) from None


def _decode(raw: bytes | msgspec.Raw) -> t.Any:
    try:
        # msgspec rather than orjson: as fast, and its peak memory is about 5x the body where
        # orjson's briefly reaches about 17x (bench/README.md).
        return _ANY.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _invalid_json(exc) from None


def _invalid_json(exc: Exception) -> InvalidRequest:
    # the message names the position only, never the content
    return InvalidRequest(f"the request body is not valid JSON: {exc}")
