"""``TrainConfig``: one frozen dataclass per training run, serialised as ``configs/train/<name>.yaml``.

A run is one *stage*:

- ``vae``: trains the VAE alone (reconstruction + KL); only for models built from scratch (``tiny``).
  Its export records the latent scaling factor measured on the data.
- ``diffusion``: trains the denoiser with the v-prediction loss, VAE frozen. Which parameters train
  is the model config's ``trainable`` (real presets: ControlNet + LoRA, backbone frozen) unless
  ``trainable`` here overrides it (tiny stage 2: transformer + ControlNet), plus the LGF projector
  when ``lgf.weight > 0``.

Relative paths (``model`` when it is a directory, ``data.data_dir``, ``output_dir``) are relative to
the working directory of the command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vap_env.config import did_you_mean, load_preset, load_yaml, preset_names
from vap_env.models.config import DTYPES
from vap_env.train.lgf import LGFConfig
from vap_env.train.losses import DiffusionLossConfig, VAELossConfig

STAGES: tuple[str, ...] = ("vae", "diffusion")
# diffusers.optimization.get_scheduler names
LR_SCHEDULES: tuple[str, ...] = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")


def _help(text: str, default=None):
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class DataConfig:
    """Where the training clips come from (a TFDS/RLDS dataset directory, see vap_env.data)."""

    data_dir: str = _help(
        "RLDS dataset directory (e.g. made by `vap-env data synth --schema rt1 --out DIR`)",
        "data/synth-rt1",
    )
    split: str = _help("dataset split to train on", "train")
    num_workers: int = _help("DataLoader worker processes (0 = load in the training process)", 0)
    shuffle: bool = _help("shuffle clips (seeded by the run's seed and the epoch)", True)
    shuffle_buffer: int = _help("clips held in the shuffle buffer", 256)
    stride: int = _help("frames between clip starts in an episode (0: chunk_frames)", 0)
    skeleton_from_ground_truth: bool = _help(
        "synthetic RT-1: draw the whole arm from the generator's joints, as the env renders it "
        "(RT-1 records only the gripper pose)",
        False,
    )
    intrinsics: tuple[float, ...] = _help(
        "DROID: the exterior camera's fx, fy, cx, cy at 320x180 for the skeletons (DROID logs "
        "none; empty: vap_env.data.intrinsics.DROID_DEFAULT_K); ignored for RT-1",
        (),
    )

    def __post_init__(self) -> None:
        if self.intrinsics:
            from vap_env.data.intrinsics import as_intrinsics

            as_intrinsics(self.intrinsics)  # a bad K fails here, before any model is built
        if self.num_workers < 0 or self.stride < 0 or self.shuffle_buffer < 1:
            raise ValueError(
                f"num_workers={self.num_workers} and stride={self.stride} must be >= 0, "
                f"shuffle_buffer={self.shuffle_buffer} >= 1"
            )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    learning_rate: float = _help("peak learning rate", 1e-4)
    weight_decay: float = _help("AdamW weight decay", 1e-2)
    beta1: float = _help("AdamW beta1", 0.9)
    beta2: float = _help("AdamW beta2", 0.999)
    eps: float = _help("AdamW epsilon", 1e-8)
    max_grad_norm: float = _help("gradient clipping norm (0 disables clipping)", 1.0)
    lr_schedule: str = _help(f"learning-rate schedule, one of {list(LR_SCHEDULES)}", "constant")
    warmup_steps: int = _help("linear warm-up steps of the schedule", 0)

    def __post_init__(self) -> None:
        # An infinite rate trains one step of NaNs and exports them; say so before the run starts.
        if not 0 < self.learning_rate < math.inf:
            raise ValueError(f"learning_rate={self.learning_rate} must be a finite number > 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if not 0 < self.eps < math.inf or not 0 <= self.weight_decay < math.inf:
            raise ValueError(
                f"eps={self.eps} must be > 0 and weight_decay={self.weight_decay} >= 0 (both finite)"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule={self.lr_schedule!r} is not one of {list(LR_SCHEDULES)}."
                + did_you_mean(self.lr_schedule, list(LR_SCHEDULES))
            )
        if self.warmup_steps < 0 or self.max_grad_norm < 0:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} and max_grad_norm={self.max_grad_norm} "
                "must be >= 0"
            )


@dataclass(frozen=True)
class TrainConfig:
    """One training run (stage) of the world model."""

    name: str = _help("run name (logs, checkpoint metadata)", "train")
    stage: Literal["vae", "diffusion"] = _help(
        "what trains: 'vae' (VAE alone) or 'diffusion'", "diffusion"
    )
    model: str = _help(
        "world model to start from: preset name, weights directory (e.g. a stage-1 export) or hub id",
        "tiny",
    )
    trainable: tuple[str, ...] | None = _help(
        "override of the model config's trainable parts (None keeps the preset's)", None
    )
    vae_from: str | None = _help(
        "diffusion stage: take the frozen VAE (weights and latent scale) from this saved world model "
        "instead of the model's own, e.g. a 'vae' stage export under a different transformer; the "
        "VAE configs must match",
        None,
    )
    output_dir: str = _help("run directory: checkpoints/, logs/, export/", "runs/train")
    export_dir: str | None = _help("final weights directory (None: <output_dir>/export)", None)
    export_dtype: str | None = _help(
        "store the exported weights as float16 / bfloat16 / float32 (None: as trained); float16 "
        "halves a float32 model's file, and loading casts back to the model's dtype",
        None,
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "training data"})
    optim: OptimConfig = field(
        default_factory=OptimConfig, metadata={"help": "optimiser and LR schedule"}
    )
    batch_size: int = _help("clips per process per micro-batch", 1)
    gradient_accumulation_steps: int = _help("micro-batches per optimiser step", 1)
    max_steps: int = _help("optimiser steps of the run", 1000)
    mixed_precision: str = _help(
        f"one of {list(MIXED_PRECISION)} (bf16 on GPUs and CPUs; fp16 needs a GPU; "
        "`accelerate launch --mixed_precision` overrides it)",
        "no",
    )
    gradient_checkpointing: bool = _help("recompute transformer activations in backward", False)
    cache_latents: bool = _help(
        "diffusion stage: keep each clip's VAE latents in memory after its first encoding and draw "
        "epochs >= 1 from that cache without reading the data (the VAE is frozen; for tiny on a "
        "CPU, ~10x faster steps; memory grows with the number of clips)",
        False,
    )
    seed: int = _help("seed of data order, noise, timesteps and CFG dropout", 0)
    checkpoint_every: int = _help(
        "save a resumable checkpoint every N steps (0: only at the end)", 500
    )
    keep_last: int = _help("complete checkpoints kept on disk", 3)
    log_every: int = _help("TensorBoard scalars every N steps", 10)
    log_with: str | None = _help("Accelerate tracker ('tensorboard') or None", "tensorboard")
    scale_batches: int = _help(
        "vae stage: batches used to measure the latent scaling factor for the export", 8
    )
    diffusion: DiffusionLossConfig = field(
        default_factory=DiffusionLossConfig, metadata={"help": "v-prediction loss"}
    )
    vae: VAELossConfig = field(default_factory=VAELossConfig, metadata={"help": "VAE-stage loss"})
    lgf: LGFConfig = field(
        default_factory=LGFConfig,
        metadata={"help": "Local Gram Flow structure loss (off by default)"},
    )

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(
                f"stage={self.stage!r} is not one of {list(STAGES)}."
                + did_you_mean(self.stage, list(STAGES))
            )
        if self.log_with is not None:
            from accelerate.utils import LoggerType

            trackers = [t.value for t in LoggerType]
            if self.log_with not in trackers:
                raise ValueError(
                    f"log_with={self.log_with!r} is not an Accelerate tracker; use one of "
                    f"{trackers} or null.{did_you_mean(self.log_with, trackers)}"
                )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision={self.mixed_precision!r} is not one of {list(MIXED_PRECISION)}"
            )
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.checkpoint_every < 0 or self.log_every < 1 or self.scale_batches < 1:
            raise ValueError(
                f"checkpoint_every={self.checkpoint_every} must be >= 0, log_every="
                f"{self.log_every} and scale_batches={self.scale_batches} >= 1"
            )
        if self.stage == "vae" and self.cache_latents:
            raise ValueError("cache_latents: the vae stage trains the VAE, its latents change")
        if self.cache_latents and self.lgf.weight > 0:
            raise ValueError(
                "cache_latents with lgf.weight > 0: the LGF teacher needs the clip's pixels every "
                "step, which the latent cache drops; disable one of them"
            )
        if self.stage == "vae" and self.lgf.weight > 0:
            raise ValueError(
                "lgf.weight > 0 in the vae stage: the LGF loss trains the transformer, "
                "use it in the diffusion stage"
            )
        if self.stage == "vae" and self.trainable not in (None, ("vae",)):
            raise ValueError(
                f"stage 'vae' trains the VAE alone, but trainable={self.trainable}: "
                "drop `trainable` or set it to [vae]"
            )
        if self.export_dtype is not None and self.export_dtype not in DTYPES:
            raise ValueError(
                f"export_dtype={self.export_dtype!r} is not one of {list(DTYPES)}."
                + did_you_mean(self.export_dtype, list(DTYPES))
            )
        if self.stage == "vae" and self.vae_from is not None:
            raise ValueError(
                f"vae_from={self.vae_from!r} in the vae stage, which trains the model's own VAE: "
                "start that stage from the model to continue (model: <dir>) instead"
            )
        if self.stage == "diffusion" and self.trainable is not None and "vae" in self.trainable:
            raise ValueError(
                "the diffusion stage keeps the VAE frozen (the latents it trains on would drift): "
                f"remove 'vae' from trainable={self.trainable} and train it in a 'vae' stage"
            )

    @property
    def resolved_export_dir(self) -> Path:
        """Where the final weights go."""
        return Path(self.export_dir) if self.export_dir else Path(self.output_dir) / "export"


def train_presets() -> list[str]:
    """Names of the training presets shipped in ``configs/train/``."""
    return preset_names("train")


def load_train_config(name_or_path: str | Path) -> TrainConfig:
    """A training config from a YAML path or a preset name in ``configs/train/``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file() and not path.is_absolute():
            # `configs/train/x.yaml` from a checkout also works from an installed package
            shipped = [n for n in train_presets() if n == path.stem]
            if shipped and path.parent.name == "train":
                return load_preset("train", path.stem, TrainConfig)
        return load_yaml(path, TrainConfig)
    return load_preset("train", str(name_or_path), TrainConfig)
