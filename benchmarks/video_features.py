"""Video feature extractors for the Fréchet video distance (FVD), and FVD itself.

FVD (Unterthiner et al. 2018) is the Fréchet distance between Gaussians fitted to features of
real and generated videos. The features are pluggable (``make_feature_extractor(name, **config)``):

``i3d``
    An I3D network from a user path (nothing is downloaded). Either a TorchScript file -- the
    ``i3d_torchscript.pt`` used by StyleGAN-V and ``fvd-comparison``, called as
    ``model(x, rescale=False, resize=False, return_features=True)`` on x (N, 3, T, 224, 224) in
    [-1, 1], which is the standard FVD setup -- or a state dict plus ``architecture="pkg.mod:Class"``
    naming an importable ``nn.Module`` to load it into (``feature_method`` picks the method that
    returns features).
``random``
    A tiny seeded random 3D-conv network. Its distances mean nothing perceptually; it exists so
    that tests and smoke runs exercise the whole FVD path without weights.

Frames are resized to ``size`` x ``size`` without keeping the aspect ratio or cropping, as the
original FVD's ``preprocess`` does (bilinear to 224 x 224), so non-square videos are compared the way
published FVDs are. Numbers from different extractors, resolutions or clip lengths are not
comparable; the
``MetricResult`` name carries the extractor (``fvd[i3d]``) and n.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.metrics import MetricResult, frechet_distance
from vap_env.config import did_you_mean, from_dict


@runtime_checkable
class VideoFeatureExtractor(Protocol):
    """Maps a batch of videos to one feature vector each."""

    name: str

    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """videos: (N, T, H, W, 3) uint8 -> features: (N, F) float32."""
        ...


def _to_unit_range(videos: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 -> (N, 3, T, H', W') float32 in [-1, 1], frames resized to ``size``."""
    if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(
            f"videos must be uint8 (N, T, H, W, 3), got {videos.dtype} {tuple(videos.shape)}"
        )
    n, t, h, w, _ = videos.shape
    x = videos.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float() / 127.5 - 1.0
    if size is not None and (h, w) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.reshape(n, t, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4).contiguous()


