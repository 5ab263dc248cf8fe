"""Training losses: CogVideoX v-prediction with a gripper-weighted region, and the VAE stage's loss.

Diffusion (``diffusion_targets`` + ``weighted_mse``). CogVideoX is trained with v-prediction: for a
clean latent ``x0``, noise ``eps`` and timestep ``t`` (uniform over the scheduler's training steps),
``x_t = scheduler.add_noise(x0, eps, t)`` and the target is ``v = scheduler.get_velocity(x0, eps, t)
= sqrt(a_t) eps - sqrt(1 - a_t) x0``. We regress the model output on ``v`` with an MSE. This is the
same objective as the diffusers CogVideoX fine-tuning scripts, which convert the output to an
``x0`` estimate and weight its squared error by ``1 / (1 - a_t)``: since ``x0_hat - x0 =
-sqrt(1 - a_t) (v_hat - v)``, the two losses are identical (checked at t = 0, 1, 500, 998, 999 for
both schedulers).

Gripper weighting (VAP). Errors inside the action-relevant region count more: the region is the
skeleton prompt's non-black pixels (the rendered arm/gripper), dilated by a few pixels so the
surroundings of the gripper count as well, and max-pooled to the latent grid — spatially by the VAE's
factor, temporally as the causal VAE groups frames (latent 0 <- frame 0, latent k <- frames
4k-3..4k). Weight ``gripper_weight`` inside, 1 outside; the loss is the weighted *mean*
(sum(w * err) / sum(w)), so its scale does not change with the weight.

VAE stage (``vae_loss``): L1 + L2 reconstruction of the clip (also gripper-weighted, at pixel
resolution, because the thin gripper is what a small VAE blurs first) plus a small KL to the unit
Gaussian, no perceptual or adversarial terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from diffusers import AutoencoderKLCogVideoX, SchedulerMixin

TEMPORAL_COMPRESSION = 4  # CogVideoX VAE: 4k+1 frames -> k+1 latents


@dataclass(frozen=True)
class DiffusionLossConfig:
    """Settings of the v-prediction loss."""

    gripper_weight: float = field(
        default=3.0, metadata={"help": "loss weight inside the skeleton region (1 = uniform)"}
    )
    mask_threshold: float = field(
        default=0.05,
        metadata={
            "help": "a skeleton pixel whose max channel exceeds this (in [0, 1]) is non-black"
        },
    )
    mask_dilation: int = field(default=3, metadata={"help": "dilation radius of the region, px"})
    cfg_dropout: float = field(
        default=0.1,
        metadata={"help": "probability of training a sample with the empty instruction (CFG)"},
    )
    context_noise: float = field(
        default=0.0,
        metadata={
            "help": "largest std of the Gaussian noise added to the context frame's latent, drawn "
            "per clip uniformly in [0, context_noise] (0 = off): a rollout conditions on its "
            "own generated frames, never as clean as a recorded one"
        },
    )

    def __post_init__(self) -> None:
        if self.gripper_weight < 1.0:
            raise ValueError(
                f"gripper_weight={self.gripper_weight} must be >= 1 (1 weights all pixels equally)"
            )
        if not 0.0 <= self.context_noise < float("inf"):
            raise ValueError(
                f"context_noise={self.context_noise} must be a finite std >= 0 (0 turns it off)"
            )
        if not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"cfg_dropout={self.cfg_dropout} must be a probability in [0, 1]")
        if self.mask_dilation < 0:
            raise ValueError(f"mask_dilation={self.mask_dilation} must be >= 0 pixels")


@dataclass(frozen=True)
class VAELossConfig:
    """Settings of the VAE stage's loss."""

    l1_weight: float = field(default=1.0, metadata={"help": "weight of the L1 reconstruction"})
    l2_weight: float = field(default=1.0, metadata={"help": "weight of the L2 reconstruction"})
    kl_weight: float = field(
        default=1e-4, metadata={"help": "weight of KL(q(z|x) || N(0, I)), per latent element"}
    )
    gripper_weight: float = field(
        default=2.0, metadata={"help": "reconstruction weight inside the skeleton region"}
    )
    skeleton_fraction: float = field(
        default=0.0,
        metadata={
            "help": "fraction of each batch's clips replaced by their skeleton prompt videos: the "
            "ControlNet reads the prompt through this VAE, which otherwise never sees a line drawing"
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.skeleton_fraction < 1.0:
            raise ValueError(
                f"skeleton_fraction={self.skeleton_fraction} must be in [0, 1): it is the share of "
                "clips replaced by their skeleton videos, and the VAE must still see scene clips"
            )
        for name in ("l1_weight", "l2_weight", "kl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.l1_weight == self.l2_weight == 0:
            raise ValueError("l1_weight and l2_weight are both 0: the VAE would learn nothing")
        if self.gripper_weight < 1.0:
            raise ValueError(f"gripper_weight={self.gripper_weight} must be >= 1")


def skeleton_mask(skeleton: torch.Tensor, threshold: float, dilation: int) -> torch.Tensor:
    """Non-black pixels of a skeleton video, dilated.

    Args:
        skeleton: (B, F, 3, H, W) float in [-1, 1] or uint8 in [0, 255].
    Returns: (B, F, H, W) float {0, 1}.
    """
    if skeleton.ndim != 5 or skeleton.shape[2] != 3:
        raise ValueError(f"skeleton must be (B, F, 3, H, W), got {tuple(skeleton.shape)}")
    x = skeleton.float() / 255.0 if skeleton.dtype == torch.uint8 else (skeleton.float() + 1) / 2
    mask = (x.amax(dim=2) > threshold).float()
    if dilation > 0:
        b, f, h, w = mask.shape
        k = 2 * dilation + 1
        mask = F.max_pool2d(mask.view(b * f, 1, h, w), k, stride=1, padding=dilation)
        mask = mask.view(b, f, h, w)
    return mask


def pool_to_latents(mask: torch.Tensor, latent_frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """Max-pool a per-frame mask (B, F, H, W) to the latent layout (B, F', 1, h, w).

    Frames group as the causal VAE groups them: latent 0 <- frame 0, latent k <- frames 4k-3..4k.
    """
    b, f, h, w = mask.shape
    if f != TEMPORAL_COMPRESSION * (latent_frames - 1) + 1:
        raise ValueError(
            f"{f} frames do not map to {latent_frames} latent frames: the VAE needs "
            f"F = {TEMPORAL_COMPRESSION} * (F' - 1) + 1 = "
            f"{TEMPORAL_COMPRESSION * (latent_frames - 1) + 1}"
        )
    spatial = F.adaptive_max_pool2d(mask.reshape(b * f, 1, h, w), grid).view(b, f, *grid)
    first = spatial[:, :1]
    rest = spatial[:, 1:].reshape(b, latent_frames - 1, TEMPORAL_COMPRESSION, *grid).amax(dim=2)
    return torch.cat([first, rest], dim=1).unsqueeze(2)


def region_weights(mask: torch.Tensor, weight: float) -> torch.Tensor:
    """1 outside the region, ``weight`` inside (any mask shape)."""
    return 1.0 + (weight - 1.0) * mask


def weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean of squared errors, computed in float32; weights broadcast to ``pred``."""
    err = (pred.float() - target.float()).pow(2)
    if weights is None:
        return err.mean()
    w = weights.float().expand_as(err)
    return (err * w).sum() / w.sum()


def diffusion_targets(
    scheduler: SchedulerMixin, latents: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample timesteps and noise for a v-prediction step.

    Args:
        scheduler: a diffusers CogVideoX scheduler (``prediction_type: v_prediction``).
        latents: (B, F', C, h, w) clean latents (float32).
        generator: CPU generator; draws happen on the CPU so runs are identical across devices.
    Returns: ``noisy`` (B, F', C, h, w), ``timesteps`` (B,) long, ``target`` v (B, F', C, h, w).
    """
    pred_type = scheduler.config.get("prediction_type", "v_prediction")
    if pred_type != "v_prediction":
        raise ValueError(
            f"the scheduler predicts {pred_type!r}; CogVideoX training expects 'v_prediction'"
        )
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), generator=generator, dtype=torch.long
    )
    noise, timesteps = noise.to(latents.device), timesteps.to(latents.device)
    x0 = latents.float()
    return (
        scheduler.add_noise(x0, noise, timesteps),
        timesteps,
        scheduler.get_velocity(x0, noise, timesteps),
    )


def noise_context(
    context: torch.Tensor,  # (B, C, h, w): the context frame's latent
    max_std: float,
    generator: torch.Generator,
) -> torch.Tensor:  # -> (B, C, h, w)
    """Context-frame noise augmentation for autoregressive rollouts.

    In a rollout every chunk after the first is conditioned on the previous chunk's last
    *generated* frame; trained only on clean recorded contexts, the model compounds its own errors
    (exposure bias). Each clip's context latent gets Gaussian noise of a std drawn uniformly in
    ``[0, max_std]``; ``WorldModel.image_latents`` then lays the noisy latent out as the clean one
    would be. No draw is made when ``max_std`` is 0, so runs without the augmentation keep their
    random stream.
    """
    if max_std <= 0:
        return context
    b = context.shape[0]
    std = torch.rand(b, generator=generator, dtype=torch.float32) * max_std
    noise = torch.randn(context.shape, generator=generator, dtype=torch.float32)
    return context + (std.view(b, 1, 1, 1) * noise).to(context.device, context.dtype)


def drop_instructions(
    instructions: list[str], probability: float, generator: torch.Generator, empty: str = ""
) -> list[str]:
    """Replace each instruction by ``empty`` with ``probability`` (classifier-free guidance)."""
    if probability <= 0:
        return list(instructions)
    draws = torch.rand(len(instructions), generator=generator).tolist()
    return [empty if u < probability else s for s, u in zip(instructions, draws, strict=True)]


def vae_loss(
    vae: AutoencoderKLCogVideoX,
    frames: torch.Tensor,
    cfg: VAELossConfig,
    generator: torch.Generator,
    region: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Reconstruction + KL loss of a diffusers ``AutoencoderKLCogVideoX`` on one clip batch.

    Args:
        frames: (B, F, 3, H, W) in [-1, 1], F = 4k+1.
        region: optional (B, F, H, W) {0, 1} mask (the skeleton region) weighted by
            ``cfg.gripper_weight`` in the reconstruction terms.
    Returns: dict with ``loss`` (the weighted sum) and its parts ``l1``, ``l2``, ``kl`` (detached).
    """
    x = frames.permute(0, 2, 1, 3, 4)  # the VAE takes (B, C, F, H, W)
    posterior = vae.encode(x).latent_dist
    # Posterior noise from our generator (on the CPU) so the stage is reproducible and resumable.
    eps = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32)
    z = posterior.mean + posterior.std * eps.to(posterior.mean.device, posterior.mean.dtype)
    recon = vae.decode(z).sample
    weights = None
    if region is not None:
        weights = region_weights(region, cfg.gripper_weight).unsqueeze(1)  # (B, 1, F, H, W)
    diff = recon.float() - x.float()
    if weights is None:
        l1, l2 = diff.abs().mean(), diff.pow(2).mean()
    else:
        w = weights.expand_as(diff)
        l1, l2 = (diff.abs() * w).sum() / w.sum(), (diff.pow(2) * w).sum() / w.sum()
    mean, logvar = posterior.mean.float(), posterior.logvar.float()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.kl_weight * kl
    return {"loss": loss, "l1": l1.detach(), "l2": l2.detach(), "kl": kl.detach()}
