"""Tests of the FVD feature extractors and frechet_video_distance (tiny random extractor, real
TorchScript round trip through the i3d loader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.video_features import (
    RandomVideoFeatures,
    RandomVideoFeaturesConfig,
    available_feature_extractors,
    frechet_video_distance,
    make_feature_extractor,
    video_features,
)


def _videos(n: int, seed: int, brightness: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 200, (n, 5, 16, 16, 3)).astype(np.int64) + brightness
    return np.clip(v, 0, 255).astype(np.uint8)


def test_random_extractor_is_seeded_and_shaped():
    v = torch.from_numpy(_videos(3, 0))
    a, b = RandomVideoFeatures(), RandomVideoFeatures()
    c = RandomVideoFeatures(RandomVideoFeaturesConfig(seed=1))
    assert a(v).shape == (3, 16)
    assert torch.equal(a(v), b(v))
    assert not torch.equal(a(v), c(v))
    with pytest.raises(ValueError, match="uint8"):
        a(v.float())


def test_fvd_identical_sets_near_zero_and_shift_detected():
    ext = make_feature_extractor("random", feature_dim=8)
    real = _videos(24, 0)
    same = frechet_video_distance(real, real, ext, batch_size=5)
    assert same.value == pytest.approx(0.0, abs=1e-6)
    assert same.n == 24 and same.name == "fvd[random]"
    other = frechet_video_distance(real, _videos(24, 1), ext).value
    brighter = frechet_video_distance(real, _videos(24, 1, brightness=60), ext).value
    assert other < brighter
    assert video_features(real, ext, batch_size=7).shape == (24, 8)


class _MeanColour(nn.Module):
    """A stand-in network with the TorchScript I3D calling convention."""

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))  # (N, 3)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_i3d_loader_round_trip_and_errors(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(_MeanColour()).save(str(path))
    ext = make_feature_extractor("i3d", path=str(path), size=32)
    v = _videos(2, 0)
    feats = ext(torch.from_numpy(v))
    # Input was mapped to [-1, 1] before the network, as the FVD I3D expects.
    assert feats.shape == (2, 3)
    assert feats.numpy() == pytest.approx(v.reshape(2, -1, 3).mean(1) / 127.5 - 1, abs=0.02)
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        make_feature_extractor("i3d", path=str(tmp_path / "absent.pt"))
    state = tmp_path / "state.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state)
    with pytest.raises(ValueError, match="architecture="):
        make_feature_extractor("i3d", path=str(state))
    with pytest.raises(KeyError, match="Did you mean 'i3d'"):
        make_feature_extractor("i3e", path=str(path))
    assert available_feature_extractors() == ["i3d", "random"]
