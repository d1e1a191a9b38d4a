"""Export of reviewed captures in the training pipeline's CSV format."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_app.core.model_meta import REASON_NAMES_V1
from desktop_app.core.store.durable import TEMP_PREFIX
from desktop_app.core.store.records import DECISION_RATING

if TYPE_CHECKING:
    from desktop_app.core.store.store import CaptureStore

logger = logging.getLogger(__name__)

# Words and phrases in a reviewer's free-text reason that name a reason column.
REASON_PHRASES: dict[str, tuple[str, ...]] = {
    "blur": ("blur", "blurry", "blurred", "out of focus", "unsharp", "not sharp", "soft focus"),
    "motion": ("motion", "shake", "shaky", "shaken", "camera moved", "movement"),
    "dark": ("dark", "underexposed", "under-exposed", "too dim", "dim"),
    "bright": ("bright", "overexposed", "over-exposed", "washed out", "burnt out", "blown"),
    "glare": ("glare", "reflection", "shiny", "specular", "sheen", "flash spot"),
    "colour": ("colour", "color", "colour cast", "color cast", "tint", "white balance"),
    "framing": ("framing", "off-centre", "off-center", "off centre", "off center", "cut off"),
    "distance": ("distance", "too far", "too small", "far away", "move closer"),
    "noise": ("noise", "noisy", "grainy", "grain"),
    "resolution": ("resolution", "pixelated", "low res"),
    "compression": ("compression", "compressed", "jpeg", "artefacts", "artifacts", "blocky"),
    "obstruction": ("obstruction", "obstructed", "covered", "hair", "finger", "sleeve"),
}


def reasons_named_in(text: str) -> set[str]:
    """The reason names that a reviewer's free text names (whole words or phrases, any case)."""
    lowered = " ".join(re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower()))
    padded = f" {lowered} "
    return {
        name
        for name, phrases in REASON_PHRASES.items()
        if any(f" {phrase} " in padded for phrase in phrases)
    }


def export_training_csv(
    store: CaptureStore, out_csv: Path, ids: Iterable[str] | None = None
) -> int:
    """Write reviewed captures in the training pipeline's CSV format; returns rows written.

    Columns: ``image`` (relative to the CSV; images are copied to ``images/`` beside it),
    ``rater_1`` (the reviewer's 1-5 rating, else override -> 4, confirm_reject -> 2),
    ``cohort`` (``app-<mode>``), ``split`` (``review``), ``source_path`` (``capture:<id>``),
    and one column per reason name: 1 where the reviewer's reason text names it
    (:func:`reasons_named_in`), else blank (unknown).
    Captures without a review decision carry no human label and are skipped.
    """
    import csv

    out_csv = Path(out_csv)
    wanted = set(ids) if ids is not None else None
    records = [
        r
        for r in reversed(store.list())
        if r.review_action in DECISION_RATING and (wanted is None or r.id in wanted)
    ]
    reason_names = list(REASON_NAMES_V1)
    for r in records:
        reason_names += [k for k in r.info.reasons if k not in reason_names]
    image_dir = out_csv.parent / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    tmp_csv = out_csv.with_name(f"{TEMP_PREFIX}{out_csv.name}")
    with tmp_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "rater_1", "cohort", "split", "source_path", *reason_names])
        for r in records:
            dest = image_dir / r.image_path.name
            try:
                shutil.copyfile(r.image_path, dest)
            except OSError as exc:
                logger.warning("export: capture %s skipped (%s)", r.id, exc)
                continue
            rating = r.review_rating or DECISION_RATING[str(r.review_action)]
            named = reasons_named_in(r.review_reason or "")
            writer.writerow(
                [
                    f"images/{dest.name}",
                    rating,
                    f"app-{r.info.mode}",
                    "review",
                    f"capture:{r.id}",
                    # 1 where the reviewer named it; blank (unknown), never 0: free text
                    # that does not name a fault does not say the fault is absent
                    *("1" if name in named else "" for name in reason_names),
                ]
            )
            written += 1
    os.replace(tmp_csv, out_csv)
    return written
