"""Fine-tune an exported model's head on the photos that people rated (model issue 18).

The patch network's head was trained on simulated faults labelled by simulated raters; on fault
kinds those raters extrapolated (JPEG chains, sheen, cut-off findings) it learned the wrong
labels. The 440 photos of ``rated/`` and ``rated2/`` carry real ratings. This module:

* reads the head's weights out of an exported ONNX file (fp32 or int8: the head is fp32 in both)
  into :class:`model_export.model.QualityHead`, by the exporter's node names;
* reads the trunk's descriptors of each rated photo from the same file (the int8 file's own
  quantized trunk for the int8 head), at the capture grid, with the app's tiler;
* fine-tunes the head on them: the CORAL loss against the four raters' cumulative ratings and the
  reason loss against the reasons they named, weighted so good and poor photos count equally,
  plus an L2 pull towards the starting weights (L2-SP), so what the head learned from thousands
  of simulated photos is kept where the rated photos say nothing;
* writes the tuned weights back into a copy of the file: the graph is unchanged, so the app, the
  heat map and the speed are as before.

All tensors: descriptors ``[N, 2944]`` per photo (N patches), positions ``[N, 2]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from model_export.data.rated import RatedPhoto

logger = logging.getLogger(__name__)

# QualityHead parameter -> (ONNX node name whose initializer input holds it, transposed?)
_MATMUL_NODES: dict[str, str] = {
    "encoder.0.weight": "/encoder/encoder.0/MatMul",
    "encoder.3.weight": "/encoder/encoder.3/MatMul",
    "attention_v.weight": "/attention_v/MatMul",
    "attention_u.weight": "/attention_u/MatMul",
    "attention_w.weight": "/attention_w/MatMul",
    "ordinal_w.weight": "/ordinal_w/MatMul",
}
_NAMED = (
    "feat_mean",
    "feat_std",
    "encoder.0.bias",
    "encoder.3.bias",
    "attention_v.bias",
    "attention_u.bias",
    "attention_w.bias",
    "ordinal_b",
    "reason_head.weight",
    "reason_head.bias",
)
DESCRIPTOR_TENSOR = "/trunk/Concat_5_output_0"


@dataclass(frozen=True)
class FineTuneConfig:
    """Optimiser settings. The defaults were chosen among four settings by grouped 5-fold
    cross-validation on both rated sets (docs/experiments/2026-12-03-rated-finetune)."""

    epochs: int = 30
    lr: float = 3e-4
    l2sp: float = 1e-3
    reason_weight: float = 0.5
    batch_size: int = 16
    seed: int = 0


def _initializer_names(model: onnx.ModelProto) -> dict[str, str]:
    """QualityHead parameter name -> ONNX initializer name."""
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, str] = {}
    nodes = {n.name: n for n in model.graph.node}
    for param, node_name in _MATMUL_NODES.items():
        node = nodes.get(node_name)
        if node is None:
            raise ValueError(f"the model has no node {node_name}: not a QualityHead export")
        weights = [x for x in node.input if x in inits]
        if len(weights) != 1:
            raise ValueError(f"cannot find the weight of {node_name}")
        out[param] = weights[0]
    for param in _NAMED:
        name = f"head.{param}"
        if name not in inits:
            raise ValueError(f"the model has no initializer {name}")
        out[param] = name
    return out


def head_from_onnx(model: onnx.ModelProto) -> Any:
    """A :class:`QualityHead` holding the head weights of an exported file."""
    import torch

    from model_export.model.network import QualityHead

    names = _initializer_names(model)
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    reason_weight = arrays[names["reason_head.weight"]]
    embed = arrays[names["encoder.3.bias"]].size
    head = QualityHead(
        k_levels=arrays[names["ordinal_b"]].size + 1,
        n_reasons=reason_weight.shape[0],
        embed_dim=embed,
        hidden_dim=arrays[names["encoder.0.bias"]].size,
        pooling="attention",
        reason_pooling="bag_mean_max" if reason_weight.shape[1] == 3 * embed else "bag",
    )
    state = {}
    for param, init in names.items():
        value = arrays[init]
        state[param] = torch.from_numpy(
            np.array(value.T if param in _MATMUL_NODES else value, copy=True)
        )
    head.load_state_dict(state)
    head.eval()
    return head


def write_head(model: onnx.ModelProto, head: Any) -> onnx.ModelProto:
    """A copy of ``model`` with ``head``'s weights in place of its own (same graph)."""
    names = _initializer_names(model)
    state = {k: v.detach().cpu().numpy() for k, v in head.state_dict().items()}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        for param, name in names.items():
            if init.name == name:
                value = state[param].T if param in _MATMUL_NODES else state[param]
                init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return out


