"""The quality engine: an exported ONNX model run by onnxruntime on camera frames and photos."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from desktop_app.core.image_io import ColourOrder as ColourOrder  # re-exported (core.capture)
from desktop_app.core.model_meta import (
    METADATA_KEY,
    ModelContractError,
    ModelMeta,
    check_graph_consistency,
)
from desktop_app.core.tiling import (
    PatchLayout,
    image_to_patches,
    normalise_patches,
    patch_positions,
)

logger = logging.getLogger(__name__)

GridName = Literal["live", "capture"]

# Bags smaller than this run in one piece: for two patches, splitting them over two single-
# threaded sessions was slower than one two-threaded run (125 vs 103 ms, int8, 2 cores).
MIN_PATCHES_TO_SPLIT = 4


@dataclass(frozen=True)
class QualityResult:
    """The verdict on one frame or photo.

    ``score`` is the MIL-pooled probability that raters would call the image acceptable (higher is
    better); ``patch_scores`` and ``mil_weights`` are float32 ``[rows, cols]`` maps laid out on the
    image (``layout.boxes`` gives each cell's pixel box in the original image).
    """

    score: float
    threshold: float
    accepted: bool
    expected_level: float
    level_probs: np.ndarray
    patch_scores: np.ndarray
    mil_weights: np.ndarray
    reasons: dict[str, float]
    layout: PatchLayout
    grid: GridName
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    def top_reasons(self, min_probability: float = 0.5) -> list[str]:
        """Reason names at or above ``min_probability``, most likely first."""
        ranked = sorted(self.reasons.items(), key=lambda kv: kv[1], reverse=True)
        return [name for name, p in ranked if p >= min_probability]


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(preference: str = "auto") -> list[str]:
    """``auto``: CUDA when onnxruntime has it, else CPU; ``cpu``: CPU; ``cuda``: CUDA or fail."""
    available = available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if preference == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelContractError(
                "CUDA was requested but this onnxruntime has no CUDA provider "
                "(install the 'gpu' extra: onnxruntime-gpu)."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _runtime_detail(exc: BaseException) -> str:
    """onnxruntime's own text for the log: exception type and first line (paths and node names,
    never image or patient data)."""
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}"


def describe_model_error(exc: BaseException, stage: str, model_name: str = "") -> str:
    """A plain message for the person at the screen about a model that failed to load
    (``stage="load"``) or to check a photo (``stage="run"``); onnxruntime's own text goes to the
    log (at warning level), never to the screen.

    onnxruntime raises its own exception classes (``InvalidProtobuf``, ``NoSuchFile``,
    ``NotImplemented``, ``InvalidGraph``, ``InvalidArgument``, ``EPFail``, ``RuntimeException``,
    ``Fail``), told apart here by name so that this works without importing onnxruntime.
    """
    kind = type(exc).__name__
    text = str(exc)
    lowered = text.lower()
    logger.warning("model %s failed (%s): %s", stage, model_name or "?", _runtime_detail(exc))
    the_model = f"The model file {model_name}" if model_name else "The model file"
    if isinstance(exc, MemoryError) or "bad_alloc" in lowered or "failed to allocate" in lowered:
        return (
            "There is not enough memory to run the quality model: close other programs, or tick "
            "'Release model memory after each check' in Settings."
        )
    if kind == "EPFail" or "cuda" in lowered or "cudnn" in lowered or "tensorrt" in lowered:
        return (
            "The graphics card (GPU) could not run the quality model: choose 'CPU' under "
            "Settings > Quality model > Run on."
        )
    if stage == "load":
        if kind == "NoSuchFile" or isinstance(exc, FileNotFoundError):
            return f"{the_model} cannot be found or opened."
        if kind == "InvalidProtobuf" or "protobuf" in lowered:
            return f"{the_model} could not be loaded; it may be damaged or truncated."
        if kind == "NotImplemented" or "opset" in lowered or "not a registered" in lowered:
            return (
                f"{the_model} needs a newer model runtime than this app has; update the app, or "
                "export the model for this version."
            )
        if kind in ("InvalidGraph", "InvalidArgument", "Fail"):
            return f"{the_model} is not a valid quality model for this app."
        return f"{the_model} could not be loaded; the details are in the app's log."
    return "The photo could not be checked by the quality model; the details are in the app's log."


class QualityEngine:
    """Load a contract-conforming ONNX model and score uint8 images.

    Thread safety: ``score`` may be called from one worker thread at a time per engine.

    ``memory_arena=False`` turns off onnxruntime's CPU memory arena: activation memory is
    returned after every run instead of being kept (and fragmented across bag sizes), which
    bounds a long-running app's resident memory at some cost in speed.

    Split bags: when the file has a trunk/head seam (metadata schema 2), the model runs on the
    CPU, ``split_bags`` is not False (None: unless ``$SKIN_CAPTURE_SPLIT_BAGS`` is 0, for
    comparing the two ways in ``skin-capture bench --one-piece``) and at least two threads are
    allowed (``intra_op_threads``, ``$SKIN_CAPTURE_THREADS``,
    else the machine's CPU count), two sessions of the same file each get half of the threads;
    a bag of at least :data:`MIN_PATCHES_TO_SPLIT` patches then has each half of its patches run
    through the trunk by one session at the same time, and the head pools the two halves'
    descriptors once. The trunk runs patch by patch, so the halves do the same arithmetic as one
    run of the whole bag, and one session using both cores inside every convolution leaves
    more of them idle (docs/experiments/2026-12-03-parallel-patches).
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: str = "auto",
        intra_op_threads: int | None = None,
        memory_arena: bool = True,
        split_bags: bool | None = None,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        t0 = time.perf_counter()
        if not self.model_path.is_file():
            raise ModelContractError(f"No model file at {self.model_path}.")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = intra_op_threads or int(os.environ.get("SKIN_CAPTURE_THREADS", "0") or 0)
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = memory_arena
        chosen = choose_providers(providers)
        allowed = threads if threads > 0 else (os.cpu_count() or 1)
        # Guess that the file can split bags (the bundled ones can), so that the usual case
        # builds two sessions, not three; a file without the seam gets its one session again.
        if split_bags is None:
            split_bags = os.environ.get("SKIN_CAPTURE_SPLIT_BAGS", "1") != "0"
        guess_split = split_bags and allowed > 1 and chosen[0] == "CPUExecutionProvider"
        if guess_split:
            options.intra_op_num_threads = allowed // 2
        elif threads > 0:
            options.intra_op_num_threads = threads
        self._session = self._open_session(ort, options, chosen)
        custom = self._session.get_modelmeta().custom_metadata_map
        self.meta = ModelMeta.from_json(custom.get(METADATA_KEY))
        check_graph_consistency(
            self.meta,
            {i.name: list(i.shape) for i in self._session.get_inputs()},
            {o.name: list(o.shape) for o in self._session.get_outputs()},
            {i.name: list(i.shape) for i in self._session.get_overridable_initializers()},
        )
        # The second session of a split bag (None: bags run in one piece).
        self._second_session: Any = None
        if guess_split and self.meta.graph_io.has_seam:
            self._second_session = self._open_session(ort, options, chosen)
        elif guess_split:
            options.intra_op_num_threads = threads if threads > 0 else 0
            self._session = self._open_session(ort, options, chosen)
        io = self.meta.graph_io
        self._output_names = [
            io.output_score,
            io.output_level_probs,
            io.output_patch_scores,
            io.output_mil_weights,
        ]
        if self.meta.reason_names:
            self._output_names.append(io.output_reasons)
        self.load_ms = (time.perf_counter() - t0) * 1000.0
        logger.info(
            "Loaded model %s %s (%s) from %s with %s in %.0f ms (%s)",
            self.meta.model_name,
            self.meta.model_version,
            self.meta.precision,
            self.model_path.name,
            self.provider,
            self.load_ms,
            "bags split over two sessions" if self.splits_bags else "bags run in one piece",
        )

    def _open_session(self, ort: Any, options: Any, providers: list[str]) -> Any:
        try:
            return ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=providers
            )
        except Exception as exc:
            raise ModelContractError(
                describe_model_error(exc, "load", self.model_path.name)
            ) from exc

    @property
    def provider(self) -> str:
        return str(self._session.get_providers()[0])

    @property
    def splits_bags(self) -> bool:
        """Whether bags of :data:`MIN_PATCHES_TO_SPLIT` or more patches are split (class doc)."""
        return self._second_session is not None

    @property
    def threshold(self) -> float:
        return float(self.meta.decision.threshold)

    def prepare(
        self, image: np.ndarray, grid: GridName = "capture", colour_order: ColourOrder = "RGB"
    ) -> tuple[np.ndarray, PatchLayout]:
        """uint8 ``[H, W, 3]`` image -> (float32 ``[N, 3, P, P]`` model input, layout)."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if colour_order == "BGR":
            image = image[:, :, ::-1]
        image = np.ascontiguousarray(image, dtype=np.uint8)
        spec = self.meta.tiling.live if grid == "live" else self.meta.tiling.capture
        patches, layout = image_to_patches(image, self.meta.tiling.patch_size, spec)
        return normalise_patches(patches, self.meta.input), layout

    def run_patches(
        self, patches: np.ndarray, positions: np.ndarray, run_options: Any = None
    ) -> list[np.ndarray]:
        """Raw graph outputs for one bag (in ``_output_names`` order).

        ``patches`` float32 ``[N, 3, P, P]``; ``positions`` float32 ``[N, 2]``. ``run_options``
        (an ``onnxruntime.RunOptions``) lets another thread cancel the run by setting its
        ``terminate`` flag; the cancelled call then raises.
        """
        io = self.meta.graph_io
        if self._second_session is None or len(patches) < MIN_PATCHES_TO_SPLIT:
            feeds = {io.input_patches: patches, io.input_positions: positions}
            outputs = self._session.run(self._output_names, feeds, run_options)
            return [np.asarray(o) for o in outputs]
        first = (len(patches) + 1) // 2
        descriptors = self._trunk_in_two(patches, positions, first, run_options)
        feeds = {
            io.input_patches: patches[:0],
            io.input_positions: positions,
            io.input_prior_descriptors: descriptors,
        }
        outputs = self._session.run(self._output_names, feeds, run_options)
        return [np.asarray(o) for o in outputs]

    def _trunk_in_two(
        self, patches: np.ndarray, positions: np.ndarray, first: int, run_options: Any
    ) -> np.ndarray:
        """Trunk descriptors float32 ``[N, D]`` of ``patches`` ``[N, 3, P, P]``: the first
        ``first`` by this thread's session while the second session (in a helper thread that
        ends with the call) does the rest. An error or a cancellation in either is raised here.
        """
        io = self.meta.graph_io
        wanted = [io.output_descriptors]
        second: dict[str, Any] = {}

        def run_second_half() -> None:
            feeds = {io.input_patches: patches[first:], io.input_positions: positions[first:]}
            try:
                second["descriptors"] = self._second_session.run(wanted, feeds, run_options)[0]
            except Exception as exc:  # noqa: BLE001 - raised again in the calling thread
                second["error"] = exc

        helper = threading.Thread(target=run_second_half, name="trunk-second-half", daemon=True)
        helper.start()
        try:
            feeds = {io.input_patches: patches[:first], io.input_positions: positions[:first]}
            own = self._session.run(wanted, feeds, run_options)[0]
        finally:
            helper.join()
        if "error" in second:
            raise second["error"]
        return np.concatenate([np.asarray(own, np.float32), second["descriptors"]], axis=0)

    def score(
        self,
        image: np.ndarray,
        grid: GridName = "capture",
        colour_order: ColourOrder = "RGB",
        run_options: Any = None,
    ) -> QualityResult:
        """Score a uint8 ``[H, W, 3]`` image (``colour_order`` says how its channels are stored).

        ``run_options``: see :meth:`run_patches` (cancellation from another thread).
        """
        t0 = time.perf_counter()
        patches, layout = self.prepare(image, grid, colour_order)
        t1 = time.perf_counter()
        outputs = self.run_patches(patches, patch_positions(layout), run_options)
        t2 = time.perf_counter()
        score = float(np.asarray(outputs[0]).reshape(-1)[0])
        level_probs = np.asarray(outputs[1], dtype=np.float32).reshape(-1)
        levels = np.arange(1, level_probs.size + 1, dtype=np.float32)
        reasons: dict[str, float] = {}
        if self.meta.reason_names:
            values = np.asarray(outputs[4], dtype=np.float32).reshape(-1)
            reasons = {n: float(v) for n, v in zip(self.meta.reason_names, values, strict=True)}
        return QualityResult(
            score=score,
            threshold=self.threshold,
            accepted=score >= self.threshold,
            expected_level=float((level_probs * levels).sum()),
            level_probs=level_probs,
            patch_scores=np.asarray(outputs[2], np.float32).reshape(layout.rows, layout.cols),
            mil_weights=np.asarray(outputs[3], np.float32).reshape(layout.rows, layout.cols),
            reasons=reasons,
            layout=layout,
            grid=grid,
            model_version=self.meta.model_version,
            timings_ms={
                "preprocess": (t1 - t0) * 1000.0,
                "inference": (t2 - t1) * 1000.0,
                "total": (time.perf_counter() - t0) * 1000.0,
            },
        )


def default_model_path() -> Path | None:
    """The model the app uses when none is configured: ``$SKIN_CAPTURE_MODEL`` or the bundled one.

    Bundled models live in ``resources/models``; int8 is preferred on CPU.
    """
    env = os.environ.get("SKIN_CAPTURE_MODEL")
    if env:
        return Path(env)
    from desktop_app.core.resources import resources_dir

    folder = resources_dir() / "models"
    for name in ("default-int8.onnx", "default-fp32.onnx"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def resolve_model_path(explicit: Path | None, configured: str = "") -> Path | None:
    """The one model resolution for every entry point (app, ``score``, ``bench``): ``--model``
    first, then the model chosen in Settings (``configured``), then :func:`default_model_path`
    (``$SKIN_CAPTURE_MODEL`` or the bundled one)."""
    if explicit is not None:
        return explicit
    if configured:
        return Path(configured)
    return default_model_path()


NO_MODEL_MESSAGE = (
    "No quality model is installed. Put a model exported by 'skin-capture-model export' at "
    "resources/models/default-int8.onnx, set SKIN_CAPTURE_MODEL=/path/to/model.onnx, or pass "
    "--model PATH."
)
