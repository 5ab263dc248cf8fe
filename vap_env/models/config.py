"""``WorldModelConfig``: one frozen dataclass per world model, serialised as ``configs/model/<name>.yaml``.

A config either names a pretrained CogVideoX ``backbone`` (a diffusers-format directory or a hub id)
or leaves it ``None``, in which case the backbone is *built* from the architecture mappings
(``transformer``, ``vae``, ``text_encoder``, ``scheduler_config``), with seeded random weights. The
mappings are the keyword arguments of the diffusers / transformers classes themselves, so a preset
carries the released CogVideoX architectures verbatim (the speed benchmark times them with random
weights) and ``tiny`` is a real CogVideoX at toy size.

Constraints that need the backbone (resolution multiple of VAE factor x patch size, native size of
learned positional tables) are checked when the model is built, in ``vap_env.models.backbone``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vap_env.config import did_you_mean, load_preset, preset_names

# dtype names accepted in configs and by ``load_world_model`` -> torch dtype
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# What ``trainable`` may name. "lora" and "patch_embed" are parts of the transformer; "patch_embed" is
# the input projection that image-to-video widening adds channels to (see backbone.widen_patch_embed).
TRAINABLE_PARTS: tuple[str, ...] = (
    "controlnet",
    "lora",
    "patch_embed",
    "transformer",
    "vae",
)

# Scheduler names -> diffusers class name (the classes live in sampler.SCHEDULERS).
SCHEDULER_NAMES: tuple[str, ...] = ("ddim", "dpm")
IMAGE_LAYOUTS: tuple[str, ...] = ("first", "repeat")

# The CogVideoX VAE maps 4k+1 frames to k+1 latents (causal temporal compression by 4).
TEMPORAL_COMPRESSION = 4


@dataclass(frozen=True)
class WorldModelConfig:
    """Everything that defines one world model: backbone, geometry, sampler, adapters, memory knobs."""

    name: str = field(
        default="custom", metadata={"help": "preset name, recorded with saved weights"}
    )
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "diffusers-format CogVideoX directory or hub id (THUDM/CogVideoX-2b); None builds the backbone "
            "from the architecture mappings below with seeded random weights"
        },
    )
    weights: str | None = field(
        default=None,
        metadata={
            "help": "directory of our saved weights (world_model.json + weights.safetensors) loaded on top of the "
            "backbone; a relative path is resolved inside the installed vap_env package"
        },
    )
    height: int = field(default=64, metadata={"help": "frame height in pixels"})
    width: int = field(default=80, metadata={"help": "frame width in pixels"})
    chunk_frames: int = field(
        default=8,
        metadata={
            "help": "K, new frames per chunk (multiple of 4); a chunk is context + K = 4k+1 frames"
        },
    )
    num_inference_steps: int = field(default=10, metadata={"help": "denoising steps per chunk"})
    guidance_scale: float = field(
        default=1.0,
        metadata={
            "help": "classifier-free guidance scale; 1.0 disables guidance (one model call per step)"
        },
    )
    negative_prompt: str = field(
        default="", metadata={"help": "instruction of the unconditional branch of guidance"}
    )
    scheduler: str = field(
        default="ddim",
        metadata={"help": "sampler update rule: ddim (deterministic) or dpm (stochastic)"},
    )
    control_layers: int = field(
        default=2,
        metadata={
            "help": "N, transformer blocks copied into the skeleton ControlNet (VAP: 14 for 5B)"
        },
    )
    control_scale: float = field(
        default=1.0, metadata={"help": "ControlNet conditioning scale at generation"}
    )
    image_layout: str = field(
        default="first",
        metadata={
            "help": "where the context frame's latent sits in the channel-concatenated image latents: "
            "'first' (latent frame 0, zeros after: CogVideoX-5B-I2V's layout, required by its "
            "pretrained weights) or 'repeat' (every latent frame: a model trained from scratch copies "
            "the scene at each position instead of learning to carry it through attention)"
        },
    )
    lora_rank: int = field(
        default=0,
        metadata={"help": "LoRA rank on to_q/to_k/to_v/to_out.0 of the transformer; 0 = none"},
    )
    lora_alpha: float = field(
        default=0.0, metadata={"help": "LoRA alpha (scale = alpha / rank); 0 = rank"}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    trainable: tuple[str, ...] = field(
        default=("controlnet",),
        metadata={"help": f"parts whose parameters train, from {list(TRAINABLE_PARTS)}"},
    )
    dtype: str = field(
        default="float32", metadata={"help": "compute dtype when load_world_model gets dtype=None"}
    )
    vae_slicing: bool = field(
        default=False, metadata={"help": "VAE encodes/decodes one batch item at a time"}
    )
    vae_tiling: bool = field(
        default=False,
        metadata={"help": "VAE works in overlapping spatial tiles (large resolutions)"},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute block activations in backward"}
    )
    text_offload: bool = field(
        default=False, metadata={"help": "keep the text encoder on the CPU (embeddings are cached)"}
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "seed of every random initialisation: a backbone built from the architecture, LoRA"
        },
    )
    transformer: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "CogVideoXTransformer3DModel keyword arguments, used when backbone is None"
        },
    )
    vae: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "AutoencoderKLCogVideoX keyword arguments, used when backbone is None"},
    )
    text_encoder: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "transformers T5Config keyword arguments (tokenizer: byte-level ByT5), used when backbone is None"
        },
    )
    scheduler_config: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "scheduler keyword arguments, used when the backbone has no scheduler/ folder"
        },
    )

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(
                f"height={self.height}, width={self.width}: the frame size must be positive"
            )
        if self.chunk_frames <= 0 or self.chunk_frames % TEMPORAL_COMPRESSION:
            raise ValueError(
                f"chunk_frames={self.chunk_frames} is not a positive multiple of {TEMPORAL_COMPRESSION}: "
                f"the CogVideoX VAE compresses time by {TEMPORAL_COMPRESSION} (4k+1 frames -> k+1 latents), "
                f"so a chunk is the context frame + a multiple of {TEMPORAL_COMPRESSION} new frames; "
                f"use e.g. chunk_frames={max(TEMPORAL_COMPRESSION, self.chunk_frames // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION)}"
            )
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps={self.num_inference_steps} must be >= 1")
        if self.guidance_scale < 1.0:
            raise ValueError(
                f"guidance_scale={self.guidance_scale} must be >= 1.0 (1.0 disables guidance)"
            )
        if self.scheduler not in SCHEDULER_NAMES:
            raise ValueError(
                f"scheduler={self.scheduler!r} is not one of {list(SCHEDULER_NAMES)}."
                + did_you_mean(self.scheduler, list(SCHEDULER_NAMES))
            )
        if self.image_layout not in IMAGE_LAYOUTS:
            raise ValueError(
                f"image_layout={self.image_layout!r} is not one of {list(IMAGE_LAYOUTS)}."
                + did_you_mean(self.image_layout, list(IMAGE_LAYOUTS))
            )
        if self.control_layers < 1:
            raise ValueError(f"control_layers={self.control_layers} must be >= 1")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank={self.lora_rank} must be >= 0 (0 disables LoRA)")
        for part in self.trainable:
            if part == "text_encoder":
                raise ValueError(
                    "trainable names 'text_encoder', but the text encoder is frozen: instruction "
                    "embeddings are computed once per instruction and cached; drop it from trainable"
                )
            if part not in TRAINABLE_PARTS:
                raise ValueError(
                    f"trainable part {part!r} is not one of {list(TRAINABLE_PARTS)}."
                    + did_you_mean(part, list(TRAINABLE_PARTS))
                )
        if "lora" in self.trainable and self.lora_rank == 0:
            raise ValueError(
                "trainable names 'lora' but lora_rank=0: set lora_rank > 0 or drop 'lora' from trainable"
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"dtype={self.dtype!r} is not one of {list(DTYPES)}."
                + did_you_mean(self.dtype, list(DTYPES))
            )
        if self.backbone is None:
            missing = [n for n in ("transformer", "vae", "text_encoder") if not getattr(self, n)]
            if missing:
                raise ValueError(
                    f"backbone is None, so the model is built from its architecture, but {missing} "
                    "is empty: fill those mappings (see configs/model/tiny.yaml) or set backbone"
                )

    @property
    def latent_frames(self) -> int:
        """F', latent frames of one chunk (context + K frames)."""
        return self.chunk_frames // TEMPORAL_COMPRESSION + 1

    @property
    def effective_lora_alpha(self) -> float:
        """LoRA alpha, defaulting to the rank (scale 1) when the config leaves it 0."""
        return self.lora_alpha or float(self.lora_rank)


def model_presets() -> list[str]:
    """Names of the world-model presets shipped in ``configs/model/``."""
    return preset_names("model")


def load_model_preset(name: str) -> WorldModelConfig:
    """Load ``configs/model/<name>.yaml`` (KeyError with a did-you-mean for unknown names)."""
    return load_preset("model", name, WorldModelConfig)


def resolve_dtype(dtype: str | torch.dtype | None, cfg: WorldModelConfig) -> torch.dtype:
    """The torch dtype for ``dtype`` (None -> the config's), rejecting anything but float32/bf16/fp16."""
    if dtype is None:
        return DTYPES[cfg.dtype]
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(
                f"dtype={dtype!r} is not one of {list(DTYPES)}." + did_you_mean(dtype, list(DTYPES))
            )
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(
            f"dtype={dtype} is not supported: use torch.float32, torch.bfloat16 or torch.float16"
        )
    return dtype
