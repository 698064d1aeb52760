"""The card's ``appContext``: a compact handle signed by the service, verified by the app.

The handle names the hook call and the finding behind the card (``hookInstance``, rule id,
card uuid, evidence references) and is bound to the patient by a keyed hash (the patient id
itself is not in it). It is signed with itsdangerous (HMAC-SHA512 over the payload and a
timestamp) under the configured ``[smart] secret``. The view uses it only as a pointer:
every resource is re-read with the app's own token, and a handle that fails any check is
ignored with a visible note — it never selects data, and never another patient's.
"""

from __future__ import annotations

import hashlib
import hmac
import typing as t
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

_SALT = "backpain-cds.smart.appContext.v1"
#: a card's link stays usable this long after the hook call (a clinician may open it later)
MAX_AGE_SECONDS = 7 * 24 * 3600
#: evidence references carried at most (the handle must stay compact; the view re-derives them)
MAX_EVIDENCE = 20
_MAX_HANDLE_CHARS = 4096


@dataclass(frozen=True)
class AppContext:
    """A verified handle."""

    hook_instance: str
    rule: str
    card: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class HandleCheck:
    """The outcome of verifying a handle: a context, or a note to show (or neither: no handle)."""

    context: AppContext | None = None
    note: str | None = None


class AppContextSigner:
    """Signs handles (the CDS service) and verifies them (the SMART app)."""

    def __init__(self, secret: str, *, max_age_seconds: int = MAX_AGE_SECONDS) -> None:
        if not secret:
            raise ValueError("the appContext secret must not be empty")
        self._serializer = URLSafeTimedSerializer(
            secret, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha512}
        )
        self._patient_key = hashlib.sha256(b"patient-binding:" + secret.encode()).digest()
        self.max_age_seconds = max_age_seconds

    def patient_tag(self, patient_id: str) -> str:
        """A keyed hash of the patient id (binds the handle without carrying the id)."""
        return hmac.new(self._patient_key, patient_id.encode(), hashlib.sha256).hexdigest()[:24]

    def sign(
        self,
        *,
        hook_instance: str,
        rule: str,
        card: str,
        evidence: t.Sequence[str],
        patient_id: str,
    ) -> str:
        """The handle for one card."""
        payload = {
            "h": hook_instance,
            "r": rule,
            "c": card,
            "e": list(evidence)[:MAX_EVIDENCE],
            "p": self.patient_tag(patient_id),
        }
        return self._serializer.dumps(payload)

    def verify(self, handle: t.Any, *, patient_id: str | None) -> HandleCheck:
        """Check signature, age, shape and patient; never raises."""
        if handle is None or handle == "":
            return HandleCheck()
        if not isinstance(handle, str) or len(handle) > _MAX_HANDLE_CHARS:
            return HandleCheck(note=_IGNORED + " (it is not a handle this service issued).")
        try:
            payload = self._serializer.loads(handle, max_age=self.max_age_seconds)
        except SignatureExpired:
            return HandleCheck(note=_IGNORED + " (it has expired).")
        except BadData:
            return HandleCheck(note=_IGNORED + " (its signature does not match).")
        if not _well_formed(payload):
            return HandleCheck(note=_IGNORED + " (it is malformed).")
        if patient_id is None or not hmac.compare_digest(payload["p"], self.patient_tag(patient_id)):
            return HandleCheck(note=_IGNORED + " (it was issued for another patient).")
        return HandleCheck(
            AppContext(
                hook_instance=payload["h"],
                rule=payload["r"],
                card=payload["c"],
                evidence=tuple(payload["e"]),
            )
        )


_IGNORED = (
    "The card's context could not be used and was ignored; this view is built from the "
    "patient's record only"
)


def _well_formed(payload: t.Any) -> bool:
    if not isinstance(payload, dict):
        return False
    if not all(isinstance(payload.get(k), str) for k in ("h", "r", "c", "p")):
        return False
    evidence = payload.get("e")
    return isinstance(evidence, list) and all(isinstance(e, str) for e in evidence)
