"""The pretrained half of the world model: CogVideoX transformer, VAE, scheduler and T5 text encoder.

Everything here is diffusers / transformers; this module only finds, builds and adapts it:

- ``resolve_backbone_dir``: a diffusers-format directory, ``$VAP_BACKBONE_DIR/<name>``, or a hub id
  (hub cache first; a download only when online). Offline with no copy -> an error that says what to
  download and where to point the config.
- ``build_backbone`` / ``load_backbone``: seeded random weights from the config's architecture
  mappings (``tiny``, timing runs) or ``from_pretrained`` from a directory.
- ``widen_patch_embed``: text-to-video backbones (CogVideoX-2B) get image-to-video conditioning by
  widening the patch embedding 16 -> 32 input channels, the new ones zero (unchanged output).
- ``check_geometry``: resolution / frame constraints of the backbone, with errors that say the fix.
- ``fit_positions``: absolute positional tables fitted to the chunk's latent grid once (the learned
  table of CogVideoX-5B-I2V cut to the chunk length, not replaced by sin-cos).

CogVideoX 1.5 backbones (temporal patching ``patch_size_t``, inverted latent scaling, the ``ofs``
embedding) are rejected with a clear error; the presets are the 1.0 models the VAP paper builds on.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import logging as diffusers_logging
from torch import nn
from transformers import AutoTokenizer, ByT5Tokenizer, T5Config, T5EncoderModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from vap_env.config import did_you_mean
from vap_env.models.config import TEMPORAL_COMPRESSION, WorldModelConfig
from vap_env.models.sampler import SCHEDULERS

# A folder holding downloaded backbones by repo name: $VAP_BACKBONE_DIR/CogVideoX-2b/transformer/...
BACKBONE_DIR_ENV = "VAP_BACKBONE_DIR"
# What a world model needs from a hub repo (the full repos also hold single-file checkpoints).
_HUB_PATTERNS = [
    "model_index.json",
    "transformer/*",
    "vae/*",
    "scheduler/*",
    "text_encoder/*",
    "tokenizer/*",
]


@dataclass
class Backbone:
    """The pretrained (or randomly built) parts, before ControlNet / LoRA are added."""

    transformer: CogVideoXTransformer3DModel
    vae: AutoencoderKLCogVideoX
    scheduler: SchedulerMixin
    text_encoder: T5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # "random" or the directory it was loaded from


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~", "/"))


def _download_hint(repo: str) -> str:
    name = repo.split("/")[-1]
    return (
        f"Download it once (on a machine with internet):\n"
        f"    hf download {repo} --local-dir /path/to/{name}\n"
        f"then point the world model at that directory: set `backbone: /path/to/{name}` in the model "
        f"preset, or pass load_world_model(..., backbone='/path/to/{name}'), or set "
        f"{BACKBONE_DIR_ENV}=/path/to (a folder that holds {name}/)."
    )


def _missing_parts(path: Path) -> list[str]:
    """The files of a diffusers-format CogVideoX directory that ``path`` lacks.

    The text encoder and tokenizer are required too: without them the instructions would be
    embedded by a random T5 or tokenised for another vocabulary, silently meaningless.
    """
    needed = ["transformer/config.json", "vae/config.json", "text_encoder/config.json"]
    missing = [f for f in needed if not (path / f).is_file()]
    if not (path / "tokenizer").is_dir() or not any((path / "tokenizer").iterdir()):
        missing.append("tokenizer/")
    return missing


def resolve_backbone_dir(backbone: str) -> Path:
    """The local diffusers-format directory of ``backbone`` (a path or a hub id).

    Raises:
        FileNotFoundError: a local path that does not exist or lacks one of transformer/, vae/,
            text_encoder/, tokenizer/ (``_missing_parts``), or a downloaded repo that lacks them.
        OSError: a hub id that is not cached (or only partly) while offline, or cannot be
            downloaded; the message says what to download and where to point the config.
    """
    path = Path(backbone).expanduser()
    if path.is_dir():
        missing = _missing_parts(path)
        if missing:
            raise FileNotFoundError(
                f"backbone directory {str(path)!r} is not in diffusers format: it lacks {missing} "
                "(save_pretrained of the transformer, VAE, T5 text encoder and tokenizer, as the "
                "CogVideoX hub repos are laid out)"
            )
        return path
    if not _looks_like_hub_id(backbone):
        raise FileNotFoundError(
            f"backbone directory {backbone!r} does not exist (and it is not a hub id like "
            "'THUDM/CogVideoX-2b'): check the path in the preset's `backbone` field or the backbone= "
            "argument"
        )
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    name = backbone.split("/")[-1]
    env_root = os.environ.get(BACKBONE_DIR_ENV)
    if env_root and (Path(env_root) / name).is_dir():
        return resolve_backbone_dir(str(Path(env_root) / name))
    partial = ""
    try:
        cached = Path(
            snapshot_download(backbone, allow_patterns=_HUB_PATTERNS, local_files_only=True)
        )
        # An interrupted download leaves a snapshot with some files only: complete it below.
        missing = _missing_parts(cached)
        if not missing:
            return cached
        partial = f" (the cached snapshot {str(cached)!r} lacks {missing})"
    except LocalEntryNotFoundError:
        pass
    if constants.is_offline_mode():
        raise OSError(
            f"backbone {backbone!r} is a hub id, but it is not on this machine{partial} and the hub "
            f"is offline (HF_HUB_OFFLINE is set). {_download_hint(backbone)}"
        )
    try:
        downloaded = Path(snapshot_download(backbone, allow_patterns=_HUB_PATTERNS))
    except Exception as err:  # network errors come in many types; all get the same advice
        raise OSError(
            f"backbone {backbone!r} could not be downloaded ({err}). {_download_hint(backbone)}"
        ) from err
    missing = _missing_parts(downloaded)
    if missing:
        raise FileNotFoundError(
            f"hub repo {backbone!r} lacks {missing}: it is not a diffusers-format CogVideoX repo"
        )
    return downloaded


@contextlib.contextmanager
def _diffusers_log_level(level: int):
    before = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(level)
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(before)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block of random initialisation under ``seed`` without touching the global RNG state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _check_kwargs(cls: type, kwargs: dict[str, Any], field_name: str) -> None:
    """Unknown architecture keys name the model config field, not just diffusers' __init__."""
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        hints = "".join(did_you_mean(k, allowed) for k in unknown)
        raise TypeError(
            f"model config `{field_name}` has unknown key(s) {unknown} for {cls.__name__}; "
            f"allowed: {allowed}.{hints}"
        )


