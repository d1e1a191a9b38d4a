"""Change the tiling written in an exported file's contract record; weights and graph untouched.

How a photo is shrunk and cut into patches is part of the model contract (``TilingSpec``), not of
the weights, so the app tiles a capture as the record says. Every validation number in the record
and the model card was measured on particular photos: changing a grid keeps those numbers only if
each of those photos is still cut into exactly the same patches. :func:`retile_existing_file`
therefore refuses to write unless every photo it is given to check (the photos the numbers were
measured on) keeps its bag at both grids, and it scores a sample of them through the app's engine
with the old and the new file to confirm the outputs are the same.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from desktop_app.core.model_meta import (
    SHORT_SIDE_SCHEMA_VERSION,
    GridSpec,
    ModelMeta,
    TilingSpec,
)
from desktop_app.core.tiling import plan_layout
from model_export.model.onnx_files import add_rewrite_arguments, checked_replacement

if TYPE_CHECKING:
    from desktop_app.core.inference import GridName

logger = logging.getLogger(__name__)

GRIDS: tuple[GridName, ...] = ("live", "capture")


class RetileError(ValueError):
    """The new tiling would change what the file's numbers were measured on, or its outputs."""


@dataclass(frozen=True)
class RetileReport:
    """What was checked: photos whose layout was compared, how many kept their bag at both grids,
    how many were scored by both files and the largest output difference among them."""

    photos_checked: int
    photos_unchanged: int
    photos_scored: int
    max_abs_output_diff: float


@dataclass(frozen=True)
class GridChange:
    """New grid sizes in pixels; ``None`` keeps the file's own value."""

    capture_long_side: int | None = None
    live_long_side: int | None = None
    capture_short_side: int | None = None
    live_short_side: int | None = None

    def applied(self, grid: GridSpec, name: GridName) -> GridSpec:
        long_side = getattr(self, f"{name}_long_side")
        short_side = getattr(self, f"{name}_short_side")
        return GridSpec(
            max_long_side=long_side or grid.max_long_side,
            max_patches=grid.max_patches,
            max_short_side=short_side or grid.max_short_side,
        )


def retiled_meta(meta: ModelMeta, version: str, change: GridChange) -> ModelMeta:
    """``meta`` with the new grid sizes and ``version``; the change is recorded in
    ``validation_metrics['retiled']`` so the provenance of the numbers stays with the file. A
    short-side cap lifts the record to schema 3 (older apps then refuse the file instead of
    tiling it without the cap)."""
    tiling = meta.tiling
    new_tiling = TilingSpec(
        patch_size=tiling.patch_size,
        live=change.applied(tiling.live, "live"),
        capture=change.applied(tiling.capture, "capture"),
        resize_interpolation=tiling.resize_interpolation,
    )
    metrics = dict(meta.validation_metrics)
    metrics["retiled"] = {
        "from_version": meta.model_version,
        "capture_max_long_side_was": tiling.capture.max_long_side,
        "live_max_long_side_was": tiling.live.max_long_side,
        "capture_max_short_side_was": tiling.capture.max_short_side,
        "live_max_short_side_was": tiling.live.max_short_side,
        "note": "same weights; every photo behind these numbers keeps its patches",
    }
    capped = new_tiling.live.max_short_side or new_tiling.capture.max_short_side
    new_meta = dataclasses.replace(
        meta,
        model_version=version,
        tiling=new_tiling,
        validation_metrics=metrics,
        schema_version=(
            max(meta.schema_version, SHORT_SIDE_SCHEMA_VERSION) if capped else meta.schema_version
        ),
    )
    new_meta.validate()
    return new_meta


def unchanged_bags(
    old: TilingSpec, new: TilingSpec, photo_sizes: dict[str, tuple[int, int]]
) -> tuple[list[str], list[str]]:
    """Split photos (name -> (height, width)) into those cut identically by both tilings at both
    grids and those that are not."""
    same: list[str] = []
    changed: list[str] = []
    for name, (height, width) in photo_sizes.items():
        keeps = True
        for grid in GRIDS:
            a = plan_layout(height, width, old.patch_size, getattr(old, grid))
            b = plan_layout(height, width, new.patch_size, getattr(new, grid))
            if a.resized_hw != b.resized_hw or a.ys != b.ys or a.xs != b.xs:
                keeps = False
        (same if keeps else changed).append(name)
    return same, changed


