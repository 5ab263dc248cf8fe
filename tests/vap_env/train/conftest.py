"""Fixtures of the training tests: micro world models (real diffusers classes) and clip batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

from vap_env.models import WorldModelConfig, load_model_preset, load_world_model

MICRO_SIZE = 32


def micro_config(**changes) -> WorldModelConfig:
    """The ``tiny`` preset shrunk further (32x32, 2 blocks): a real CogVideoX that steps in ~0.2 s."""
    base = load_model_preset("tiny")
    cfg = dataclasses.replace(
        base,
        name="micro",
        height=MICRO_SIZE,
        width=MICRO_SIZE,
        control_layers=1,
        transformer={
            **base.transformer,
            "num_layers": 2,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "sample_height": MICRO_SIZE // 4,
            "sample_width": MICRO_SIZE // 4,
        },
        vae={
            **base.vae,
            "block_out_channels": [8, 8, 8],
            "sample_height": MICRO_SIZE,
            "sample_width": MICRO_SIZE,
        },
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory) -> Path:
    """A saved micro world model built from its config (the ``tiny`` recipe: everything trains)."""
    out = tmp_path_factory.mktemp("micro") / "model"
    load_world_model(micro_config()).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def real_small_model_dir(tmp_path_factory) -> Path:
    """A real-preset-style model at micro size: pretrained backbone directory + ControlNet + LoRA.

    The backbone is a diffusers-format directory (transformer/, vae/, text_encoder/, tokenizer/
    via save_pretrained), loaded with from_pretrained as the released CogVideoX repos are; the
    preset's trainable parts are the real presets' (ControlNet + LoRA).
    """
    root = tmp_path_factory.mktemp("real_small")
    micro = micro_config()
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(**micro.transformer).save_pretrained(
        root / "backbone" / "transformer"
    )
    AutoencoderKLCogVideoX(**micro.vae).save_pretrained(root / "backbone" / "vae")
    text = load_world_model(micro)  # its seeded T5 and byte-level tokenizer
    text.text_encoder.save_pretrained(root / "backbone" / "text_encoder")
    text.instructions.tokenizer.save_pretrained(root / "backbone" / "tokenizer")
    preset = load_model_preset("cogvideox-5b-i2v")
    cfg = micro_config(
        name="cogvideox-5b-i2v-small",
        backbone=str(root / "backbone"),
        lora_rank=4,
        lora_alpha=4.0,
        trainable=preset.trainable,
    )
    load_world_model(cfg).save_pretrained(root / "model")
    return root / "model"


def _synthetic_clips(
    batches_per_epoch: int = 3, batch_size: int = 2, size: int = MICRO_SIZE, k: int = 8
) -> Callable[[int], Iterator[dict]]:
    """A dataset factory (epoch -> collated batches): fixed seeded random clips, reshuffled per epoch.

    Like ``ClipDataset`` items they carry ``episode_id`` and ``start``, and a bright skeleton square.
    """
    n = batches_per_epoch * batch_size

    def clip(i: int) -> dict:
        g = torch.Generator().manual_seed(1000 + i)
        skeleton = torch.zeros(k + 1, 3, size, size, dtype=torch.uint8)
        skeleton[..., size // 4 : size // 2, size // 4 + i % 3 : size // 2 + i % 3] = 200
        return {
            "context": torch.randint(0, 256, (3, size, size), generator=g).byte(),
            "frames": torch.randint(0, 256, (k, 3, size, size), generator=g).byte(),
            "skeleton": skeleton,
            "instruction": ["pick can", "open drawer", "close drawer"][i % 3],
            "episode_id": f"train_{i:06d}",
            "start": i % 2,
        }

    def factory(epoch: int) -> Iterator[dict]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist()
        for b in range(batches_per_epoch):
            items = [clip(i) for i in order[b * batch_size : (b + 1) * batch_size]]
            yield {
                key: torch.stack([it[key] for it in items])
                if isinstance(items[0][key], torch.Tensor)
                else [it[key] for it in items]
                for key in items[0]
            }

    return factory


@pytest.fixture
def synthetic_clips() -> Callable[..., Callable[[int], Iterator[dict]]]:
    """``synthetic_clips(batches_per_epoch=3, batch_size=2)`` -> a dataset factory for Trainer."""
    return _synthetic_clips
