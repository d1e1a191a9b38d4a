"""The fault families of recipe set v4 (what the rated2 photos show matters and the earlier sets
lacked): photos forwarded through chat apps (:func:`recompression_chain`), broad specular sheen on
oily or moist skin (:func:`sheen`) and the finding cut off at the frame's edge, also where no
lesion mask is known (:func:`cut_off`). Same interface as every fault of
:mod:`model_export.data.degradations`.

Each fault records two kinds of strength. ``components`` use the measures of the calibrated
families (so the simulated raters score them on curves fitted on rated photos: compression and
resolution, glare and washout, framing). ``params["strength"]`` is the family's own physical
measure (named by ``params["strength_measure"]``): the blockiness index of the output, the share
of the subject under sheen times the sheen's intensity, the share of the subject left outside the
frame. No rater curve has been fitted on these own measures yet.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from model_export.data.fault_kit import (
    Degraded,
    _crop_resize,
    _smooth_field,
    highlight_fraction,
    jpeg_roundtrip,
    linear_to_srgb,
    luminance,
    srgb_to_linear,
    ssim_loss,
    washout,
)
from model_export.data.scene_faults import _subject_region, framing_strength

NO_SUBJECT = "no subject found"


# ---------------------------------------------------------------------------------------------
# chat-app recompression
# ---------------------------------------------------------------------------------------------
def _boundary_columns(n: int, period: float) -> np.ndarray:
    """Indices ``i`` of the pixel pairs (i, i + 1), along an axis of ``n`` pixels, that straddle
    the edges of a block grid of ``period`` pixels starting at 0 (an 8x8 JPEG grid enlarged by
    ``period / 8`` maps its edge between source pixels 8k - 1 and 8k to ``8k * r - 0.5``)."""
    edges = np.arange(period, n - 1, period)
    idx = np.round(edges - 1.0).astype(int)
    return np.unique(idx[(idx >= 0) & (idx < n - 1)])


def blockiness(image: np.ndarray, period: float = 8.0) -> float:
    """Blocking index of a uint8 RGB ``[H, W, 3]`` image on a block grid of ``period`` pixels:
    the mean absolute grey-level jump across the grid's edges divided by the mean jump between
    neighbours inside the blocks, minus 1 (both directions averaged). 0: no excess jump at the
    block edges; JPEG blocking raises it. Pixels next to an edge of an enlarged grid (period > 8)
    count neither as edge nor as inside."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ratios = []
    for diff in (np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0)).T):
        n = diff.shape[1]
        edge = _boundary_columns(n + 1, period)
        if edge.size == 0:
            continue
        inside = np.ones(n, bool)
        spread = max(0, math.ceil(period / 8.0 / 2.0))  # an enlarged edge blurs over r pixels
        for d in range(-spread, spread + 1):
            inside[np.clip(edge + d, 0, n - 1)] = False
        if not inside.any():
            continue
        ratios.append(float(diff[:, edge].mean()) / (float(diff[:, inside].mean()) + 1e-3))
    return float(np.mean(ratios)) - 1.0 if ratios else 0.0


