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
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

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
