"""Presets, config validation and backbone geometry checks (clear errors for bad values)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vap_env.models import WorldModelConfig, load_model_preset, load_world_model, model_presets
from vap_env.models.backbone import build_backbone, check_geometry, fit_positions


def test_presets_load_and_are_consistent():
    assert {"tiny", "cogvideox-2b", "cogvideox-5b-i2v"} <= set(model_presets())
    for name in ("tiny", "cogvideox-2b", "cogvideox-5b-i2v"):
        cfg = load_model_preset(name)
        assert cfg.name == name
        assert cfg.scheduler_config["prediction_type"] == "v_prediction"
        assert cfg.scheduler_config["rescale_betas_zero_snr"] is True
        assert cfg.scheduler_config["timestep_spacing"] == "trailing"
    assert load_model_preset("cogvideox-5b-i2v").control_layers == 14


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("chunk_frames", 6, "chunk_frames=6 is not a positive multiple of 4: the CogVideoX VAE"),
        ("num_inference_steps", 0, "num_inference_steps=0"),
        ("guidance_scale", 0.5, "guidance_scale=0.5"),
        ("scheduler", "ddmi", "Did you mean 'ddim'"),
        ("dtype", "float64", "dtype='float64'"),
        ("trainable", ("controlnet", "lora"), "lora_rank=0"),
        ("trainable", ("contrlnet",), "Did you mean 'controlnet'"),
        ("trainable", ("text_encoder",), "text encoder is frozen"),
        ("transformer", {}, "is empty"),
        ("image_layout", "repaet", "Did you mean 'repeat'"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(load_model_preset("tiny"), **{field: value})


def test_unknown_preset_and_dtype_errors():
    with pytest.raises(KeyError, match="Did you mean 'cogvideox-2b'"):
        load_world_model("cogvideox-2")
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        load_world_model("tiny", dtype=torch.float16)
    with pytest.raises(ValueError, match=r"torch\.float32, torch\.bfloat16"):
        load_world_model("tiny", dtype=torch.int8)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"height": 60}, "60x80 is not a multiple of 8 .*use e.g. 64x80"),
        ({"width": 90}, "64x90 is not a multiple of 8"),
        ({"control_layers": 9}, "control_layers=9 but the transformer has 4 blocks"),
    ],
)
def test_geometry_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_world_model("tiny", **overrides)


def test_text_encoder_must_match_the_transformer():
    cfg = load_model_preset("tiny")
    with pytest.raises(
        ValueError, match="d_model=32 differs from the transformer's text_embed_dim=64"
    ):
        load_world_model(cfg, text_encoder={**cfg.text_encoder, "d_model": 32})


def test_cogvideox_1_5_backbones_are_rejected():
    cfg = load_model_preset("tiny")
    with pytest.raises(ValueError, match=r"CogVideoX 1\.5"):
        load_world_model(cfg, transformer={**cfg.transformer, "patch_size_t": 2})
    # The 1.5 I2V's "ofs" conditioning alone also marks it: generate_chunk never feeds one.
    with pytest.raises(ValueError, match=r"CogVideoX 1\.5.*ofs_embed_dim=32"):
        load_world_model(cfg, transformer={**cfg.transformer, "ofs_embed_dim": 32})


def learned_position_config(**overrides) -> WorldModelConfig:
    """tiny with a learned positional table, like CogVideoX-5B-I2V (native 64x80, 13 latent frames)."""
    cfg = load_model_preset("tiny")
    transformer = {
        **cfg.transformer,
        "use_learned_positional_embeddings": True,
        "sample_frames": 49,
    }
    return dataclasses.replace(cfg, transformer=transformer, **overrides)


def test_learned_positions_fix_the_resolution():
    with pytest.raises(ValueError, match="learned positional embeddings for 64x80 only"):
        load_world_model(learned_position_config(height=32, width=80))
    with pytest.raises(ValueError, match="use chunk_frames <= 48"):
        load_world_model(learned_position_config(chunk_frames=52))


@torch.no_grad()
def test_learned_table_is_cut_to_the_chunk_not_replaced():
    cfg = learned_position_config()
    backbone = build_backbone(cfg, torch.device("cpu"))
    check_geometry(cfg, backbone)
    embed = backbone.transformer.patch_embed
    full = embed.pos_embedding.clone()
    fit_positions(backbone.transformer, cfg.latent_frames, 16, 20)
    n = embed.max_text_seq_length + cfg.latent_frames * 8 * 10
    assert embed.pos_embedding.shape[1] == n
    assert torch.equal(embed.pos_embedding, full[:, :n])
    # diffusers now uses the learned rows for a 3-latent-frame chunk instead of sin-cos ones.
    text = torch.zeros(1, embed.max_text_seq_length, 64)
    video = torch.zeros(1, cfg.latent_frames, 16, 16, 20)
    tokens = embed(text, video)
    bias = embed.proj.bias.view(1, 1, -1)
    learned = full[:, embed.max_text_seq_length : n].to(tokens.dtype)
    assert torch.allclose(tokens[:, embed.max_text_seq_length :] - bias, learned, atol=1e-6)
    wm = load_world_model(cfg)
    assert wm.predict(**_zeros(wm)).shape == (1, 3, 8, 16, 20)


@torch.no_grad()
def test_sin_cos_table_fitted_once_gives_what_diffusers_computes_per_call():
    cfg = load_model_preset("tiny")
    sincos = dataclasses.replace(
        cfg, transformer={**cfg.transformer, "use_rotary_positional_embeddings": False}
    )
    backbone = build_backbone(sincos, torch.device("cpu"))
    text = torch.randn(1, 64, 64)
    video = torch.randn(1, 3, 16, 16, 20)
    per_call = backbone.transformer.patch_embed(text, video)  # sample size 16x20x9 = 3 latents
    backbone.transformer.patch_embed.sample_frames = 49  # as released: forces the per-call path
    assert torch.equal(backbone.transformer.patch_embed(text, video), per_call)
    fit_positions(backbone.transformer, 3, 16, 20)
    assert backbone.transformer.patch_embed.sample_frames == 9
    assert torch.equal(backbone.transformer.patch_embed(text, video), per_call)


def _zeros(wm):
    shape = (1, wm.config.latent_frames, 8, 16, 20)
    return {
        "noisy_latents": torch.zeros(shape),
        "timesteps": torch.tensor([10]),
        "image_latents": torch.zeros(shape),
        "control_latents": torch.zeros(shape),
        "text_embeds": torch.zeros(1, 64, 64),
    }


def test_full_size_presets_build_on_the_meta_device():
    """The released 2B / 5B-I2V architectures construct (no weights, no download) and fit together."""
    for name in ("cogvideox-2b", "cogvideox-5b-i2v"):
        cfg = load_model_preset(name)
        backbone = build_backbone(dataclasses.replace(cfg, backbone=None), torch.device("meta"))
        check_geometry(cfg, backbone)
        assert backbone.transformer.proj_out.weight.is_meta