@dataclasses.dataclass(frozen=True)
class RandomVideoFeaturesConfig:
    """A tiny random 3D-conv feature extractor for tests (no weights, seeded)."""

    feature_dim: int = dataclasses.field(default=16, metadata={"help": "output feature size"})
    width: int = dataclasses.field(default=8, metadata={"help": "channels of the hidden conv"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the random weights"})


class RandomVideoFeatures(nn.Module):
    """``random`` extractor: two strided 3D convolutions and global average pooling."""

    name = "random"
    config_class: ClassVar[type] = RandomVideoFeaturesConfig

    def __init__(self, cfg: RandomVideoFeaturesConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RandomVideoFeaturesConfig()
        # Initialise under a private generator state so the weights depend on cfg.seed only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net = nn.Sequential(
                nn.Conv3d(3, cfg.width, kernel_size=3, stride=(1, 2, 2), padding=1),
                nn.GELU(),
                nn.Conv3d(cfg.width, cfg.feature_dim, kernel_size=3, stride=2, padding=1),
                nn.AdaptiveAvgPool3d(1),
                nn.Flatten(),
            )
        self.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """videos: (N, T, H, W, 3) uint8 -> (N, feature_dim)."""
        return self.net(_to_unit_range(videos, None))


@dataclasses.dataclass(frozen=True)
class I3DFeaturesConfig:
    """I3D features from a user-supplied TorchScript file or state dict."""

    path: str = dataclasses.field(
        metadata={"help": "i3d_torchscript.pt, or a state dict (.pt/.pth)"}
    )
    architecture: str | None = dataclasses.field(
        default=None,
        metadata={"help": "'pkg.module:Class' to load a state dict into (not for TorchScript)"},
    )
    feature_method: str | None = dataclasses.field(
        default=None,
        metadata={"help": "method of the architecture that returns features (default: forward)"},
    )
    size: int = dataclasses.field(
        default=224, metadata={"help": "frames are resized to size x size"}
    )
    device: str = dataclasses.field(default="cpu", metadata={"help": "torch device"})


class I3DFeatures:
    """``i3d`` extractor (see module docstring)."""

    name = "i3d"
    config_class: ClassVar[type] = I3DFeaturesConfig

    def __init__(self, cfg: I3DFeaturesConfig) -> None:
        path = Path(cfg.path)
        if not path.is_file():
            raise FileNotFoundError(
                f"I3D weights {cfg.path!r} do not exist; pass the path of an I3D TorchScript file "
                "(e.g. the i3d_torchscript.pt used for FVD by StyleGAN-V) or of a state dict with "
                "architecture='pkg.module:Class'. Nothing is downloaded."
            )
        self.cfg = cfg
        self._torchscript = cfg.architecture is None
        if self._torchscript:
            try:
                with warnings.catch_warnings():
                    # torch >= 2.9 deprecates TorchScript, but the FVD I3D is shipped as one.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.model = torch.jit.load(str(path), map_location=cfg.device)
            except RuntimeError as err:
                raise ValueError(
                    f"{cfg.path!r} is not a TorchScript file ({err.__class__.__name__}); for a "
                    "state dict also pass architecture='pkg.module:Class'"
                ) from err
        else:
            module_name, _, cls_name = cfg.architecture.partition(":")
            if not cls_name:
                raise ValueError(
                    f"architecture must be 'pkg.module:Class', got {cfg.architecture!r}"
                )
            cls = getattr(importlib.import_module(module_name), cls_name)
            self.model = cls()
            self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.model.to(cfg.device)
        self.model.eval()

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """videos: (N, T, H, W, 3) uint8 -> (N, F); I3D needs T >= 9 or so (its temporal strides)."""
        x = _to_unit_range(videos, (self.cfg.size, self.cfg.size)).to(self.cfg.device)
        if self._torchscript:
            feats = self.model(x, rescale=False, resize=False, return_features=True)
        elif self.cfg.feature_method:
            feats = getattr(self.model, self.cfg.feature_method)(x)
        else:
            feats = self.model(x)
        return feats.reshape(len(x), -1).float().cpu()


FEATURE_EXTRACTORS: dict[str, type] = {"i3d": I3DFeatures, "random": RandomVideoFeatures}


def available_feature_extractors() -> list[str]:
    """Names accepted by ``make_feature_extractor``."""
    return sorted(FEATURE_EXTRACTORS)


def make_feature_extractor(name: str, **config: Any) -> VideoFeatureExtractor:
    """Build a registered extractor, e.g. ``make_feature_extractor("i3d", path="i3d.pt")``."""
    if name not in FEATURE_EXTRACTORS:
        names = available_feature_extractors()
        raise KeyError(
            f"unknown feature extractor {name!r}; available: {names}.{did_you_mean(name, names)}"
        )
    cls = FEATURE_EXTRACTORS[name]
    return cls(from_dict(cls.config_class, config, where=f"{name} feature extractor"))


def video_features(
    videos: np.ndarray | torch.Tensor, extractor: VideoFeatureExtractor, *, batch_size: int = 8
) -> np.ndarray:
    """Features of each video: (N, T, H, W, 3) uint8 -> (N, F) float64, in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    v = torch.as_tensor(videos)
    feats = [extractor(v[i : i + batch_size]) for i in range(0, len(v), batch_size)]
    return torch.cat(feats).double().numpy()


def frechet_video_distance(
    real: np.ndarray | torch.Tensor,
    generated: np.ndarray | torch.Tensor,
    extractor: VideoFeatureExtractor,
    *,
    batch_size: int = 8,
) -> MetricResult:
    """FVD between two sets of videos, each (N, T, H, W, 3) uint8 (N >= 2).

    Returns ``MetricResult(name="fvd[<extractor>]", n=min(N_real, N_generated))``. With n below the
    feature dimension (400 for I3D) the estimate is strongly biased upwards; compare FVDs only at
    equal n.
    """
    f_real = video_features(real, extractor, batch_size=batch_size)
    f_gen = video_features(generated, extractor, batch_size=batch_size)
    value = frechet_distance(f_real, f_gen)
    return MetricResult(f"fvd[{extractor.name}]", value, min(len(f_real), len(f_gen)))
