"""Model pieces: Caffe/torchvision folding, npz loading, padding invariance, losses, feature
cache, ONNX export of every pooling."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_export.model.features import (  # noqa: E402
    FeatureCache,
    OrtExtractor,
    TorchExtractor,
    build_trunk,
    state_hash,
)
from model_export.model.losses import coral_loss, cumulative_targets, reason_loss  # noqa: E402
from model_export.model.network import (  # noqa: E402
    CAFFE_BGR_MEAN,
    DESCRIPTOR_DIM,
    PatchMILQualityNet,
    QualityHead,
    VGG16Trunk,
)

pytestmark = pytest.mark.torch


def _caffe_input(x_rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    return 255.0 * x_rgb[:, [2, 1, 0]] - mean


def _assert_first_conv_interior_equal(raw: VGG16Trunk, folded: VGG16Trunk, x_raw, x_rgb) -> None:
    with torch.no_grad():
        expected = raw.features[0](x_raw)[..., 1:-1, 1:-1]
        got = folded.features[0](x_rgb)[..., 1:-1, 1:-1]
    scale = float(expected.abs().max())
    assert float((expected - got).abs().max()) <= 1e-5 * scale


def test_caffe_folding_matches_caffe_preprocessing() -> None:
    raw = build_trunk("random", seed=3)
    folded = copy.deepcopy(raw)
    folded.fold_caffe_preprocessing()
    x = torch.rand(2, 3, 12, 12)
    _assert_first_conv_interior_equal(raw, folded, _caffe_input(x), x)
    # the border differs only by the padding value (black instead of the mean colour)
    with torch.no_grad():
        assert not torch.allclose(raw.features[0](_caffe_input(x)), folded.features[0](x))


def test_torchvision_state_dict_folding(tmp_path: Path) -> None:
    raw = build_trunk("random", seed=4)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in raw.features.state_dict().items()}, path)
    folded = build_trunk(path)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.rand(2, 3, 12, 12)
    _assert_first_conv_interior_equal(raw, folded, (x - mean) / std, x)


def test_missing_weights_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights not found"):
        build_trunk(tmp_path / "absent.npz")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing"):
        build_trunk(tmp_path / "partial.pth")


@pytest.mark.shared
def test_shared_npz_weights(shared_dir: Path) -> None:
    path = shared_dir / "weights" / "vgg16_imagenet_features_fp16.npz"
    if not path.is_file():
        pytest.skip("no VGG16 npz in ../shared")
    trunk = build_trunk(path)
    with np.load(path) as npz:
        w0 = torch.from_numpy(npz["features.0.weight"].astype(np.float32))
        b0 = torch.from_numpy(npz["features.0.bias"].astype(np.float32))
        w28 = npz["features.28.weight"].astype(np.float32)
    np.testing.assert_array_equal(trunk.features[28].weight.detach().numpy(), w28)
    raw = VGG16Trunk()
    with torch.no_grad():
        raw.features[0].weight.copy_(w0)
        raw.features[0].bias.copy_(b0)
    x = torch.rand(1, 3, 16, 16)
    _assert_first_conv_interior_equal(raw, trunk, _caffe_input(x), x)
    with torch.inference_mode():
        desc = trunk(x.expand(2, 3, 16, 16).contiguous())
    assert desc.shape == (2, DESCRIPTOR_DIM) and torch.isfinite(desc).all()


@pytest.mark.parametrize(
    ("pooling", "reason_pooling"),
    [("attention", "bag"), ("mean", "bag"), ("max", "bag"), ("attention", "bag_mean_max")],
)
def test_padding_does_not_change_a_bag(pooling: str, reason_pooling: str) -> None:
    torch.manual_seed(0)
    head = QualityHead(
        n_reasons=2, pooling=pooling, embed_dim=16, hidden_dim=32, reason_pooling=reason_pooling
    ).eval()
    desc, pos = torch.randn(1, 3, DESCRIPTOR_DIM), torch.rand(1, 3, 2)
    alone = head.forward_features(desc, pos)
    padded_desc = torch.cat([desc, torch.randn(1, 2, DESCRIPTOR_DIM) * 5], dim=1)
    padded_pos = torch.cat([pos, torch.rand(1, 2, 2)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    padded = head.forward_features(padded_desc, padded_pos, mask)
    for key in ("score", "cum_logits", "reason_logits"):
        torch.testing.assert_close(padded[key], alone[key])
    torch.testing.assert_close(padded["weights"][:, :3], alone["weights"])
    assert float(padded["weights"][:, 3:].abs().max()) == 0.0
    assert float(alone["weights"].sum()) == pytest.approx(1.0)


def test_level_probs_are_a_distribution() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0], [-2.0, 1.0, 3.0, 4.0]])  # not monotone
    probs = QualityHead.level_probs(logits)
    assert probs.shape == (2, 5) and float(probs.min()) >= 0.0
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


def test_cumulative_targets_and_losses() -> None:
    ratings = np.array([[3, 3, 4, 3], [1, 2, np.nan, 5]], float)
    np.testing.assert_allclose(
        cumulative_targets(ratings, 5), [[1, 1, 0.25, 0], [2 / 3, 1 / 3, 1 / 3, 1 / 3]], rtol=1e-6
    )
    with pytest.raises(ValueError):
        cumulative_targets(np.array([[np.nan, np.nan]]), 5)
    logits = torch.tensor([[0.5, -0.2, 1.0, -2.0]])
    target = torch.tensor([[1.0, 1.0, 0.25, 0.0]])
    manual = -(target * torch.log(torch.sigmoid(logits))
               + (1 - target) * torch.log(1 - torch.sigmoid(logits))).sum()  # fmt: skip
    assert float(coral_loss(logits, target)) == pytest.approx(float(manual), rel=1e-5)
    reasons = torch.tensor([[float("nan"), 1.0]])
    assert float(reason_loss(torch.tensor([[5.0, 0.0]]), reasons)) == pytest.approx(np.log(2))
    assert float(reason_loss(torch.zeros(1, 1), torch.tensor([[float("nan")]]))) == 0.0


def test_feature_cache_keys_and_extractors(tmp_path: Path) -> None:
    import cv2

    from desktop_app.core.model_meta import GridSpec

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    trunk = build_trunk("random", seed=1)
    grid = GridSpec(max_long_side=64)
    cache = FeatureCache(tmp_path / "cache", trunk, 32, grid, extractor="onnxruntime", threads=1)
    bag = cache.get(tmp_path / "a.png")
    assert bag.desc.shape == (bag.rows * bag.cols, DESCRIPTOR_DIM) == (4, DESCRIPTOR_DIM)
    assert bag.positions.shape == (4, 2)
    again = cache.get(tmp_path / "b.png")  # same content, other name: a hit
    assert cache.stats["computed"] == 1 and cache.stats["hits"] == 1
    np.testing.assert_array_equal(again.desc, bag.desc)
    other_grid = FeatureCache(tmp_path / "cache", trunk, 32, GridSpec(max_long_side=128))
    other_trunk = FeatureCache(tmp_path / "cache", build_trunk("random", seed=2), 32, grid)
    assert len({cache.dir, other_grid.dir, other_trunk.dir}) == 3
    assert state_hash(trunk) != state_hash(other_trunk.trunk)
    # onnxruntime and torch extractors agree
    patches = rng.random((3, 3, 32, 32), dtype=np.float32)
    ort_desc = OrtExtractor(trunk, 32, tmp_path / "trunk.onnx", threads=1)(patches)
    torch_desc = TorchExtractor(trunk)(patches)
    assert np.abs(ort_desc - torch_desc).max() <= 1e-4 * np.abs(torch_desc).max()


@pytest.mark.parametrize(
    ("pooling", "reason_pooling"),
    [("attention", "bag"), ("mean", "bag"), ("max", "bag"), ("attention", "bag_mean_max")],
)
def test_onnx_export_matches_pytorch_for_every_pooling(
    tmp_path: Path, pooling: str, reason_pooling: str
) -> None:
    from desktop_app.core.model_meta import ModelMeta
    from model_export.export.onnx_graph import compare_with_torch, export_onnx

    torch.manual_seed(0)
    head = QualityHead(
        n_reasons=2, pooling=pooling, embed_dim=16, hidden_dim=32, reason_pooling=reason_pooling
    )
    head.set_feature_normalisation(torch.rand(DESCRIPTOR_DIM), torch.rand(DESCRIPTOR_DIM) + 0.5)
    model = PatchMILQualityNet(head, build_trunk("random", seed=0)).eval()
    meta = ModelMeta(model_name="t", model_version="0", created_utc="2026-01-01T00:00:00Z")
    path = tmp_path / "m.onnx"
    export_onnx(model, 32, path, meta)
    rng = np.random.default_rng(1)
    bags = [
        (rng.random((n, 3, 32, 32), dtype=np.float32), rng.random((n, 2), dtype=np.float32))
        for n in (1, 4, 7)
    ]
    assert compare_with_torch(model, path, bags) <= 1e-4


def test_config_refuses_an_unknown_reason_pooling(tmp_path: Path) -> None:
    from model_export.config import ConfigError, TrainConfig

    raw = {"csv": "ratings.csv", "out_dir": str(tmp_path)}
    assert TrainConfig.from_dict({**raw, "reason_pooling": "bag_mean_max"}).reason_pooling == (
        "bag_mean_max"
    )
    with pytest.raises(ConfigError, match="reason_pooling"):
        TrainConfig.from_dict({**raw, "reason_pooling": "median"})