def build_backbone(cfg: WorldModelConfig, device: torch.device) -> Backbone:
    """A backbone with seeded random weights from the config's architecture mappings.

    Built directly on ``device`` (``meta`` gives a weightless model for FLOP counting); the
    tokenizer is byte-level ByT5, which needs no files, so this works fully offline.
    """
    _check_kwargs(CogVideoXTransformer3DModel, cfg.transformer, "transformer")
    _check_kwargs(AutoencoderKLCogVideoX, cfg.vae, "vae")
    # text_offload keeps the T5 on the CPU from the start (a meta build stays weightless).
    text_device = torch.device("cpu") if cfg.text_offload and device.type != "meta" else device
    with seeded(cfg.seed, device), torch.device(device):
        transformer = CogVideoXTransformer3DModel(**cfg.transformer)
        vae = AutoencoderKLCogVideoX(**cfg.vae)
        if text_device == device:
            text_encoder = T5EncoderModel(T5Config(**cfg.text_encoder))
    if text_device != device:
        with seeded(cfg.seed, text_device), torch.device(text_device):
            text_encoder = T5EncoderModel(T5Config(**cfg.text_encoder))
    scheduler = SCHEDULERS[cfg.scheduler](**cfg.scheduler_config)
    return Backbone(transformer, vae, scheduler, text_encoder, ByT5Tokenizer(), "random")


