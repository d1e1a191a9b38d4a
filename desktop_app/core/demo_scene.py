"""A procedurally generated skin photograph for the built-in demo feed.

Nothing here is copied from a photo: the skin colour follows a two-pigment absorption model
(melanin and haemoglobin optical densities over a pale base), with low-frequency tone variation,
a micro-relief furrow network, pores, a few fine hairs, soft directional light with vignetting and
camera noise; the lesion is a pigmented macule with an irregular, partly blurred border, uneven
brown to grey-blue pigment, a reticular network and a few globules.

The demo feed (``sources.DemoSource``) moves a virtual camera over the rendered skin and
cycles through good and poor moments (motion blur, defocus, too dark, glare, lesion off-centre,
too far away) so that a new user sees the quality gate react.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Optical density per unit pigment for R, G, B: melanin absorbs increasingly towards blue,
# haemoglobin mostly green (and some blue).
MELANIN_OD = np.array([0.30, 0.52, 0.80], dtype=np.float32)
HAEMOGLOBIN_OD = np.array([0.04, 0.38, 0.22], dtype=np.float32)
# Dermal melanin seen through the skin scatters as grey-blue (Tyndall effect).
DERMAL_OD = np.array([0.55, 0.45, 0.30], dtype=np.float32)
SKIN_BASE_RGB = np.array([0.98, 0.90, 0.80], dtype=np.float32)


@dataclass(frozen=True)
class SkinLook:
    """Parameters of one rendered patient: skin tone and lesion shape (all in pixels)."""

    melanin: float = 0.42
    haemoglobin: float = 0.24
    lesion_radius_px: float = 120.0
    pore_spacing_px: float = 16.0
    furrow_scale_px: float = 38.0


def _band_noise(
    rng: np.random.Generator, height: int, width: int, scale_px: float, octaves: int = 4
) -> np.ndarray:
    """Fractal value noise, float32 ``[H, W]`` with zero mean and unit standard deviation.

    ``scale_px`` is the size of the coarsest features; each octave halves it.
    """
    total = np.zeros((height, width), np.float32)
    amplitude = 1.0
    scale = scale_px
    for _ in range(octaves):
        gh = max(2, math.ceil(height / scale) + 2)
        gw = max(2, math.ceil(width / scale) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
        total += amplitude * up[:height, :width]
        amplitude *= 0.5
        scale = max(1.0, scale / 2.0)
    total -= float(total.mean())
    std = float(total.std()) or 1.0
    return total / std


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lesion_fields(
    rng: np.random.Generator, height: int, width: int, centre: tuple[float, float], radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lesion alpha, melanin and dermal (grey-blue) density maps, float32 ``[H, W]`` each."""
    cx, cy = centre
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx)
    dist = np.sqrt(dx * dx + dy * dy)
    # Irregular border: a few low harmonics (asymmetry, notches) plus finer wiggles.
    r_theta = np.ones_like(theta)
    for k in range(2, 9):
        amp = rng.uniform(0.02, 0.11) / math.sqrt(k - 1)
        r_theta += amp * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    wiggle = _band_noise(rng, height, width, radius * 0.18, octaves=3)
    r_theta = radius * (r_theta * (1.0 + 0.035 * wiggle))
    # The border is crisp on one side and fades on the other.
    fuzz = radius * (0.04 + 0.10 * (0.5 + 0.5 * np.cos(theta - rng.uniform(0, 2 * math.pi))))
    rel = dist - r_theta
    alpha = 1.0 - _smoothstep(-1.0, 1.0, rel / fuzz)
    # Pigment: darker, uneven centre; reticular network and a few globules.
    radial = np.clip(dist / np.maximum(r_theta, 1.0), 0.0, 1.5)
    variegation = _band_noise(rng, height, width, radius * 0.5, octaves=3)
    melanin = 1.7 + 0.9 * (1.0 - radial) + 0.4 * variegation
    net = _band_noise(rng, height, width, radius * 0.09, octaves=2)
    network = np.exp(-((net / 0.5) ** 2))  # thin lines along the noise's zero crossings
    melanin += 0.35 * network * _smoothstep(0.2, 0.9, radial)
    globules = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(6, 14))):
        ang = rng.uniform(0, 2 * math.pi)
        rad = radius * rng.uniform(0.15, 0.75)
        gx, gy = cx + rad * math.cos(ang), cy + rad * math.sin(ang)
        cv2.circle(
            globules,
            (int(gx), int(gy)),
            max(1, int(radius * rng.uniform(0.03, 0.07))),
            1.0,
            -1,
            cv2.LINE_AA,
        )
    globules = np.asarray(cv2.GaussianBlur(globules, (0, 0), max(1.0, radius * 0.015)), np.float32)
    melanin += 0.9 * globules
    # A grey-blue zone off-centre (dermal pigment) makes the lesion look less like a flat disc.
    bx = cx + radius * rng.uniform(-0.4, 0.4)
    by = cy + radius * rng.uniform(-0.4, 0.4)
    blue = np.exp(-(((xx - bx) ** 2 + (yy - by) ** 2) / (2 * (radius * 0.28) ** 2)))
    dermal = 0.6 * blue * (0.7 + 0.3 * variegation)
    return alpha.astype(np.float32), melanin.astype(np.float32), dermal.astype(np.float32)


