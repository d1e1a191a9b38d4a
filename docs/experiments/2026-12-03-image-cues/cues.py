"""Image-level quality cues: cheap, whole-image measurements the patch network cannot see.

The patch network summarises each 224-pixel patch by channel means and standard deviations of
VGG16 activations, after the image has been shrunk to the grid's long side. That summary loses
what raters notice first on some faults (model issue 18): JPEG blocking (it lives on the file's
own 8x8 grid, erased by resizing), small specular hot-spots, light falling off towards the
corners, and where the finding sits in the frame. :func:`image_cues` measures those directly.

Training and the app call this one function (like ``core.tiling``), and the model file names the
cue set it was trained with (``ModelMeta.cues``: :data:`CUE_SET_VERSION` and :data:`CUE_NAMES`),
so a model and an app that disagree about the cues refuse to run together instead of scoring
silently wrong.

Input: a uint8 RGB image ``[H, W, 3]`` of any size. Output: float32 ``[C]`` in
:data:`CUE_NAMES` order, every value finite. Work is bounded for any input: the scale-normalised
cues use a copy resized to :data:`WORK_LONG_SIDE` pixels, the file-grid cues a centre crop of at
most :data:`NATIVE_CROP` pixels, so a 4000 x 3000 photo costs about what a video frame does.
"""

from __future__ import annotations

import cv2
import numpy as np

CUE_SET_VERSION = 1
WORK_LONG_SIDE = 512
NATIVE_CROP = 768
_EPS = 1e-6

CUE_NAMES: tuple[str, ...] = (
    # exposure (fractions of the frame; luminance in [0, 1])
    "lum_mean",
    "lum_p02",
    "lum_p50",
    "lum_p98",
    "clip_high",
    "clip_low",
    "dark_frac",
    "contrast",
    "saturation_mean",
    # light falling off from the centre (flash), or a bright centre
    "centre_corner_ratio",
    # colour cast (grey-world log ratios)
    "log_red_green",
    "log_blue_green",
    # focus and shake, at the normalised scale
    "sharp_fine",
    "sharp_ratio",
    "edge_density",
    "anisotropy",
    # noise
    "noise_sigma",
    # JPEG blocking on the file's own grid
    "blockiness",
    "flat_block_frac",
    # specular highlights
    "specular_frac",
    "hotspot_frac",
    "hotspot_count",
    "hotspot_largest",
    # where the atypical (lesion-like) region sits
    "atypical_area",
    "atypical_offset",
    "atypical_spread",
    "atypical_border",
    "atypical_centre",
)


def _resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, size, interpolation=interpolation))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """float32 ``[H, W]`` Rec. 601 luma in [0, 1] from uint8 RGB."""
    f = rgb.astype(np.float32) / 255.0
    return np.asarray(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2], np.float32)


