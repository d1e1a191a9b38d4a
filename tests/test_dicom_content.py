"""DICOM content: values checked against their VRs at entry, body sites coded (CID 4031), and the
built instances verified by dciodvfy (Debian's dicom3tools) where it is installed."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.settings import BODY_SITES
from desktop_app.core.store import CaptureStore
from desktop_app.core.submission import SubmissionError, build_dicom
from desktop_app.core.submission.dicom import (
    BODY_SITE_REGIONS,
    body_site_coding,
    person_name,
    study_id,
    validate_patient_fields,
)
from desktop_app.core.submission.policy import submit_blocker

pydicom = pytest.importorskip("pydicom")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaptureStore]:
    s = CaptureStore(tmp_path / "store")
    yield s
    s.close()


def _dataset(store: CaptureStore, **info: str) -> object:
    record = store.add(smooth_image(), make_info(**info))
    return pydicom.dcmread(io.BytesIO(build_dicom(record, smooth_image(), lossy=True)))


# ---- checks at entry -------------------------------------------------------------------------


def test_valid_fields_pass() -> None:
    assert (
        validate_patient_fields("P-1001", "Forearm (left)", "itchy\nfor 2 weeks", "nurse-a") == []
    )
    assert validate_patient_fields("", "", "", "") == []
    assert validate_patient_fields("x" * 64) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"patient_ref": "P\\1001"}, "backslash"),
        ({"patient_ref": "P" * 65}, "65 characters long; at most 64"),
        ({"patient_ref": "P\t1001"}, "control characters (tab)"),
        ({"patient_ref": "P\x001001"}, "null character"),
        ({"patient_ref": "P-1", "note": "a\tb"}, "The note must not contain control characters"),
        ({"patient_ref": "P-1", "note": "a\x00b"}, "The note must not contain control"),
        ({"patient_ref": "P-1", "note": "n" * 4001}, "The note is 4001 characters long"),
        ({"patient_ref": "P-1", "operator": "Doe\\Jane"}, "operator name must not contain"),
        ({"patient_ref": "P-1", "operator": "Doe=Jane"}, "operator name must not contain '='"),
        ({"patient_ref": "P-1", "body_site": "x" * 60}, "The body site is 60 characters"),
    ],
)
def test_bad_fields_are_refused_with_a_message(fields: dict[str, str], expected: str) -> None:
    problems = validate_patient_fields(**fields)
    assert any(expected in p for p in problems), problems


def test_submit_rule_refuses_a_capture_whose_fields_do_not_fit_dicom(store: CaptureStore) -> None:
    # stored before the checks at entry (or from the kiosk): never sent with a split patient ID
    record = store.add(smooth_image(), make_info(patient_ref="P\\1001"))
    assert "backslash" in submit_blocker(record, needs_patient_ref=True)
    record = store.add(smooth_image(), make_info(note="a\tb"))
    assert "The note" in submit_blocker(record, needs_patient_ref=False)
    assert submit_blocker(store.add(smooth_image(), make_info()), needs_patient_ref=True) == ""


def test_build_dicom_never_splits_or_cuts_a_patient_id(store: CaptureStore) -> None:
    for bad in ("P\\1001", "P" * 70):
        record = store.add(smooth_image(), make_info(patient_ref=bad))
        with pytest.raises(SubmissionError, match="patient or encounter ID") as info:
            build_dicom(record, smooth_image(), lossy=True)
        assert not info.value.transient


# ---- values written ------------------------------------------------------------------------


def test_operator_name_is_written_in_pn_form(store: CaptureStore) -> None:
    assert person_name("nurse-a") == "nurse-a^"
    assert person_name("Jane  Doe") == "Jane Doe^"
    assert person_name("Doe^Jane") == "Doe^Jane"
    assert person_name("") == ""
    ds = _dataset(store, operator="nurse-a")
    assert str(ds.OperatorsName) == "nurse-a^"
    assert ds.OperatorsName.family_name == "nurse-a"


def test_study_id_is_short_stable_and_not_empty(store: CaptureStore) -> None:
    ds = _dataset(store)
    assert ds.StudyID == study_id(ds.StudyInstanceUID)
    assert 0 < len(ds.StudyID) <= 16 and "1001" not in ds.StudyID


def test_control_characters_of_an_older_note_are_not_written(store: CaptureStore) -> None:
    ds = _dataset(store, note="line 1\nline\t2\x00")
    assert "\t" not in ds.ImageComments and "\x00" not in ds.ImageComments
    assert "line 1\nline 2" in ds.ImageComments


# ---- body sites ------------------------------------------------------------------------------


def test_every_body_site_has_a_coding_entry() -> None:
    assert set(BODY_SITES) == set(BODY_SITE_REGIONS)


def test_coded_regions_are_the_standards_cid_4031_codes() -> None:
    """Every code written is one of DICOM's CID 4031 (regions) or CID 244 (laterality), as
    shipped in pydicom's tables: no invented codes."""
    from pydicom.sr.codedict import codes

    cid4031 = {
        (c.value, c.meaning) for c in (getattr(codes.cid4031, n) for n in codes.cid4031.dir())
    }
    cid244 = {(c.value, c.meaning) for c in (getattr(codes.cid244, n) for n in codes.cid244.dir())}
    coded = 0
    for site, coding in BODY_SITE_REGIONS.items():
        if coding.region is not None:
            coded += 1
            assert (coding.region.value, coding.region.meaning) in cid4031, site
            assert coding.region.scheme == "SCT"
        if coding.laterality is not None:
            assert (coding.laterality.value, coding.laterality.meaning) in cid244, site
            assert coding.image_laterality == ("L" if "left" in site else "R")
    assert coded == 15