def _line_field(
    rng: np.random.Generator, height: int, width: int, spacing_px: float, angle: float
) -> np.ndarray:
    """Thin, roughly parallel furrows at ``angle`` (radians): float32 ``[H, W]`` in [0, 1]."""
    side = int(math.hypot(height, width)) + 4
    along = max(2, int(side / (spacing_px * 6.0)) + 2)
    across = max(2, int(side / spacing_px) + 2)
    grid = rng.standard_normal((across, along)).astype(np.float32)
    field = np.asarray(cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC), np.float32)
    field = field / (float(field.std()) or 1.0)
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), math.degrees(angle), 1.0)
    rot[0, 2] -= (side - width) / 2
    rot[1, 2] -= (side - height) / 2
    rotated = np.asarray(cv2.warpAffine(field, rot, (width, height), flags=cv2.INTER_LINEAR))
    lines: np.ndarray = np.exp(-((rotated / 0.14) ** 2)).astype(np.float32)
    return lines


def _hair_mask(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
    """Fine hairs: thin, slightly curved anti-aliased strokes; float32 ``[H, W]`` in [0, 1]."""
    canvas = np.zeros((height, width), np.uint8)
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(-0.25, 0.25) + math.pi * 0.15
        length = rng.uniform(0.03, 0.08) * max(height, width)
        curve = rng.uniform(-0.6, 0.6) / length
        points = []
        for step in range(24):
            t = step / 23 * length
            a = angle + curve * t
            points.append((x + t * math.cos(a), y + t * math.sin(a)))
        pts = np.round(np.array(points) * 4).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 255, 1, cv2.LINE_AA, shift=2)
    return canvas.astype(np.float32) / 255.0


def render_skin(
    height: int,
    width: int,
    seed: int = 7,
    lesion_centre: tuple[float, float] | None = None,
    look: SkinLook | None = None,
) -> np.ndarray:
    """Render a well-lit, sharp skin close-up with one pigmented lesion.

    Returns uint8 RGB ``[H, W, 3]``. Deterministic for a given ``seed``.
    """
    look = look or SkinLook()
    rng = np.random.default_rng(seed)
    if lesion_centre is None:
        lesion_centre = (width * 0.5, height * 0.5)
    # Pigment fields over the whole patch.
    tone = _band_noise(rng, height, width, max(height, width) * 0.35, octaves=4)
    blotch = _band_noise(rng, height, width, look.lesion_radius_px * 0.8, octaves=3)
    melanin = look.melanin * (1.0 + 0.10 * tone + 0.06 * blotch)
    haemoglobin = look.haemoglobin * (1.0 + 0.20 * np.clip(blotch, -2, 3) + 0.12 * tone)
    alpha, lesion_melanin, dermal = _lesion_fields(
        rng, height, width, lesion_centre, look.lesion_radius_px
    )
    melanin = melanin * (1.0 - alpha) + lesion_melanin * alpha
    haemoglobin = haemoglobin * (1.0 + 0.5 * alpha)
    # Perilesional redness (a faint halo).
    cx, cy = lesion_centre
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    halo_d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / look.lesion_radius_px
    haemoglobin += 0.12 * np.exp(-(((halo_d - 1.1) / 0.35) ** 2))
    od = (
        melanin[..., None] * MELANIN_OD
        + haemoglobin[..., None] * HAEMOGLOBIN_OD
        + (dermal * alpha)[..., None] * DERMAL_OD
    )
    reflect = SKIN_BASE_RGB * np.exp(-od)
    # Micro-relief: a network of shallow furrows and pores, darker where light is trapped.
    furrows = np.maximum(
        _line_field(rng, height, width, look.furrow_scale_px, math.radians(30.0)),
        _line_field(rng, height, width, look.furrow_scale_px, math.radians(-40.0)),
    )
    pores = np.zeros((height, width), np.float32)
    n_pores = int(height * width / (look.pore_spacing_px**2))
    px = rng.uniform(0, width, n_pores).astype(np.int32)
    py = rng.uniform(0, height, n_pores).astype(np.int32)
    pores[py, px] = rng.uniform(0.5, 1.0, n_pores)
    pores = np.asarray(cv2.GaussianBlur(pores, (0, 0), 1.1), np.float32)
    pores = pores / max(float(pores.max()), 1e-6)
    fine = _band_noise(rng, height, width, 3.0, octaves=2)
    relief = 1.0 - 0.045 * furrows - 0.20 * pores + 0.03 * fine
    hairs = _hair_mask(rng, height, width, count=int(rng.integers(14, 24)))
    reflect = reflect * relief[..., None]
    hair_rgb = np.array([0.30, 0.22, 0.17], np.float32)
    reflect = reflect * (1.0 - 0.65 * hairs[..., None]) + hair_rgb * 0.65 * hairs[..., None]
    # Soft light from the upper left, falling off towards the corners; a faint broad sheen.
    lx = (xx / width - 0.35) * 1.2
    ly = (yy / height - 0.30) * 1.2
    # The patch lies on a gently curved body surface (a forearm): darker towards top and bottom.
    curvature = np.cos(np.clip((yy / height - 0.5) * 1.9, -1.5, 1.5)) ** 0.6
    light = (1.06 - 0.20 * np.sqrt(lx * lx + ly * ly)) * (0.78 + 0.22 * curvature)
    sheen = 0.05 * np.exp(
        -(((xx - width * 0.3) ** 2 + (yy - height * 0.28) ** 2) / (2 * (0.25 * width) ** 2))
    )
    linear = reflect * light[..., None] + sheen[..., None]
    # Lens softness and display gamma.
    linear = cv2.GaussianBlur(linear, (0, 0), 0.7)
    srgb = np.power(np.clip(linear, 0.0, 1.0), 1.0 / 1.35)
    noise = rng.normal(0.0, 0.008, (height, width, 1)).astype(np.float32)
    srgb = srgb + noise + rng.normal(0.0, 0.004, (height, width, 3)).astype(np.float32)
    out: np.ndarray = np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