def _native_crop(image: np.ndarray) -> np.ndarray:
    """A centre crop of at most NATIVE_CROP pixels whose origin sits on the file's 8-grid."""
    h, w = image.shape[:2]
    ch, cw = min(h, NATIVE_CROP), min(w, NATIVE_CROP)
    y0 = ((h - ch) // 2) // 8 * 8
    x0 = ((w - cw) // 2) // 8 * 8
    return image[y0 : y0 + ch, x0 : x0 + cw]


def _blocking(gray255: np.ndarray) -> tuple[float, float]:
    """(log ratio of gradient across 8-pixel block edges to gradient inside, flat-block share).

    ``gray255``: float32 ``[H, W]`` in 0-255 at the file's own resolution.
    """
    h, w = gray255.shape
    if h < 24 or w < 24:
        return 0.0, 0.0
    dx = np.abs(np.diff(gray255, axis=1))  # [H, W-1]; column j is the step j -> j+1
    dy = np.abs(np.diff(gray255, axis=0))
    cols = np.arange(dx.shape[1])
    rows = np.arange(dy.shape[0])
    edge_x = dx[:, cols % 8 == 7].mean()
    inner_x = dx[:, cols % 8 != 7].mean()
    edge_y = dy[rows % 8 == 7, :].mean()
    inner_y = dy[rows % 8 != 7, :].mean()
    ratio = (edge_x + edge_y + 0.5) / (inner_x + inner_y + 0.5)
    hb, wb = h // 8, w // 8
    blocks = gray255[: hb * 8, : wb * 8].reshape(hb, 8, wb, 8)
    block_std = blocks.std(axis=(1, 3))
    block_mean = blocks.mean(axis=(1, 3))
    # flat blocks that are not simply clipped to black or white
    usable = (block_mean > 12) & (block_mean < 243)
    flat = (block_std < 0.75) & usable
    flat_share = float(flat.sum() / max(1, usable.sum()))
    return float(np.log(ratio)), flat_share


def _noise_sigma(gray255: np.ndarray) -> float:
    """Immerkaer's fast noise estimate on flat pixels (0-255 units), log1p-compressed."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    residual = np.abs(cv2.filter2D(gray255, cv2.CV_32F, kernel))[1:-1, 1:-1]
    gx = cv2.Sobel(gray255, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(gray255, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
    grad = np.hypot(gx, gy)
    flat = grad <= np.percentile(grad, 40)
    if not flat.any():
        return 0.0
    sigma = float(np.sqrt(np.pi / 2.0) / 6.0 * residual[flat].mean())
    return float(np.log1p(sigma))


def _sharpness(gray: np.ndarray) -> tuple[float, float, float, float]:
    """(fine detail, fine/coarse detail ratio, edge density, gradient anisotropy).

    ``gray``: float32 ``[H, W]`` in [0, 1] at the work scale.
    """
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    fine = float(np.log(lap.var() + _EPS))
    half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
    coarse = float(np.log(cv2.Laplacian(half, cv2.CV_32F, ksize=3).var() + _EPS))
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    edges = float((magnitude > 0.25).mean())
    jxx, jyy, jxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    trace = jxx + jyy
    spread = np.sqrt(max(0.0, (jxx - jyy) ** 2 + 4 * jxy * jxy))
    anisotropy = float(spread / (trace + _EPS))
    return fine, fine - coarse, edges, anisotropy


def _specular(rgb: np.ndarray, gray: np.ndarray) -> tuple[float, float, float, float]:
    """(near-white share, hot-spot share, log1p hot-spot count, largest hot-spot share)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    value = hsv[..., 2].astype(np.float32) / 255.0
    saturation = hsv[..., 1].astype(np.float32) / 255.0
    near_white = (value >= 0.9) & (saturation <= 0.25)
    surround = cv2.GaussianBlur(gray, (0, 0), sigmaX=max(3.0, gray.shape[1] / 40.0))
    hot = ((gray - surround) > 0.12) & (value >= 0.75) & (saturation <= 0.45)
    hot_u8 = hot.astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(hot_u8, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA] if count > 1 else np.zeros(0)
    total = float(gray.size)
    significant = int((areas >= 4).sum())
    largest = float(areas.max() / total) if areas.size else 0.0
    return float(near_white.mean()), float(hot.mean()), float(np.log1p(significant)), largest


def _atypical_region(rgb: np.ndarray) -> tuple[float, float, float, float, float]:
    """Where the part of the frame that differs most from the typical skin colour lies.

    A proxy for the finding's position without a detector: per-pixel Lab distance from the
    frame's median colour, weighted above its median. Returns (area share of strongly atypical
    pixels, weighted centroid's distance from the centre in half-diagonals, weighted spread,
    share of the weight in the outer 8 % border band, share in the central 40 % box).
    """
    small = _resize_long_side(rgb, 128)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    median = np.median(lab.reshape(-1, 3), axis=0)
    distance = np.linalg.norm(lab - median, axis=2)
    base = float(np.median(distance))
    weight = np.maximum(distance - base, 0.0) ** 2
    total = float(weight.sum())
    h, w = distance.shape
    area = float((distance > max(12.0, 2.5 * base)).mean())
    if total <= _EPS:
        return area, 0.0, 0.0, 0.0, 0.0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    nx = (xs + 0.5) / w * 2 - 1
    ny = (ys + 0.5) / h * 2 - 1
    cx = float((weight * nx).sum() / total)
    cy = float((weight * ny).sum() / total)
    offset = float(np.hypot(cx, cy) / np.sqrt(2.0))
    spread = float(np.sqrt((weight * ((nx - cx) ** 2 + (ny - cy) ** 2)).sum() / total) / 2.0)
    border = (np.abs(nx) > 0.84) | (np.abs(ny) > 0.84)
    centre = (np.abs(nx) <= 0.4) & (np.abs(ny) <= 0.4)
    return (
        area,
        offset,
        spread,
        float(weight[border].sum() / total),
        float(weight[centre].sum() / total),
    )


def image_cues(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` (any size, at least 8 x 8) -> float32 ``[len(CUE_NAMES)]``."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
    rgb = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f"image of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small")

    native_gray = _luminance(_native_crop(rgb)) * 255.0
    blockiness, flat_blocks = _blocking(native_gray)

    work = _resize_long_side(rgb, WORK_LONG_SIDE)
    gray = _luminance(work)
    p02, p50, p98 = (float(v) for v in np.percentile(gray, [2, 50, 98]))
    clip_high = float((work.max(axis=2) >= 250).mean())
    clip_low = float((gray <= 8 / 255).mean())
    dark = float((gray < 0.15).mean())
    hsv_s = cv2.cvtColor(work, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0

    h, w = gray.shape
    cy0, cy1, cx0, cx1 = h // 3, 2 * h // 3, w // 3, 2 * w // 3
    centre = float(gray[cy0:cy1, cx0:cx1].mean())
    qh, qw = max(1, h // 5), max(1, w // 5)
    corners = np.concatenate(
        [
            gray[:qh, :qw].ravel(),
            gray[:qh, -qw:].ravel(),
            gray[-qh:, :qw].ravel(),
            gray[-qh:, -qw:].ravel(),
        ]
    )
    centre_corner = float(np.log((centre + 0.02) / (float(corners.mean()) + 0.02)))

    means = work.reshape(-1, 3).astype(np.float32).mean(axis=0) + 1.0
    log_rg = float(np.log(means[0] / means[1]))
    log_bg = float(np.log(means[2] / means[1]))

    fine, ratio, edges, anisotropy = _sharpness(gray)
    noise = _noise_sigma(gray * 255.0)
    specular = _specular(work, gray)
    atypical = _atypical_region(work)

    values = [
        float(gray.mean()),
        p02,
        p50,
        p98,
        clip_high,
        clip_low,
        dark,
        float(gray.std()),
        float(hsv_s.mean()),
        centre_corner,
        log_rg,
        log_bg,
        fine,
        ratio,
        edges,
        anisotropy,
        noise,
        blockiness,
        flat_blocks,
        *specular,
        *atypical,
    ]
    out = np.asarray(values, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