def load_backbone(cfg: WorldModelConfig, device: torch.device, dtype: torch.dtype) -> Backbone:
    """The backbone named by ``cfg.backbone`` (``from_pretrained``), or a random one when None.

    A backbone directory must hold transformer/, vae/, text_encoder/ and tokenizer/
    (``resolve_backbone_dir``); a missing ``scheduler/`` falls back to ``scheduler_config``. With
    ``cfg.text_offload`` the T5 stays on the CPU (it is never moved to ``device``).
    """
    if cfg.backbone is None:
        backbone = build_backbone(cfg, device)
        for module in (backbone.transformer, backbone.vae, backbone.text_encoder):
            if module.dtype != dtype:
                # diffusers warns on every ModelMixin.to(dtype) about fp32-pinned modules, which
                # CogVideoX has none of.
                with _diffusers_log_level(logging.ERROR):
                    module.to(dtype=dtype)
        return backbone
    root = resolve_backbone_dir(cfg.backbone)
    transformer = CogVideoXTransformer3DModel.from_pretrained(
        root, subfolder="transformer", torch_dtype=dtype
    )
    vae = AutoencoderKLCogVideoX.from_pretrained(root, subfolder="vae", torch_dtype=dtype)
    scheduler_cls = SCHEDULERS[cfg.scheduler]
    if (root / "scheduler").is_dir():
        # The released folder names the DDIM class; the config's scheduler name picks the update rule.
        scheduler = scheduler_cls.from_config(
            scheduler_cls.load_config(root, subfolder="scheduler")
        )
    else:
        scheduler = scheduler_cls(**cfg.scheduler_config)
    text_encoder = T5EncoderModel.from_pretrained(root, subfolder="text_encoder", torch_dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(root, subfolder="tokenizer")
    # With text_offload the T5 (9 GB for CogVideoX) must not visit the GPU even briefly: the peak
    # would be the sum of everything.
    for module in (transformer, vae) if cfg.text_offload else (transformer, vae, text_encoder):
        module.to(device)
    return Backbone(transformer, vae, scheduler, text_encoder, tokenizer, str(root))


def vae_spatial_factor(vae: AutoencoderKLCogVideoX) -> int:
    """Spatial downsampling of the CogVideoX VAE (8 for the released one)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_geometry(cfg: WorldModelConfig, backbone: Backbone) -> None:
    """Validate that the backbone can generate ``cfg``'s chunks; errors say what to change."""
    tcfg, vcfg = backbone.transformer.config, backbone.vae.config
    ofs = getattr(tcfg, "ofs_embed_dim", None)
    if tcfg.patch_size_t is not None or vcfg.invert_scale_latents or ofs is not None:
        raise ValueError(
            f"backbone {backbone.source!r} is a CogVideoX 1.5 model (patch_size_t={tcfg.patch_size_t}, "
            f"invert_scale_latents={vcfg.invert_scale_latents}, ofs_embed_dim={ofs}); vap-env "
            "supports the CogVideoX 1.0 "
            "backbones (THUDM/CogVideoX-2b, THUDM/CogVideoX-5b-I2V)"
        )
    if int(vcfg.temporal_compression_ratio) != TEMPORAL_COMPRESSION:
        raise ValueError(
            f"VAE temporal_compression_ratio={vcfg.temporal_compression_ratio}: the chunk layout "
            f"(context + K frames, K a multiple of {TEMPORAL_COMPRESSION}) needs {TEMPORAL_COMPRESSION}"
        )
    latent = vcfg.latent_channels
    if tcfg.in_channels not in (latent, 2 * latent) or tcfg.out_channels != latent:
        raise ValueError(
            f"transformer in_channels={tcfg.in_channels}, out_channels={tcfg.out_channels} do not fit "
            f"the VAE's latent_channels={latent}: expected in_channels {latent} (text-to-video, widened "
            f"here) or {2 * latent} (image-to-video) and out_channels {latent}"
        )
    factor = vae_spatial_factor(backbone.vae) * tcfg.patch_size
    if cfg.height % factor or cfg.width % factor:
        near = [max(factor, round(size / factor) * factor) for size in (cfg.height, cfg.width)]
        raise ValueError(
            f"height x width = {cfg.height}x{cfg.width} is not a multiple of {factor} (VAE downsampling "
            f"{vae_spatial_factor(backbone.vae)} x patch size {tcfg.patch_size}); use e.g. "
            f"{near[0]}x{near[1]}"
        )
    if tcfg.use_learned_positional_embeddings:
        spatial = vae_spatial_factor(backbone.vae)
        native = (tcfg.sample_height * spatial, tcfg.sample_width * spatial)
        if (cfg.height, cfg.width) != native:
            raise ValueError(
                f"height x width = {cfg.height}x{cfg.width}, but this backbone has learned positional "
                f"embeddings for {native[0]}x{native[1]} only (CogVideoX-5B-I2V: 480x720): set "
                f"height={native[0]}, width={native[1]}"
            )
        table_frames = (tcfg.sample_frames - 1) // TEMPORAL_COMPRESSION + 1
        if cfg.latent_frames > table_frames:
            raise ValueError(
                f"chunk_frames={cfg.chunk_frames} gives {cfg.latent_frames} latent frames, more than the "
                f"{table_frames} of the backbone's learned positional table: use chunk_frames <= "
                f"{(table_frames - 1) * TEMPORAL_COMPRESSION}"
            )
    text_dim = backbone.text_encoder.config.d_model
    if text_dim != tcfg.text_embed_dim:
        raise ValueError(
            f"text encoder d_model={text_dim} differs from the transformer's text_embed_dim="
            f"{tcfg.text_embed_dim}: the text_encoder architecture must match the transformer"
        )


def widen_patch_embed(transformer: CogVideoXTransformer3DModel, latent_channels: int) -> None:
    """Give a text-to-video transformer image-to-video input: latents ‖ image latents on channels.

    The patch embedding's input grows from C to 2C channels; the new weights are zero, so the model's
    output is unchanged until training moves them (they train with ``trainable: [patch_embed]``).
    """
    old = transformer.patch_embed.proj
    if not isinstance(old, nn.Conv2d):
        raise TypeError(
            f"expected a Conv2d patch embedding (CogVideoX 1.0), got {type(old).__name__}"
        )
    new = nn.Conv2d(
        2 * latent_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :latent_channels].copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    transformer.patch_embed.proj = new
    transformer.register_to_config(in_channels=2 * latent_channels)


def fit_positions(
    transformer: CogVideoXTransformer3DModel,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
) -> None:
    """Fit the patch embedding's absolute positional table to the chunk's latent grid, once.

    - Learned table (CogVideoX-5B-I2V): keep its first ``latent_frames`` frames. diffusers' patch
      embedding replaces a learned table by fresh sin-cos embeddings whenever the frame count differs
      from ``sample_frames`` (CogVideoXPatchEmbed.forward), which would silently drop the learned
      positions for short chunks; the table's first F' frames are the positions the model was trained
      with for F' latent frames.
    - Sin-cos table (CogVideoX-2B): compute it for the chunk's grid now instead of on every forward
      (diffusers recomputes it whenever the grid differs from the sample size); same values.
    - Rotary-only backbones have no table: no-op.
    """
    embed = transformer.patch_embed
    frames = (latent_frames - 1) * embed.temporal_compression_ratio + 1
    if embed.use_learned_positional_embeddings:
        p = embed.patch_size
        tokens = latent_frames * (embed.sample_height // p) * (embed.sample_width // p)
        embed.pos_embedding = embed.pos_embedding[:, : embed.max_text_seq_length + tokens].clone()
        embed.sample_frames = frames
    elif embed.use_positional_embeddings:
        device = embed.proj.weight.device
        embed.pos_embedding = embed._get_positional_embeddings(
            latent_height, latent_width, frames, device=device
        )
        embed.sample_height, embed.sample_width, embed.sample_frames = (
            latent_height,
            latent_width,
            frames,
        )
