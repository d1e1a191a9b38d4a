"""The building blocks of the capture faults (:mod:`model_export.data.degradations`): the
:class:`Degraded` record, sRGB <-> linear light, the full-reference strength measures shared with
the rater calibration, blur kernels and smooth random fields."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

# Calibration family of each measured component -> the canonical reason it raises.
FAMILY_REASON: dict[str, str | None] = {
    "blur": "blur",
    "motion": "motion",
    "dark": "dark",
    "noise": "noise",
    "bright": "bright",
    "glare": "bright",
    "colour": "colour",
    "compression": "noise",
    "resolution": "noise",
    "framing": "framing",
    "framing_nomask": "framing",
    "obstruction": "framing",
    "distance": "distance",
}


@dataclass
class Degraded:
    """One applied fault: ``image`` uint8 RGB ``[H, W, 3]`` (same shape as the input).

    ``components`` lists (calibration family, measured strength) pairs; a fault can have more
    than one (low light darkens *and* adds noise).
    """

    image: np.ndarray
    fault: str
    components: list[tuple[str, float]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Canonical reasons this fault can cause (whether raters notice is decided later)."""
        out = [FAMILY_REASON[f] for f, _ in self.components]
        return tuple(dict.fromkeys(r for r in out if r is not None))


# ---------------------------------------------------------------------------------------------
# colour space helpers
# ---------------------------------------------------------------------------------------------
_SRGB_TO_LINEAR_LUT = np.array(
    [
        (v / 255.0) / 12.92 if v / 255.0 <= 0.04045 else ((v / 255.0 + 0.055) / 1.055) ** 2.4
        for v in range(256)
    ],
    dtype=np.float32,
)
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``[H, W, 3]`` -> float32 linear light in [0, 1]."""
    return np.asarray(_SRGB_TO_LINEAR_LUT[image])


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """float linear light ``[H, W, 3]`` (clipped to [0, 1]) -> uint8 sRGB."""
    x = np.clip(linear, 0.0, 1.0).astype(np.float32)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.asarray(np.clip(np.rint(srgb * 255.0), 0, 255), dtype=np.uint8)


def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``[H, W, 3]`` -> float32 linear luminance ``[H, W]``."""
    return np.asarray(srgb_to_linear(image) @ LUMA, dtype=np.float32)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode + decode uint8 RGB ``[H, W, 3]`` as baseline JPEG at ``quality`` with 4:2:0 chroma
    subsampling (OpenCV's default, pinned: what phone and chat-app encoders use); same shape."""
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[:, :, ::-1])


# ---------------------------------------------------------------------------------------------
# full-reference strength measures (shared with the rater calibration on rated/)
# ---------------------------------------------------------------------------------------------
def exposure_stops(
    before: np.ndarray, after: np.ndarray, region: np.ndarray | None = None
) -> float:
    """Signed exposure change in stops from mean linear luminance (negative = darker), over the
    whole frame or inside the boolean ``region`` ``[H, W]``."""
    lb, la = luminance(before), luminance(after)
    if region is not None:
        lb, la = lb[region], la[region]
    return math.log2((float(la.mean()) + 1e-4) / (float(lb.mean()) + 1e-4))


def clipped_fraction(image: np.ndarray) -> float:
    """Fraction of pixels whose brightest channel is blown out (>= 250)."""
    return float(np.mean(image.max(axis=2) >= 250))


def washout(before: np.ndarray, after: np.ndarray) -> float:
    """Over-exposure strength: newly clipped fraction + 0.25 x stops brighter (both >= 0)."""
    new_clip = max(0.0, clipped_fraction(after) - clipped_fraction(before))
    return new_clip + 0.25 * max(0.0, exposure_stops(before, after))


def highlight_fraction(before: np.ndarray, after: np.ndarray) -> float:
    """Fraction of the frame turned into a bright hot-spot (luma +0.2 and above 0.8 linear)."""
    lb, la = luminance(before), luminance(after)
    return float(np.mean((la - lb > 0.2) & (la > 0.8)))


def colour_shift(before: np.ndarray, after: np.ndarray) -> float:
    """Delta E of the mean CIELAB chromaticity (a*, b*) between the two images."""

    def mean_ab(image: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        return np.asarray(lab[:, :, 1:].reshape(-1, 2).mean(axis=0))

    return float(np.linalg.norm(mean_ab(after) - mean_ab(before)))


def ssim_loss(before: np.ndarray, after: np.ndarray) -> float:
    """1 - SSIM (grey, Gaussian window sigma 1.5): generic distortion for compression."""
    x = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY).astype(np.float32)
    y = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY).astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (0, 0), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(1.0 - ssim.mean())


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _scale(image: np.ndarray) -> float:
    """Pixel scale relative to a 640-pixel long side (kernel sizes follow the image size)."""
    return float(max(image.shape[:2]) / 640.0)


