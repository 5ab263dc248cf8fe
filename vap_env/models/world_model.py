"""``WorldModel``: CogVideoX + skeleton ControlNet + LoRA, generating a robot video chunk by chunk.

One chunk is [context frame] + K new frames = 4k+1 frames = k+1 latent frames. Image-to-video
conditioning as CogVideoX-5B-I2V does it: the context frame's VAE latent sits at latent frame 0 of
an otherwise zero "image latent" video that is concatenated with the noisy latents on the channel
axis. The skeleton video of the chunk (K+1 frames, frame 0 = the context frame's state) is encoded by
the same VAE and read by the ControlNet. The last generated frame is the next chunk's context, and
nothing else is carried over, so every chunk costs the same.

``predict`` composes the diffusers transformer's own submodules (time embedding, patch embedding,
rotary embeddings, blocks, output norm and projection, unpatchify) so that ControlNet residuals can
be added after each block; with zero residuals it computes exactly ``transformer.forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXSafeConv3d
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from torch import nn
from torch.utils.checkpoint import checkpoint

from vap_env.models.backbone import (
    Backbone,
    check_geometry,
    fit_positions,
    load_backbone,
    seeded,
    vae_spatial_factor,
    widen_patch_embed,
)
from vap_env.models.config import WorldModelConfig, resolve_dtype
from vap_env.models.controlnet import SkeletonControlNet
from vap_env.models.lora import add_lora, lora_parameters
from vap_env.models.sampler import CogVideoXSampler, Generators
from vap_env.models.text import InstructionEncoder


def _as_uint8_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(
            f"{name} has dtype {x.dtype}; frames are uint8 RGB in 0..255 (convert float images with "
            "(x * 255).round().astype(np.uint8))"
        )
    return x


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def _conv3d_batch1_onednn(
    self: nn.Conv3d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``nn.Conv3d._conv_forward`` that runs a CPU float32 batch of one on oneDNN at inference.

    PyTorch sends a float32 3D convolution of batch 1 with few channels to its im2col fallback
    (``slow_conv3d``; the ``use_mkldnn`` heuristic of ``ConvParams``), measured ~7x slower than the
    oneDNN kernel a batch of two gets. This calls that kernel directly, only for the convolutions a
    batch of two would send there (not 1x1x1 ones on one thread), so a batch of one computes what it
    would as item 0 of a batch of two, at half the cost of padding the batch.
    """
    if (
        x.shape[0] == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and self.padding_mode == "zeros"
        and not isinstance(self.padding, str)
        and _onednn_available()
        and (
            tuple(self.kernel_size[-2:]) != (1, 1)
            or any(s != 1 for s in self.stride)
            or any(d != 1 for d in self.dilation)
            or torch.get_num_threads() > 1
        )
    ):
        return torch.mkldnn_convolution(
            x, weight, bias, self.padding, self.stride, self.dilation, self.groups
        )
    return nn.Conv3d._conv_forward(self, x, weight, bias)


class _Batch1OneDNNConv3d(nn.Conv3d):
    _conv_forward = _conv3d_batch1_onednn


class _Batch1OneDNNSafeConv3d(CogVideoXSafeConv3d):
    _conv_forward = _conv3d_batch1_onednn


# The VAE's convolution classes -> the same with _conv3d_batch1_onednn. The class of each module is
# swapped (its weights and state dict stay as they are); named module-level classes keep it picklable.
_BATCH1_ONEDNN: dict[type, type] = {
    nn.Conv3d: _Batch1OneDNNConv3d,
    CogVideoXSafeConv3d: _Batch1OneDNNSafeConv3d,
}


