"""Cheap per-frame picture cues, computed at camera rate (a few ms a frame). No Qt here.

The quality model scores a live frame a few times a second; these cues look at every frame on a
small copy (:data:`CUE_WIDTH` pixels wide) and catch the faults that are plain to see at once:

* blur: variance of the Laplacian of the grey copy, relative to a running reference (the
  sharpest recent frames, decaying with a half-life); motion blur is told from defocus by how
  unequal the horizontal and vertical gradient energies are;
* exposure: luminance mean and percentiles (too dark), the fraction of clipped pixels;
* glare: the fraction of near-saturated, colourless pixels that sit in blobs (specular
  reflections), not isolated bright pixels;
* framing: the dominant lesion blob (darker and more colourful than the surrounding skin, in a
  downscaled Lab copy, Otsu threshold, largest component), its centroid and area share, against
  the framing guide drawn on the live view (a centred circle, :data:`GUIDE_RADIUS`);
* a tiny grey thumbnail for frame differences (is this the same view as before?).

The cues can only make the live gate stricter (``core.gating``): a fault they see overrides the
model's "Looks good" at once; "Looks good" itself always waits for the model.

Where the blob cue fails: it needs a visible finding that differs from the skin around it. On
skin without a visible lesion, with several lesions of similar size, or with a dark or colourful
background around the skin (a foot on a sheet) the largest blob may be something else. A blob
whose contrast is low is reported as no finding (``blob is None``): the cue then says nothing
about framing, and auto-capture (which needs a finding inside the guide) does not fire.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

CUE_WIDTH = 320  # pixels: the grey copy for blur, exposure and glare
BLOB_WIDTH = 160  # pixels: the Lab copy for the lesion blob
THUMB_WIDTH = 40  # pixels: the grey thumbnail for frame differences
GUIDE_RADIUS = 0.30  # framing guide: circle of this radius x min(width, height), centred


@dataclass(frozen=True)
class CueThresholds:
    """When a cue calls a frame poor (all tunable; defaults tuned on the demo feed and a few real
    photos)."""

    dark_mean: float = 60.0  # mean luminance (0-255) below this: too dark
    dark_p95: float = 90.0  # or the 95th percentile below this
    glare_fraction: float = 0.01  # share of the frame in glare blobs
    clipped_fraction: float = 0.05  # share of clipped (>= 250) pixels
    blur_ratio: float = 0.30  # sharpness / reference below this: blurred
    motion_anisotropy: float = 0.20  # unequal gradient energies above this: motion blur
    reference_half_life_s: float = 8.0
    min_reference: float = 20.0  # a reference below this (a flat scene) judges no blur
    blob_min_contrast: float = 15.0  # lesion-ness inside vs outside the blob: below, no finding
    blob_min_area: float = 0.012  # area share below this: too far away
    guide_radius: float = GUIDE_RADIUS
    unchanged_difference: float = 2.0  # thumbnail mean abs difference: the same view
    changed_difference: float = 6.0  # ... above this: a different view
    verdict_frames: int = 2  # consecutive frames a new verdict must last before it counts


@dataclass(frozen=True)
class LesionBlob:
    """The dominant lesion candidate: ``centre`` (x, y) as fractions of the frame's width and
    height, ``area_share`` of the frame, ``contrast`` against the rest, ``offset`` the centre's
    distance from the frame centre in units of min(width, height)."""

    centre: tuple[float, float]
    area_share: float
    contrast: float
    offset: float


@dataclass(frozen=True)
class FrameCues:
    """What the cheap cues saw in one frame.

    ``thumb``: float32 ``[h, THUMB_WIDTH]`` grey thumbnail (0-255). ``problem``: the reason name
    (``core.gating`` vocabulary: dark, glare, motion, blur, framing, distance) the cues are sure
    of, or None: the verdict of this frame once it has lasted ``verdict_frames`` frames (one odd
    frame does not flip it; ``raw_problem`` is this frame's own). ``changed_at``: the timestamp
    of the first frame of the current view (the current verdict's first frame, or the frame where
    the picture last differed from the one before by more than ``changed_difference``): a model
    result on an older frame is about another view. ``framing_ok``: a finding is inside the guide
    and big enough (auto-capture may fire). ``compute_ms``: the time the cues took.
    """

    timestamp: float
    sharpness: float
    blur_ratio: float
    anisotropy: float
    luma_mean: float
    luma_p5: float
    luma_p95: float
    clipped_fraction: float
    glare_fraction: float
    blob: LesionBlob | None
    thumb: np.ndarray
    problem: str | None
    framing_ok: bool
    compute_ms: float = 0.0
    raw_problem: str | None = None
    changed_at: float = -math.inf


def view_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (grey levels) of two thumbnails ``[h, w]``; inf when their
    shapes differ (a new resolution is a new view)."""
    if a.shape != b.shape:
        return math.inf
    return float(cv2.absdiff(a, b).mean())


def _small(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    height = max(1, round(h * width / w))
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def find_lesion_blob(rgb_small: np.ndarray, min_contrast: float = 15.0) -> LesionBlob | None:
    """The dominant lesion blob in a small uint8 RGB image ``[h, w, 3]`` (about
    :data:`BLOB_WIDTH` wide), or None when no blob stands out by ``min_contrast``.

    Lesion-ness per pixel: how much darker than the smoothly varying skin lightness, plus how
    much more colourful (Lab chroma) than the median; very dark pixels (no skin: background,
    shadow) count for nothing. Otsu threshold, a 3x3 opening, the largest component.
    """
    h, w = rgb_small.shape[:2]
    if h < 8 or w < 8:
        return None
    lab = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lightness = lab[..., 0]  # 0-255 (OpenCV's 8-bit L scale)
    a = lab[..., 1] - 128.0
    b = lab[..., 2] - 128.0
    # the skin's own lightness, varying slowly with the light: a 1/16-size copy blown up again
    coarse = cv2.resize(lightness, (max(2, w // 16), max(2, h // 16)), interpolation=cv2.INTER_AREA)
    background = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    chroma = np.sqrt(a * a + b * b)
    darker = np.maximum(0.0, background - lightness)
    colourful = np.maximum(0.0, chroma - float(np.median(chroma)))
    score = 0.5 * darker + 1.0 * colourful
    score[lightness < 25.0] = 0.0
    score = cv2.GaussianBlur(score, (0, 0), 1.0)
    score8 = np.clip(score * 4.0, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(score8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    inside = labels == best
    contrast = float(score[inside].mean() - score[~inside].mean())
    if contrast < min_contrast:
        return None
    cx, cy = float(centroids[best][0]), float(centroids[best][1])
    offset = math.hypot(cx - w / 2.0, cy - h / 2.0) / min(w, h)
    return LesionBlob(
        centre=(cx / w, cy / h),
        area_share=float(stats[best, cv2.CC_STAT_AREA]) / float(w * h),
        contrast=contrast,
        offset=offset,
    )


class CueAnalyzer:
    """Computes :class:`FrameCues` frame after frame; keeps the running sharpness reference.

    One analyser per source (the camera thread's); not thread-safe.
    """

    def __init__(self, thresholds: CueThresholds | None = None) -> None:
        self.thresholds = thresholds or CueThresholds()
        self._reference = 0.0
        self._reference_at = 0.0
        self._verdict: str | None = None
        self._candidate: str | None = None
        self._candidate_since = -math.inf
        self._candidate_count = 0
        self._view_thumb: np.ndarray | None = None
        self._changed_at = -math.inf

    def reset(self) -> None:
        """Forget the sharpness reference and the current view (a new source)."""
        self._reference = 0.0
        self._verdict = self._candidate = None
        self._candidate_count = 0
        self._view_thumb = None
        self._changed_at = -math.inf

    def _track(self, raw: str | None, thumb: np.ndarray, timestamp: float) -> str | None:
        """Debounce the verdict and date the current view; -> the verdict that counts."""
        th = self.thresholds
        if raw == self._verdict:
            self._candidate, self._candidate_count = raw, 0
        elif raw == self._candidate and self._candidate_count > 0:
            self._candidate_count += 1
        else:
            self._candidate, self._candidate_count = raw, 1
            self._candidate_since = timestamp
        if raw != self._verdict and self._candidate_count >= th.verdict_frames:
            self._verdict = raw
            self._changed_at = max(self._changed_at, self._candidate_since)
            self._view_thumb = thumb
        elif self._view_thumb is None:
            self._view_thumb = thumb
        elif view_difference(thumb, self._view_thumb) > th.changed_difference:
            self._changed_at = timestamp
            self._view_thumb = thumb
        return self._verdict

    @property
    def sharpness_reference(self) -> float:
        return self._reference

    def _blur_ratio(self, sharpness: float, exposure_ok: bool, timestamp: float) -> float:
        """This frame's sharpness over the running sharp reference (1.0 until there is one). The
        reference follows the sharpest well-exposed frame and fades with a half-life, so a new
        scene that is less detailed stops reading as blurred after a few seconds."""
        th = self.thresholds
        if self._reference > 0.0:
            dt = max(0.0, timestamp - self._reference_at)
            decayed = self._reference * 0.5 ** (dt / th.reference_half_life_s)
        else:
            decayed = 0.0
        self._reference = sharpness if exposure_ok and sharpness >= decayed else decayed
        self._reference_at = timestamp
        reference = self._reference
        return sharpness / reference if reference >= th.min_reference else 1.0

    def analyse(self, image: np.ndarray, colour_order: str, timestamp: float) -> FrameCues:
        """Cues for one uint8 ``[H, W, 3]`` frame in ``colour_order`` ("RGB" or "BGR") taken at
        ``timestamp`` (seconds, monotonic)."""
        t0 = time.perf_counter()
        th = self.thresholds
        small = _small(image, CUE_WIDTH)
        if colour_order == "BGR":
            small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        # exposure from the histogram
        hist = np.bincount(grey.reshape(-1), minlength=256).astype(np.float64)
        total = float(hist.sum())
        cdf = np.cumsum(hist) / total
        p5 = float(np.searchsorted(cdf, 0.05))
        p95 = float(np.searchsorted(cdf, 0.95))
        mean = float((hist * np.arange(256)).sum() / total)
        clipped = float(hist[250:].sum() / total)
        # glare: bright and colourless, in blobs (a 3x3 opening drops lone pixels)
        channels = cv2.split(small)  # per-pixel max/min: cv2 is ~10x numpy's axis=2 reduction
        hi = np.asarray(cv2.max(cv2.max(channels[0], channels[1]), channels[2]), np.uint8)
        lo = np.asarray(cv2.min(cv2.min(channels[0], channels[1]), channels[2]), np.uint8)
        glare = ((hi >= 245) & ((hi.astype(np.int16) - lo) < 40)).astype(np.uint8)
        opened = np.asarray(cv2.morphologyEx(glare, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
        glare_fraction = float(opened.mean())
        # blur
        lap = cv2.Laplacian(grey, cv2.CV_32F)
        sharpness = float(lap.var())
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        ex, ey = float(np.square(gx).mean()), float(np.square(gy).mean())
        anisotropy = abs(ex - ey) / (ex + ey + 1e-6)
        dark = mean < th.dark_mean or p95 < th.dark_p95
        glary = glare_fraction >= th.glare_fraction or clipped >= th.clipped_fraction
        exposure_ok = not dark and not glary
        blur_ratio = self._blur_ratio(sharpness, exposure_ok, timestamp)
        blob = find_lesion_blob(_small(small, BLOB_WIDTH), th.blob_min_contrast)
        problem: str | None = None
        if dark:
            problem = "dark"
        elif glary:
            problem = "glare"
        elif blur_ratio < th.blur_ratio:
            problem = "motion" if anisotropy > th.motion_anisotropy else "blur"
        elif blob is not None and blob.offset > th.guide_radius:
            problem = "framing"
        elif blob is not None and blob.area_share < th.blob_min_area:
            problem = "distance"
        framing_ok = (
            blob is not None
            and blob.offset <= th.guide_radius
            and blob.area_share >= th.blob_min_area
        )
        thumb = _small(grey, THUMB_WIDTH).astype(np.float32)
        verdict = self._track(problem, thumb, timestamp)
        return FrameCues(
            timestamp=timestamp,
            sharpness=sharpness,
            blur_ratio=blur_ratio,
            anisotropy=anisotropy,
            luma_mean=mean,
            luma_p5=p5,
            luma_p95=p95,
            clipped_fraction=clipped,
            glare_fraction=glare_fraction,
            blob=blob,
            thumb=thumb,
            problem=verdict,
            framing_ok=framing_ok,
            compute_ms=(time.perf_counter() - t0) * 1000.0,
            raw_problem=problem,
            changed_at=self._changed_at,
        )
