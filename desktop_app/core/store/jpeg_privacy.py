"""What a stored photo carries: a metadata-free re-encode, or the original JPEG with its
location/identity metadata stripped losslessly by a small JPEG marker parser (an EXIF
allow-list of orientation, exposure and colour tags)."""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
from PIL import Image

from desktop_app.core.image_io import ImageLoadError, decode_rgb

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95

# EXIF kept in stored originals: an allow-list of orientation, exposure and colour tags (what a
# reviewer or a quality model can use). Everything else goes: text fields that may hold a name,
# date of birth or record number (ImageDescription, XP* tags, UserComment, Artist, Copyright,
# DocumentName, HostComputer), dates, GPS, serial numbers, maker notes, thumbnails.
_EXIF_SUB_IFD = 0x8769
_EXIF_KEEP_IFD0 = frozenset(
    {
        0x0112,  # Orientation
        0x011A,  # XResolution
        0x011B,  # YResolution
        0x0128,  # ResolutionUnit
        0x0213,  # YCbCrPositioning
    }
)
_EXIF_KEEP_SUB = frozenset(
    {
        0x829A,  # ExposureTime
        0x829D,  # FNumber
        0x8822,  # ExposureProgram
        0x8827,  # ISOSpeedRatings
        0x9000,  # ExifVersion
        0x9101,  # ComponentsConfiguration
        0x9201,  # ShutterSpeedValue
        0x9202,  # ApertureValue
        0x9203,  # BrightnessValue
        0x9204,  # ExposureBiasValue
        0x9205,  # MaxApertureValue
        0x9207,  # MeteringMode
        0x9208,  # LightSource
        0x9209,  # Flash
        0x920A,  # FocalLength
        0xA001,  # ColorSpace
        0xA002,  # PixelXDimension
        0xA003,  # PixelYDimension
        0xA217,  # SensingMethod
        0xA402,  # ExposureMode
        0xA403,  # WhiteBalance
        0xA404,  # DigitalZoomRatio
        0xA405,  # FocalLengthIn35mmFilm
        0xA406,  # SceneCaptureType
        0xA407,  # GainControl
        0xA408,  # Contrast
        0xA409,  # Saturation
        0xA40A,  # Sharpness
        0xA500,  # Gamma
    }
)


def encode_jpeg(image_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` as a metadata-free JPEG."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb, "RGB").save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_png(image_rgb: np.ndarray) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` as a metadata-free (lossless) PNG."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb, "RGB").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def _clean_exif(payload: bytes) -> bytes:
    """The APP1 Exif payload rebuilt from the allow-listed tags only (``_EXIF_KEEP_*``)."""
    exif = Image.Exif()
    exif.load(payload)
    kept = Image.Exif()
    for tag in _EXIF_KEEP_IFD0:
        if tag in exif:
            kept[tag] = exif[tag]
    if _EXIF_SUB_IFD in exif:
        source = exif.get_ifd(_EXIF_SUB_IFD)
        wanted = {tag: source[tag] for tag in _EXIF_KEEP_SUB if tag in source}
        if wanted:
            kept.get_ifd(_EXIF_SUB_IFD).update(wanted)
    cleaned = kept.tobytes()
    return cleaned if cleaned.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + cleaned


def _clean_app0(payload: bytes) -> bytes | None:
    """A JFIF header without its thumbnail; None for anything else (JFXX thumbnails...)."""
    if not payload.startswith(b"JFIF\x00") or len(payload) < 14:
        return None
    return payload[:12] + b"\x00\x00"  # identifier, version, units, densities; no thumbnail


def _clean_exif_or_raise(payload: bytes) -> bytes:
    """:func:`_clean_exif`, with any parser failure reported as ValueError.

    Found by fuzzing: Pillow's Exif parser raises SyntaxError, struct.error, KeyError, ... on
    damaged Exif blocks that its JPEG decoder itself tolerates.
    """
    try:
        return _clean_exif(payload)
    except Exception as exc:  # see docstring; the caller falls back to re-encoding
        raise ValueError(f"unreadable Exif block ({type(exc).__name__}: {exc})") from exc


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Losslessly remove location/identity metadata from a JPEG file.

    Keeps JFIF (APP0, without its thumbnail), an allow-listed Exif (APP1: orientation, exposure
    and colour tags only), ICC profiles (APP2) and Adobe (APP14, colour transform); drops JFXX
    thumbnails, XMP, IPTC/Photoshop, comments, other APPn segments and
    everything after the end-of-image marker (multi-picture trailers carry their own Exif).
    The entropy-coded data is copied unchanged. Raises ValueError if the structure is not valid.
    """
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = bytearray(b"\xff\xd8")
    pos = 2
    n = len(data)
    in_scan = False
    while pos < n:
        if in_scan:
            # Entropy-coded data: 0xFF is stuffed as FF00; FFD0-FFD7 are restart markers.
            start = pos
            while True:
                idx = data.find(b"\xff", pos)
                if idx < 0 or idx + 1 >= n:
                    raise ValueError("scan data is truncated")
                nxt = data[idx + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    pos = idx + (1 if nxt == 0xFF else 2)
                    continue
                break
            out += data[start:idx]
            pos = idx
            in_scan = False
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise ValueError("truncated marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI: drop any trailer
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > n:
            raise ValueError("truncated segment length")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise ValueError("segment runs past the end of the file")
        payload = data[pos + 2 : pos + length]
        pos += length
        keep: bytes | None
        if marker == 0xE0:
            keep = _clean_app0(payload)
        elif marker == 0xEE:
            keep = payload
        elif marker == 0xE1:
            keep = _clean_exif_or_raise(payload) if payload.startswith(b"Exif\x00\x00") else None
        elif marker == 0xE2:
            keep = payload if payload.startswith(b"ICC_PROFILE\x00") else None
        elif 0xE3 <= marker <= 0xEF or marker == 0xFE:
            keep = None
        else:
            keep = payload
        if keep is not None:
            if len(keep) + 2 > 0xFFFF:
                raise ValueError("cleaned segment too large")
            out += bytes((0xFF, marker)) + struct.pack(">H", len(keep) + 2) + keep
        if marker == 0xDA:
            in_scan = True
    raise ValueError("no end-of-image marker")


def prepare_image_bytes(image_rgb: np.ndarray, encoded: bytes | None) -> tuple[bytes, str]:
    """Choose the bytes to store and their suffix.

    * no ``encoded``: JPEG q95 of ``image_rgb`` (no metadata at all);
    * an original JPEG: kept bit-exact in its pixels, metadata stripped (see
      :func:`strip_jpeg_metadata`); if that fails or the result does not decode to exactly
      ``image_rgb``, the pixels are re-encoded as JPEG q95;
    * any other original (PNG, TIFF, WebP, BMP): stored as lossless PNG of ``image_rgb`` (the
      decoded, orientation-corrected pixels), which carries no metadata.
    """
    if encoded is None:
        return encode_jpeg(image_rgb), ".jpg"
    if encoded[:3] == b"\xff\xd8\xff":
        try:
            stripped = strip_jpeg_metadata(encoded)
            if np.array_equal(decode_rgb(stripped), image_rgb):
                return stripped, ".jpg"
            logger.warning("stripped JPEG decodes differently; storing re-encoded pixels")
        except (ValueError, ImageLoadError) as exc:
            logger.warning("could not strip JPEG metadata losslessly (%s); re-encoding", exc)
        return encode_jpeg(image_rgb), ".jpg"
    return encode_png(image_rgb), ".png"
