"""Physically plausible capture faults at graded severity, for building the rated training set.

Every fault takes a uint8 RGB image ``[H, W, 3]``, a severity ``s`` in [0, 1] (0 = imperceptible,
1 = extreme), a numpy ``Generator`` and an optional lesion mask ``[H, W]`` (uint8, > 0 = lesion),
and returns a :class:`Degraded`: the new uint8 RGB image of exactly the same shape, the canonical
reason names the fault can cause, its parameters, and ``strength``: a measured, recipe-agnostic
number for how strong the fault came out on *this* image (the quantity the simulated raters were
calibrated on, see :mod:`model_export.data.raters`).

Physics: optics (defocus, camera shake), exposure, sensor noise, white balance and flash light are
simulated in linear light (sRGB decoded, processed, re-encoded). Geometric faults never pad: crops
are taken inside the frame, a zoom-out synthesises its surround from the photo's own (warped,
mirrored) content at the same scale, so no constant border or resolution seam appears.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from desktop_app.core.model_meta import REASON_NAMES_V1

# The contract's canonical reason names (one source of truth: the model metadata schema).
REASONS: tuple[str, ...] = REASON_NAMES_V1

# rated/ratings.csv has 12 finer reason columns; each maps onto one canonical reason.
RATED_REASON_MAP: dict[str, str] = {
    "blur": "blur",
    "motion": "motion",
    "dark": "dark",
    "bright": "bright",
    "glare": "bright",
    "colour": "colour",
    "framing": "framing",
    "obstruction": "framing",
    "distance": "distance",
    "noise": "noise",
    "compression": "noise",
    "resolution": "noise",
}


def map_rated_reasons(row: dict[str, str]) -> dict[str, int]:
    """12 rated reason columns (0/1 strings) -> the 8 canonical reasons (logical OR)."""
    out = dict.fromkeys(REASONS, 0)
    for column, reason in RATED_REASON_MAP.items():
        if str(row.get(column, "0")).strip() in ("1", "1.0", "True", "true"):
            out[reason] = 1
    return out


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
    """Encode + decode as JPEG (4:2:0) at ``quality``; uint8 RGB in and out."""
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
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


# ---------------------------------------------------------------------------------------------
# the faults
# ---------------------------------------------------------------------------------------------
def defocus(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Out of focus: uniform-disc PSF, radius 0.4..18 px (at 640 px), convolved in linear light."""
    radius = (0.4 + 17.6 * s**1.3) * _scale(image)
    kernel = disc_kernel(radius)
    out = _convolve_linear(image, kernel)
    return Degraded(
        out, "defocus", [("blur", psf_sigma(kernel) / _scale(image))], {"radius": round(radius, 2)}
    )