def retile_existing_file(
    source: Path,
    target: Path,
    version: str,
    check_images: list[Path],
    change: GridChange,
    max_scored: int = 16,
) -> RetileReport:
    """Write ``source`` with the grid ``change`` and ``version`` to ``target`` (may be
    ``source``).

    Nothing is written when any check image would be tiled differently (its numbers would no
    longer describe the file) or when the new file's outputs differ from the old one's on the
    first ``max_scored`` check images (they cannot, the bags and weights being the same: this
    catches a broken rewrite)."""
    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import QualityEngine
    from model_export.export.onnx_graph import set_metadata

    if not check_images:
        raise RetileError("give the photos the file's numbers were measured on (--check-images)")
    original = QualityEngine(source, providers="cpu")
    new_meta = retiled_meta(original.meta, version, change)
    sizes = {}
    for path in check_images:
        image = load_rgb(path)
        sizes[str(path)] = (int(image.shape[0]), int(image.shape[1]))
    same, changed = unchanged_bags(original.meta.tiling, new_meta.tiling, sizes)
    if changed:
        raise RetileError(
            f"{len(changed)} of {len(sizes)} check photos would be cut into other patches "
            f"(first: {Path(changed[0]).name}); their numbers would no longer hold: re-evaluate "
            "instead"
        )
    with checked_replacement(source, target) as tmp:
        tmp.write_bytes(source.read_bytes())
        set_metadata(tmp, new_meta)
        candidate = QualityEngine(tmp, providers="cpu")
        if candidate.meta.tiling != new_meta.tiling:
            raise RetileError("the rewritten file does not carry the new tiling")
        worst = 0.0
        scored = check_images[:max_scored]
        for path in scored:
            image = load_rgb(path)
            for grid in GRIDS:
                a, b = original.score(image, grid), candidate.score(image, grid)
                worst = max(
                    worst,
                    abs(a.score - b.score),
                    float(np.abs(np.asarray(a.patch_scores) - np.asarray(b.patch_scores)).max()),
                )
        if worst > 1e-6:
            raise RetileError(f"outputs changed by {worst:.3g} on unchanged bags; not written")
        del original, candidate
    logger.info("retiled %s -> %s (%s)", source.name, target.name, version)
    return RetileReport(len(sizes), len(same), len(scored), worst)


def add_parser(subparsers: Any) -> None:
    """The ``retile`` subcommand."""
    parser = subparsers.add_parser(
        "retile",
        help="change an exported model's grid sizes (metadata only), refused unless every "
        "check photo keeps its patches",
    )
    add_rewrite_arguments(parser)
    parser.add_argument("--version", required=True, help="model version of the rewritten file")
    parser.add_argument("--capture-long-side", type=int, help="new capture grid long side (px)")
    parser.add_argument("--live-long-side", type=int, help="new live grid long side (px)")
    parser.add_argument(
        "--capture-short-side",
        type=int,
        help="cap the capture grid's short side too (px; schema 3): 448 puts a 4:3 still in 2 rows",
    )
    parser.add_argument("--live-short-side", type=int, help="cap the live grid's short side (px)")
    parser.add_argument(
        "--check-images",
        type=Path,
        nargs="+",
        required=True,
        help="the photos the file's numbers were measured on (folders or files)",
    )
    parser.add_argument("--max-scored", type=int, default=16, help="photos scored by both files")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from desktop_app.core.image_io import iter_image_files

    images = sorted(iter_image_files(args.check_images))
    report = retile_existing_file(
        args.model,
        args.out,
        args.version,
        images,
        GridChange(
            capture_long_side=args.capture_long_side,
            live_long_side=args.live_long_side,
            capture_short_side=args.capture_short_side,
            live_short_side=args.live_short_side,
        ),
        max_scored=args.max_scored,
    )
    print(
        f"{args.out}: version {args.version}; {report.photos_unchanged} of "
        f"{report.photos_checked} check photos keep their patches at both grids; "
        f"{report.photos_scored} scored by both files, max |output diff| "
        f"{report.max_abs_output_diff:.2e}"
    )
    return 0