def _pad_cpu_batch(x: torch.Tensor) -> torch.Tensor:
    """A batch of one on the CPU gets a second copy where ``_conv3d_batch1_onednn`` cannot serve it
    (training with gradients, or no oneDNN); callers keep only the first item.

    A copy computed on oneDNN is still several times faster than batch 1 on ``slow_conv3d``.
    """
    if (
        x.device.type == "cpu"
        and x.shape[0] == 1
        and x.dtype == torch.float32
        and (torch.is_grad_enabled() or not _onednn_available())
    ):
        return torch.cat([x, x])
    return x


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) float in [-1, 1] -> (B, F, H, W, 3) uint8 on the CPU."""
    frames = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(0, 1, 3, 4, 2).cpu()


class WorldModel(nn.Module):
    """Action-conditioned video model: CogVideoX backbone + skeleton ControlNet (+ LoRA).

    Build it with ``load_world_model`` (presets, saved weights) or ``WorldModel.from_config``.

    Attributes:
        config: the ``WorldModelConfig``.
        transformer: the diffusers ``CogVideoXTransformer3DModel`` (peft LoRA injected when
            ``lora_rank > 0``; patch embedding widened for text-to-video backbones).
        controlnet: the ``SkeletonControlNet``.
        vae: the diffusers ``AutoencoderKLCogVideoX`` (frozen unless trainable names it).
        scheduler: the diffusers CogVideoX scheduler the sampler steps with.
        sampler: the ``CogVideoXSampler``.
        instructions: the cached ``InstructionEncoder`` (``text_encoder`` is its T5 model).
    """

    def __init__(self, config: WorldModelConfig, backbone: Backbone) -> None:
        super().__init__()
        check_geometry(config, backbone)
        self.config = config
        self.transformer = backbone.transformer
        self.vae = backbone.vae
        self.scheduler = backbone.scheduler
        self.latent_channels: int = backbone.vae.config.latent_channels
        # Text-to-video backbones (CogVideoX-2B) take C input channels; I2V ones take 2C.
        self.widened = self.transformer.config.in_channels == self.latent_channels
        if self.widened:
            widen_patch_embed(self.transformer, self.latent_channels)
        fit_positions(self.transformer, config.latent_frames, *self.latent_size)
        # Copy the ControlNet blocks before LoRA is injected, so the copies are plain blocks.
        self.controlnet = SkeletonControlNet.from_transformer(
            self.transformer, config.control_layers, self.latent_channels
        )
        if config.lora_rank:
            # peft draws LoRA's A matrices from the global RNG: seed them like the rest.
            with seeded(config.seed, self.transformer.proj_out.weight.device):
                add_lora(
                    self.transformer,
                    config.lora_rank,
                    config.effective_lora_alpha,
                    config.lora_dropout,
                )
        ref = self.transformer.proj_out.weight
        self.instructions = InstructionEncoder(
            backbone.text_encoder,
            backbone.tokenizer,
            max_length=self.transformer.config.max_text_seq_length,
            device=ref.device,
            dtype=ref.dtype,
            offload=config.text_offload,
        )
        self.sampler = CogVideoXSampler(
            self.scheduler, config.num_inference_steps, config.guidance_scale
        )
        self._rotary_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        if config.vae_slicing:
            self.vae.enable_slicing()
        if config.vae_tiling:
            self.vae.enable_tiling()
        for module in self.vae.modules():
            if type(module) in _BATCH1_ONEDNN:
                module.__class__ = _BATCH1_ONEDNN[type(module)]
        self.set_gradient_checkpointing(config.gradient_checkpointing)
        self.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)
        self.eval()

    @classmethod
    def from_config(
        cls,
        config: WorldModelConfig,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
    ) -> WorldModel:
        """Build the model of ``config`` (backbone from its directory / hub id, or random)."""
        device = torch.device(device)
        torch_dtype = resolve_dtype(dtype, config)
        if torch_dtype == torch.float16 and device.type == "cpu":
            raise ValueError(
                "dtype float16 is not supported on the CPU (3D convolutions and norms of the VAE "
                "lack half kernels there): use float32 or bfloat16 on the CPU, float16 on a GPU"
            )
        return cls(config, load_backbone(config, device, torch_dtype))

    # ----------------------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        """Device of the transformer (where generation runs)."""
        return self.transformer.proj_out.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the transformer."""
        return self.transformer.proj_out.weight.dtype

    @property
    def text_encoder(self) -> nn.Module:
        """The T5 encoder (outside the module tree: it may be offloaded to the CPU)."""
        return self.instructions.model

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of the VAE latents of one frame."""
        factor = vae_spatial_factor(self.vae)
        return self.config.height // factor, self.config.width // factor

    # ------------------------------------------------------------------------------ training API

    def _part_parameters(self, part: str) -> list[nn.Parameter]:
        parts = {
            "controlnet": lambda: list(self.controlnet.parameters()),
            "lora": lambda: lora_parameters(self.transformer),
            "patch_embed": lambda: list(self.transformer.patch_embed.proj.parameters()),
            "transformer": lambda: list(self.transformer.parameters()),
            "vae": lambda: list(self.vae.parameters()),
        }
        return parts[part]()

    def ignores_context(self) -> bool:
        """Whether the context frame cannot reach the output: a widened (text-to-video) patch
        embedding whose image-latent channels are still the zeros ``widen_patch_embed`` put there.
        Training with ``patch_embed`` (or ``transformer``) trainable fills them in."""
        if not self.widened:
            return False
        weight = self.transformer.patch_embed.proj.weight  # (D, 2C, p, p)
        return not bool(weight[:, self.latent_channels :].any())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the parts ``config.trainable`` names (ControlNet + LoRA for real presets)."""
        seen: set[int] = set()
        params = []
        for part in self.config.trainable:
            for p in self._part_parameters(part):
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute transformer / ControlNet block activations in backward (saves memory)."""
        self.gradient_checkpointing = enabled
        self.controlnet.gradient_checkpointing = enabled

    def encode_text(self, instructions: Sequence[str]) -> torch.Tensor:  # -> (B, L, D)
        """T5 embeddings of ``instructions`` (cached per instruction), on the model's device."""
        return self.instructions(list(instructions)).to(device=self.device, dtype=self.dtype)

    def image_latents(
        self,
        context_latent: torch.Tensor,  # (B, C, h, w): the context frame's VAE latent
        num_frames: int,  # F', latent frames of the chunk
    ) -> torch.Tensor:  # -> (B, F', C, h, w)
        """The image-conditioning latents concatenated on channels with the noisy latents.

        The layout is ``config.image_layout``: the context latent at frame 0 and zeros after
        (``first``, CogVideoX-5B-I2V), or repeated at every latent frame (``repeat``).
        """
        if self.config.image_layout == "repeat":
            return context_latent[:, None].expand(-1, num_frames, -1, -1, -1).contiguous()
        image = context_latent.new_zeros(
            (context_latent.shape[0], num_frames, *context_latent.shape[1:])
        )
        image[:, 0] = context_latent
        return image

    def encode_video(
        self,
        frames: torch.Tensor,  # (B, F, 3, H, W) float in [-1, 1], F = 4k+1
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # -> (B, F', C, h, w), F' = k+1
        """VAE latents scaled by the VAE's scaling factor (the diffusion model's latent space).

        ``sample=False`` takes the posterior mode (deterministic conditioning); training may sample.
        """
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, F, 3, H, W), got shape {tuple(frames.shape)}")
        if (frames.shape[1] - 1) % 4:
            raise ValueError(
                f"{frames.shape[1]} frames: the CogVideoX VAE encodes 4k+1 frames (1, 5, 9, ...)"
            )
        x = frames.to(device=self.vae.device, dtype=self.vae.dtype).permute(0, 2, 1, 3, 4)
        batch = x.shape[0]
        params = self.vae.encode(_pad_cpu_batch(x)).latent_dist.parameters[:batch]
        posterior = DiagonalGaussianDistribution(params)
        z = posterior.sample(generator) if sample else posterior.mode()
        return (z * self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4).to(self.dtype)

    def decode_latents(
        self,
        latents: torch.Tensor,  # (B, F', C, h, w)
    ) -> torch.Tensor:  # -> (B, 4(F'-1)+1, 3, H, W) in [-1, 1]
        """Frames of scaled latents (inverse of ``encode_video``)."""
        z = latents.to(self.vae.dtype).permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor
        frames = self.vae.decode(_pad_cpu_batch(z)).sample[: z.shape[0]]
        return frames.permute(0, 2, 1, 3, 4)

    def rotary_embeddings(
        self, frames: int, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """3D rotary embeddings for a (frames, height, width) latent grid, as the pipelines build them.

        None for backbones without rotary embeddings (CogVideoX-2B); cached per grid.
        """
        tcfg = self.transformer.config
        if not tcfg.use_rotary_positional_embeddings:
            return None
        key = (frames, height, width, self.device)
        if key not in self._rotary_cache:
            p = tcfg.patch_size
            grid = (height // p, width // p)
            crops = get_resize_crop_region_for_grid(
                grid, tcfg.sample_width // p, tcfg.sample_height // p
            )
            self._rotary_cache[key] = get_3d_rotary_pos_embed(
                embed_dim=tcfg.attention_head_dim,
                crops_coords=crops,
                grid_size=grid,
                temporal_size=frames,
                device=self.device,
            )
        return self._rotary_cache[key]

    def _block(self, block: nn.Module, hidden, text, temb, rotary):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, hidden, text, temb, rotary, use_reentrant=False)
        return block(hidden, text, temb, rotary)

    def predict(
        self,
        noisy_latents: torch.Tensor,  # (B, F', C, h, w)
        timesteps: torch.Tensor,  # (B,)
        image_latents: torch.Tensor,  # (B, F', C, h, w): context latent at frame 0, zeros after
        control_latents: torch.Tensor,  # (B, F', C, h, w): skeleton video latents
        text_embeds: torch.Tensor,  # (B, L, D)
        control_scale: float = 1.0,
    ) -> torch.Tensor:  # -> (B, F', C, h, w)
        """The model output (v-prediction) for noisy latents: backbone + ControlNet residuals."""
        tr = self.transformer
        b, f, c, h, w = noisy_latents.shape
        if image_latents.shape != noisy_latents.shape or control_latents.shape != (b, f, c, h, w):
            raise ValueError(
                f"noisy {tuple(noisy_latents.shape)}, image {tuple(image_latents.shape)} and control "
                f"{tuple(control_latents.shape)} latents must all have the same shape (B, F', C, h, w)"
            )
        x = torch.cat([noisy_latents, image_latents], dim=2)
        # No ofs embedding: CogVideoX 1.5, the only backbone with one, is refused by check_geometry.
        temb = tr.time_embedding(tr.time_proj(timesteps).to(x.dtype))
        tokens = tr.embedding_dropout(tr.patch_embed(text_embeds, x))
        n_text = text_embeds.shape[1]
        text, hidden = tokens[:, :n_text], tokens[:, n_text:]
        rotary = self.rotary_embeddings(f, h, w)

        residuals = self.controlnet(hidden, text, control_latents, temb, rotary)
        for i, block in enumerate(tr.transformer_blocks):
            hidden, text = self._block(block, hidden, text, temb, rotary)
            if i < len(residuals):
                hidden = hidden + control_scale * residuals[i]

        hidden = tr.proj_out(tr.norm_out(tr.norm_final(hidden), temb=temb))
        p = tr.config.patch_size
        out = hidden.reshape(b, f, h // p, w // p, -1, p, p)
        return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)

    # ---------------------------------------------------------------------------- generation

    def _check_chunk(
        self,
        context: np.ndarray | torch.Tensor,
        skeleton: np.ndarray | torch.Tensor,
        instructions: Sequence[str],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        size = (cfg.height, cfg.width, 3)
        context = _as_uint8_tensor(context, "context")
        skeleton = _as_uint8_tensor(skeleton, "skeleton")
        if context.ndim != 4 or tuple(context.shape[1:]) != size:
            raise ValueError(
                f"context has shape {tuple(context.shape)}; expected (B, {cfg.height}, {cfg.width}, 3) "
                "(one RGB context frame per batch item, at the model's resolution)"
            )
        expected = (context.shape[0], cfg.chunk_frames + 1, *size)
        if tuple(skeleton.shape) != expected:
            raise ValueError(
                f"skeleton has shape {tuple(skeleton.shape)}; expected {expected}: the context frame's "
                f"skeleton followed by the K={cfg.chunk_frames} new states (chunk_frames + 1 frames)"
            )
        if isinstance(instructions, str) or len(instructions) != context.shape[0]:
            raise ValueError(
                f"instructions must be a list of {context.shape[0]} strings (one per batch item), "
                f"got {instructions!r}"
            )

        def to_model(frames: torch.Tensor) -> torch.Tensor:  # (B, F, H, W, 3) -> (B, F, 3, H, W)
            frames = frames.to(self.device).permute(0, 1, 4, 2, 3)
            return frames.to(self.dtype) / 127.5 - 1.0

        return to_model(context[:, None]), to_model(skeleton)

    @torch.no_grad()
    def generate_chunk(
        self,
        context: np.ndarray | torch.Tensor,  # (B, H, W, 3) uint8
        skeleton: np.ndarray | torch.Tensor,  # (B, K+1, H, W, 3) uint8
        instructions: Sequence[str],  # B strings
        generator: Generators = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:  # -> (B, K, H, W, 3) uint8 on the CPU
        """Generate the K frames that follow ``context`` under the skeleton video's motion.

        Args:
            context: the last frame so far, per batch item.
            skeleton: the skeleton video of the chunk; ``[:, 0]`` is the context frame's state.
            instructions: the task instruction per batch item.
            generator: one ``torch.Generator`` per item (batched == per-item generation), a single
                generator for all, or None (torch's global RNG).
            num_inference_steps: denoising steps (default: config).
            guidance_scale: classifier-free guidance scale (default: config; 1.0 disables).
        """
        ctx, skel = self._check_chunk(context, skeleton, instructions)
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        text = self.encode_text(instructions)
        negative = self.encode_text([self.config.negative_prompt]) if scale > 1.0 else None
        control = self.encode_video(skel)
        image = self.image_latents(self.encode_video(ctx)[:, 0], control.shape[1])
        latents = self.sampler.sample(
            partial(self.predict, control_scale=self.config.control_scale),
            shape=tuple(control.shape),
            text_embeds=text,
            negative_embeds=negative,
            conditions={"image_latents": image, "control_latents": control},
            generator=generator,
            num_inference_steps=num_inference_steps,
            guidance_scale=scale,
        )
        # Frame 0 of the decoded chunk re-renders the context frame; the K after it are new.
        return frames_to_uint8(self.decode_latents(latents)[:, 1:])

    # ------------------------------------------------------------------------------- weights I/O

    def save_pretrained(
        self, directory: str | Path, *, dtype: str | torch.dtype | None = None
    ) -> Path:
        """Write ``world_model.json`` + ``weights.safetensors`` (see ``vap_env.models.weights``).

        ``dtype`` (e.g. ``"float16"``) stores the weights in that precision; None keeps theirs.
        """
        from vap_env.models.weights import save_world_model

        return save_world_model(self, directory, dtype=dtype)
