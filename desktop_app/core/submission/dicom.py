"""What goes into a capture's DICOM object, checked against the value representations (VRs) and
coded where DICOM has codes. No Qt, no pydicom needed to import this module.

* :func:`validate_patient_fields` says, in words for the person at the screen, why a patient ID,
  body site, note or operator name cannot be put into a DICOM object (``[]`` when they can). The
  staff window calls it before a capture, the submit rule before a send.
* :data:`BODY_SITE_REGIONS` codes the app's body sites (``core.settings.BODY_SITES``) as anatomic
  regions of DICOM CID 4031 "Common Anatomic Regions" (SNOMED CT, scheme ``SCT``), with their
  laterality (CID 244). The codes are those of the DICOM standard's CID 4031 as shipped in
  pydicom's ``pydicom.sr.codedict`` (``codes.cid4031``); a site with no CID 4031 region of its
  own (scalp, face, upper and lower back, genital / perianal, other) is not coded.
* :func:`person_name` writes an operator name in DICOM PN form.
* :func:`build_dicom` builds the VL Photographic Image instance of a capture (pydicom, imported
  when called).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from desktop_app.core.store import CaptureRecord
from desktop_app.core.submission.target import SubmissionError

if TYPE_CHECKING:
    import numpy as np


VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
PRIVATE_CREATOR = "SkinCaptureAssist 1"
PRIVATE_GROUP = 0x0011
# Private element offsets in block (0011,10xx):
PRIVATE_SCORE = 0x01  # FD quality score
PRIVATE_THRESHOLD = 0x02  # FD decision threshold
PRIVATE_MODEL_VERSION = 0x03  # LO
PRIVATE_DECISION = 0x04  # CS accepted | overridden
PRIVATE_REASONS = 0x05  # LT JSON {reason: probability}
PRIVATE_CAPTURE_ID = 0x06  # LO

# Maximum value lengths in characters (DICOM PS3.5 table 6.2-1).
LO_MAX = 64
SH_MAX = 16
PN_COMPONENT_MAX = 64
LT_MAX = 10240
# Text VRs (LT, ST, UT) allow these control characters; LO, SH and PN allow none (ESC only for
# ISO 2022 code extensions, which this app does not use: it writes ISO_IR 192, UTF-8).
TEXT_CONTROLS_ALLOWED = frozenset("\n\r\f")
# How long the free-text note may be: it travels in Image Comments (LT, 10240 characters) next to
# the quality summary.
NOTE_MAX = 4000

CODING_SCHEME = "SCT"


@dataclass(frozen=True)
class Code:
    """One coded concept: (code value, coding scheme designator, code meaning)."""

    value: str
    meaning: str
    scheme: str = CODING_SCHEME


@dataclass(frozen=True)
class BodySiteCoding:
    """How one body site is written into the DICOM object.

    ``region``: the CID 4031 anatomic region (None: not coded). ``laterality``: CID 244 Left /
    Right for a paired site (None: unpaired or unknown). ``body_part``: a Body Part Examined
    defined term (PS3.16 Annex L) or "" to leave it out. ``image_laterality``: ``L``, ``R``,
    ``U`` (unpaired) or "" (unknown).
    """

    region: Code | None
    laterality: Code | None
    body_part: str
    image_laterality: str


LEFT = Code("7771000", "Left")
RIGHT = Code("24028007", "Right")

# CID 4031 Common Anatomic Regions (values as in DICOM PS3.16 / pydicom codes.cid4031).
NECK = Code("45048000", "Neck")
CHEST = Code("816094009", "Chest")
ABDOMEN = Code("818981001", "Abdomen")
UPPER_ARM = Code("40983000", "Upper arm")
FOREARM = Code("14975008", "Forearm")
HAND = Code("85562004", "Hand")
THIGH = Code("68367000", "Thigh")
LOWER_LEG = Code("30021000", "Lower leg")
FOOT = Code("56459004", "Foot")


def _paired(region: Code, body_part: str) -> dict[str, BodySiteCoding]:
    name = region.meaning.capitalize()
    return {
        f"{name} (left)": BodySiteCoding(region, LEFT, body_part, "L"),
        f"{name} (right)": BodySiteCoding(region, RIGHT, body_part, "R"),
    }


BODY_SITE_REGIONS: dict[str, BodySiteCoding] = {
    # Not in CID 4031 (no region of their own there): Body Part Examined only.
    "Scalp": BodySiteCoding(None, None, "SCALP", "U"),
    "Face": BodySiteCoding(None, None, "FACE", "U"),
    "Neck": BodySiteCoding(NECK, None, "NECK", "U"),
    "Chest": BodySiteCoding(CHEST, None, "CHEST", "U"),
    "Abdomen": BodySiteCoding(ABDOMEN, None, "ABDOMEN", "U"),
    # CID 4031 has the thoracic and lumbar spine, not the skin of the back: not coded.
    "Upper back": BodySiteCoding(None, None, "BACK", "U"),
    "Lower back": BodySiteCoding(None, None, "BACK", "U"),
    **_paired(UPPER_ARM, "ARM"),  # Annex L: ARM is the upper arm
    **_paired(FOREARM, ""),  # no Body Part Examined defined term for the forearm
    **_paired(HAND, "HAND"),
    **_paired(THIGH, "THIGH"),
    **_paired(LOWER_LEG, "LEG"),  # Annex L: LEG is the lower leg
    **_paired(FOOT, "FOOT"),
    # CID 4031 has the anus, not the genital or perianal skin: not coded.
    "Genital / perianal": BodySiteCoding(None, None, "", "U"),
    "Other": BodySiteCoding(None, None, "", ""),
}

UNKNOWN_SITE = BodySiteCoding(None, None, "", "")


def body_site_coding(body_site: str) -> BodySiteCoding:
    """The coding of one of the app's body sites; free text (older captures) is not coded."""
    return BODY_SITE_REGIONS.get(body_site.strip(), UNKNOWN_SITE)


