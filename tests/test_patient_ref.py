"""core.patient_ref: a typed patient or encounter ID is trimmed, or refused when it reads as
mistyped (issue 20, finding 3: a record stored as "P-1001  r r r r")."""

from __future__ import annotations

import pytest

from desktop_app.core.patient_ref import (
    MAX_PATIENT_REF_CHARS,
    PatientRefProblem,
    normalise_patient_ref,
    patient_ref_problem,
)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("P-1001", "P-1001"),
        ("  ENC-4711 ", "ENC-4711"),  # blanks at either end cannot be meant
        ("Ward 3 bed 12", "Ward 3 bed 12"),  # single spaces between words are fine
        ("Cafe\u0301-7", "Café-7"),  # composed to NFC, so one ID is one string
    ],
)
def test_patient_ref_is_trimmed(typed: str, stored: str) -> None:
    assert normalise_patient_ref(typed) == stored
    assert patient_ref_problem(typed) == ""


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "Enter the patient"),
        ("   ", "Enter the patient"),
        ("P-1001  r r r r", "two spaces"),
        ("P-1001\tx", "a tab"),
        ("P-10\n01", "a line break"),
        ("P-1001\x00", "U+0000"),
        ("P-1001\u200b", "U+200B"),  # zero-width space
        ("P-1001\u00a0A", "U+00A0"),  # no-break space, looks like a space
        ("P" * (MAX_PATIENT_REF_CHARS + 1), "longer than 64"),
    ],
)
def test_mistyped_patient_ref_is_refused(typed: str, words: str) -> None:
    result = normalise_patient_ref(typed)
    assert isinstance(result, PatientRefProblem)
    assert words in result.message
    assert patient_ref_problem(typed) == result.message
