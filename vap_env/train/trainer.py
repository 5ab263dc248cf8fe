"""The fine-tuning loop on Hugging Face Accelerate: one command on a CPU, one GPU or many.

::

    vap-env train --config configs/train/tiny-rt1-vae.yaml            # CPU or one GPU
    vap-env train --config configs/train/tiny-rt1.yaml --resume       # continue from the last checkpoint
    accelerate launch --multi_gpu --num_processes 8 -m vap_env.cli train --config configs/train/cogvideox-5b-i2v-rt1.yaml
    accelerate launch --config_file fsdp.yaml -m vap_env.cli train --config ...   # FSDP / DeepSpeed

(``accelerate config`` writes such a config file; mixed precision comes from the training config's
``mixed_precision`` unless the launcher asks for bf16 / fp16.) Several CPU processes (DDP over
gloo, how the multi-process path is tested here): ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m
vap_env.cli train --config ...``.

What one optimiser step does (``TrainingModule.forward``, under ``accelerator.accumulate``):

- ``diffusion`` stage: the clip (context + K frames), its skeleton video and the context frame alone
  are VAE-encoded (frozen); the context latent sits at latent frame 0 of a zero "image latent" video
  (I2V layout); instructions are dropped with ``cfg_dropout``; timestep + noise give the noisy latents
  and the v target; ``WorldModel.predict`` (backbone + ControlNet on the skeleton latents) is regressed
  on v with the skeleton-region weighting (``vap_env.train.losses``); with ``lgf.weight > 0`` the
  LGF loss on a hooked transformer block's output is added (``vap_env.train.lgf``).
- ``vae`` stage: reconstruction + KL of the clip through the VAE alone; at the end the latent scaling
  factor (1 / std of the latents on the data) is measured and written into the export, as CogVideoX's
  ``scaling_factor`` is.

Reproducibility and exact resume. All training randomness (noise, timesteps, CFG dropout, VAE
posterior samples) comes from a CPU generator re-seeded from (seed, micro-batch index, process index)
at every micro-batch, so it needs no saved state; the data order is a function of (seed, epoch) and
the position within the epoch is checkpointed; ``accelerator.save_state`` stores optimiser, LR
schedule, grad scaler and per-process global RNG states; our save hook stores only the *trainable*
parameters (a 5B backbone is never copied into a checkpoint) and frozen parts are rebuilt from
``model``. Checkpoints are published atomically (``vap_env.train.checkpoint``). A run resumed from
step k reproduces the losses and weights of an uninterrupted run (tested on the CPU; on GPUs up to
the non-determinism of their kernels).

Data on several processes: each process reads its own share of the episodes
(``vap_env.train.data``), and the checkpoint keeps every process's position; a resume therefore
needs the same number of processes (checked). It also needs the same config, but for what does not
change the weights' trajectory (``RESUMABLE_CHANGES``: max_steps, checkpointing, logging, the
export): the run's ``train_config.yaml`` is compared field by field. A longer ``max_steps`` under a
decaying LR schedule re-stretches the schedule from the resumed step on (announced with the rates).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from vap_env._optional import quiet_tensorflow
from vap_env.config import save_yaml, to_dict
from vap_env.models import (
    WorldModel,
    WorldModelConfig,
    load_model_preset,
    load_world_model,
    model_presets,
)
from vap_env.models.config import TEMPORAL_COMPRESSION
from vap_env.models.weights import (
    CONFIG_FILE,
    is_path_like,
    read_saved_config,
    save_safetensors,
)
from vap_env.train.checkpoint import CheckpointManager, atomic_directory, read_manifest
from vap_env.train.config import TrainConfig, load_train_config
from vap_env.train.lgf import LGFLoss, build_teacher
from vap_env.train.losses import (
    diffusion_targets,
    drop_instructions,
    noise_context,
    pool_to_latents,
    region_weights,
    skeleton_mask,
    vae_loss,
    weighted_mse,
)

TRAINABLE_FILE = "trainable.safetensors"
TRAIN_CONFIG_FILE = "train_config.yaml"  # in output_dir: the config the checkpoints were made with
# What ``--resume`` may change: how long the run goes, what it logs and keeps, how the export is
# written and the memory/speed knob of recomputing activations, none of which changes the weights'
# trajectory. Anything else would not take effect as written (the optimiser and LR schedule come
# back from the checkpoint) or would make the resumed run differ from the run the checkpoint is of.
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "checkpoint_every",
        "keep_last",
        "log_every",
        "log_with",
        "name",
        "output_dir",
        "export_dir",
        "export_dtype",
        "gradient_checkpointing",
    }
)
# epoch -> this process's collated batches (dicts as a DataLoader over ClipDataset yields them)
DatasetFactory = Callable[[int], Iterable[dict[str, Any]]]
_WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ------------------------------------------------------------------------------------- batches


@dataclass
class Encoded:
    """What the diffusion loss needs of a clip batch, all (B, F', ., h, w) on the model's device.

    ``latents`` / ``control``: VAE latents of the clip and of its skeleton video; ``image``: the I2V
    image latents (the context frame's latent at frame 0, zeros after); ``region``: the skeleton
    region max-pooled to the latent grid, (B, F', 1, h, w) in {0, 1}.
    """

    latents: torch.Tensor
    control: torch.Tensor
    image: torch.Tensor
    region: torch.Tensor


@dataclass
class ClipBatch:
    """One training batch on the model's device, frames in [-1, 1].

    Attributes:
        instructions: B strings.
        context: (B, 3, H, W) the context frame.
        frames: (B, K, 3, H, W) the K frames that follow it.
        skeleton: (B, K+1, 3, H, W) skeleton video; frame 0 is the context frame's state.
        keys: (episode_id, start) of each clip when the data names them (latent cache keys).
        encoded: the latents, when the batch comes from the latent cache (pixels are then None).
    """

    instructions: list[str]
    context: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    skeleton: torch.Tensor | None = None
    keys: list[tuple[str, int]] | None = None
    encoded: Encoded | None = None

    @property
    def video(self) -> torch.Tensor:
        """(B, K+1, 3, H, W): context followed by the K frames."""
        return torch.cat([self.context[:, None], self.frames], dim=1)

    @classmethod
    def from_items(cls, batch: dict[str, Any], device: torch.device) -> ClipBatch:
        """From a collated ``ClipDataset`` batch (uint8 or float frames)."""

        def unit(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device)
            return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()

        for key in ("context", "frames", "skeleton", "instruction"):
            if key not in batch:
                raise KeyError(f"training batch has no {key!r} (keys: {sorted(batch)})")
        keys = None
        if "episode_id" in batch and "start" in batch:
            starts = [int(s) for s in batch["start"]]
            keys = list(zip(batch["episode_id"], starts, strict=True))
        return cls(
            list(batch["instruction"]),
            unit(batch["context"]),
            unit(batch["frames"]),
            unit(batch["skeleton"]),
            keys,
        )


class LatentCache:
    """Per-clip latents of the frozen VAE, kept on the CPU (``cache_latents``).

    Entries are encoded one clip at a time, so a cached value does not depend on which batch (or
    which run, after a resume) first met the clip. ``order`` lists the keys in the order they were
    first seen: epoch 0 of the data. Later epochs are drawn from the cache alone, in a permutation
    seeded by (seed, epoch, rank), without reading or decoding the dataset again.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], tuple[str, torch.Tensor, ...]] = {}
        self.order: list[tuple[str, int]] = []
        self.complete = False  # epoch 0 was read to its end

    def __len__(self) -> int:
        return len(self.entries)

    def batches(
        self,
        epoch: int,
        seed: int,
        rank: int,
        batch_size: int,
        device: torch.device,
        image_latents: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> Iterator[ClipBatch]:
        """One epoch of full batches drawn from the cache (``image_latents``: the model's layout)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, rank]))
        perm = rng.permutation(len(self.order)).tolist()
        for b in range(len(perm) // batch_size):
            keys = [self.order[i] for i in perm[b * batch_size : (b + 1) * batch_size]]
            yield ClipBatch(
                [self.entries[k][0] for k in keys],
                keys=keys,
                encoded=self.encoded(keys, device, image_latents),
            )

    def encoded(
        self,
        keys: list[tuple[str, int]],
        device: torch.device,
        image_latents: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> Encoded:
        """The cached entries of ``keys`` stacked into one batch on ``device``."""
        items = [self.entries[k] for k in keys]
        latents, control, image0, region = (
            torch.stack([it[j] for it in items]).to(device) for j in range(1, 5)
        )
        return Encoded(latents, control, image_latents(image0, latents.shape[1]), region)


def micro_batch_generator(seed: int, micro_step: int, process_index: int) -> torch.Generator:
    """The CPU generator of one micro-batch: a pure function of its coordinates (no saved state)."""
    state = np.random.SeedSequence([seed, micro_step, process_index]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ------------------------------------------------------------------------------ training module


class TrainingModule(nn.Module):
    """The world model (+ LGF projector) with the training objective as ``forward``.

    Accelerate / DDP wrap this one module, so gradient synchronisation covers every trainable
    parameter whatever the stage.
    """

    def __init__(self, wm: WorldModel, cfg: TrainConfig, lgf: LGFLoss | None = None) -> None:
        super().__init__()
        self.wm = wm
        self.cfg = cfg
        self.lgf = lgf
        self._captured: torch.Tensor | None = None
        self.cache = LatentCache() if cfg.stage == "diffusion" and cfg.cache_latents else None
        if lgf is not None:
            blocks = wm.transformer.transformer_blocks
            layer = cfg.lgf.layer
            if not -len(blocks) <= layer < len(blocks):
                raise ValueError(
                    f"lgf.layer={layer} but the transformer has {len(blocks)} blocks: "
                    f"use -{len(blocks)}..{len(blocks) - 1}"
                )
            blocks[layer].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        # CogVideoXBlock returns (video tokens, text tokens); keep the video tokens (B, N, D).
        self._captured = output[0]

    def forward(self, batch: ClipBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch; ``loss`` is the one to back-propagate."""
        if self.cfg.stage == "vae":
            region = skeleton_mask(
                batch.skeleton, self.cfg.diffusion.mask_threshold, self.cfg.diffusion.mask_dilation
            )
            video = batch.video
            n = round(self.cfg.vae.skeleton_fraction * len(video))
            if n:
                # Same clips, same region mask: in a skeleton video the region is the drawing.
                video = torch.cat([batch.skeleton[:n], video[n:]])
            return vae_loss(self.wm.vae, video, self.cfg.vae, generator, region)
        return self._diffusion(batch, generator)

    @torch.no_grad()
    def _encode_direct(self, batch: ClipBatch) -> Encoded:
        wm, dcfg = self.wm, self.cfg.diffusion
        latents = wm.encode_video(batch.video)
        image = wm.image_latents(wm.encode_video(batch.context[:, None])[:, 0], latents.shape[1])
        mask = skeleton_mask(batch.skeleton, dcfg.mask_threshold, dcfg.mask_dilation)
        region = pool_to_latents(mask, latents.shape[1], tuple(latents.shape[-2:]))
        return Encoded(latents, wm.encode_video(batch.skeleton), image, region)

    @torch.no_grad()
    def encode(self, batch: ClipBatch) -> Encoded:
        """Latents of a batch (VAE frozen), through the latent cache when there is one."""
        if batch.encoded is not None:
            return batch.encoded
        if self.cache is None:
            return self._encode_direct(batch)
        if batch.keys is None:
            raise ValueError(
                "cache_latents needs clips that carry 'episode_id' and 'start' (ClipDataset "
                "items do); this data has neither: set cache_latents: false"
            )
        cache = self.cache
        for i, key in enumerate(batch.keys):
            if key not in cache.entries:
                one = slice(i, i + 1)
                single = ClipBatch(
                    batch.instructions[one],
                    batch.context[one],
                    batch.frames[one],
                    batch.skeleton[one],
                )
                e = self._encode_direct(single)
                cache.entries[key] = (
                    batch.instructions[i],
                    e.latents[0].cpu(),
                    e.control[0].cpu(),
                    e.image[0, 0].cpu(),
                    e.region[0].cpu(),
                )
                cache.order.append(key)
        return cache.encoded(batch.keys, batch.context.device, self.wm.image_latents)

    def _diffusion(self, batch: ClipBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        wm, dcfg = self.wm, self.cfg.diffusion
        enc = self.encode(batch)
        texts = drop_instructions(batch.instructions, dcfg.cfg_dropout, generator)
        text = wm.encode_text(texts)
        noisy, timesteps, target = diffusion_targets(wm.scheduler, enc.latents, generator)
        image = enc.image
        if dcfg.context_noise > 0:
            # frame 0 holds the context latent in every layout (the latent cache relies on it too)
            context = noise_context(image[:, 0], dcfg.context_noise, generator)
            image = wm.image_latents(context, image.shape[1])
        self._captured = None
        pred = wm.predict(noisy.to(wm.dtype), timesteps, image, enc.control, text)
        weights = region_weights(enc.region, dcfg.gripper_weight)
        diffusion = weighted_mse(pred, target, weights)
        out = {"diffusion": diffusion.detach()}
        loss = diffusion
        if self.lgf is not None:
            f, _, h, w = enc.latents.shape[1:]
            p = wm.transformer.config.patch_size
            grid = (f, h // p, w // p)
            # latent k summarises frames 4k-3..4k; the teacher is read at the last of them
            frame_index = [TEMPORAL_COMPRESSION * k for k in range(f)]
            mask = skeleton_mask(batch.skeleton, dcfg.mask_threshold, dcfg.mask_dilation)
            lgf = self.lgf(self._captured, grid, batch.video, frame_index, prompt_masks=mask > 0)
            self._captured = None
            out["lgf"] = lgf.detach()
            loss = loss + self.cfg.lgf.weight * lgf
        out["loss"] = loss
        return out


# ------------------------------------------------------------------------------------- state


@dataclass
class TrainState:
    """Position of the run, checkpointed with the accelerator state.

    ``epoch`` / ``batch_in_epoch`` are this process's data position; every process reads its own
    share, so the checkpoint keeps all of them (``positions``, gathered before saving: Accelerate
    writes custom state from the main process only).
    """

    step: int = 0  # optimiser steps done
    epoch: int = 0  # data epoch being read
    batch_in_epoch: int = 0  # micro-batches of that epoch already consumed
    positions: list[list[int]] = field(default_factory=list)  # [epoch, batch] per process
    rank: int = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain dict for ``accelerator.register_for_checkpointing``."""
        return {"step": self.step, "positions": self.positions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict``; this process takes its own data position."""
        self.step = int(state["step"])
        self.positions = [list(map(int, p)) for p in state["positions"]]
        self.epoch, self.batch_in_epoch = self.positions[self.rank]


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns."""

    steps: int
    losses: list[float] = field(default_factory=list)  # mean loss of each step of this session
    lrs: list[float] = field(default_factory=list)  # learning rate each of those steps used
    export_dir: Path | None = None
    checkpoint: Path | None = None


# -------------------------------------------------------------------------------------- trainer


def _trainable_override(cfg: TrainConfig) -> tuple[str, ...] | None:
    if cfg.stage == "vae":
        return ("vae",)
    if cfg.trainable is not None and "text_encoder" in cfg.trainable:
        raise ValueError(
            "training the text encoder is not supported: instruction embeddings are cached by the "
            f"world model; remove 'text_encoder' from trainable={cfg.trainable}"
        )
    return cfg.trainable


def _source_config(model: str) -> WorldModelConfig | None:
    """The config of a preset name or saved directory (None for hub ids: known after loading)."""
    if model in model_presets():
        return load_model_preset(model)
    if (Path(model) / CONFIG_FILE).is_file():
        return read_saved_config(model)
    return None


def set_latent_scale(wm: WorldModel, scale: float) -> None:
    """Set the VAE's latent ``scaling_factor`` in the VAE and in ``wm.config`` (what gets saved)."""
    wm.vae.register_to_config(scaling_factor=scale)
    wm.config = dataclasses.replace(wm.config, vae={**wm.config.vae, "scaling_factor": scale})


def take_vae(wm: WorldModel, source: str) -> None:
    """Put the VAE (weights and latent scale) of the saved world model ``source`` into ``wm``.

    Raises:
        ValueError: the two VAE configs differ in anything but the latent scale.
    """
    donor = load_world_model(source, device=next(wm.vae.parameters()).device)

    def arch(vae_cfg: dict[str, Any]) -> dict[str, Any]:
        # JSON round trip: a preset's tuples and a saved config's lists compare equal
        return json.loads(json.dumps({k: v for k, v in vae_cfg.items() if k != "scaling_factor"}))

    ours, theirs = arch(wm.config.vae), arch(donor.config.vae)
    if ours != theirs:
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ValueError(
            f"vae_from={source!r} holds another VAE than model {wm.config.name!r}: "
            + ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
            + "; use a model preset with the same vae section"
        )
    wm.vae.load_state_dict(donor.vae.state_dict())
    set_latent_scale(wm, float(donor.vae.config.scaling_factor))


def build_model(
    cfg: TrainConfig, device: torch.device | str, compute_dtype: torch.dtype
) -> WorldModel:
    """The world model a run of ``cfg`` trains, before any checkpoint is loaded into it.

    Its trainable parts (the stage's, or ``cfg.trainable``) require grad, the rest not. Frozen
    parts of a pretrained backbone are held in ``compute_dtype``; a model built from its config
    (tiny) stays float32 (autocast computes in the mixed precision) so that its export does not
    round the frozen VAE.
    """
    trainable = _trainable_override(cfg)
    source = _source_config(cfg.model)
    if cfg.stage == "vae" and source is not None and source.backbone is not None:
        raise ValueError(
            f"stage 'vae' trains a VAE from scratch, but model {cfg.model!r} loads the pretrained "
            f"backbone {source.backbone!r} (whose VAE the transformer was trained on): "
            "use the 'vae' stage only for models built from their config, such as 'tiny'"
        )
    built = source is not None and source.backbone is None
    with warnings.catch_warnings():
        # Untrained context channels are what this run may train; the trainer checks that.
        warnings.filterwarnings("ignore", message=".*ignore the context frame")
        wm = load_world_model(
            cfg.model,
            device=device,
            dtype=torch.float32 if built else compute_dtype,
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
    if cfg.vae_from is not None:
        take_vae(wm, cfg.vae_from)
    if trainable is not None:
        # Not a load_world_model override: which parts a saved model holds depends on the
        # config's trainable list, and the stage's choice must not change what is loaded.
        wm.config = dataclasses.replace(wm.config, trainable=trainable)
        wm.requires_grad_(False)
        for p in wm.trainable_parameters():
            p.requires_grad_(True)
    return wm


def _flatten(value: Any, sep: str, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level, keys joined with ``sep``."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flatten(v, sep, f"{prefix}{sep}{k}" if prefix else str(k)))
    return out


def _flat_hparams(cfg: TrainConfig) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool) else str(v)
        for k, v in _flatten(to_dict(cfg), "/").items()
    }


def config_changes(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Every setting that differs between two run configs: dotted name -> (old, new)."""
    # JSON round trip: a YAML list and a config tuple compare equal
    a, b = (_flatten(json.loads(json.dumps(to_dict(c))), ".") for c in (old, new))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resume_config(cfg: TrainConfig) -> TrainConfig | None:
    """The config ``cfg.output_dir`` was trained with, after checking ``cfg`` may resume it.

    Returns None when the run directory holds no readable ``train_config.yaml`` (nothing to
    compare; a warning says so).

    Raises:
        ValueError: a setting outside ``RESUMABLE_CHANGES`` differs; the message lists each
            change (old -> new) and the two ways out.
    """
    path = Path(cfg.output_dir) / TRAIN_CONFIG_FILE
    if not path.exists() and not (Path(cfg.output_dir) / "checkpoints").is_dir():
        return None  # nothing to resume: the trainer says so
    try:
        saved = load_train_config(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(
            f"--resume: cannot read the run's config {path} ({err}); the new config is not "
            "checked against the one the checkpoints were made with",
            stacklevel=3,
        )
        return None
    changed = config_changes(saved, cfg)
    for key in ("data.data_dir", "model", "vae_from"):
        # the same file or directory written another way (relative, trailing "/") is no change
        old, new = changed.get(key, (None, None))
        if old and new and os.path.exists(new) and os.path.realpath(old) == os.path.realpath(new):
            del changed[key]
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES}
    if refused:
        listing = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ValueError(
            f"--resume: the config differs from the one {cfg.output_dir} was trained with "
            f"({path}) in {listing}. The checkpoint carries the old run's optimiser, schedule and "
            "data position, so the new values would not (all) take effect. Revert them to resume, "
            "or start a new run with them (--output-dir NEW_DIR). A resume may change only "
            + ", ".join(sorted(RESUMABLE_CHANGES))
        )
    return saved


class Trainer:
    """Builds everything from a ``TrainConfig`` and runs the loop (see the module docstring).

    Args:
        cfg: the run.
        resume: continue from the newest complete checkpoint in ``<output_dir>/checkpoints``
            (an error if there is none).
        dataset_factory: ``(epoch) -> iterable of batches`` overriding the configured dataset
            (tests, custom data); batches are dicts as ``ClipDataset`` yields them, collated.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: bool = False,
        dataset_factory: DatasetFactory | None = None,
    ) -> None:
        self.cfg = cfg
        out = Path(cfg.output_dir)
        # before anything is built or written: a refused config leaves the run untouched
        saved_cfg = check_resume_config(cfg) if resume else None
        # `accelerate launch` exports ACCELERATE_MIXED_PRECISION ("no" unless --mixed_precision is
        # given), which an explicit argument would override: a launcher's bf16/fp16 wins, its
        # default "no" leaves the config's choice.
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        self.accelerator = Accelerator(
            mixed_precision=launcher if launcher != "no" else cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with=cfg.log_with,
            project_config=ProjectConfiguration(
                project_dir=str(out), logging_dir=str(out / "logs")
            ),
        )
        acc = self.accelerator
        if acc.is_main_process:
            # `accelerate launch --cpu --num_processes 2` without MPI or a config starts one
            # process; this line shows what actually runs.
            n = acc.num_processes
            print(f"training on {n} process{'es' if n != 1 else ''} ({acc.device.type})")
        precision = str(acc.mixed_precision)
        if precision not in _WEIGHT_DTYPES:
            raise ValueError(
                f"mixed precision {precision!r} (from the launcher) is not supported; use one of "
                f"{list(_WEIGHT_DTYPES)}"
            )
        if precision == "fp16" and acc.device.type == "cpu":
            # Accelerate drops fp16 autocast on the CPU: the run would be fp32 while saying fp16.
            raise ValueError(
                "mixed_precision fp16 does not run on the CPU (Accelerate trains in fp32 there); "
                "use bf16 or no"
            )
        self.num_episodes: int | None = None  # of the configured data (None: dataset_factory)
        if dataset_factory is None:
            from vap_env.train.data import check_data

            self.num_episodes = check_data(cfg)
            if self.num_episodes == 0:
                raise ValueError(
                    f"data.split {cfg.data.split!r} of {cfg.data.data_dir!r} has no episodes: "
                    "check data.data_dir and data.split"
                )
            if self.num_episodes < acc.num_processes:
                raise ValueError(
                    f"data.split {cfg.data.split!r} of {cfg.data.data_dir!r} has "
                    f"{self.num_episodes} episode(s) for {acc.num_processes} processes: episodes "
                    f"are sharded per process (episode i -> process i % {acc.num_processes}), so "
                    f"process {self.num_episodes} would get none; train on at most "
                    f"{self.num_episodes} process(es), or on more episodes"
                )
        set_seed(cfg.seed)
        self.wm = build_model(cfg, acc.device, _WEIGHT_DTYPES[precision])
        params = self.wm.trainable_parameters()
        if (
            cfg.stage == "diffusion"
            and self.wm.ignores_context()
            and not {"patch_embed", "transformer"} & set(self.wm.config.trainable)
        ):
            raise ValueError(
                f"model {cfg.model!r} widens a text-to-video backbone's patch embedding with "
                "zero-initialised context channels, and with trainable="
                f"{list(self.wm.config.trainable)} nothing trains them: the context frame would "
                "never reach the model. Add 'patch_embed' to trainable (as cogvideox-2b does) or "
                "use an image-to-video backbone (cogvideox-5b-i2v)"
            )
        if not params:
            raise ValueError(
                f"nothing to train: the model's trainable parts {self.wm.config.trainable} have no "
                "parameters"
            )
        for p in params:
            # fp32 master weights for what trains; frozen parts stay in the compute dtype
            p.data = p.data.float()
        lgf = None
        if cfg.stage == "diffusion" and cfg.lgf.weight > 0:
            tr = self.wm.transformer.config
            teacher = build_teacher(cfg.lgf, acc.device)
            lgf = LGFLoss(cfg.lgf, tr.num_attention_heads * tr.attention_head_dim, teacher)
            lgf.to(acc.device)
        self.module = TrainingModule(self.wm, cfg, lgf)
        self.module.train()
        trainable_params = [p for p in self.module.parameters() if p.requires_grad]
        o = cfg.optim
        optimizer = torch.optim.AdamW(
            trainable_params,
            lr=o.learning_rate,
            betas=(o.beta1, o.beta2),
            eps=o.eps,
            weight_decay=o.weight_decay,
        )
        # the prepared scheduler steps once per process per optimiser step (as diffusers scripts)
        schedule = get_scheduler(
            o.lr_schedule,
            optimizer,
            num_warmup_steps=o.warmup_steps * acc.num_processes,
            num_training_steps=cfg.max_steps * acc.num_processes,
        )
        self.model, self.optimizer, self.lr_schedule = acc.prepare(self.module, optimizer, schedule)
        self.trainable_names = [n for n, p in self.module.named_parameters() if p.requires_grad]
        self.state = TrainState(rank=acc.process_index)
        acc.register_for_checkpointing(self.state)
        acc.register_save_state_pre_hook(self._save_hook)
        acc.register_load_state_pre_hook(self._load_hook)
        self.checkpoints = CheckpointManager(out / "checkpoints", keep_last=cfg.keep_last)
        self.dataset_factory = dataset_factory or self._default_dataset
        self.resumed_from: Path | None = None
        self.checkpoint_step: int | None = None  # newest complete checkpoint of this run
        if resume:
            latest = self.checkpoints.latest()
            if latest is None:
                raise FileNotFoundError(
                    f"--resume: no complete checkpoint in {out / 'checkpoints'}; run without "
                    "--resume to start, or point output_dir at the run to continue"
                )
            saved_processes = latest.manifest.get("num_processes", 1)
            if saved_processes != acc.num_processes:
                raise ValueError(
                    f"checkpoint {latest.path} was written by {saved_processes} processes, this run "
                    f"has {acc.num_processes}: an exact resume needs the same number (each process "
                    "reads its own share of the data); relaunch with the same --num_processes"
                )
            # The precision a launcher sets is not in the config: compare the one in effect.
            saved_precision = latest.manifest.get("mixed_precision")
            if saved_precision is not None and saved_precision != acc.mixed_precision:
                raise ValueError(
                    f"checkpoint {latest.path} was trained with mixed precision "
                    f"{saved_precision!r}, this run has {acc.mixed_precision!r} (from the config or "
                    "`accelerate launch --mixed_precision`): resume with the same precision"
                )
            acc.load_state(str(latest.path))
            self.resumed_from, self.checkpoint_step = latest.path, latest.step
            self._restretch_schedule(saved_cfg)
            if acc.is_main_process:
                print(f"resuming {cfg.name} from checkpoint step {latest.step}")
        elif (earlier := self.checkpoints.latest()) is not None:
            # A fresh run here would interleave its checkpoints with the old run's: keep-last-k
            # prunes by step number (deleting the new ones first) and --resume would continue
            # the old run.
            raise FileExistsError(
                f"{out / 'checkpoints'} holds checkpoints of an earlier run (newest: step "
                f"{earlier.step}): pass --resume to continue it, or start this run in a new "
                "output_dir (--output-dir DIR), or delete that directory"
            )

    def _restretch_schedule(self, saved: TrainConfig | None) -> None:
        """Make the loaded optimiser use the learning rate of *this* run's schedule from now on.

        The LR lambdas are rebuilt from this config (``max_steps``) while the optimiser's current
        rate comes back from the checkpoint, where the old run's schedule set it: without this,
        the first resumed step would use the old schedule's rate (0 after the end of a finished
        cosine run) and the later ones the new schedule's. A changed ``max_steps`` under a
        schedule that depends on it is announced.
        """
        sched = self.lr_schedule.scheduler
        groups = sched.optimizer.param_groups
        before = [g["lr"] for g in groups]
        pairs = zip(sched.base_lrs, sched.lr_lambdas, strict=True)
        now = [base * lam(sched.last_epoch) for base, lam in pairs]
        for group, lr in zip(groups, now, strict=True):
            group["lr"] = lr
        sched._last_lr = list(now)  # what get_last_lr reports (LambdaLR keeps it from its step)
        step, cfg = self.state.step, self.cfg
        if (
            saved is not None
            and saved.max_steps != cfg.max_steps
            and cfg.max_steps > step
            and before != now
            and self.accelerator.is_main_process
        ):
            warnings.warn(
                f"--resume with max_steps {saved.max_steps} -> {cfg.max_steps} and lr_schedule "
                f"{cfg.optim.lr_schedule!r}: steps 1..{step} followed the {saved.max_steps}-step "
                f"schedule; from step {step + 1} on the learning rate follows the "
                f"{cfg.max_steps}-step one ({before[0]:.3g} -> {now[0]:.3g} at step {step + 1}), "
                f"so the run is not the same as a {cfg.max_steps}-step run from the start",
                stacklevel=3,
            )

    def stop_message(self) -> str:
        """The line to print when the run is interrupted (Ctrl-C): where it stood, how to go on."""
        # What is on disk, not what this process last noted: an interrupt can land between a
        # checkpoint's publication and the bookkeeping after it.
        latest = self.checkpoints.latest()
        saved = latest.step if latest is not None else None
        where = (
            f"newest complete checkpoint: step {saved} (resume with --resume)"
            if saved is not None
            else "no checkpoint yet"
        )
        return f"stopped at step {self.state.step}; {where}"

    # ---------------------------------------------------------------------------- checkpoint hooks

    def _save_hook(self, models: list, weights: list, output_dir: str) -> None:
        # Only what trains goes into a checkpoint; frozen parts are rebuilt from `model`. Under
        # FSDP / DeepSpeed Accelerate writes the (sharded) model itself and passes no weights here.
        if not weights:
            return
        if self.accelerator.is_main_process:
            module = self.accelerator.unwrap_model(models[0])
            state = {
                n: p.detach().contiguous().cpu()
                for n, p in module.named_parameters()
                if p.requires_grad
            }
            save_safetensors(state, Path(output_dir) / TRAINABLE_FILE)
        weights.clear()

    def _load_hook(self, models: list, input_dir: str) -> None:
        if not models:  # FSDP / DeepSpeed: Accelerate loaded the model state already
            return
        module = self.accelerator.unwrap_model(models.pop())
        state = load_file(str(Path(input_dir) / TRAINABLE_FILE))
        if sorted(state) != sorted(self.trainable_names):
            missing = sorted(set(self.trainable_names) - set(state))
            unexpected = sorted(set(state) - set(self.trainable_names))
            raise KeyError(
                f"checkpoint {input_dir} was written by a run with other trainable parameters "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}): resume with the same config"
            )
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)

    # -------------------------------------------------------------------------------------- data

    def _default_dataset(self, epoch: int):
        from vap_env.train.data import clip_loader

        acc = self.accelerator
        return clip_loader(
            self.cfg,
            self.wm.config,
            epoch,
            rank=acc.process_index,
            world_size=acc.num_processes,
        )

    def _epoch_batches(self, epoch: int) -> Iterator[ClipBatch]:
        """The batches of one epoch: from the data, or (latent cache, epoch >= 1) from the cache."""
        acc, cache = self.accelerator, self.module.cache
        if cache is not None and epoch >= 1:
            if not cache.complete:  # resumed after epoch 0: rebuild the cache as epoch 0 did
                for batch in self.dataset_factory(0):
                    self.module.encode(ClipBatch.from_items(batch, acc.device))
                cache.complete = True
            yield from cache.batches(
                epoch,
                self.cfg.seed,
                acc.process_index,
                self.cfg.batch_size,
                acc.device,
                self.module.wm.image_latents,
            )
            return
        for batch in self.dataset_factory(epoch):
            yield ClipBatch.from_items(batch, acc.device)
        if cache is not None:
            cache.complete = True

    def _micro_batches(self) -> Iterator[ClipBatch]:
        """This process's micro-batches from the checkpointed position on, epoch after epoch."""
        acc, state, cache = self.accelerator, self.state, self.module.cache
        while True:
            seen = 0
            for batch in self._epoch_batches(state.epoch):
                seen += 1
                if seen <= state.batch_in_epoch:
                    # consumed before the checkpoint this run resumed from; the cache still
                    # meets its clips in the order the uninterrupted run did
                    if cache is not None and batch.encoded is None:
                        self.module.encode(batch)
                    continue
                state.batch_in_epoch = seen
                yield batch
            if seen == 0:
                n, data = acc.num_processes, self.cfg.data
                what = (
                    f"the training data yielded no full batch of {self.cfg.batch_size} clips for "
                    f"process {acc.process_index} of {n} in epoch {state.epoch}"
                )
                if n == 1:
                    raise ValueError(
                        f"{what}: check data.data_dir ({data.data_dir!r}) and data.split "
                        f"({data.split!r}), or lower batch_size"
                    )
                mine = ""
                if self.num_episodes is not None:
                    count = len(range(acc.process_index, self.num_episodes, n))
                    mine = f" ({count} of the split's {self.num_episodes})"
                raise ValueError(
                    f"{what}: episodes are sharded per process (episode i -> process i % {n}) "
                    f"and this process's share{mine} holds fewer clips than that; use fewer "
                    f"processes, more episodes or a lower batch_size (data.data_dir "
                    f"{data.data_dir!r}, data.split {data.split!r})"
                )
            state.epoch += 1
            state.batch_in_epoch = 0

    # -------------------------------------------------------------------------------------- loop

    def save_checkpoint(self) -> Path:
        """Write the resumable state of the current step (every process must call this)."""
        acc, state = self.accelerator, self.state
        mine = torch.tensor([[state.epoch, state.batch_in_epoch]], device=acc.device)
        state.positions = acc.gather(mine).tolist()
        path = self.checkpoints.save(
            state.step,
            lambda d: acc.save_state(str(d)),
            is_main_process=acc.is_main_process,
            barrier=acc.wait_for_everyone,
            extra={
                "name": self.cfg.name,
                "stage": self.cfg.stage,
                "num_processes": acc.num_processes,
                "mixed_precision": acc.mixed_precision,
                # a model built from its config draws its frozen parts from this device's RNG
                "device_type": acc.device.type,
            },
        )
        self.checkpoint_step = state.step
        return path

    def _loop(
        self,
        stop: int,
        batches: Iterator[ClipBatch],
        bar: tqdm,
        result: TrainResult,
        clips_per_step: int,
    ) -> None:
        """The optimiser steps up to ``stop`` (``train``'s body between setup and export)."""
        cfg, acc, state = self.cfg, self.accelerator, self.state
        while state.step < stop:
            t0 = time.perf_counter()
            lr = self.lr_schedule.get_last_lr()[0]  # the rate this step uses (read before it steps)
            sums: dict[str, float] = {}
            for micro in range(cfg.gradient_accumulation_steps):
                batch = next(batches)
                gen = micro_batch_generator(
                    cfg.seed,
                    state.step * cfg.gradient_accumulation_steps + micro,
                    acc.process_index,
                )
                with acc.accumulate(self.model):
                    losses = self.model(batch, gen)
                    acc.backward(losses["loss"])
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.optim.max_grad_norm)
                    self.optimizer.step()
                    self.lr_schedule.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.gradient_accumulation_steps
            if not acc.sync_gradients:
                raise RuntimeError(
                    "gradient accumulation went out of step with the optimiser steps; this is a bug"
                )
            state.step += 1
            logs = {
                k: float(acc.reduce(torch.tensor(v, device=acc.device), reduction="mean"))
                for k, v in sorted(sums.items())
            }
            if not math.isfinite(logs["loss"]):
                raise FloatingPointError(
                    f"loss is {logs['loss']} at step {state.step}: lower optim.learning_rate, "
                    "enable gradient clipping or use bf16 instead of fp16"
                )
            result.losses.append(logs["loss"])
            result.lrs.append(lr)
            dt = time.perf_counter() - t0
            logs["lr"] = lr
            logs["clips_per_s"] = clips_per_step / dt
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", clips_s=f"{logs['clips_per_s']:.2f}")
            if cfg.log_with and (state.step % cfg.log_every == 0 or state.step == 1):
                acc.log({f"train/{k}": v for k, v in logs.items()}, step=state.step)
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()

    def train(self, until: int | None = None) -> TrainResult:
        """Run until ``max_steps``, checkpointing and logging; then export the weights.

        ``until`` stops earlier, after that step's checkpoint and without exporting (what a
        preempted job does); ``--resume`` continues from there.
        """
        cfg, acc, state = self.cfg, self.accelerator, self.state
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        out = Path(cfg.output_dir)
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, out / TRAIN_CONFIG_FILE)
        if cfg.log_with:
            quiet_tensorflow()  # torch's TensorBoard writer imports TensorFlow when present
            acc.init_trackers(cfg.name, config=_flat_hparams(cfg))
        result = TrainResult(steps=state.step)
        batches = self._micro_batches()
        clips_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * acc.num_processes
        bar = tqdm(
            total=cfg.max_steps,
            initial=state.step,
            desc=cfg.name,
            disable=not acc.is_local_main_process,
        )
        try:
            self._loop(stop, batches, bar, result, clips_per_step)
        except KeyboardInterrupt:
            # Ctrl-C: the command prints stop_message(); keep what was logged
            if cfg.log_with:
                acc.end_training()
            raise
        finally:
            bar.close()
        if self.checkpoint_step != state.step:
            self.save_checkpoint()
        result.checkpoint = self.checkpoints.path_for(state.step)
        result.steps = state.step
        if state.step >= cfg.max_steps:
            result.export_dir = self.export()
        if cfg.log_with:
            acc.end_training()
        return result

    # ------------------------------------------------------------------------------------ export

    @torch.no_grad()
    def measure_latent_scale(self) -> float:
        """1 / std of the (unscaled) VAE latents over ``scale_batches`` batches of training data."""
        acc, vae = self.accelerator, self.wm.vae
        values, count = [], 0
        for batch in self.dataset_factory(0):
            clip = ClipBatch.from_items(batch, acc.device)
            x = clip.video.to(vae.dtype).permute(0, 2, 1, 3, 4)
            values.append(vae.encode(x).latent_dist.mode().float().flatten())
            count += 1
            if count >= self.cfg.scale_batches:
                break
        z = torch.cat(values)
        std = acc.reduce(z.std().reshape(1), reduction="mean").item()
        if not math.isfinite(std) or std <= 0:
            raise FloatingPointError(f"latent std is {std}: the VAE collapsed; check its training")
        return 1.0 / std

    def export(self) -> Path:
        """Write the trained world model where ``load_world_model(dir)`` (and the env) reads it."""
        acc, cfg = self.accelerator, self.cfg
        wm: WorldModel = acc.unwrap_model(self.model).wm
        if cfg.stage == "vae":
            set_latent_scale(wm, self.measure_latent_scale())
        target = cfg.resolved_export_dir
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_export(wm, cfg, self.state.step, target)
        acc.wait_for_everyone()
        return target