# --------------------------------------------------------------------------------------------
# Value checks


def _control_chars(value: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    return sorted(
        {c for c in value if unicodedata.category(c) in ("Cc", "Cf") and c not in allowed}
    )


def _describe(chars: list[str]) -> str:
    names = {"\t": "tab", "\n": "line break", "\r": "line break", "\x00": "null character"}
    return ", ".join(sorted({names.get(c, f"U+{ord(c):04X}") for c in chars}))


def check_lo(label: str, value: str, max_len: int = LO_MAX) -> list[str]:
    """Problems putting ``value`` into an LO (or, with ``max_len=16``, an SH) element."""
    problems = []
    if len(value) > max_len:
        problems.append(f"{label} is {len(value)} characters long; at most {max_len} are allowed.")
    if "\\" in value:
        problems.append(f"{label} must not contain a backslash (\\).")
    bad = _control_chars(value)
    if bad:
        problems.append(f"{label} must not contain control characters ({_describe(bad)}).")
    return problems


def check_text(label: str, value: str, max_len: int) -> list[str]:
    """Problems putting ``value`` into free text (LT/ST/UT): line breaks are fine, tabs and other
    control characters are not."""
    problems = []
    if len(value) > max_len:
        problems.append(f"{label} is {len(value)} characters long; at most {max_len} are allowed.")
    bad = _control_chars(value, TEXT_CONTROLS_ALLOWED)
    if bad:
        problems.append(f"{label} must not contain control characters ({_describe(bad)}).")
    return problems


def check_person_name(label: str, value: str) -> list[str]:
    """Problems putting ``value`` into a PN element (one alphabetic group, as this app writes
    it: ``=`` would start an ideographic group)."""
    problems = []
    if "\\" in value:
        problems.append(f"{label} must not contain a backslash (\\).")
    if "=" in value:
        problems.append(f"{label} must not contain '='.")
    components = value.split("^")
    if len(components) > 5:
        problems.append(f"{label} has more than 5 name parts separated by '^'.")
    if any(len(c) > PN_COMPONENT_MAX for c in components):
        problems.append(f"{label} is too long; each name part may have at most 64 characters.")
    bad = _control_chars(value)
    if bad:
        problems.append(f"{label} must not contain control characters ({_describe(bad)}).")
    return problems


def validate_patient_fields(
    patient_ref: str, body_site: str = "", note: str = "", operator: str = ""
) -> list[str]:
    """Why these capture fields cannot go into a DICOM object, one sentence each ([] = fine).

    ``patient_ref`` becomes Patient ID (LO: at most 64 characters, no backslash, which would
    split it into two values, no control characters); ``body_site`` goes into Series
    Description (LO); ``note`` into Image Comments (LT: line breaks allowed, no tabs or other
    control characters); ``operator`` into Operators' Name (PN). Empty values are not checked
    here (whether a patient reference is needed is the submit rule's business).
    """
    problems = check_lo("The patient or encounter ID", patient_ref.strip(" "))
    problems += check_lo("The body site", body_site, LO_MAX - len("Skin photo: "))
    problems += check_text("The note", note, NOTE_MAX)
    problems += check_person_name("The operator name", operator)
    return problems


# --------------------------------------------------------------------------------------------
# Writing values


def person_name(name: str) -> str:
    """An operator name in DICOM PN form.

    A name already written with ``^`` separators (``Family^Given``) is kept. Otherwise the whole
    name (a login such as ``nurse-a`` or ``Jane Doe``) becomes the family-name component,
    followed by ``^``: guessing which word is the family name would be wrong as often as right,
    and a PN without any ``^`` is the retired free-text form."""
    cleaned = " ".join(name.replace("\\", " ").replace("=", " ").split())
    if not cleaned:
        return ""
    if "^" in cleaned:
        parts = [p.strip()[:PN_COMPONENT_MAX] for p in cleaned.split("^")[:5]]
        return "^".join(parts).rstrip("^") or ""
    return f"{cleaned[:PN_COMPONENT_MAX]}^"


def clean_text(value: str, max_len: int = LT_MAX) -> str:
    """``value`` fit for LT: control characters other than line breaks become spaces, cut to
    ``max_len`` (for captures stored before the checks at entry)."""
    cleaned = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf") and c not in TEXT_CONTROLS_ALLOWED else c
        for c in value
    )
    return cleaned[:max_len]


