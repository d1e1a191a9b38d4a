"""The model contract: one versioned metadata record shared by the exporter and the app.

The exporter (``model_export``) serialises a :class:`ModelMeta` to JSON and stores it under the
single ONNX ``metadata_props`` key :data:`METADATA_KEY`. The app reads it back with
:func:`ModelMeta.from_json` and refuses any model whose record is missing, of an unknown schema
version, or inconsistent with the graph (see :func:`check_graph_consistency`).

Graph interface fixed by schema version 1 (names are in :class:`GraphIO`):

* input  ``patches``      float32 ``[N, 3, P, P]`` - one bag: the N patches of one image, colour
  order / value range / normalisation as in :class:`InputSpec`; N is dynamic.
* input  ``positions``    float32 ``[N, 2]``       - each patch's centre (x, y) in the original
  image, scaled to [-1, 1] (so framing can be judged); see ``core.tiling.patch_positions``.
* output ``score``        float32 ``[1]``       - MIL-pooled probability that raters call the
  image acceptable (rating >= ``acceptable_level``); the threshold applies to it.
* output ``level_probs``  float32 ``[1, K]``    - probability of each ordinal level.
* output ``patch_scores`` float32 ``[N]``       - the same probability for each patch alone.
* output ``mil_weights``  float32 ``[N]``       - MIL pooling weights (non-negative, sum 1).
* output ``reasons``      float32 ``[1, R]``    - per-reason probabilities (only when R > 0).

Schema version 2 adds an optional seam between the per-patch trunk and the MIL head (names in
:class:`GraphIO`, empty when a file has none), so that one bag's patches can be run through the
trunk in parts (at the same time, on separate cores) and pooled once:

* input  ``descriptors_in`` float32 ``[M, D]`` - trunk descriptors of M earlier patches of the
  same bag, from earlier runs' ``descriptors``; pooled first, before the N patches' own, so
  ``positions`` is then ``[M + N, 2]`` and ``patch_scores`` / ``mil_weights`` are ``[M + N]``.
  It defaults to an empty ``[0, D]`` tensor (an ONNX initializer), so a caller that feeds only
  ``patches`` and ``positions`` gets exactly the schema 1 behaviour.
* output ``descriptors``   float32 ``[N, D]`` - the trunk descriptors of ``patches``.

A schema 1 file (no seam) is still read; it is then run in one piece.

Schema version 3 adds an optional short-side cap to a grid (``GridSpec.max_short_side``), so a
4:3 camera still can be shrunk to the scale of the 4:3 photos the model was trained on. An
older app cannot honour the cap, so a record that sets one must be schema 3 (older apps then
refuse the file instead of tiling it differently). An unset cap is left out of the JSON, so a
schema 1 or 2 record rewritten by this version (``seam``, ``retile``) reads as before.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "skin_capture_assist.model_meta"
SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3})
SHORT_SIDE_SCHEMA_VERSION = 3

REASON_NAMES_V1: tuple[str, ...] = (
    "blur",
    "motion",
    "dark",
    "bright",
    "colour",
    "framing",
    "distance",
    "noise",
)


class ModelContractError(ValueError):
    """A model file cannot be used; the message is written for a clinic's IT person."""


@dataclass(frozen=True)
class GraphIO:
    """Tensor names of the exported graph (fixed per schema version)."""

    input_patches: str = "patches"
    input_positions: str = "positions"
    output_score: str = "score"
    output_level_probs: str = "level_probs"
    output_patch_scores: str = "patch_scores"
    output_mil_weights: str = "mil_weights"
    output_reasons: str = "reasons"
    # the trunk/head seam (schema 2); empty: the file has none and runs in one piece
    input_prior_descriptors: str = ""
    output_descriptors: str = ""

    @property
    def has_seam(self) -> bool:
        return bool(self.input_prior_descriptors and self.output_descriptors)


SEAM_GRAPH_IO = GraphIO(input_prior_descriptors="descriptors_in", output_descriptors="descriptors")


