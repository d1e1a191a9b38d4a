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

import cv2
import numpy as np

from desktop_app.core.model_meta import REASON_NAMES_V1

# FAMILY_REASON and Degraded are part of this module's interface (FAULTS return Degraded)
from model_export.data.fault_kit import FAMILY_REASON as FAMILY_REASON
from model_export.data.fault_kit import (
    LUMA,
    _convolve_linear,
    _lesion_box,
    _scale,
    _smooth_field,
    colour_shift,
    disc_kernel,
    exposure_stops,
    highlight_fraction,
    jpeg_roundtrip,
    linear_to_srgb,
    psf_sigma,
    shake_trajectory,
    srgb_to_linear,
    ssim_loss,
    trajectory_kernel,
    washout,
)
from model_export.data.fault_kit import Degraded as Degraded
from model_export.data.scene_faults import (
    cast_shadow,
    lens_haze,
    obstruction,
    off_centre,
    zoom_out,
)
from model_export.data.v4_faults import cut_off, recompression_chain, sheen

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
    # recipe set v2 (see build_plan.RECIPE_SETS)
    "pixelation": pixelation,
    "tone_dark": tone_dark,
    "levels_bright": levels_bright,
    # recipe set v3
    "cast_shadow": cast_shadow,
    "lens_haze": lens_haze,
    # recipe set v4
    "recompression_chain": recompression_chain,
    "sheen": sheen,
    "cut_off": cut_off,
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