def clean_lo(value: str, max_len: int = LO_MAX) -> str:
    """``value`` fit for LO/SH (no backslash, no control characters, at most ``max_len``)."""
    cleaned = "".join(
        " " if c == "\\" or unicodedata.category(c) in ("Cc", "Cf") else c for c in value
    )
    return " ".join(cleaned.split())[:max_len].strip()


def study_id(study_uid: str) -> str:
    """A short Study ID (SH, 16 characters) derived from the Study Instance UID: the same study
    always gets the same ID, and it carries nothing about the patient."""
    return "SC" + hashlib.sha256(study_uid.encode("ascii")).hexdigest()[:10].upper()


def _dicom_datetime(iso_utc: str) -> tuple[str, str, str]:
    """(DA, TM, DT) strings in UTC from an ISO timestamp."""
    stamp = datetime.fromisoformat(iso_utc).astimezone(UTC)
    da = stamp.strftime("%Y%m%d")
    tm = stamp.strftime("%H%M%S.%f")
    return da, tm, f"{da}{tm}+0000"


def _code_item(code: Code) -> Any:
    """A code sequence item (Code Value, Coding Scheme Designator, Code Meaning)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def build_dicom(record: CaptureRecord, image_rgb: np.ndarray, lossy: bool) -> bytes:
    """A DICOM VL Photographic Image (Part 10 file bytes) for one capture.

    ``image_rgb``: uint8 ``[H, W, 3]``, stored uncompressed (Explicit VR Little Endian, RGB), so
    the pixels read back are exactly the stored photo's decoded pixels. ``lossy``: whether the
    stored photo was JPEG (Lossy Image Compression = 01).
    """
    import io

    from pydicom.dataset import Dataset

    info = record.info
    problems = check_lo("The patient or encounter ID", info.patient_ref)
    if problems:  # stored before the checks at entry: never split or cut a patient ID
        raise SubmissionError(" ".join(problems) + " Correct it before sending.", transient=False)
    coding = body_site_coding(info.body_site)
    da, tm, dt = _dicom_datetime(record.created_utc)
    now_da, now_tm, _ = _dicom_datetime(datetime.now(UTC).isoformat())
    decision = "overridden" if record.review_action == "override" else "accepted"

    ds = Dataset()
    ds.file_meta = _file_meta(record)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    ds.SOPInstanceUID = record.sop_instance_uid
    ds.StudyInstanceUID = record.study_uid
    ds.SeriesInstanceUID = record.series_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now_da, now_tm
    ds.TimezoneOffsetFromUTC = "+0000"
    _add_patient_study_series(ds, record, coding, da, tm)
    _add_image(ds, record, coding, decision, lossy, (da, tm, dt))
    _add_private_block(ds, record, decision)
    _add_pixels(ds, image_rgb)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _file_meta(record: CaptureRecord) -> Any:
    """The Part 10 file meta information of a capture's instance."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(VL_PHOTOGRAPHIC_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(record.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("2.25.184113196474350330219377254012345718641")
    meta.ImplementationVersionName = "SKINCAPTURE1"
    return meta


