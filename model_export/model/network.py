"""Patch-VGG16 multiple-instance ordinal quality model.

Pipeline for one image (one *bag* of N patches, tiled by ``desktop_app.core.tiling``):

1. ``VGG16Trunk``: VGG16 configuration D convolutions (torchvision parameter names
   ``features.{0,2,...,28}``), ImageNet weights, Caffe preprocessing folded into the first
   convolution so the trunk takes RGB in [0, 1]. Input ``[N, 3, P, P]``.
2. Multi-level patch descriptor: the mean and standard deviation over space of the ReLU output
   at the end of each of the five blocks -> ``[N, 2 * (64 + 128 + 256 + 512 + 512)] = [N, 2944]``.
   Low blocks carry sharpness, noise and exposure; high blocks carry content (is there skin, a
   lesion). This is what lets the trunk stay frozen (and its output be cached) on a CPU.
3. ``QualityHead``: standardise the descriptor, append the patch centre (x, y) in [-1, 1], encode
   to a patch embedding ``[N, D]``; MIL pooling (attention after Ilse et al. 2018, or mean / max
   for comparison) to a bag embedding ``[D]``; a CORAL ordinal head (one shared weight vector,
   K - 1 ordered biases) gives ``P(rating > k)``; the same head on each patch embedding gives the
   per-patch map; a reason head gives per-reason probabilities.

``forward(patches, positions)`` is the exported single-bag graph of the model contract
(``desktop_app.core.model_meta``); ``forward_features`` is the batched training path on cached
descriptors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")  # fmt: skip
# torchvision indices of the ReLU closing each block (its output is pooled into the descriptor)
BLOCK_END_RELU = (3, 8, 15, 22, 29)
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
DESCRIPTOR_DIM = 2 * sum(BLOCK_CHANNELS)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

Pooling = Literal["attention", "mean", "max"]
ReasonPooling = Literal["bag", "bag_mean_max"]


class VGG16Trunk(nn.Module):
    """VGG16 convolutions; ``forward`` returns the ``[N, 2944]`` multi-level descriptor.

    Input: float32 RGB ``[N, 3, P, P]`` in [0, 1] (after :meth:`fold_caffe_preprocessing`).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(True)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)

    def load_npz(self, path: str | Path, caffe: bool = True) -> None:
        """Load the torchvision-named npz (``../shared/weights``); fold Caffe preprocessing."""
        with np.load(path) as npz:
            state = {k: torch.from_numpy(npz[k].astype(np.float32)) for k in npz.files}
        self.load_state_dict_compat(state)
        if caffe:
            self.fold_caffe_preprocessing()

    def load_torchvision_state_dict(self, path: str | Path) -> None:
        """A torchvision ``vgg16`` state dict (RGB, ImageNet mean/std): fold that normalisation."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict_compat(state)
        mean = torch.tensor([0.485, 0.456, 0.406])
        std = torch.tensor([0.229, 0.224, 0.225])
        conv = self.features[0]
        assert isinstance(conv, nn.Conv2d)
        assert conv.bias is not None
        with torch.no_grad():
            w = conv.weight / std.view(1, 3, 1, 1)
            conv.bias -= (w * mean.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
            conv.weight.copy_(w)

    def load_state_dict_compat(self, state: dict[str, Tensor]) -> None:
        wanted = {k: v for k, v in state.items() if k.startswith("features.")}
        missing, _unexpected = self.load_state_dict(wanted, strict=False)
        if missing:
            raise ValueError(f"VGG16 weights are missing {missing}")

    def fold_caffe_preprocessing(self) -> None:
        """Make the first conv take RGB [0, 1] instead of BGR [0, 255] minus the Caffe mean.

        conv(x_caffe) with x_caffe[c] = 255 * x_rgb[2 - c] - mean[c] equals a conv on x_rgb with
        kernel ``255 * W[:, ::-1]`` and bias ``b - sum_c mean[c] * sum(W[:, c])``. (Only the
        one-pixel zero padding of that first layer differs: it now pads with black.)
        """
        conv = self.features[0]
        assert isinstance(conv, nn.Conv2d)
        assert conv.bias is not None
        with torch.no_grad():
            w = conv.weight.clone()
            mean = torch.tensor(CAFFE_BGR_MEAN, dtype=w.dtype)
            conv.bias -= (w.sum(dim=(2, 3)) * mean.view(1, 3)).sum(dim=1)
            conv.weight.copy_(255.0 * w.flip(dims=(1,)))

    def set_trainable_blocks(self, n_last_blocks: int) -> None:
        """Freeze all but the last ``n_last_blocks`` of the five blocks (0: all frozen)."""
        first_trainable = {0: 31, 1: 24, 2: 17, 3: 10, 4: 5, 5: 0}[n_last_blocks]
        for idx, layer in enumerate(self.features):
            for p in layer.parameters():
                p.requires_grad = idx >= first_trainable

    def forward(self, x: Tensor) -> Tensor:
        stats: list[Tensor] = []
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in BLOCK_END_RELU:
                flat = x.flatten(2)
                mean = flat.mean(dim=2)
                std = (flat.var(dim=2, unbiased=False) + 1e-6).sqrt()
                stats += [mean, std]
                if idx == BLOCK_END_RELU[-1]:
                    break
        return torch.cat(stats, dim=1)


def padding_below_all(emb: Tensor, mask: Tensor | None) -> Tensor:
    """``emb`` ``[B, N, D]`` with the padded patches (``mask`` ``[B, N]`` False) set to -1e9, so
    a maximum over patches never picks one; unchanged when there is no mask."""
    return emb if mask is None else emb.masked_fill(~mask[..., None], -1e9)


class QualityHead(nn.Module):
    """Descriptor bag -> patch embeddings -> MIL pooling -> CORAL ordinal + reasons."""

    # buffers (register_buffer), declared for the type checker
    feat_mean: Tensor
    feat_std: Tensor

    def __init__(
        self,
        k_levels: int = 5,
        n_reasons: int = 0,
        acceptable_level: int = 3,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        pooling: Pooling = "attention",
        dropout: float = 0.2,
        reason_pooling: ReasonPooling = "bag",
    ) -> None:
        super().__init__()
        self.reason_pooling = reason_pooling
        self.k_levels = k_levels
        self.n_reasons = n_reasons
        self.acceptable_level = acceptable_level
        self.pooling = pooling
        self.register_buffer("feat_mean", torch.zeros(DESCRIPTOR_DIM))
        self.register_buffer("feat_std", torch.ones(DESCRIPTOR_DIM))
        self.encoder = nn.Sequential(
            nn.Linear(DESCRIPTOR_DIM + 2, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, embed_dim),
            nn.ReLU(),
        )
        self.attention_v = nn.Linear(embed_dim, 64)
        self.attention_u = nn.Linear(embed_dim, 64)
        self.attention_w = nn.Linear(64, 1)
        self.ordinal_w = nn.Linear(embed_dim, 1, bias=False)
        self.ordinal_b = nn.Parameter(torch.linspace(1.0, -1.0, k_levels - 1))
        reason_in = embed_dim * (3 if reason_pooling == "bag_mean_max" else 1)
        self.reason_head = nn.Linear(reason_in, n_reasons) if n_reasons else None

    def set_feature_normalisation(self, mean: Tensor, std: Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-4))

    def embed(self, desc: Tensor, positions: Tensor) -> Tensor:
        """``desc`` ``[..., N, 2944]``, ``positions`` ``[..., N, 2]`` -> ``[..., N, D]``."""
        z = (desc - self.feat_mean) / self.feat_std
        emb: Tensor = self.encoder(torch.cat([z, positions], dim=-1))
        return emb

    def mil_weights(self, emb: Tensor, mask: Tensor | None = None) -> Tensor:
        """``emb`` ``[B, N, D]`` (mask ``[B, N]`` bool, True = real patch) -> weights ``[B, N]``."""
        if self.pooling == "attention":
            gate = torch.tanh(self.attention_v(emb)) * torch.sigmoid(self.attention_u(emb))
            logits = self.attention_w(gate).squeeze(-1)
        elif self.pooling == "mean":
            logits = torch.zeros(emb.shape[:-1], dtype=emb.dtype, device=emb.device)
        else:  # max: weight = share of embedding dimensions in which the patch is the maximum
            masked = padding_below_all(emb, mask)
            winners = (masked == masked.max(dim=-2, keepdim=True).values).to(emb.dtype)
            share = winners.mean(dim=-1)
            return share / share.sum(dim=-1, keepdim=True)
        if mask is not None:
            logits = logits.masked_fill(~mask, -1e9)
        return torch.softmax(logits, dim=-1)

    def pool(self, emb: Tensor, weights: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.pooling == "max":
            return padding_below_all(emb, mask).max(dim=-2).values
        return (weights.unsqueeze(-1) * emb).sum(dim=-2)

    def reason_features(self, emb: Tensor, bag: Tensor, mask: Tensor | None = None) -> Tensor:
        """Input of the reason head: ``[B, D]`` (the MIL bag) or, for ``bag_mean_max``, the bag
        with the plain mean and the maximum over the patches, ``[B, 3D]``.

        The attention weights favour the patches that decide *quality*; a fault such as a
        lesion that fills one patch only (distance) or sits at an edge (framing) is a property
        of the whole bag, which the mean and maximum keep.
        """
        if self.reason_pooling != "bag_mean_max":
            return bag
        if mask is None:
            mean = emb.mean(dim=-2)
        else:
            keep = mask[..., None].to(emb.dtype)
            mean = (emb * keep).sum(dim=-2) / keep.sum(dim=-2).clamp_min(1.0)
        peak = padding_below_all(emb, mask).max(dim=-2).values
        return torch.cat([bag, mean, peak], dim=-1)

    def cumulative_logits(self, emb: Tensor) -> Tensor:
        """``[..., D]`` -> CORAL logits of P(rating > k), k = 1..K-1: ``[..., K-1]``."""
        logits: Tensor = self.ordinal_w(emb) + self.ordinal_b
        return logits

    def acceptable_probability(self, cum_logits: Tensor) -> Tensor:
        return torch.sigmoid(cum_logits[..., self.acceptable_level - 2])

    @staticmethod
    def level_probs(cum_logits: Tensor) -> Tensor:
        """``[..., K-1]`` cumulative logits -> ``[..., K]`` level probabilities (sum 1)."""
        cum = torch.sigmoid(cum_logits)
        # enforce P(y > k) non-increasing in k (a running minimum; cummin does not export)
        running = [cum[..., 0]]
        for k in range(1, cum.shape[-1]):
            running.append(torch.minimum(running[-1], cum[..., k]))
        cum = torch.stack(running, dim=-1)
        ones = torch.ones_like(cum[..., :1])
        zeros = torch.zeros_like(cum[..., :1])
        return torch.cat([ones, cum], dim=-1) - torch.cat([cum, zeros], dim=-1)

    def forward_features(
        self, desc: Tensor, positions: Tensor, mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Batched bags: ``desc`` ``[B, N, 2944]``, ``positions`` ``[B, N, 2]``.

        Returns ``cum_logits`` ``[B, K-1]``, ``patch_cum_logits`` ``[B, N, K-1]``, ``weights``
        ``[B, N]``, ``reason_logits`` ``[B, R]`` (R may be 0), ``score`` ``[B]``.
        """
        emb = self.embed(desc, positions)
        weights = self.mil_weights(emb, mask)
        bag = self.pool(emb, weights, mask)
        cum_logits = self.cumulative_logits(bag)
        out = {
            "cum_logits": cum_logits,
            "patch_cum_logits": self.cumulative_logits(emb),
            "weights": weights,
            "score": self.acceptable_probability(cum_logits),
        }
        if self.reason_head is not None:
            out["reason_logits"] = self.reason_head(self.reason_features(emb, bag, mask))
        else:
            out["reason_logits"] = cum_logits.new_zeros((*cum_logits.shape[:-1], 0))
        return out


class PatchMILQualityNet(nn.Module):
    """Trunk + head; ``forward`` is the exported single-bag graph of the model contract."""

    def __init__(self, head: QualityHead, trunk: VGG16Trunk | None = None) -> None:
        super().__init__()
        self.trunk = trunk or VGG16Trunk()
        self.head = head

    def forward(self, patches: Tensor, positions: Tensor) -> tuple[Tensor, ...]:
        """``patches`` ``[N, 3, P, P]`` RGB [0, 1], ``positions`` ``[N, 2]`` ->
        (score ``[1]``, level_probs ``[1, K]``, patch_scores ``[N]``, mil_weights ``[N]``[,
        reasons ``[1, R]``])."""
        desc = self.trunk(patches).unsqueeze(0)
        out = self.head.forward_features(desc, positions.unsqueeze(0))
        patch_scores = self.head.acceptable_probability(out["patch_cum_logits"][0])
        result: tuple[Tensor, ...] = (
            out["score"].reshape(1),
            self.head.level_probs(out["cum_logits"]),
            patch_scores,
            out["weights"][0],
        )
        if self.head.reason_head is not None:
            result = (*result, torch.sigmoid(out["reason_logits"]))
        return result