def test_anatomic_region_sequence_with_laterality(store: CaptureStore) -> None:
    ds = _dataset(store, body_site="Forearm (left)")
    (region,) = ds.AnatomicRegionSequence
    assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == (
        "14975008",
        "SCT",
        "Forearm",
    )
    (side,) = region.AnatomicRegionModifierSequence
    assert (side.CodeValue, side.CodeMeaning) == ("7771000", "Left")
    assert ds.ImageLaterality == "L" and "BodyPartExamined" not in ds
    ds = _dataset(store, body_site="Chest")
    assert ds.AnatomicRegionSequence[0].CodeValue == "816094009"
    assert "AnatomicRegionModifierSequence" not in ds.AnatomicRegionSequence[0]
    assert ds.BodyPartExamined == "CHEST" and ds.ImageLaterality == "U"
    ds = _dataset(store, body_site="Genital / perianal")  # no CID 4031 region: not coded
    assert "AnatomicRegionSequence" not in ds and "BodyPartExamined" not in ds
    assert body_site_coding("left forearm (typed)").region is None


# ---- dciodvfy ------------------------------------------------------------------------------

EDGE_INPUTS: list[dict[str, str]] = [
    {},
    *({"body_site": site} for site in BODY_SITES),
    {"operator": "Jane Doe"},
    {"operator": "Doe^Jane"},
    {"operator": "Zoë Ångström-Łukasz"},
    {"patient_ref": "x" * 64},
    {"patient_ref": "Ünïcödé-ID 42"},
    {"note": "multi\nline\r\nnote"},
    {"note": "n" * 4000},
    {"note": "tab\there, nul\x00 there"},  # an older capture stored before the checks
    {"body_site": "left forearm (free text, older capture)"},
]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) missing")
def test_built_instances_pass_dciodvfy(store: CaptureStore, tmp_path: Path) -> None:
    failures = []
    for n, fields in enumerate(EDGE_INPUTS):
        record = store.add(smooth_image(), make_info(**fields))
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(build_dicom(record, smooth_image(), lossy=n % 2 == 0))
        out = subprocess.run(
            ["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60
        )
        report = (out.stdout + out.stderr).splitlines()
        errors = [line for line in report if line.startswith("Error")]
        # only the private quality elements are unknown to dciodvfy's dictionary
        warnings = [
            line
            for line in report
            if line.startswith("Warning") and "SkinCaptureAssist 1" not in line
        ]
        if errors or warnings:
            failures.append((fields, errors, warnings))
    assert failures == []
