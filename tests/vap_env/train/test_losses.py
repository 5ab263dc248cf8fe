"""Diffusion / VAE losses: v-target identity, gripper weighting, VAE stage gradients."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from vap_env.models import load_model_preset
from vap_env.train.losses import (
    DiffusionLossConfig,
    VAELossConfig,
    diffusion_targets,
    drop_instructions,
    noise_context,
    pool_to_latents,
    region_weights,
    skeleton_mask,
    vae_loss,
    weighted_mse,
)

SCHEDULERS = [CogVideoXDDIMScheduler, CogVideoXDPMScheduler]
T_CHECKED = (
    0,
    1,
    500,
    998,
    999,
)  # both ends (alpha_bar ~ 1 and the zero-SNR alpha_bar = 0) and the middle


def _scheduler(cls=CogVideoXDDIMScheduler):
    """A scheduler with the released CogVideoX settings (the tiny preset's scheduler config)."""
    return cls(**load_model_preset("tiny").scheduler_config)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_v_loss_equals_the_diffusers_cogvideox_x0_weighted_loss(cls):
    # The identity claimed in losses.py, through diffusion_targets + weighted_mse: a batch large
    # enough that every checked timestep is drawn (a missing one fails the lookup below).
    sched = _scheduler(cls)
    x0 = torch.randn(20_000, 1, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    noisy, t, v = diffusion_targets(sched, x0, torch.Generator().manual_seed(1))
    idx = torch.stack([(t == k).nonzero()[0, 0] for k in T_CHECKED])
    assert t[idx].tolist() == list(T_CHECKED)
    noisy, t, v, x0 = noisy[idx], t[idx], v[idx], x0[idx]
    model_out = v + 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(2))
    ours = torch.stack([weighted_mse(model_out[i], v[i]) for i in range(len(T_CHECKED))])
    # diffusers' train_cogvideox_lora.py: x0 estimate, weight 1 / (1 - alpha_bar_t)
    x0_hat = sched.get_velocity(model_out, noisy, t)
    a = sched.alphas_cumprod[t].float()
    theirs = ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3, 4)) / (1 - a)
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_diffusion_targets_are_the_schedulers_v_targets_of_seeded_draws(cls):
    sched = _scheduler(cls)
    latents = torch.randn(2, 3, 4, 6, 8)
    a = diffusion_targets(sched, latents, torch.Generator().manual_seed(1))
    b = diffusion_targets(sched, latents, torch.Generator().manual_seed(1))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    noisy, t, v = a
    assert noisy.shape == v.shape == latents.shape and t.shape == (2,) and t.dtype == torch.long
    c = diffusion_targets(sched, latents, torch.Generator().manual_seed(2))
    assert not torch.equal(a[0], c[0])

    # the same draws by hand: noise first, then uniform timesteps over [0, T)
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(latents.shape, generator=g, dtype=torch.float32)
    t_hand = torch.randint(0, 1000, (2,), generator=g, dtype=torch.long)
    assert torch.equal(t, t_hand)
    torch.testing.assert_close(noisy, sched.add_noise(latents, eps, t), rtol=0, atol=0)
    torch.testing.assert_close(v, sched.get_velocity(latents, eps, t), rtol=0, atol=0)
    ab = sched.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(v, ab.sqrt() * eps - (1 - ab).sqrt() * latents)
    torch.testing.assert_close(noisy, ab.sqrt() * latents + (1 - ab).sqrt() * eps)

    # many draws cover both ends of [0, T)
    _, many, _ = diffusion_targets(
        sched, torch.zeros(4000, 1, 1, 1, 1), torch.Generator().manual_seed(3)
    )
    assert many.min() < 20 and many.max() >= 980

    eps_sched = cls(prediction_type="epsilon")
    with pytest.raises(ValueError, match="v_prediction"):
        diffusion_targets(eps_sched, latents, torch.Generator())


def test_skeleton_mask_dilation_and_latent_pooling():
    sk = torch.full((1, 9, 3, 16, 16), -1.0)  # black
    sk[0, 0, 1, 4, 4] = 1.0  # one green pixel in frame 0
    sk[0, 6, :, 12, 13] = 0.5  # a grey pixel in frame 6
    m = skeleton_mask(sk, threshold=0.05, dilation=1)
    assert m.shape == (1, 9, 16, 16)
    assert m[0, 0].sum() == 9 and m[0, 6].sum() == 9 and m[0, 1].sum() == 0
    u8 = ((sk + 1) / 2 * 255).round().to(torch.uint8)
    assert torch.equal(skeleton_mask(u8, 0.05, 1), m)
    lat = pool_to_latents(m, latent_frames=3, grid=(2, 2))
    assert lat.shape == (1, 3, 1, 2, 2)
    # frame 0 -> latent 0 (top-left cell); frame 6 is in group 5..8 -> latent 2 (bottom-right)
    assert lat[0, 0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert lat[0, 1, 0].sum() == 0
    assert lat[0, 2, 0].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="do not map to 4 latent frames"):
        pool_to_latents(m, latent_frames=4, grid=(2, 2))


