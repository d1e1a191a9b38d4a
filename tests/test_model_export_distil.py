"""Head distillation for the int8 file (model_export.training.distil), on synthetic descriptor bags.

The int8 trunk's error is systematic: the same patch always gets the same error. Here the
"int8" descriptors are the fp32 ones through a fixed per-dimension gain and offset plus a fixed
coarse rounding. As real VGG descriptors do, the fp32 descriptors lie near a low-dimensional
subspace (8 of 2944 dimensions): that is what lets a few hundred patches teach the head a
correction that holds on bags it never saw. (On descriptors spread over all 2944 dimensions the
same training only fits its own bags.) The tests check the gain on held-out bags and that the
teacher is left alone.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_export.model.network import DESCRIPTOR_DIM, QualityHead  # noqa: E402
from model_export.training.distil import (  # noqa: E402
    DistilBag,
    distil_head,
    distillation_loss,
    score_gap,
)

pytestmark = pytest.mark.torch


LATENT_DIM = 8


def _teacher() -> QualityHead:
    """A random head whose score moves enough with its input to show the distortion."""
    torch.manual_seed(0)
    head = QualityHead(n_reasons=3, embed_dim=16, hidden_dim=32, reason_pooling="bag_mean_max")
    head.set_feature_normalisation(torch.zeros(DESCRIPTOR_DIM), torch.ones(DESCRIPTOR_DIM))
    with torch.no_grad():
        head.ordinal_w.weight.mul_(10.0)
    return head.eval()


def _bags(n_bags: int, seed: int) -> list[DistilBag]:
    """Bags of 3-6 patches; the "int8" descriptors are a fixed, learnable distortion of fp32."""
    fixed = np.random.default_rng(123)  # the same subspace and "quantiser" for every bag
    basis = fixed.standard_normal((LATENT_DIM, DESCRIPTOR_DIM)) / np.sqrt(LATENT_DIM)
    gain = 1.0 + 0.3 * fixed.standard_normal(DESCRIPTOR_DIM)
    offset = 0.3 * fixed.standard_normal(DESCRIPTOR_DIM)
    rng = np.random.default_rng(seed)
    bags = []
    for _ in range(n_bags):
        n = int(rng.integers(3, 7))
        fp32 = rng.standard_normal((n, LATENT_DIM)) @ basis
        int8 = np.round((fp32 * gain + offset) * 8.0) / 8.0
        positions = rng.uniform(-1, 1, (n, 2))
        bags.append(
            DistilBag(
                int8.astype(np.float32), fp32.astype(np.float32), positions.astype(np.float32)
            )
        )
    return bags


def test_distilled_head_follows_the_teacher_on_unseen_bags() -> None:
    teacher = _teacher()
    before_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    train_bags, held_out = _bags(96, seed=1), _bags(48, seed=2)

    result = distil_head(teacher, train_bags, epochs=8, lr=1e-4)

    gap_before = score_gap(teacher, teacher, held_out)
    gap_after = score_gap(teacher, result.head, held_out)
    assert gap_before["score_rms"] > 0.05  # the distortion matters to the teacher
    assert gap_after["score_rms"] < 0.5 * gap_before["score_rms"]  # measured 0.107 -> 0.033
    assert gap_after["patch_rms"] < 0.7 * gap_before["patch_rms"]  # 0.144 -> 0.074
    assert result.epoch_losses[-1] < 0.5 * result.epoch_losses[0]
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before_state[key]), f"the teacher's {key} changed"
    assert not result.head.training
    assert all(not p.requires_grad for p in result.head.parameters())


def test_no_change_when_int8_equals_fp32() -> None:
    teacher = _teacher()
    bags = [DistilBag(b.desc_fp32, b.desc_fp32, b.positions) for b in _bags(8, seed=3)]
    result = distil_head(teacher, bags, epochs=2, lr=1e-3)
    assert result.epoch_losses == [0.0, 0.0]
    assert score_gap(teacher, result.head, bags)["score_max"] == 0.0


def test_loss_terms() -> None:
    zeros = {
        "cum_logits": torch.zeros(1, 4),
        "reason_logits": torch.zeros(1, 2),
        "patch_cum_logits": torch.zeros(1, 5, 4),
    }
    ones = {key: torch.ones_like(value) for key, value in zeros.items()}
    assert float(distillation_loss(ones, zeros, patch_weight=0.0)) == pytest.approx(2.0)
    assert float(distillation_loss(ones, zeros, patch_weight=0.5)) == pytest.approx(2.5)
    no_reasons = {**zeros, "reason_logits": torch.zeros(1, 0)}
    assert float(
        distillation_loss(ones | {"reason_logits": torch.zeros(1, 0)}, no_reasons, 1.0)
    ) == (pytest.approx(2.0))


def test_bags_must_match() -> None:
    fp32 = np.zeros((4, DESCRIPTOR_DIM), np.float32)
    with pytest.raises(ValueError, match="differ"):
        DistilBag(fp32[:3], fp32, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="differ"):
        DistilBag(fp32, fp32, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="no bags"):
        distil_head(_teacher(), [])