def rated_bags(
    photos: Sequence[RatedPhoto], model_path: Path
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(descriptors ``[N, 2944]``, positions ``[N, 2]``) of each photo, as the file computes them
    (capture grid, the app's tiler)."""
    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import QualityEngine
    from desktop_app.core.tiling import patch_positions
    from model_export.model.streaming import descriptor_session

    engine = QualityEngine(model_path, providers="cpu")
    session = descriptor_session(onnx.load(str(model_path)), DESCRIPTOR_TENSOR)
    bags = []
    for index, photo in enumerate(photos):
        patches, layout = engine.prepare(load_rgb(photo.path), "capture")
        positions = patch_positions(layout)
        feeds = {"patches": patches, "positions": positions}
        descriptors = session.run([DESCRIPTOR_TENSOR], feeds)[0]
        bags.append((np.asarray(descriptors, np.float32), positions.astype(np.float32)))
        if index % 100 == 0:
            logger.info("descriptors: %d of %d", index + 1, len(photos))
    return bags


def _targets(photos: Sequence[RatedPhoto], reason_names: Sequence[str], k_levels: int) -> Any:
    cumulative = np.zeros((len(photos), k_levels - 1), np.float32)
    reasons = np.full((len(photos), len(reason_names)), np.nan, np.float32)
    for i, photo in enumerate(photos):
        ratings = np.asarray(photo.ratings)
        cumulative[i] = [(ratings > k).mean() for k in range(1, k_levels)]
        for j, name in enumerate(reason_names):
            if name in photo.reasons:
                reasons[i, j] = photo.reasons[name]
    return cumulative, reasons


def _batch(bags: Sequence[tuple[np.ndarray, np.ndarray]], index: Sequence[int]) -> Any:
    import torch

    n_max = max(bags[i][0].shape[0] for i in index)
    desc = np.zeros((len(index), n_max, bags[index[0]][0].shape[1]), np.float32)
    pos = np.zeros((len(index), n_max, 2), np.float32)
    mask = np.zeros((len(index), n_max), bool)
    for row, i in enumerate(index):
        n = bags[i][0].shape[0]
        desc[row, :n], pos[row, :n], mask[row, :n] = bags[i][0], bags[i][1], True
    return torch.from_numpy(desc), torch.from_numpy(pos), torch.from_numpy(mask)


def fine_tune(
    start: Any,
    photos: Sequence[RatedPhoto],
    bags: Sequence[tuple[np.ndarray, np.ndarray]],
    reason_names: Sequence[str],
    config: FineTuneConfig,
) -> Any:
    """A tuned copy of the head ``start`` (left unchanged)."""
    import copy

    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = copy.deepcopy(start)
    anchor = {k: v.detach().clone() for k, v in head.named_parameters()}
    cumulative, reasons = _targets(photos, reason_names, head.k_levels)
    labels = np.asarray([p.label for p in photos])
    n_good, n_poor = max(1, int(labels.sum())), max(1, int((1 - labels).sum()))
    weight = np.where(labels == 1, len(labels) / (2 * n_good), len(labels) / (2 * n_poor))
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(config.epochs):
        head.train()
        order = rng.permutation(len(photos))
        for start_at in range(0, len(order), config.batch_size):
            index = [int(i) for i in order[start_at : start_at + config.batch_size]]
            desc, pos, mask = _batch(bags, index)
            out = head.forward_features(desc, pos, mask)
            w = torch.from_numpy(weight[index].astype(np.float32))
            target = torch.from_numpy(cumulative[index])
            loss = (bce(out["cum_logits"], target, reduction="none").mean(dim=1) * w).mean()
            if len(reason_names):
                r = torch.from_numpy(reasons[index])
                known = ~torch.isnan(r)
                if known.any():
                    reason_loss = bce(out["reason_logits"][known], r[known], reduction="mean")
                    loss = loss + config.reason_weight * reason_loss
            pull = sum(((p - anchor[k]) ** 2).sum() for k, p in head.named_parameters())
            loss = loss + config.l2sp * pull
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()
    return head


def predict(
    head: Any, bags: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """(scores ``[M]``, reason probabilities ``[M, R]``) of ``head`` on each bag."""
    import torch

    scores, reasons = [], []
    with torch.no_grad():
        for desc, pos in bags:
            out = head.forward_features(torch.from_numpy(desc)[None], torch.from_numpy(pos)[None])
            scores.append(float(out["score"][0]))
            reasons.append(torch.sigmoid(out["reason_logits"][0]).numpy())
    return np.asarray(scores), np.asarray(reasons).reshape(len(bags), -1)