def psf_sigma(kernel: np.ndarray) -> float:
    """Blur extent of a PSF: the standard deviation along its major axis (pixels). A Gaussian
    gives its sigma, a disc of radius r gives r / 2, a straight line of length L gives L / sqrt(12).
    """
    k = kernel.astype(np.float64) / kernel.sum()
    ys, xs = np.mgrid[0 : k.shape[0], 0 : k.shape[1]]
    mx, my = (k * xs).sum(), (k * ys).sum()
    cxx = (k * (xs - mx) ** 2).sum()
    cyy = (k * (ys - my) ** 2).sum()
    cxy = (k * (xs - mx) * (ys - my)).sum()
    major = 0.5 * (cxx + cyy) + math.sqrt(0.25 * (cxx - cyy) ** 2 + cxy**2)
    return math.sqrt(max(major, 0.0))


def _convolve_linear(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    lin = srgb_to_linear(image)
    out = cv2.filter2D(lin, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return linear_to_srgb(out)


def disc_kernel(radius: float, supersample: int = 4) -> np.ndarray:
    """Anti-aliased uniform disc (defocus PSF) of ``radius`` pixels, normalised to sum 1."""
    radius = max(radius, 0.3)
    half = math.ceil(radius) + 1
    n = (2 * half + 1) * supersample
    coords = (np.arange(n) + 0.5) / supersample - (half + 0.5)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    fine = (xx * xx + yy * yy <= radius * radius).astype(np.float32)
    kernel = fine.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).mean(axis=(1, 3))
    return np.asarray(kernel / kernel.sum())


def shake_trajectory(length: float, rng: np.random.Generator, steps: int = 256) -> np.ndarray:
    """Random camera-shake path (Boracchi & Foi style: inertia, random and impulsive
    acceleration, pull back to the start), returned as ``[steps, 2]`` xy points whose total path
    length is ``length`` pixels."""
    position = np.zeros(2)
    angle = rng.uniform(0, 2 * math.pi)
    velocity = np.array([math.cos(angle), math.sin(angle)])
    anxiety = rng.uniform(0.05, 0.6)
    points = np.zeros((steps, 2))
    for i in range(steps):
        accel = rng.normal(0, anxiety, 2) - 0.01 * position
        if rng.random() < 0.01 * anxiety:
            accel += rng.normal(0, 3.0, 2)  # a jerk
        velocity = velocity + accel * 0.1
        velocity /= np.linalg.norm(velocity) + 1e-9
        position = position + velocity
        points[i] = position
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1).sum()
    return np.asarray((points - points.mean(axis=0)) * (length / max(seg, 1e-6)))


def trajectory_kernel(points: np.ndarray) -> np.ndarray:
    """Rasterise a trajectory (bilinear splats, equal time per sample) into a normalised PSF."""
    half = math.ceil(float(np.abs(points).max())) + 2
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float64)
    dense = np.linspace(0, len(points) - 1, len(points) * 4)
    xs = np.interp(dense, np.arange(len(points)), points[:, 0]) + half
    ys = np.interp(dense, np.arange(len(points)), points[:, 1]) + half
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return np.asarray(kernel / kernel.sum(), dtype=np.float32)


def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field ``[H, W]`` in [-1, 1] (blurred white noise, rescaled)."""
    h, w = shape
    small = (max(2, int(h / sigma) + 2), max(2, int(w / sigma) + 2))
    noise = rng.normal(0, 1, small).astype(np.float32)
    field_ = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    field_ = cv2.GaussianBlur(field_, (0, 0), sigma / 4 + 0.5)
    return np.asarray(field_ / (np.abs(field_).max() + 1e-6))


def _lesion_box(mask: np.ndarray | None) -> tuple[float, float, float] | None:
    """(centre_x, centre_y, area_fraction) of the lesion in a mask, or None if none."""
    if mask is None or not np.any(mask > 0):
        return None
    ys, xs = np.nonzero(mask > 0)
    return float(xs.mean()), float(ys.mean()), float(len(xs)) / mask.size


def _crop_resize(image: np.ndarray, x0: int, y0: int, cw: int, ch: int) -> np.ndarray:
    """Crop a window inside the frame and bring it back to the frame size (digital zoom)."""
    h, w = image.shape[:2]
    crop = image[y0 : y0 + ch, x0 : x0 + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC)
