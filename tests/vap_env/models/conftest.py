"""Fixtures for the world-model tests: tiny real CogVideoX models and chunk inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vap_env.models import WorldModel, load_world_model


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """Run these tests on one intra-op thread, restoring the setting afterwards.

    The CI and dev machines have two cores shared with other jobs; two spinning OpenMP threads on a
    busy machine made the tiny model several times slower, one thread never did.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def tiny() -> WorldModel:
    """The tiny preset with its seeded random weights (shared: tests must not modify it)."""
    return load_world_model("tiny")


def _chunk_inputs(wm: WorldModel, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 context (B, H, W, 3) and skeleton (B, K+1, H, W, 3) at the model's size."""
    rng = np.random.default_rng(seed)
    cfg = wm.config
    context = rng.integers(0, 256, (batch, cfg.height, cfg.width, 3), dtype=np.uint8)
    skeleton = rng.integers(
        0, 256, (batch, cfg.chunk_frames + 1, cfg.height, cfg.width, 3), dtype=np.uint8
    )
    return context, skeleton


def _latent_inputs(wm: WorldModel, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of ``WorldModel.predict`` at the model's chunk size."""
    g = torch.Generator().manual_seed(seed)
    h, w = wm.latent_size
    shape = (batch, wm.config.latent_frames, wm.latent_channels, h, w)
    text_len = wm.transformer.config.max_text_seq_length
    text_dim = wm.transformer.config.text_embed_dim
    image = torch.zeros(shape)
    image[:, :1] = torch.randn((batch, 1, *shape[2:]), generator=g)
    return {
        "noisy_latents": torch.randn(shape, generator=g),
        "timesteps": torch.randint(0, 1000, (batch,), generator=g),
        "image_latents": image,
        "control_latents": torch.randn(shape, generator=g),
        "text_embeds": torch.randn((batch, text_len, text_dim), generator=g),
    }


@pytest.fixture()
def chunk_inputs():
    """``chunk_inputs(wm, batch, seed) -> (context, skeleton)`` uint8 arrays."""
    return _chunk_inputs


@pytest.fixture()
def latent_inputs():
    """``latent_inputs(wm, batch, seed) -> kwargs of WorldModel.predict``."""
    return _latent_inputs


@pytest.fixture(scope="package")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory, tiny: WorldModel):
    """The tiny backbone written in diffusers' own layout (save_pretrained of each part)."""
    root = tmp_path_factory.mktemp("tiny-backbone")
    fresh = load_world_model("tiny")  # unwidened, unadapted parts
    fresh.transformer.save_pretrained(root / "transformer")
    fresh.vae.save_pretrained(root / "vae")
    fresh.scheduler.save_pretrained(root / "scheduler")
    fresh.text_encoder.save_pretrained(root / "text_encoder")
    fresh.instructions.tokenizer.save_pretrained(root / "tokenizer")
    return root