@dataclass(frozen=True)
class InputSpec:
    """How pixel values become the ``patches`` tensor.

    value = (pixel / 255 * (value_range[1] - value_range[0]) + value_range[0] - mean[c]) / std[c],
    with channels in ``colour_order``. ``normalisation_note`` says what else the graph does inside
    (e.g. Caffe BGR mean folded into the first convolution).
    """

    colour_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalisation_note: str = ""


@dataclass(frozen=True)
class GridSpec:
    """How one image is resized and tiled into overlapping patches (see ``core.tiling``).

    The image is scaled by ``min(1, max_long_side / long_side, max_short_side / short_side)``
    (the last term only when ``max_short_side`` is set, schema 3; never enlarged, except that the
    short side is brought up to ``patch_size`` when smaller), then covered by
    ``ceil(H / P) x ceil(W / P)`` patches of P x P pixels, spaced evenly from edge to edge so that
    neighbours overlap instead of the image being padded, stretched or cropped.
    """

    max_long_side: int
    max_patches: int = 64
    max_short_side: int | None = None


@dataclass(frozen=True)
class TilingSpec:
    """Patch size and the two grids: ``live`` for preview frames, ``capture`` for stills."""

    patch_size: int = 224
    live: GridSpec = GridSpec(max_long_side=672)
    capture: GridSpec = GridSpec(max_long_side=672)
    resize_interpolation: str = "area_down_linear_up"


