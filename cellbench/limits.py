"""The documented maxima of free text typed by people: reasons, comments, names, notes.

Without them one person could make a lot's record unprintable (a 10 MB correction reason was once
accepted and the lot page grew to 40 MB). Every service function that takes such text passes it
through `text` before it writes anything, so a page form and the API refuse it the same way, naming
the field. The database's column sizes are a last resort, not this rule.
"""
from __future__ import annotations

from .errors import InvalidInput

# Why somebody changed, refused, lifted or signed something: a few sentences; the audit trail,
# the batch-record PDF and the signature manifestation print it in full.
REASON = 2_000
# A reason cellbench writes around a person's bounded reason ("value X corrected: <reason>", an
# initial certification's pending tests before the QP's comment): room for what it adds, so a
# reason at its limit is never refused by the record it causes.
CITED_REASON = REASON + 2_000
# A reviewer's or operator's remark; room for a paragraph or two, printed in the record.
COMMENT = 4_000
# What happened, how it was assessed: a deviation's description, an impact assessment, an excursion.
DESCRIPTION = 4_000
# What blinded people read about a deviation: a line, not a report.
SUMMARY = 500
# Why a vial was destroyed, or where it is retained: the vial's column holds 200.
FATE_NOTE = 200
# A person's printed name on signatures and the audit trail (and witness names).
NAME = 200
# The name of a thing: a material, a piece of equipment, a scan station, a place.
LABEL = 200
# How a returned or received kit looked ("intact", "seal broken, box wet"); the custody column holds 200.
CONDITION = 200

_KINDS = {"reason": REASON, "cited_reason": CITED_REASON, "comment": COMMENT, "description": DESCRIPTION,
          "summary": SUMMARY, "name": NAME, "label": LABEL, "condition": CONDITION, "fate_note": FATE_NOTE}


def text(value: object, field: str, what: str, kind: str, *, required: bool = False) -> str | None:
    """The typed text, trimmed; None when left empty (unless `required`).

    Refused above the kind's maximum, naming the field and the count but never echoing the text:
    a megabyte sent back in the error would be the very problem this prevents.
    """
    typed = ("" if value is None else str(value)).strip()
    _check(typed, field, what, kind)
    if not typed:
        if required:
            raise InvalidInput(f"The {what} is required.", field=field)
        return None
    return typed


def bounded(value: str | None, field: str, what: str, kind: str) -> str | None:
    """Text checked for length only, kept as typed (not trimmed): for callers that trim by their own rule."""
    if value is not None:
        _check(value, field, what, kind)
    return value


def _check(typed: str, field: str, what: str, kind: str) -> None:
    limit = _KINDS[kind]
    if len(typed) > limit:
        raise InvalidInput(f"The {what} is at most {limit:,} characters (this one has {len(typed):,}).",
                           field=field)
