"""The one rule for a typed patient or encounter reference before it is stored. No Qt here.

A reference is what ties a photo to a person: a stray keystroke in it (a capture shortcut typed
into the field, ``"P-1001  r r r r"``) is a wrong-patient risk, so such text is refused with a
message for the person at the screen rather than stored. :func:`normalise_patient_ref` only
trims what cannot be meant (leading and trailing blanks, Unicode composed to NFC); everything
else that looks mistyped is refused, never silently changed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

MAX_PATIENT_REF_CHARS = 64


@dataclass(frozen=True)
class PatientRefProblem:
    """Why a typed reference is refused, in words for the person at the screen."""

    message: str


def normalise_patient_ref(text: str) -> str | PatientRefProblem:
    """The reference to store for ``text``, or why it may not be stored.

    Allowed: up to 64 printable characters with single spaces between words. Trimmed: blanks
    at either end. Refused: an empty reference, two or more blanks in a row, tabs, line breaks
    and other control or invisible formatting characters.
    """
    ref = unicodedata.normalize("NFC", text).strip()
    if not ref:
        return PatientRefProblem("Enter the patient or encounter ID first.")
    for char in ref:
        if char != " " and unicodedata.category(char).startswith(("C", "Z")):
            return PatientRefProblem(
                f"The patient ID contains {_describe(char)}: check it and type it again."
            )
    if "  " in ref:
        return PatientRefProblem(
            "The patient ID has two spaces in a row: check it (a key meant for the camera may "
            "have been typed into it)."
        )
    if len(ref) > MAX_PATIENT_REF_CHARS:
        return PatientRefProblem(
            f"The patient ID is longer than {MAX_PATIENT_REF_CHARS} characters: check it."
        )
    return ref


def _describe(char: str) -> str:
    if char == "\t":
        return "a tab"
    if char in "\r\n":
        return "a line break"
    return f"an invisible or control character (U+{ord(char):04X})"


def patient_ref_problem(text: str) -> str:
    """The message of :func:`normalise_patient_ref`'s refusal ("" when ``text`` is fine)."""
    result = normalise_patient_ref(text)
    return result.message if isinstance(result, PatientRefProblem) else ""


CHECK_IN_PROBLEM = (
    "Please check the number you typed: type it again as it is on your slip, or leave the "
    "box empty."
)


def normalise_check_in_number(text: str) -> str | PatientRefProblem:
    """The kiosk's optional check-in number to store for ``text``: ``""`` when left empty, else
    the same rule as :func:`normalise_patient_ref` (it ties the photo to a person just the same),
    refused with one plain message for a patient instead of the staff wording."""
    if not unicodedata.normalize("NFC", text).strip():
        return ""
    result = normalise_patient_ref(text)
    return PatientRefProblem(CHECK_IN_PROBLEM) if isinstance(result, PatientRefProblem) else result