@dataclass(frozen=True)
class OrdinalSpec:
    """Ordinal rating scale: ``levels`` names from lowest (1) to highest (K)."""

    levels: tuple[str, ...] = ("unusable", "poor", "acceptable", "good", "excellent")
    acceptable_level: int = 3

    @property
    def k(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class DecisionSpec:
    """The accept/retake rule: ``score >= threshold`` on output ``applies_to``."""

    threshold: float = 0.5
    applies_to: str = "score"
    method: str = "youden"


@dataclass(frozen=True)
class ModelMeta:
    """Everything the app needs to run and trust a quality model (schema version 1, 2 or 3)."""

    model_name: str
    model_version: str
    created_utc: str
    training_data: str = ""
    schema_version: int = SCHEMA_VERSION
    input: InputSpec = InputSpec()
    tiling: TilingSpec = TilingSpec()
    ordinal: OrdinalSpec = OrdinalSpec()
    reason_names: tuple[str, ...] = ()
    decision: DecisionSpec = DecisionSpec()
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    graph_io: GraphIO = GraphIO()

    # ---- serialisation -------------------------------------------------------------------
    def to_json(self) -> str:
        record = dataclasses.asdict(self)
        for grid in ("live", "capture"):
            # Left out when unset, so a record without a cap reads in apps older than schema 3.
            if record["tiling"][grid]["max_short_side"] is None:
                del record["tiling"][grid]["max_short_side"]
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ModelMeta:
        """Parse and validate; raises :class:`ModelContractError` with a readable message."""
        if text is None or not str(text).strip():
            raise ModelContractError(
                "The model file carries no Skin Capture Assist metadata "
                f"(key '{METADATA_KEY}'). It was not exported by skin-capture-model; "
                "use a model exported by skin-capture-model export."
            )
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelContractError(f"The model's metadata is not valid JSON ({exc}).") from exc
        if not isinstance(raw, dict):
            raise ModelContractError("The model's metadata is not a JSON object.")
        version = raw.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ModelContractError(
                f"The model uses metadata schema version {version!r}, but this version of "
                f"Skin Capture Assist understands only {sorted(SUPPORTED_SCHEMA_VERSIONS)}. "
                "Install a matching application version or a model exported for it."
            )
        try:
            meta = cls(
                model_name=str(raw["model_name"]),
                model_version=str(raw["model_version"]),
                created_utc=str(raw["created_utc"]),
                training_data=str(raw.get("training_data", "")),
                schema_version=int(version),
                input=_input_from(raw.get("input", {})),
                tiling=_tiling_from(raw.get("tiling", {})),
                ordinal=OrdinalSpec(
                    levels=tuple(raw["ordinal"]["levels"]),
                    acceptable_level=int(raw["ordinal"]["acceptable_level"]),
                ),
                reason_names=tuple(str(r) for r in raw.get("reason_names", [])),
                decision=DecisionSpec(**raw["decision"]),
                validation_metrics=dict(raw.get("validation_metrics", {})),
                precision=str(raw.get("precision", "fp32")),
                graph_io=GraphIO(**raw.get("graph_io", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelContractError(
                f"The model's metadata is incomplete or malformed ({type(exc).__name__}: {exc})."
            ) from exc
        meta.validate()
        return meta

    def validate(self) -> None:
        """Internal consistency of the record itself (not yet the graph)."""
        problems: list[str] = []
        if self.tiling.patch_size < 8:
            problems.append(f"patch size {self.tiling.patch_size} is too small")
        for name, grid in (("live", self.tiling.live), ("capture", self.tiling.capture)):
            if grid.max_long_side < self.tiling.patch_size:
                problems.append(f"{name} grid long side is smaller than one patch")
            if grid.max_patches < 1:
                problems.append(f"{name} grid allows no patches")
            if grid.max_short_side is not None:
                if grid.max_short_side < self.tiling.patch_size:
                    problems.append(f"{name} grid short side is smaller than one patch")
                if self.schema_version < SHORT_SIDE_SCHEMA_VERSION:
                    problems.append(
                        f"a {name} grid short-side cap needs metadata schema version "
                        f"{SHORT_SIDE_SCHEMA_VERSION}"
                    )
        if self.ordinal.k < 2:
            problems.append("fewer than two ordinal levels")
        if not 1 < self.ordinal.acceptable_level <= self.ordinal.k:
            problems.append("acceptable level outside the ordinal scale")
        if not (0.0 <= self.decision.threshold <= 1.0) or math.isnan(self.decision.threshold):
            problems.append(f"threshold {self.decision.threshold} is not in [0, 1]")
        if self.decision.applies_to != self.graph_io.output_score:
            problems.append(f"threshold applies to unknown output '{self.decision.applies_to}'")
        if self.input.colour_order not in ("RGB", "BGR"):
            problems.append(f"unknown colour order {self.input.colour_order}")
        if len(self.input.mean) != 3 or len(self.input.std) != 3 or 0 in self.input.std:
            problems.append("normalisation needs three means and three non-zero stds")
        if len(set(self.reason_names)) != len(self.reason_names):
            problems.append("duplicate reason names")
        io = self.graph_io
        if bool(io.input_prior_descriptors) != bool(io.output_descriptors):
            problems.append("the trunk/head seam needs both its input and its output named")
        if io.has_seam and self.schema_version < 2:
            problems.append("a trunk/head seam needs metadata schema version 2")
        if problems:
            raise ModelContractError("The model's metadata is inconsistent: " + "; ".join(problems))


def _input_from(raw: dict[str, Any]) -> InputSpec:
    return InputSpec(
        colour_order=str(raw.get("colour_order", "RGB")),
        value_range=_pair(raw.get("value_range", (0.0, 1.0))),
        mean=_triple(raw.get("mean", (0.0, 0.0, 0.0))),
        std=_triple(raw.get("std", (1.0, 1.0, 1.0))),
        normalisation_note=str(raw.get("normalisation_note", "")),
    )


def _tiling_from(raw: dict[str, Any]) -> TilingSpec:
    default = TilingSpec()
    return TilingSpec(
        patch_size=int(raw.get("patch_size", default.patch_size)),
        live=GridSpec(**raw["live"]) if "live" in raw else default.live,
        capture=GridSpec(**raw["capture"]) if "capture" in raw else default.capture,
        resize_interpolation=str(raw.get("resize_interpolation", default.resize_interpolation)),
    )


def _pair(values: Any) -> tuple[float, float]:
    a, b = (float(v) for v in values)
    return (a, b)


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


def check_graph_consistency(
    meta: ModelMeta,
    input_shapes: dict[str, list[int | str | None]],
    output_shapes: dict[str, list[int | str | None]],
    optional_input_shapes: dict[str, list[int | str | None]] | None = None,
) -> None:
    """Compare the record with the graph's declared inputs/outputs.

    ``*_shapes`` map tensor name -> shape as reported by onnxruntime (ints for static dims,
    strings or None for dynamic ones); ``optional_input_shapes`` are the inputs with a default
    (onnxruntime's overridable initializers), where the seam's ``descriptors_in`` lives.
    """
    io = meta.graph_io
    problems: list[str] = []
    expected_inputs = {io.input_patches, io.input_positions}
    if set(input_shapes) != expected_inputs:
        problems.append(
            f"graph inputs are {sorted(input_shapes)}, expected {sorted(expected_inputs)}"
        )
    else:
        shape = input_shapes[io.input_patches]
        p = meta.tiling.patch_size
        if len(shape) != 4:
            problems.append(f"input '{io.input_patches}' has rank {len(shape)}, expected 4")
        else:
            if shape[1] != 3:
                problems.append(f"input has {shape[1]} channels, expected 3")
            if shape[2] != p or shape[3] != p:
                problems.append(
                    f"input patch is {shape[2]}x{shape[3]} but the metadata says {p}x{p}"
                )
        pos = input_shapes[io.input_positions]
        if len(pos) != 2 or pos[1] != 2:
            problems.append(f"input '{io.input_positions}' has shape {pos}, expected [N, 2]")
    required = [
        io.output_score,
        io.output_level_probs,
        io.output_patch_scores,
        io.output_mil_weights,
    ]
    if meta.reason_names:
        required.append(io.output_reasons)
    for name in required:
        if name not in output_shapes:
            problems.append(f"output '{name}' is missing")
    lp = output_shapes.get(io.output_level_probs)
    if lp is not None and len(lp) == 2 and isinstance(lp[1], int) and lp[1] != meta.ordinal.k:
        problems.append(f"graph has {lp[1]} ordinal levels, metadata says {meta.ordinal.k}")
    rs = output_shapes.get(io.output_reasons)
    if (
        meta.reason_names
        and rs is not None
        and len(rs) == 2
        and isinstance(rs[1], int)
        and rs[1] != len(meta.reason_names)
    ):
        problems.append(f"graph has {rs[1]} reasons, metadata names {len(meta.reason_names)}")
    if io.has_seam:
        problems += _seam_problems(io, optional_input_shapes or {}, output_shapes)
    if problems:
        raise ModelContractError(
            "The model file does not match its own metadata: " + "; ".join(problems)
        )


def _seam_problems(
    io: GraphIO,
    optional_input_shapes: dict[str, list[int | str | None]],
    output_shapes: dict[str, list[int | str | None]],
) -> list[str]:
    """What is wrong with a declared trunk/head seam: both ends present, ``[M, D]`` in and
    ``[N, D]`` out with the same D."""
    prior = optional_input_shapes.get(io.input_prior_descriptors)
    own = output_shapes.get(io.output_descriptors)
    problems = []
    if prior is None:
        problems.append(
            f"the seam input '{io.input_prior_descriptors}' (with a default) is missing"
        )
    if own is None:
        problems.append(f"the seam output '{io.output_descriptors}' is missing")
    if prior is not None and own is not None:
        if len(prior) != 2 or len(own) != 2:
            problems.append(f"the seam tensors are {prior} and {own}, expected [M, D] and [N, D]")
        elif isinstance(prior[1], int) and isinstance(own[1], int) and prior[1] != own[1]:
            problems.append(f"the seam passes {own[1]} descriptor values but takes {prior[1]}")
    return problems
