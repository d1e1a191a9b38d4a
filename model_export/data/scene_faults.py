"""The scene and geometry faults: framing (off-centre, reframed), distance (zoom-out with a
synthesised surround), obstruction (fingers, hair, clothing), cast shadow and lens haze. Same
interface as every fault of :mod:`model_export.data.degradations`."""

from __future__ import annotations

import math

import cv2
import numpy as np

from model_export.data.fault_kit import (
    Degraded,
    _crop_resize,
    _lesion_box,
    _scale,
    _smooth_field,
    clipped_fraction,
    exposure_stops,
    jpeg_roundtrip,
    linear_to_srgb,
    srgb_to_linear,
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