def test_weighted_mse_upweights_the_region():
    pred, target = torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 2, 1, 2, 2)
    pred[0, 0, 0, 0, 0] = 1.0  # error inside the region
    mask = torch.zeros(1, 2, 1, 2, 2)
    mask[0, 0, 0, 0, 0] = 1.0
    assert weighted_mse(pred, target).item() == pytest.approx(1 / 8)
    w = region_weights(mask, 3.0)
    assert weighted_mse(pred, target, w).item() == pytest.approx(3 / 10)
    pred2 = torch.zeros_like(pred)
    pred2[0, 1, 0, 1, 1] = 1.0  # same error outside the region counts less
    assert weighted_mse(pred2, target, w).item() == pytest.approx(1 / 10)


def test_drop_instructions():
    s = ["pick can", "open drawer"] * 50
    out = drop_instructions(s, 0.3, torch.Generator().manual_seed(0))
    assert out == drop_instructions(s, 0.3, torch.Generator().manual_seed(0))
    dropped = sum(x == "" for x in out)
    assert 15 <= dropped <= 45
    assert drop_instructions(s, 0.0, torch.Generator()) == s
    assert set(drop_instructions(s, 1.0, torch.Generator())) == {""}


def test_vae_loss_trains_a_tiny_real_cogvideox_vae():
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, norm_num_groups=4, layers_per_block=1
    )
    frames = torch.rand(1, 9, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    region = torch.zeros(1, 9, 16, 16)
    region[..., 4:8, 4:8] = 1
    cfg = VAELossConfig(kl_weight=1e-3)
    out = vae_loss(vae, frames, cfg, torch.Generator().manual_seed(0), region)
    assert set(out) == {"loss", "l1", "l2", "kl"}
    expected = out["l1"] + out["l2"] + 1e-3 * out["kl"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    assert all(p.grad is not None for p in vae.encoder.parameters() if p.requires_grad)
    again = vae_loss(vae, frames, cfg, torch.Generator().manual_seed(0), region)
    torch.testing.assert_close(again["loss"], out["loss"])


def test_noise_context_corrupts_only_the_context_latents():
    import dataclasses

    from vap_env.models import load_world_model

    g = torch.Generator().manual_seed(0)
    context = torch.randn(3, 4, 6, 8, generator=g)  # (B, C, h, w)
    assert noise_context(context, 0.0, g) is context  # off: no draw, same tensor

    def run() -> torch.Tensor:
        return noise_context(context, 0.5, torch.Generator().manual_seed(7))

    noisy = run()
    assert torch.equal(noisy, run())  # seeded
    noise = noisy - context  # (B, C, h, w)
    std = noise.flatten(1).std(dim=1)
    assert (std > 0).all() and (std < 0.5 * 1.3).all()  # per-clip std drawn in [0, 0.5]
    assert len(set(std.tolist())) == 3  # one std per clip

    # laid out by the world model as in training: only the frames holding the context change
    wm = load_world_model("tiny")
    wm.config = dataclasses.replace(wm.config, image_layout="first")
    first, out = wm.image_latents(context, 5), wm.image_latents(noisy, 5)
    assert torch.equal(out[:, 1:], first[:, 1:])  # "no image" frames stay zero
    assert torch.allclose(out[:, 0] - context, noise)
    wm.config = dataclasses.replace(wm.config, image_layout="repeat")
    repeat, out = wm.image_latents(context, 5), wm.image_latents(noisy, 5)
    # every frame of the repeat layout holds the context: the same noise on each
    assert torch.allclose(out - repeat, (out - repeat)[:, :1].expand_as(out))
    assert torch.allclose(out[:, 0] - context, noise)


def test_bad_loss_settings():
    with pytest.raises(ValueError, match=r"gripper_weight=0\.5"):
        DiffusionLossConfig(gripper_weight=0.5)
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="context_noise="):
            DiffusionLossConfig(context_noise=bad)
    with pytest.raises(ValueError, match=r"cfg_dropout=1\.5"):
        DiffusionLossConfig(cfg_dropout=1.5)
    with pytest.raises(ValueError, match="both 0"):
        VAELossConfig(l1_weight=0, l2_weight=0)
    with pytest.raises(ValueError, match=r"\(B, F, 3, H, W\)"):
        skeleton_mask(torch.zeros(2, 3, 8, 8), 0.1, 1)