def recompression_chain(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """A photo forwarded through chat apps (WhatsApp/Signal style): 2..5 rounds (more with s).
    The first round and, with probability 0.4..0.8 (rising with s), each later one shrink the
    long side by 0.7..0.92 (an app's size cap, like 1600 -> 1280 -> 1024 px; never below
    240 px); every round saves as JPEG at quality 75..30 (falling with s, +-5) with 4:2:0
    chroma, and a later round is sharpened slightly first half of the time (the phone's
    display sharpening). A viewer enlarges the received photo back to the working size
    ``[H, W, 3]`` (bilinear); ``image`` uint8 RGB ``[H, W, 3]`` in, same shape out.

    Components: compression (1 - SSIM, as :func:`~model_export.data.degradations.jpeg_compression`)
    and resolution (-log2 of the overall shrink). Own strength: :func:`blockiness` of the
    received photo on its own 8x8 grid (``blockiness_output``: of the enlarged output on that
    grid mapped to output pixels, where interpolation softens the block edges)."""
    h, w = image.shape[:2]
    rounds = 2 + min(3, int(s * 3.999))
    q_centre = 75.0 - 45.0 * s**0.8
    p_resize = 0.4 + 0.4 * s  # a forward re-sizes when the photo is above that app's cap
    current = image
    qualities: list[int] = []
    sizes: list[list[int]] = []
    sharpened = 0
    for r in range(rounds):
        ch, cw = current.shape[:2]
        if r == 0 or rng.random() < p_resize:
            long_side = max(240, round(max(ch, cw) * float(rng.uniform(0.7, 0.92))))
            if long_side < max(ch, cw):
                scale = long_side / max(ch, cw)
                size = (max(8, round(cw * scale)), max(8, round(ch * scale)))
                current = cv2.resize(current, size, interpolation=cv2.INTER_AREA)
        if r > 0 and rng.random() < 0.5:  # slight sharpening before the next save
            amount = float(rng.uniform(0.2, 0.5))
            soft = cv2.GaussianBlur(current, (0, 0), 1.0)
            current = cv2.addWeighted(current, 1 + amount, soft, -amount, 0)
            sharpened += 1
        quality = int(np.clip(round(q_centre + rng.uniform(-5, 5)), 30, 75))
        current = jpeg_roundtrip(current, quality)
        qualities.append(quality)
        sizes.append([int(current.shape[1]), int(current.shape[0])])
    received = current
    last_w, last_h = received.shape[1], received.shape[0]
    out = (
        received
        if (last_w, last_h) == (w, h)
        else cv2.resize(received, (w, h), interpolation=cv2.INTER_LINEAR)
    )
    block = blockiness(received)
    shrink = last_w / w
    return Degraded(
        out,
        "recompression_chain",
        [("compression", ssim_loss(image, out)), ("resolution", max(0.0, -math.log2(shrink)))],
        {
            "rounds": rounds,
            "qualities": qualities,
            "sizes": sizes,
            "sharpened": sharpened,
            "shrink": round(shrink, 3),
            "blockiness_input": round(blockiness(image), 4),
            "blockiness_output": round(blockiness(out, 8.0 / shrink), 4),
            "strength": round(block, 4),
            "strength_measure": "blockiness",
        },
    )


def _skin_pixels(image: np.ndarray) -> np.ndarray:
    """Bool ``[H, W]``: skin-coloured pixels of uint8 RGB ``[H, W, 3]`` (the YCrCb box of
    :func:`~model_export.data.build_plan.original_cues`)."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return np.asarray((cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 135))


# ---------------------------------------------------------------------------------------------
# sheen
# ---------------------------------------------------------------------------------------------
def sheen(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """Broad specular sheen on oily or moist skin (a window or ceiling light mirrored by the
    skin's surface film, not a flash hot-spot): 1..3 large soft patches with ragged outlines,
    centred in the subject (the lesion mask, else :func:`estimate_subject`, else the middle of
    the frame) and kept to skin-coloured pixels, together about 8..70 % (rising with s) of the
    subject's area or of a quarter of the frame, whichever is larger (the film spreads beyond a
    small wound). In linear light the diffuse image under a patch loses local contrast (blended
    towards its local mean: the film hides the texture), and near-white light of peak 0.2..1.6
    x white is added, broken up by the skin's micro-relief. ``image`` uint8 RGB ``[H, W, 3]``,
    ``mask`` ``[H, W]``; same shape out.

    Components: glare (new hot-spot fraction) and bright (washout). Own strength: share of the
    subject whose luminance rose by > 0.03 linear times the mean rise there."""
    h, w = image.shape[:2]
    estimated = estimate_subject(image) if mask is None or not np.any(mask > 0) else None
    subject = estimated if estimated is not None else _subject_region(mask, h, w)
    ys, xs = np.nonzero(subject)
    n_patches = 1 + int(rng.integers(0, 3))
    cover = 0.08 + 0.62 * s
    subject_area = float(len(xs))
    # the film spreads beyond a small wound: patches sized on at least a quarter of the frame
    base_area = max(subject_area, 0.25 * h * w)
    ragged = 1.0 + 0.6 * _smooth_field((h, w), 0.06 * max(h, w), rng)  # irregular outlines
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(n_patches):
        k = int(rng.integers(0, len(xs)))
        cx, cy = float(xs[k]), float(ys[k])
        area = cover * base_area / n_patches * rng.uniform(0.7, 1.3)
        aspect = rng.uniform(1.0, 2.5)
        sx = math.sqrt(area / math.pi * aspect)
        sy = sx / aspect
        theta = rng.uniform(0, math.pi)
        ct, st = math.cos(theta), math.sin(theta)
        u = ((xx - cx) * ct + (yy - cy) * st) / max(sx, 1.0)
        v = (-(xx - cx) * st + (yy - cy) * ct) / max(sy, 1.0)
        # soft plateau: ~1 inside the ellipse, a wide smooth fall-off outside it
        patch = 1.0 / (1.0 + ((u * u + v * v) * np.maximum(ragged, 0.2)) ** 2)
        alpha = np.maximum(alpha, patch.astype(np.float32))
    alpha *= 0.8 + 0.2 * _smooth_field((h, w), 0.08 * max(h, w), rng)  # uneven film
    skin = _skin_pixels(image)
    if float(skin.mean()) >= 0.05:  # the film is on the skin, not on cloth or background
        alpha *= cv2.GaussianBlur(skin.astype(np.float32), (0, 0), 0.01 * max(h, w) + 0.5)
    relief = 0.55 + 0.45 * (0.5 + 0.5 * _smooth_field((h, w), 2.5, rng))  # pores, micro-relief
    peak = 0.2 + 1.4 * s**1.1
    tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    lin = srgb_to_linear(image)
    local_mean = cv2.GaussianBlur(lin, (0, 0), 2.0 + 0.01 * max(h, w))
    flatten = (0.6 * min(1.0, peak) * alpha)[:, :, None]
    diffuse = lin * (1 - flatten) + local_mean * flatten
    added = (peak * alpha * relief)[:, :, None] * tint[None, None, :]
    out = linear_to_srgb(diffuse + added)
    rise = luminance(out) - luminance(image)
    lit = subject & (rise > 0.03)
    covered = float(np.count_nonzero(lit)) / max(1.0, subject_area)
    intensity = float(rise[lit].mean()) if np.any(lit) else 0.0
    return Degraded(
        out,
        "sheen",
        [("glare", highlight_fraction(image, out)), ("bright", washout(image, out))],
        {
            "patches": n_patches,
            "peak": round(peak, 3),
            "covered": round(covered, 3),
            "intensity": round(intensity, 3),
            "strength": round(covered * intensity, 4),
            "strength_measure": "subject_share_covered_x_intensity",
        },
    )


# ---------------------------------------------------------------------------------------------
# cut off at the frame's edge
# ---------------------------------------------------------------------------------------------
def estimate_subject(image: np.ndarray) -> np.ndarray | None:
    """The dominant lesion blob of a skin photo without a mask: bool ``[H, W]`` or None.

    Only skin-coloured pixels (the YCrCb skin box of the build's cues) count. In CIELAB, each
    one's extra chroma and half its darkness relative to the median skin pixel (the surrounding
    skin) add up to a lesion score (smoothed); Otsu's threshold over the skin pixels splits it,
    and the largest connected component is the subject if it covers 0.5..40 % of the frame and
    stands out from the other skin by a score of at least 6 (about a Delta E of 6)."""
    h, w = image.shape[:2]
    skin = _skin_pixels(image)
    if float(skin.mean()) < 0.2:  # hardly any skin in view: nothing to compare a lesion with
        return None
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lightness = lab[:, :, 0]
    chroma = np.hypot(lab[:, :, 1], lab[:, :, 2])
    raw = 0.5 * (float(np.median(lightness[skin])) - lightness) + (
        chroma - float(np.median(chroma[skin]))
    )
    score = np.asarray(
        cv2.GaussianBlur(raw.astype(np.float32), (0, 0), 0.01 * max(h, w) + 0.5), np.float32
    )
    values = score[skin]
    lo, hi = float(np.percentile(values, 1)), float(np.percentile(values, 99))
    if hi - lo < 1e-3:
        return None
    scaled = np.clip((values - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary = (skin & (score > lo + threshold / 255.0 * (hi - lo))).astype(np.uint8) * 255
    size = max(3, round(0.01 * max(h, w)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = np.asarray(labels == largest)
    share = float(blob.mean())
    if not 0.005 <= share <= 0.4:
        return None
    if float(score[blob].mean()) - float(score[skin & ~blob].mean()) < 6.0:
        return None
    return blob


def _outside_share(integral: np.ndarray, total: float, x0: int, y0: int, cw: int, ch: int) -> float:
    inside = (
        integral[y0 + ch, x0 + cw]
        - integral[y0, x0 + cw]
        - integral[y0 + ch, x0]
        + integral[y0, x0]
    )
    return 1.0 - float(inside) / total


def cut_off(
    image: np.ndarray, s: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> Degraded:
    """The finding cut off at the frame's edge: a crop window inside the frame (zoom 0.4..0.95,
    preferably near 0.9 - 0.45 s; enlarged back to ``[H, W, 3]``, no padding) placed so that its
    edge passes through the subject, leaving a target share of it (0.1 + 0.75 s, jittered)
    outside (the best of 400 random windows). The subject is the
    lesion mask ``[H, W]`` when given, else :func:`estimate_subject`; when neither finds one the
    image comes back unchanged with ``params["skip"] = NO_SUBJECT`` and no components, so the
    build can leave the item out.

    Component: with a mask, framing as :func:`~model_export.data.scene_faults.framing_strength`
    measures it; without one, ``framing_nomask``: the larger of that function's frame-centre
    measure and the share of the estimated subject outside (on the 14 DermNet cut-offs of
    rated2, scored on the curves fitted on rated/: MAE 0.63 against the real mean ratings; the
    frame-centre measure alone 0.55 but it rates a lesion cut in half as unharmed whenever the
    frame's centre stays in view, the framing curve on the estimated subject 1.03). Own
    strength: the share of the (estimated) subject outside the frame."""
    h, w = image.shape[:2]
    estimated = mask is None or not np.any(mask > 0)
    subject = estimate_subject(image) if mask is None or estimated else np.asarray(mask > 0)
    if subject is None:
        return Degraded(image.copy(), "cut_off", [], {"skip": NO_SUBJECT})
    total = float(np.count_nonzero(subject))
    integral = cv2.integral(subject.astype(np.uint8)).astype(np.float64)
    target = float(np.clip(0.1 + 0.75 * s + rng.normal(0, 0.03), 0.05, 0.9))
    zoom_pref = 0.9 - 0.45 * s  # a slight cut-off is mostly a shifted frame, a bad one a close-up
    best: tuple[float, int, int, int, int] | None = None
    for _ in range(400):  # random windows; keep the one closest to the target share
        zoom = float(rng.uniform(0.4, 0.95))
        cw, ch = max(16, round(w * zoom)), max(16, round(h * zoom))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        outside = _outside_share(integral, total, x0, y0, cw, ch)
        if outside >= 1.0:
            continue
        miss = abs(outside - target) + 0.1 * abs(zoom - zoom_pref)
        if best is None or miss < best[0]:
            best = (miss, x0, y0, cw, ch)
    if best is None:
        return Degraded(image.copy(), "cut_off", [], {"skip": NO_SUBJECT})
    _, x0, y0, cw, ch = best
    out = _crop_resize(image, x0, y0, cw, ch)
    outside = _outside_share(integral, total, x0, y0, cw, ch)
    win = (x0, y0, cw, ch)
    return Degraded(
        out,
        "cut_off",
        [
            ("framing_nomask", max(framing_strength(h, w, win, None), outside))
            if estimated
            else ("framing", framing_strength(h, w, win, mask))
        ],
        {
            "zoom": round(cw / w, 3),
            "window": list(win),
            "subject": "estimated" if estimated else "mask",
            "target_outside": round(target, 3),
            "strength": round(outside, 4),
            "strength_measure": "subject_share_outside_frame",
        },
    )