def save_export(wm: WorldModel, cfg: TrainConfig, step: int, target: Path) -> None:
    """Write ``wm``, trained by run ``cfg`` for ``step`` steps, atomically as a world model dir."""
    # The export declares the source model's trainable parts, not this stage's override, so
    # that the next stage (or a user's fine-tuning) starts from the preset's recipe.
    source = _source_config(cfg.model)
    if source is not None:
        wm.config = dataclasses.replace(wm.config, trainable=source.trainable)
    with atomic_directory(target, extra={"name": cfg.name, "step": step}) as d:
        wm.save_pretrained(d, dtype=cfg.export_dtype)
        (d / "training.json").write_text(
            json.dumps({"name": cfg.name, "stage": cfg.stage, "steps": step}, indent=1) + "\n"
        )


def train(
    cfg: TrainConfig, *, resume: bool = False, dataset_factory: DatasetFactory | None = None
) -> TrainResult:
    """Build a ``Trainer`` and run it (the body of ``vap-env train``)."""
    return Trainer(cfg, resume=resume, dataset_factory=dataset_factory).train()


def export_checkpoint(
    checkpoint: str | Path, out: str | Path | None = None, *, device: str | None = None
) -> Path:
    """Export one checkpoint of a ``diffusion``-stage run as a world model (``weights=<dir>``).

    The run's ``train_config.yaml`` (in the checkpoint's run directory) rebuilds the model as the
    trainer did; the checkpoint's trainable weights go into it, and it is saved as the end of the
    run would save it (``export_dtype``), atomically. This is how an earlier checkpoint of a run
    gets evaluated (``vap-env train eval --weights``) or picked.

    Args:
        checkpoint: ``<output_dir>/checkpoints/checkpoint-<step>``.
        out: the export directory (default: ``<output_dir>/export-<step>``); must not exist.
        device: where to build the model; None: the kind of device the run trained on. A model
            built from its config (``tiny``) must be built on that kind: its frozen parts (the
            random text encoder, a VAE not taken with ``vae_from``) are not in the checkpoint but
            drawn again from the seeded generator of that device.
    Returns:
        The export directory.
    """
    ckpt = Path(checkpoint)
    manifest = read_manifest(ckpt, verify=True)
    if manifest is None:
        raise ValueError(
            f"{str(ckpt)!r} is not a complete training checkpoint (no MANIFEST.json, or a file does "
            "not match it); pass <output_dir>/checkpoints/checkpoint-<step>"
        )
    step = int(manifest["step"])
    config_path = ckpt.parent.parent / TRAIN_CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{str(config_path)!r} does not exist: a checkpoint is exported with the config of its "
            "run, which the trainer writes into output_dir; keep checkpoints/ inside the run "
            "directory"
        )
    cfg = load_train_config(config_path)
    for key, value in (("model", cfg.model), ("vae_from", cfg.vae_from)):
        path = Path(value).expanduser() if value is not None and is_path_like(value) else None
        if path is not None and not path.is_absolute() and not path.exists():
            raise FileNotFoundError(
                f"{str(config_path)!r} has {key}: {value}, a path relative to the directory the "
                f"run trained in, which is not here ({Path.cwd()}): run train export from there"
            )
    if cfg.stage != "diffusion":
        raise ValueError(
            f"checkpoint {str(ckpt)!r} is from a {cfg.stage!r}-stage run, whose export measures "
            "the latent scale on the training data: export the newest checkpoint by resuming, "
            f"`vap-env train --config {config_path} --resume --max-steps {step}`"
        )
    weights_file = ckpt / TRAINABLE_FILE
    if not weights_file.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(ckpt)!r} has no {TRAINABLE_FILE}: FSDP / DeepSpeed runs save a "
            "sharded model state; export those with `accelerate merge-weights` or by resuming"
        )
    target = Path(out) if out is not None else ckpt.parent.parent / f"export-{step:08d}"
    if target.exists():
        raise FileExistsError(f"{str(target)!r} exists; pass another --out or delete it")
    trained_on = manifest.get("device_type", "cpu")  # checkpoints before it was recorded: cpu
    device = device or trained_on
    source = _source_config(cfg.model)
    built = source is not None and source.backbone is None
    if built and torch.device(device).type != trained_on:
        raise ValueError(
            f"checkpoint {str(ckpt)!r} was trained on {trained_on}: model {cfg.model!r} is built "
            "from its config, and its frozen parts (not in the checkpoint) are drawn again from "
            f"that device's seeded generator, so export it on {trained_on} (--device "
            f"{trained_on}), not on {device}"
        )
    precision = manifest.get("mixed_precision") or cfg.mixed_precision
    wm = build_model(cfg, device, _WEIGHT_DTYPES.get(precision, torch.float32))
    # names as the trainer saved them: parameters of TrainingModule, whose world model is `wm.`
    # (the LGF projector, `lgf.`, is a training-only head)
    state = {
        name.removeprefix("wm."): tensor
        for name, tensor in load_file(str(weights_file)).items()
        if name.startswith("wm.")
    }
    params = {n: p for n, p in wm.named_parameters() if p.requires_grad}
    if sorted(state) != sorted(params):
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise KeyError(
            f"checkpoint {str(ckpt)!r} does not fit the model of {str(config_path)!r} (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}): was the config changed after the run?"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].data = tensor.to(device=params[name].device, dtype=torch.float32)
    save_export(wm, cfg, step, target)
    return target