def _add_patient_study_series(
    ds: Any, record: CaptureRecord, coding: BodySiteCoding, da: str, tm: str
) -> None:
    """Patient, study, series and equipment attributes (Type 2 present, empty where unknown)."""
    info = record.info
    # Patient / study (Type 2 attributes present, empty where unknown)
    ds.PatientID = info.patient_ref
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate, ds.StudyTime = da, tm
    ds.StudyID = study_id(record.study_uid)
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Skin photographs"
    # Series / equipment
    ds.Modality = "XC"
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = da, tm
    ds.SeriesDescription = clean_lo(f"Skin photo: {info.body_site}")
    ds.Manufacturer = "Skin Capture Assist"
    ds.SoftwareVersions = clean_lo(f"model {info.model_version}")
    ds.OperatorsName = person_name(info.operator)
    if coding.body_part:
        ds.BodyPartExamined = coding.body_part


def _add_image(
    ds: Any,
    record: CaptureRecord,
    coding: BodySiteCoding,
    decision: str,
    lossy: bool,
    when: tuple[str, str, str],
) -> None:
    """The image's own attributes: dates, type, anatomic region, comments. ``when``: (DA, TM,
    DT) of the capture."""
    info = record.info
    da, tm, dt = when
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da, tm
    ds.AcquisitionDate, ds.AcquisitionTime = da, tm
    ds.AcquisitionDateTime = dt
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "01" if lossy else "00"
    ds.AcquisitionContextSequence = []
    ds.ImageLaterality = coding.image_laterality
    if coding.region is not None:
        region = _code_item(coding.region)
        if coding.laterality is not None:
            region.AnatomicRegionModifierSequence = [_code_item(coding.laterality)]
        ds.AnatomicRegionSequence = [region]
    ds.PatientOrientation = ""
    reasons = ", ".join(f"{k} {v:.2f}" for k, v in sorted(info.reasons.items()))
    ds.ImageComments = clean_text(
        f"Quality score {info.score:.4f} (threshold {info.threshold:.4f}, {decision}); "
        f"model {info.model_version}; reasons: {reasons or 'none'}; capture {record.id}; "
        f"body site: {info.body_site}; note: {info.note}"
    )


def _add_private_block(ds: Any, record: CaptureRecord, decision: str) -> None:
    """The app's private block: score, threshold, model, decision, reasons, capture id."""
    info = record.info
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(PRIVATE_SCORE, "FD", float(info.score))
    block.add_new(PRIVATE_THRESHOLD, "FD", float(info.threshold))
    block.add_new(PRIVATE_MODEL_VERSION, "LO", clean_lo(info.model_version))
    block.add_new(PRIVATE_DECISION, "CS", decision.upper())
    block.add_new(PRIVATE_REASONS, "LT", json.dumps(info.reasons, sort_keys=True))
    block.add_new(PRIVATE_CAPTURE_ID, "LO", record.id)


def _add_pixels(ds: Any, image_rgb: np.ndarray) -> None:
    """Uncompressed 8-bit RGB pixel data, interleaved."""
    import numpy as np

    pixels = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
