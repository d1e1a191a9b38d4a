"""Reading photos from disk safely: EXIF orientation honoured, bad files reported, never fatal."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# The channel order of a frame in memory (cameras give BGR, files and the model RGB); the one
# definition, used by the frame sources and the quality engine.
ColourOrder = Literal["RGB", "BGR"]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MAX_PIXELS = 120_000_000  # a 100 MP camera still fits; larger is treated as a decompression bomb


class ImageLoadError(ValueError):
    """A file could not be read as a photo; the message says why in plain words."""


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``[H, W, 3]`` with EXIF orientation applied."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot be opened ({exc.strerror or exc})") from exc
    except ValueError as exc:  # e.g. a NUL byte in the path (found by fuzzing)
        raise ImageLoadError(f"{path!r}: not a valid file name ({exc})") from exc
    if not data:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes)")
    return decode_rgb(data, str(path))


def decode_rgb(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (any supported format) to uint8 RGB ``[H, W, 3]``."""
    if not data:
        raise ImageLoadError(f"{name}: no data")
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below is the limit; Pillow's warning threshold (89 MP)
            # would otherwise reject 100 MP camera stills as "damaged" (found by fuzzing).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageLoadError(
                        f"{name}: {img.width}x{img.height} pixels is larger than supported"
                    )
                img.load()
                rgb = ImageOps.exif_transpose(img).convert("RGB")
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: the image is larger than supported ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name}: not a readable image") from exc
    except Exception as exc:
        raise ImageLoadError(
            f"{name}: the image is damaged or truncated ({type(exc).__name__}: {exc})"
        ) from exc
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageLoadError(f"{name}: the image has no pixels")
    return np.ascontiguousarray(array)


def iter_image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into candidate files.

    Folders yield only files with an image suffix; files named explicitly are yielded as given so
    that a mislabelled or broken file is reported rather than silently skipped.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        else:
            yield p