def motion(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Camera shake during exposure: random trajectory PSF of path length 1..55 px, linear light."""
    length = (1.0 + 54.0 * s**1.2) * _scale(image)
    kernel = trajectory_kernel(shake_trajectory(length, rng))
    out = _convolve_linear(image, kernel)
    return Degraded(
        out, "motion", [("motion", psf_sigma(kernel) / _scale(image))], {"length": round(length, 1)}
    )


def _sensor(
    linear: np.ndarray, electrons_at_white: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson shot noise + Gaussian read noise, per colour channel, on linear light [0, 1]."""
    electrons = rng.poisson(np.clip(linear, 0, None) * electrons_at_white).astype(np.float32)
    electrons += rng.normal(0.0, read_noise, linear.shape).astype(np.float32)
    return np.asarray(electrons / electrons_at_white)


def _noise_sigma(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Std of the high-pass residual (noisy - clean) in sRGB levels."""
    residual = noisy.astype(np.float32) - clean.astype(np.float32)
    residual -= cv2.GaussianBlur(residual, (0, 0), 3.0)
    return float(residual.std())


def low_light(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too little light: exposure drops 0.3..6 stops in linear light; the camera's gain makes up
    part of it, so shot + read noise are amplified; then gamma and the camera's own JPEG."""
    stops = 0.3 + 5.7 * s
    compensated = rng.uniform(0.0, 0.4) * stops  # auto-ISO recovers part of the exposure
    electrons = rng.uniform(3000, 9000) * 2.0 ** (-stops)
    read_noise = rng.uniform(1.5, 4.0)
    lin = srgb_to_linear(image) * 2.0 ** (-stops)
    clean = linear_to_srgb(lin * 2.0**compensated)
    noisy_lin = _sensor(lin * (2.0**stops), electrons, read_noise, rng) * 2.0 ** (
        compensated - stops
    )
    quality = int(rng.integers(75, 93))
    out = jpeg_roundtrip(linear_to_srgb(noisy_lin), quality)
    sigma = _noise_sigma(clean, out)
    return Degraded(
        out,
        "low_light",
        [("dark", -exposure_stops(image, out)), ("noise", sigma)],
        {
            "stops": round(stops, 2),
            "gain_stops": round(compensated, 2),
            "electrons_white": round(electrons, 1),
            "read_noise": round(read_noise, 2),
            "camera_jpeg_q": quality,
            "noise_sigma": round(sigma, 2),
        },
    )


def sensor_noise(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """High-ISO noise at normal brightness: few electrons per pixel, read noise, camera JPEG."""
    electrons = 4000.0 * 2.0 ** (-10.0 * s)  # up to 10 stops of ISO gain
    read_noise = rng.uniform(1.0, 3.0)
    out_lin = _sensor(srgb_to_linear(image), electrons, read_noise, rng)
    quality = int(rng.integers(80, 95))
    out = jpeg_roundtrip(linear_to_srgb(out_lin), quality)
    sigma = _noise_sigma(image, out)
    return Degraded(
        out,
        "sensor_noise",
        [("noise", sigma)],
        {
            "electrons_white": round(electrons, 1),
            "read_noise": round(read_noise, 2),
            "camera_jpeg_q": quality,
        },
    )


def over_exposure(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too much light: linear exposure gain 0.3..3.3 stops, sensor saturation clips each channel."""
    stops = 0.3 + 3.0 * s
    lin = srgb_to_linear(image) * 2.0**stops
    out = linear_to_srgb(np.minimum(lin, 1.0))
    return Degraded(
        out, "over_exposure", [("bright", washout(image, out))], {"stops": round(stops, 2)}
    )


def flash_glare(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Flash specular hot-spots on moist/oily skin: irregular saturated highlights added in linear
    light (illuminant-white), near the lesion when its position is known, plus veiling flare."""
    h, w = image.shape[:2]
    lin = srgb_to_linear(image)
    n_spots = 1 + int(rng.integers(0, 3 + int(5 * s)))
    total_area = (0.002 + 0.12 * s**1.5) * h * w
    box = _lesion_box(mask)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    spec = np.zeros((h, w), np.float32)
    for _ in range(n_spots):
        if box is not None and rng.random() < 0.7:
            cx = box[0] + rng.normal(0, 0.12 * w)
            cy = box[1] + rng.normal(0, 0.12 * h)
        else:
            cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        area = total_area / n_spots * rng.uniform(0.5, 1.5)
        aspect = rng.uniform(1.0, 3.0)
        sx = math.sqrt(area / math.pi * aspect) / 1.5
        sy = sx / aspect
        theta = rng.uniform(0, math.pi)
        ct, st = math.cos(theta), math.sin(theta)
        u = ((xx - cx) * ct + (yy - cy) * st) / max(sx, 1.0)
        v = (-(xx - cx) * st + (yy - cy) * ct) / max(sy, 1.0)
        spot = np.exp(-0.5 * (u * u + v * v) ** 1.3)
        spec = np.maximum(spec, spot * rng.uniform(1.5, 4.0))
    texture = 0.75 + 0.25 * _smooth_field((h, w), 6.0, rng)  # skin micro-relief breaks it up
    spec *= texture
    flare = 0.06 * s * cv2.GaussianBlur(spec, (0, 0), 0.15 * max(h, w))
    out = linear_to_srgb(lin + (spec + flare)[:, :, None])
    return Degraded(
        out,
        "flash_glare",
        [("glare", highlight_fraction(image, out))],
        {"spots": n_spots, "area_frac": round(total_area / (h * w), 4)},
    )


def colour_cast(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Wrong white balance: per-channel gains in linear light along a random mix of the
    blue-amber (colour temperature) and green-magenta (tint) axes, luminance kept."""
    theta = rng.uniform(0, 2 * math.pi)
    magnitude = 0.05 + 0.85 * s  # natural-log gain spread
    temp_axis = np.array([1.0, 0.0, -1.0]) / math.sqrt(2)
    tint_axis = np.array([-0.5, 1.0, -0.5]) / math.sqrt(1.5)
    log_gain = magnitude * (math.cos(theta) * temp_axis + math.sin(theta) * tint_axis)
    gains = np.exp(log_gain)
    gains /= float(LUMA @ gains)
    out = linear_to_srgb(srgb_to_linear(image) * gains.astype(np.float32))
    return Degraded(
        out,
        "colour_cast",
        [("colour", colour_shift(image, out))],
        {"gains": [round(float(g), 3) for g in gains]},
    )


def jpeg_compression(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Heavy JPEG compression (messaging apps): quality 90 -> 3."""
    quality = round(90 - 87 * s**0.7)
    out = jpeg_roundtrip(image, quality)
    return Degraded(out, "jpeg", [("compression", ssim_loss(image, out))], {"quality": quality})


def _shrink(image: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """The too-few-pixels step shared by :func:`resolution_loss` and :func:`pixelation`: the image
    area-averaged down by ``scale`` = 2^(-3.3 s) (1..0.1; at least 8 px a side) and that scale."""
    h, w = image.shape[:2]
    scale = 2.0 ** (-3.3 * s)
    small = cv2.resize(
        image, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return small, scale


def resolution_loss(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too few pixels (small sensor / digital zoom / thumbnail): down-sample by 1..0.1 with area
    averaging, then back up to the frame size (bilinear or bicubic, as viewers do)."""
    h, w = image.shape[:2]
    small, scale = _shrink(image, s)
    interp = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    out = cv2.resize(small, (w, h), interpolation=interp)
    return Degraded(
        out,
        "resolution",
        [("resolution", -math.log2(scale))],
        {"scale": round(scale, 3)},
    )


def pixelation(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too few pixels, shown blocky: a small image (digital zoom, a messaging app's thumbnail)
    enlarged by a viewer with nearest-neighbour copying, then saved as JPEG again. Same
    down-sampling range and strength measure as :func:`resolution_loss`; only the enlargement
    differs, and its hard block edges look sharp to a detail measure that smooth blur does not
    fool."""
    h, w = image.shape[:2]
    small, scale = _shrink(image, s)
    quality = int(rng.integers(70, 93))
    out = jpeg_roundtrip(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), quality)
    return Degraded(
        out,
        "resolution",
        [("resolution", -math.log2(scale))],
        {"scale": round(scale, 3), "upscale": "nearest", "jpeg_q": quality},
    )


def tone_dark(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too dark by the tone curve, not by too few photons: metering for a bright background or a
    processing step lowers the mid-tones with a power curve (exponent 1.2..3.5 on sRGB values)
    while highlights stay; no extra sensor noise, the camera's JPEG after it. Strength is the
    same exposure measure as :func:`low_light`."""
    exponent = 1.2 + 2.3 * s
    out_f = 255.0 * np.power(image.astype(np.float32) / 255.0, exponent)
    quality = int(rng.integers(80, 95))
    out = jpeg_roundtrip(np.clip(np.round(out_f), 0, 255).astype(np.uint8), quality)
    return Degraded(
        out,
        "tone_dark",
        [("dark", -exposure_stops(image, out))],
        {"exponent": round(exponent, 2), "camera_jpeg_q": quality},
    )


def levels_bright(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Too bright by processing: a gain of 1.05..2.65 and an offset of up to 50 levels on the
    sRGB values (auto-levels, a brightness slider, a phone's "enhance"), clipped at white: the
    picture washes out and loses contrast rather than clipping like a sensor. Strength is the
    same washout measure as :func:`over_exposure`."""
    gain = 1.05 + 1.6 * s
    offset = float(rng.uniform(0.3, 1.0)) * 50.0 * s
    out_f = image.astype(np.float32) * gain + offset
    out = np.clip(np.round(out_f), 0, 255).astype(np.uint8)
    return Degraded(
        out,
        "levels_bright",
        [("bright", washout(image, out))],
        {"gain": round(gain, 2), "offset": round(offset, 1)},
    )


def _window(
    h: int, w: int, zoom: float, centre_x: float, centre_y: float
) -> tuple[int, int, int, int]:
    cw, ch = max(16, round(w * zoom)), max(16, round(h * zoom))
    x0 = int(np.clip(round(centre_x - cw / 2), 0, w - cw))
    y0 = int(np.clip(round(centre_y - ch / 2), 0, h - ch))
    return x0, y0, cw, ch


def framing_strength(
    h: int, w: int, window: tuple[int, int, int, int], mask: np.ndarray | None
) -> float:
    """How badly a crop window frames the subject, 0..1: the lesion fraction cut off plus half the
    off-centre distance of what remains (mask known); without a mask, the fraction of the
    photo's central region (middle 40 %, where people centre the subject) left outside."""
    x0, y0, cw, ch = window
    if mask is not None and np.any(mask > 0):
        total = float(np.count_nonzero(mask))
        inside = mask[y0 : y0 + ch, x0 : x0 + cw] > 0
        visible = float(np.count_nonzero(inside)) / total
        if visible <= 0:
            return 1.0
        ys, xs = np.nonzero(inside)
        off = math.hypot((xs.mean() - cw / 2) / (cw / 2), (ys.mean() - ch / 2) / (ch / 2))
        return float(min(1.0, (1.0 - visible) + 0.5 * min(1.0, off) * visible))
    cx0, cx1, cy0, cy1 = 0.3 * w, 0.7 * w, 0.3 * h, 0.7 * h
    ix = max(0.0, min(cx1, x0 + cw) - max(cx0, x0))
    iy = max(0.0, min(cy1, y0 + ch) - max(cy0, y0))
    return float(1.0 - ix * iy / ((cx1 - cx0) * (cy1 - cy0)))


def reframe(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """A *good* digital zoom (0.6..0.9 of the frame) with the subject kept centred: teaches that a
    crop/upscale by itself is not a framing fault (the framing fault uses the same zooms)."""
    h, w = image.shape[:2]
    zoom = rng.uniform(0.6, 0.92)
    box = _lesion_box(mask)
    cx, cy = (box[0], box[1]) if box is not None else (w / 2, h / 2)
    cx += rng.normal(0, 0.04 * w)
    cy += rng.normal(0, 0.04 * h)
    win = _window(h, w, zoom, cx, cy)
    out = _crop_resize(image, *win)
    return Degraded(
        out,
        "reframe",
        [],
        {"zoom": round(zoom, 3), "window": list(win)},
    )


def off_centre(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Lesion off-centre or cut off: a crop window (same zoom range as :func:`reframe`) placed so
    the lesion sits towards (s < 0.5) or beyond (s > 0.5) an edge. Without a mask the window is
    pushed towards a random edge/corner, away from the photo's centre."""
    h, w = image.shape[:2]
    zoom = rng.uniform(0.4, 0.8)
    cw, ch = w * zoom, h * zoom
    box = _lesion_box(mask)
    reach = 0.3 + 2.0 * s  # lesion centre at this fraction of the half-window from its centre
    best: tuple[float, float, float] | None = None
    for _ in range(6):  # prefer a direction in which the frame leaves room to push the window
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = math.cos(angle), math.sin(angle)
        if box is not None:
            cx, cy = box[0] - dx * reach * cw / 2, box[1] - dy * reach * ch / 2
        else:
            cx = w / 2 + dx * (0.15 + 0.85 * s) * (w - cw)
            cy = h / 2 + dy * (0.15 + 0.85 * s) * (h - ch)
        x0, y0, _, _ = _window(h, w, zoom, cx, cy)
        shortfall = math.hypot(x0 + cw / 2 - cx, y0 + ch / 2 - cy)
        if best is None or shortfall < best[0]:
            best = (shortfall, cx, cy)
    assert best is not None
    _, cx, cy = best
    win = _window(h, w, zoom, cx, cy)
    out = _crop_resize(image, *win)
    return Degraded(
        out,
        "off_centre",
        [("framing" if box is not None else "framing_nomask", framing_strength(h, w, win, mask))],
        {"zoom": round(zoom, 3), "window": list(win)},
    )


def lesion_distance(mask: np.ndarray | None, zoom: float = 1.0) -> float | None:
    """Distance strength -log2(lesion linear size / frame) after a zoom, or None without mask."""
    box = _lesion_box(mask)
    return None if box is None else -math.log2(math.sqrt(box[2]) * zoom)


def zoom_out(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Lesion too far / too small: the whole photo shrunk by 1..0.55 (area averaging in linear
    light, as a farther camera would record it) and placed in a surround synthesised from its own
    content at the same scale: mirrored, then smoothly warped away from the seam so the surround is
    not an exact mirror image. No constant border, no resolution step at the seam."""
    h, w = image.shape[:2]
    zoom = 1.0 - 0.45 * s**0.9
    sw, sh = max(8, round(w * zoom)), max(8, round(h * zoom))
    small = linear_to_srgb(
        cv2.resize(srgb_to_linear(image), (sw, sh), interpolation=cv2.INTER_AREA)
    )
    # roughly centred (a photographer still aims at the lesion): a mirrored band on every side
    x0 = round((w - sw) / 2 * (1 + rng.uniform(-0.5, 0.5)))
    y0 = round((h - sh) / 2 * (1 + rng.uniform(-0.5, 0.5)))
    # Mirror into a canvas larger than the frame so the warp can pull content from further out.
    margin = max(h, w) // 8
    top, left = y0 + margin, x0 + margin
    bottom, right = h - y0 - sh + margin, w - x0 - sw + margin
    big = small
    while top > 0 or bottom > 0 or left > 0 or right > 0:
        # reflect repeatedly when the surround is wider than the shrunk photo
        t, b = min(top, big.shape[0] - 1), min(bottom, big.shape[0] - 1)
        lft, r = min(left, big.shape[1] - 1), min(right, big.shape[1] - 1)
        big = cv2.copyMakeBorder(big, t, b, lft, r, cv2.BORDER_REFLECT_101)
        top, bottom, left, right = top - t, bottom - b, left - lft, right - r
    # after the loop the shrunk photo sits at (y0 + margin, x0 + margin) of `big`
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = np.maximum(np.maximum(x0 - xx, xx - (x0 + sw - 1)), 0)
    dy = np.maximum(np.maximum(y0 - yy, yy - (y0 + sh - 1)), 0)
    dist = np.hypot(dx, dy)
    ramp = np.clip(dist / (0.06 * max(h, w)), 0, 1) ** 1.5
    amp = 0.08 * max(h, w)
    warp_x = ramp * amp * _smooth_field((h, w), 0.15 * max(h, w), rng)
    warp_y = ramp * amp * _smooth_field((h, w), 0.15 * max(h, w), rng)
    map_x = (xx + margin + warp_x).astype(np.float32)
    map_y = (yy + margin + warp_y).astype(np.float32)
    out = cv2.remap(big, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    box = _lesion_box(mask)
    # lesion's linear size as a fraction of the frame's; without a mask (DermNet) the subject
    # is taken to span about half the frame
    size = math.sqrt(box[2]) * zoom if box is not None else 0.5 * zoom
    return Degraded(
        out,
        "zoom_out",
        [("distance", -math.log2(size))],
        {"zoom": round(zoom, 3), "offset": [x0, y0]},
    )


SKIN_TONES_SRGB = np.array(
    [
        [241, 194, 167],
        [224, 172, 138],
        [198, 134, 100],
        [161, 102, 70],
        [120, 75, 50],
        [80, 50, 35],
    ],
    dtype=np.float32,
)


def _occluder_mask(
    h: int,
    w: int,
    kind: str,
    coverage: float,
    rng: np.random.Generator,
    target: tuple[float, float] | None,
) -> np.ndarray:
    """Soft float mask ``[H, W]`` in [0, 1] for a finger (rounded capsule from an edge) or a
    clothing edge (wavy boundary from one side)."""
    m = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = int(rng.integers(0, 4))
    if kind == "finger":
        width = math.sqrt(coverage * h * w / 2.5)
        if target is not None and rng.random() < 0.6:
            tx, ty = target
        else:
            tx, ty = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        starts = [(tx, -width), (tx, h + width), (-width, ty), (w + width, ty)]
        sx, sy = starts[side]
        sx += rng.normal(0, 0.15 * w)
        sy += rng.normal(0, 0.15 * h)
        length = 2.5 * width
        vx, vy = tx - sx, ty - sy
        norm = math.hypot(vx, vy) + 1e-6
        ex, ey = sx + vx / norm * (length + width), sy + vy / norm * (length + width)
        # distance from each pixel to the segment (start, end)
        px, py = xx - sx, yy - sy
        seg_x, seg_y = ex - sx, ey - sy
        t = np.clip((px * seg_x + py * seg_y) / (seg_x**2 + seg_y**2 + 1e-6), 0, 1)
        d = np.hypot(px - t * seg_x, py - t * seg_y)
        m = np.clip((width / 2 - d) / 2.0 + 0.5, 0, 1)
    else:  # clothing: a wavy edge entering from one side
        depth = coverage * (h if side < 2 else w)
        coord = [yy, h - 1 - yy, xx, w - 1 - xx][side]
        along = (xx if side < 2 else yy) / max(h, w)
        wave = depth * (1 + 0.15 * np.sin(2 * math.pi * (along * rng.uniform(1, 3) + rng.random())))
        m = np.clip((wave - coord) / 2.0 + 0.5, 0, 1)
    return np.asarray(m, dtype=np.float32)


def obstruction(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Partial obstruction close to the lens: a finger (skin tone, cylindrical shading, defocused),
    a clothing edge (fabric colour, weave and folds), or hair strands across the field."""
    h, w = image.shape[:2]
    kind = str(rng.choice(["finger", "clothing", "hair"], p=[0.45, 0.35, 0.2]))
    coverage = 0.03 + 0.40 * s**1.2
    box = _lesion_box(mask)
    target = (box[0], box[1]) if box is not None else None
    lin = srgb_to_linear(image)
    if kind == "hair":
        alpha = np.zeros((h, w), np.float32)
        n = int(4 + 60 * s)
        thickness = max(1, round(_scale(image) * rng.uniform(1.0, 2.5)))
        layer = np.zeros((h, w), np.uint8)
        for _ in range(n):
            p0 = rng.uniform([0, 0], [w, h])
            p3 = p0 + rng.normal(0, 0.35 * max(h, w), 2)
            p1, p2 = p0 + rng.normal(0, 0.2 * max(h, w), 2), p3 + rng.normal(0, 0.2 * max(h, w), 2)
            t = np.linspace(0, 1, 60)[:, None]
            curve = (
                (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
            )
            cv2.polylines(
                layer,
                [np.round(curve * 4).astype(np.int32)],
                False,
                255,
                thickness,
                cv2.LINE_AA,
                shift=2,
            )
        alpha = np.asarray(cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), 0.7))
        level = int(rng.choice([20, 45, 90, 140]))
        colour = srgb_to_linear(np.full((1, 1, 3), level, np.uint8)).reshape(3)
        colour = colour * np.array([1.0, 0.85, 0.7], np.float32)
        paint = np.broadcast_to(colour, (h, w, 3))
    else:
        alpha = _occluder_mask(h, w, kind, coverage, rng, target)
        if kind == "finger":
            tone = SKIN_TONES_SRGB[int(rng.integers(0, len(SKIN_TONES_SRGB)))]
            tone = tone * rng.uniform(0.85, 1.1, 3)
            base = srgb_to_linear(np.clip(tone, 0, 255).astype(np.uint8).reshape(1, 1, 3)).reshape(
                3
            )
            inner = cv2.GaussianBlur(alpha, (0, 0), 0.08 * max(h, w))
            shade = 0.45 + 0.75 * inner / (inner.max() + 1e-6)  # rounded, lit from the front
            paint = base[None, None, :] * shade[:, :, None]
            blur_sigma = 0.02 * max(h, w) * rng.uniform(0.5, 1.5)  # too close to be in focus
        else:
            fabric = rng.uniform(20, 235, 3).astype(np.uint8).reshape(1, 1, 3)
            base = srgb_to_linear(fabric).reshape(3)
            weave = 1 + 0.06 * np.sin(xx_yy_sum(h, w) * rng.uniform(0.8, 1.6))
            folds = 0.75 + 0.25 * _smooth_field((h, w), 0.1 * max(h, w), rng)
            paint = base[None, None, :] * (weave * folds)[:, :, None]
            blur_sigma = 0.006 * max(h, w) * rng.uniform(0.3, 1.5)
        alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), blur_sigma))
        paint = cv2.GaussianBlur(paint.astype(np.float32), (0, 0), blur_sigma)
    out_lin = lin * (1 - alpha[:, :, None]) + paint * alpha[:, :, None]
    out = linear_to_srgb(out_lin)
    covered = float(np.mean(alpha > 0.5))
    lesion_covered = (
        float(np.mean(alpha[mask > 0] > 0.5)) if mask is not None and np.any(mask > 0) else covered
    )
    strength = max(covered, lesion_covered)
    return Degraded(
        out,
        f"obstruction_{kind}",
        [("obstruction", strength)],
        {"kind": kind, "covered": round(covered, 3), "lesion_covered": round(lesion_covered, 3)},
    )


def _subject_region(mask: np.ndarray | None, h: int, w: int) -> np.ndarray:
    """Boolean ``[H, W]``: the lesion where its mask is known, else the middle half of the frame
    in each direction (where a photographer puts the subject)."""
    if mask is not None and np.any(mask > 0):
        return np.asarray(mask > 0)
    region = np.zeros((h, w), bool)
    region[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    return region


def cast_shadow(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """A shadow across the subject: the phone, a hand or the photographer's head between the
    room light and the skin. In linear light the shadowed side keeps 2^-(0.5..4) of its light
    (the ambient fill), behind a wobbly edge with a penumbra 0.5..4.5 % of the frame wide; the
    camera's auto-exposure makes up part of the lost light (the lit side may clip), then its JPEG.
    Strength is the exposure drop of the lesion (mask) or of the middle of the frame, on the same
    curve as :func:`low_light`; newly clipped highlights count as washout."""
    h, w = image.shape[:2]
    stops = 0.5 + 3.5 * s**1.1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    box = _lesion_box(mask)
    # the edge passes beside the subject so the shadow usually covers it (3 in 4)
    cx, cy = (box[0], box[1]) if box is not None else (w / 2, h / 2)
    theta = rng.uniform(0, 2 * math.pi)
    nx, ny = math.cos(theta), math.sin(theta)
    offset = rng.uniform(0.05, 0.35) * max(h, w) * (1 if rng.random() < 0.75 else -1)
    signed = (xx - cx) * nx + (yy - cy) * ny + offset  # > 0: in shadow
    signed += 0.06 * max(h, w) * _smooth_field((h, w), 0.2 * max(h, w), rng)  # not a ruler edge
    penumbra = (0.005 + 0.04 * rng.random()) * max(h, w)
    shadow = cv2.GaussianBlur((signed > 0).astype(np.float32), (0, 0), penumbra)
    lin = srgb_to_linear(image)
    out_lin = lin * (1.0 - shadow * (1.0 - 2.0**-stops))[:, :, None]
    lost = math.log2(max(float(lin.mean()), 1e-6) / max(float(out_lin.mean()), 1e-6))
    out_lin *= 2.0 ** (rng.uniform(0.0, 0.6) * lost)  # auto-exposure makes up part of it
    quality = int(rng.integers(80, 95))
    out = jpeg_roundtrip(linear_to_srgb(out_lin), quality)
    subject_stops = -exposure_stops(image, out, _subject_region(mask, h, w))
    new_clip = max(0.0, clipped_fraction(out) - clipped_fraction(image))
    return Degraded(
        out,
        "cast_shadow",
        [("dark", max(0.0, subject_stops)), ("bright", new_clip)],
        {
            "stops": round(stops, 2),
            "covered": round(float(np.mean(shadow > 0.5)), 3),
            "penumbra": round(penumbra, 1),
            "camera_jpeg_q": quality,
        },
    )


def _detail_energy(grey: np.ndarray) -> float:
    lap = cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 0.8), cv2.CV_32F)
    return float(np.mean(lap * lap)) + 1e-6


def equivalent_blur_sigma(before: np.ndarray, after: np.ndarray) -> float:
    """Sigma (pixels at a 640-pixel long side) of the Gaussian blur that leaves ``before`` as
    little fine detail (Laplacian energy) as ``after`` has: a blur strength for faults whose
    PSF is not a simple kernel. 0 when ``after`` has as much detail."""
    grey_b = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_a = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY).astype(np.float32)
    base = _detail_energy(grey_b)
    target = _detail_energy(grey_a) / base
    if target >= 1.0:
        return 0.0
    lo, hi = 0.0, 30.0 * _scale(before)
    for _ in range(18):  # detail falls monotonically with sigma
        mid = 0.5 * (lo + hi)
        if _detail_energy(cv2.GaussianBlur(grey_b, (0, 0), mid)) / base > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) / _scale(before)


def lens_haze(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """A smudged lens (skin grease, a fingerprint): part of the light (8..80 %, uneven over the
    frame) is scattered into a wide halo, which veils the picture and lowers its contrast, and
    what stays focused is slightly softened; in linear light, then the camera's JPEG. Strength is
    the blur that removes as much fine detail (:func:`equivalent_blur_sigma`) on the defocus
    curve: the veil's loss of contrast is not scored on its own (no rated photo shows it)."""
    h, w = image.shape[:2]
    veil = 0.08 + 0.72 * s**1.2
    uneven = veil * (0.7 + 0.3 * _smooth_field((h, w), 0.3 * max(h, w), rng))
    halo_sigma = rng.uniform(0.04, 0.12) * max(h, w)
    soft_sigma = (0.3 + 3.2 * s**1.2) * _scale(image)
    lin = srgb_to_linear(image)
    focused = cv2.GaussianBlur(lin, (0, 0), soft_sigma)
    halo = cv2.GaussianBlur(lin, (0, 0), halo_sigma)
    a = uneven[:, :, None]
    quality = int(rng.integers(80, 95))
    out = jpeg_roundtrip(linear_to_srgb((1 - a) * focused + a * halo), quality)
    return Degraded(
        out,
        "lens_haze",
        [("blur", equivalent_blur_sigma(image, out))],
        {
            "veil": round(veil, 3),
            "halo_sigma": round(halo_sigma, 1),
            "soft_sigma": round(soft_sigma, 2),
            "camera_jpeg_q": quality,
        },
    )


def xx_yy_sum(h: int, w: int) -> np.ndarray:
    """(x + y) and (x - y) cross-hatch phase ``[H, W]`` for a simple weave texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.asarray(np.sin(xx + yy) + np.sin(xx - yy))


FaultFn = Callable[[np.ndarray, float, np.random.Generator, "np.ndarray | None"], Degraded]

FAULTS: dict[str, FaultFn] = {
    "defocus": defocus,
    "motion": motion,
    "low_light": low_light,
    "sensor_noise": sensor_noise,
    "over_exposure": over_exposure,
    "flash_glare": flash_glare,
    "colour_cast": colour_cast,
    "jpeg": jpeg_compression,
    "resolution": resolution_loss,
    "off_centre": off_centre,
    "zoom_out": zoom_out,
    "obstruction": obstruction,
    # recipe set v2 (see build_data.RECIPE_SETS)
    "pixelation": pixelation,
    "tone_dark": tone_dark,
    "levels_bright": levels_bright,
    # recipe set v3
    "cast_shadow": cast_shadow,
    "lens_haze": lens_haze,
}

# Faults that really happen together (order = order of application: scene/optics, then sensor,
# then processing).
COMBINATIONS: tuple[tuple[str, ...], ...] = (
    ("motion", "low_light"),
    ("defocus", "sensor_noise"),
    ("colour_cast", "low_light"),
    ("over_exposure", "flash_glare"),
    ("resolution", "jpeg"),
    ("off_centre", "defocus"),
    ("zoom_out", "motion"),
    ("obstruction", "motion"),
    ("colour_cast", "jpeg"),
    ("zoom_out", "colour_cast"),
)
