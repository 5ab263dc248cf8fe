"""Skeleton ControlNet for CogVideoX (diffusers has none): the branch that reads the visual action prompt.

Following ControlNet (Zhang et al., 2023) and VAP (ICCV 2025):

- a trainable copy of the first N transformer blocks of the backbone, initialised from them;
- the skeleton video, encoded by the same frozen VAE, enters through its own patch embedding, whose
  tokens are *added to the main branch's input tokens* (ControlNet's "input hint + zero conv": the copy
  starts from the features it was pretrained on, and the hint is learnt on top). That patch embedding
  is zero-initialised, as ControlNet's hint convolution is;
- block i's output passes a zero-initialised linear layer and is added (times a conditioning scale)
  to the hidden states after main block i.

At initialisation every residual is exactly zero, so the world model's output equals the backbone's.
The text tokens run through the copied blocks alongside (the blocks need them for joint attention),
but only the video tokens feed back into the main branch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn
from torch.utils.checkpoint import checkpoint


class SkeletonControlNet(nn.Module):
    """ControlNet branch over N copied CogVideoX blocks.

    Args:
        blocks: the N blocks to own (copies of the backbone's first N, see ``from_transformer``).
        latent_channels: C, channels of the VAE latents of the skeleton video.
        inner_dim: D, the transformer's hidden size.
        patch_size: p, the transformer's spatial patch size.
    """

    def __init__(
        self,
        blocks: Sequence[CogVideoXBlock],
        latent_channels: int,
        inner_dim: int,
        patch_size: int,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.control_embed = nn.Conv2d(
            latent_channels, inner_dim, kernel_size=patch_size, stride=patch_size
        )
        self.blocks = nn.ModuleList(blocks)
        self.out_projections = nn.ModuleList(nn.Linear(inner_dim, inner_dim) for _ in blocks)
        self.gradient_checkpointing = False
        self.zero_init()

    @classmethod
    def from_transformer(
        cls, transformer: CogVideoXTransformer3DModel, num_layers: int, latent_channels: int
    ) -> SkeletonControlNet:
        """Copy the first ``num_layers`` blocks of ``transformer`` (before any LoRA is added)."""
        available = len(transformer.transformer_blocks)
        if not 1 <= num_layers <= available:
            raise ValueError(
                f"control_layers={num_layers} but the transformer has {available} blocks: "
                f"use 1..{available}"
            )
        blocks = [copy.deepcopy(transformer.transformer_blocks[i]) for i in range(num_layers)]
        inner_dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        ref = transformer.proj_out.weight
        return cls(blocks, latent_channels, inner_dim, transformer.config.patch_size).to(
            device=ref.device, dtype=ref.dtype
        )

    def zero_init(self) -> None:
        """Zero the hint embedding and the output projections (residuals exactly 0)."""
        for module in (self.control_embed, *self.out_projections):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(self, control_latents: torch.Tensor) -> torch.Tensor:
        """Patchify control latents (B, F, C, h, w) -> tokens (B, F * h/p * w/p, D).

        The token order (frame, row, column) is the one of CogVideoXPatchEmbed.
        """
        b, f, c, h, w = control_latents.shape
        tokens = self.control_embed(control_latents.reshape(b * f, c, h, w))
        tokens = tokens.view(b, f, *tokens.shape[1:]).flatten(3).transpose(2, 3)
        return tokens.flatten(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, N, D) main-branch video tokens after the patch embedding
        encoder_hidden_states: torch.Tensor,  # (B, L, D) text tokens after the patch embedding
        control_latents: torch.Tensor,  # (B, F, C, h, w) VAE latents of the skeleton video
        temb: torch.Tensor,  # (B, E) time embedding
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor]
        | None = None,  # (cos, sin), each (N, head_dim)
    ) -> list[torch.Tensor]:
        """Residuals for the first N main blocks, each (B, N, D), unscaled."""
        hidden = hidden_states + self.embed(control_latents)
        text = encoder_hidden_states
        residuals = []
        for block, out in zip(self.blocks, self.out_projections, strict=True):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                hidden, text = checkpoint(
                    block, hidden, text, temb, image_rotary_emb, use_reentrant=False
                )
            else:
                hidden, text = block(hidden, text, temb, image_rotary_emb)
            residuals.append(out(hidden))
        return residuals
