"""Training configuration: a TOML file (YAML also accepted when PyYAML is installed).

Keys may sit at the top level or in any tables (``[data]``, ``[model]``, ``[train]``, ...): the
tables are flattened, and an unknown or repeated key is an error. Relative paths are relative to
the config file. Example (all keys but ``csv`` and ``out_dir`` optional)::

    [data]
    csv = ["ratings.csv"]            # one path or a list
    reasons = ["blur", "dark"]       # default: every 0/1 column of the CSV(s)
    val_fraction = 0.15              # for rows with a blank split
    test_fraction = 0.15

    [model]
    weights = "../shared/weights/vgg16_imagenet_features_fp16.npz"   # or a torchvision .pth,
                                                                     # or "random" (tests only)
    patch_size = 224
    max_long_side = 672              # capture grid (used for training and evaluation)
    live_max_long_side = 672
    max_short_side = 448             # both grids; 0 = no cap (schema 3: a 4:3 still in 2 rows)
    pooling = "attention"            # attention | mean | max
    reason_pooling = "bag"           # bag | bag_mean_max (input of the reason heads)
    trainable_blocks = 0             # > 0: fine-tune the last VGG blocks end to end (GPU)

    [train]
    epochs = 60
    lr = 1e-3
    batch_size = 32
    reason_targets = "named"         # or "expected" (build-data rows, see reason_targets.py)
    seed = 0                         # split_seed (default: seed) for the split assignment
    out_dir = "runs/vgg16-mil"
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.model_meta import GridSpec, OrdinalSpec, TilingSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "vgg16_imagenet_features_fp16.npz"
POOLINGS = ("attention", "mean", "max")
REASON_POOLINGS = ("bag", "bag_mean_max")
EXTRACTORS = ("auto", "torch", "onnxruntime")
REASON_TARGETS = ("named", "expected")


class ConfigError(ValueError):
    """The training configuration is invalid; the message names the key."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved into every checkpoint)."""

    csv: list[str]
    out_dir: str
    reasons: list[str] | None = None
    levels: list[str] = field(default_factory=lambda: list(OrdinalSpec().levels))
    acceptable_level: int = 3
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    weights: str = str(DEFAULT_WEIGHTS)
    patch_size: int = 224
    max_long_side: int = 672
    live_max_long_side: int = 672
    max_short_side: int = 448
    max_patches: int = 64
    pooling: str = "attention"
    reason_pooling: str = "bag"
    embed_dim: int = 128
    hidden_dim: int = 256
    dropout: float = 0.2
    trainable_blocks: int = 0
    epochs: int = 60
    lr: float = 1e-3
    trunk_lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 32
    reason_weight: float = 0.5
    # "named": the reason heads learn the CSV's 0/1 columns; "expected": on build-data training
    # rows, the exact probability that the simulated raters name each reason (reason_targets.py)
    reason_targets: str = "named"
    patch_dropout: float = 0.0
    seed: int = 0
    split_seed: int | None = None
    device: str = "auto"
    extractor: str = "auto"
    threads: int = 0
    cache_dir: str = ""
    model_name: str = "vgg16-mil"
    model_version: str = "0.1.0"
    data_licences: list[str] = field(default_factory=list)

    def validate(self) -> None:
        problems = []
        if not self.csv:
            problems.append("csv: at least one dataset CSV is required")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling: '{self.pooling}' is not one of {', '.join(POOLINGS)}")
        if self.reason_pooling not in REASON_POOLINGS:
            problems.append(
                f"reason_pooling: '{self.reason_pooling}' is not one of "
                f"{', '.join(REASON_POOLINGS)}"
            )
        if self.reason_targets not in REASON_TARGETS:
            problems.append(
                f"reason_targets: '{self.reason_targets}' is not one of {', '.join(REASON_TARGETS)}"
            )
        if self.extractor not in EXTRACTORS:
            problems.append(f"extractor: '{self.extractor}' is not one of {', '.join(EXTRACTORS)}")
        if self.patch_size < 8:
            problems.append("patch_size: must be >= 8")
        if self.max_long_side < self.patch_size or self.live_max_long_side < self.patch_size:
            problems.append("max_long_side / live_max_long_side: must be >= patch_size")
        if self.max_short_side and self.max_short_side < self.patch_size:
            problems.append("max_short_side: must be 0 (no cap) or >= patch_size")
        if not 0 <= self.trainable_blocks <= 5:
            problems.append("trainable_blocks: must be 0..5")
        if len(self.levels) < 2 or not 1 < self.acceptable_level <= len(self.levels):
            problems.append("levels / acceptable_level: need >= 2 levels, 1 < acceptable <= K")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            problems.append("epochs, batch_size and lr must be positive")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            problems.append("val_fraction / test_fraction: must be in [0, 1)")
        if not 0 <= self.patch_dropout < 1:
            problems.append("patch_dropout: must be in [0, 1)")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    @property
    def k_levels(self) -> int:
        return len(self.levels)

    @property
    def train_grid(self) -> GridSpec:
        return GridSpec(
            max_long_side=self.max_long_side,
            max_patches=self.max_patches,
            max_short_side=self.max_short_side or None,
        )

    def tiling(self) -> TilingSpec:
        return TilingSpec(
            patch_size=self.patch_size,
            live=GridSpec(
                max_long_side=self.live_max_long_side,
                max_patches=self.max_patches,
                max_short_side=self.max_short_side or None,
            ),
            capture=self.train_grid,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base_dir: Path | None = None) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        values = dict(raw)
        if isinstance(values.get("csv"), str):
            values["csv"] = [values["csv"]]
        if "csv" not in values or "out_dir" not in values:
            raise ConfigError("the config needs 'csv' (dataset CSV path(s)) and 'out_dir'")
        if base_dir is not None:
            values["csv"] = [str(_resolve(p, base_dir)) for p in values["csv"]]
            values["out_dir"] = str(_resolve(values["out_dir"], base_dir))
            if values.get("weights") and values["weights"] != "random":
                values["weights"] = str(_resolve(values["weights"], base_dir))
            if values.get("cache_dir"):
                values["cache_dir"] = str(_resolve(values["cache_dir"], base_dir))
        try:
            config = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from exc
        config.validate()
        return config


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()


def _flatten(table: dict[str, Any], out: dict[str, Any], where: str = "") -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(value, out, f"{where}{key}.")
        else:
            if key in out:
                raise ConfigError(f"config key '{key}' is given twice (second at {where}{key})")
            out[key] = value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML (or YAML) config file; ``overrides`` replace keys after flattening."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError("YAML configs need PyYAML; use TOML instead") from exc
        raw = yaml.safe_load(text) or {}
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    flat: dict[str, Any] = {}
    _flatten(raw, flat)
    flat.update(overrides or {})
    return TrainConfig.from_dict(flat, base_dir=path.parent.resolve())
