"""Weights I/O: our parts of a world model as safetensors + a config JSON, and ``load_world_model``.

A saved world model is a directory::

    world_model.json      {"format": "vap-env-world-model", "version": 1, "parts": [...], "config": {...}}
    weights.safetensors   "<module>.<state-dict key>" -> tensor, for the parts listed

Which parts are saved follows from the config: the ControlNet always, the LoRA adapter when
``lora_rank > 0``, every part named in ``trainable`` (e.g. the widened patch embedding of a
text-to-video backbone) and, when the backbone is built from the config rather than loaded
(``tiny``), the whole model (transformer, VAE, text encoder). The pretrained backbone itself is never
copied: the JSON names it and loading fetches it from there. Tensors are stored in their dtype, so
load -> save -> load is bit-exact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vap_env.config import did_you_mean, from_dict, to_dict
from vap_env.models.config import (
    WorldModelConfig,
    load_model_preset,
    model_presets,
    resolve_dtype,
)
from vap_env.models.lora import is_lora_parameter
from vap_env.models.world_model import WorldModel

CONFIG_FILE = "world_model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "vap-env-world-model"
VERSION = 1

# part -> (module attribute of WorldModel, which of its state-dict keys belong to the part)
_PARTS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "controlnet": ("controlnet", lambda key: True),
    "transformer": ("transformer", lambda key: True),
    "lora": ("transformer", is_lora_parameter),
    "patch_embed": ("transformer", lambda key: key.startswith("patch_embed.proj.")),
    "vae": ("vae", lambda key: True),
    "text_encoder": ("text_encoder", lambda key: True),
}


def save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` with the file mode any other new file would get.

    safetensors >= 0.8 writes through a temporary file created 0600 and renames it, so the
    weights would be readable by their owner alone while the JSON beside them is not: on a shared
    machine another user could then not load a checkpoint whose directory they can list. The mode
    is set to ``0o666 & ~umask``, as ``open()`` would.
    """
    save_file(tensors, str(path), metadata=metadata)
    umask = os.umask(0)  # reading the umask means setting it: restore at once
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def saved_parts(cfg: WorldModelConfig) -> tuple[str, ...]:
    """The parts a saved ``cfg`` model stores (see the module docstring)."""
    if cfg.backbone is None:
        return ("transformer", "vae", "text_encoder", "controlnet")
    parts = ["controlnet"] + (["lora"] if cfg.lora_rank else [])
    parts += [p for p in cfg.trainable if p not in parts]
    return tuple(parts)


def weights_state(wm: WorldModel) -> dict[str, torch.Tensor]:
    """``"<module>.<key>" -> tensor`` for every saved part of ``wm`` (shared storage kept once per key)."""
    state: dict[str, torch.Tensor] = {}
    for part in saved_parts(wm.config):
        module_name, belongs = _PARTS[part]
        for key, tensor in getattr(wm, module_name).state_dict().items():
            if belongs(key):
                state[f"{module_name}.{key}"] = tensor
    return state


def save_world_model(
    wm: WorldModel, directory: str | Path, *, dtype: str | torch.dtype | None = None
) -> Path:
    """Save ``wm``'s own weights and config to ``directory`` (created); returns the directory.

    Args:
        dtype: store the floating-point tensors in this dtype (``"float16"`` halves a float32
            model's file); None keeps each tensor's own. Loading casts them to the model's dtype.
    """
    store = None if dtype is None else resolve_dtype(dtype, wm.config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in weights_state(wm).items():
        tensor = tensor.detach()
        # safetensors refuses tensors that share storage (T5's tied embeddings): copy repeats.
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        if store is not None and tensor.is_floating_point():
            tensor = tensor.to(store)
        tensors[key] = tensor.contiguous().cpu()
    # A diverged run (NaN/inf weights) would otherwise export a model that renders black frames.
    bad = non_finite(tensors)
    if bad:
        raise FloatingPointError(
            f"not saving to {str(directory)!r}: {len(bad)} tensor(s) hold NaN or inf, e.g. "
            f"{bad[:3]}; the model diverged (lower optim.learning_rate, keep gradient clipping on)"
        )
    save_safetensors(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "parts": list(saved_parts(wm.config)),
        "config": to_dict(dataclasses.replace(wm.config, weights=None)),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_saved_config(directory: str | Path) -> WorldModelConfig:
    """The ``WorldModelConfig`` stored in a saved world-model directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(directory)!r} is not a saved world model: it has no {CONFIG_FILE}"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-export or re-download it") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{path} has format {meta.get('format')!r} version {meta.get('version')!r}; this vap-env "
            f"reads {FORMAT!r} version {VERSION}"
        )
    return from_dict(WorldModelConfig, meta["config"], where=str(path))


def load_weights(wm: WorldModel, directory: str | Path) -> None:
    """Load a saved directory's tensors into ``wm``; the key sets must match exactly."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"saved world model {str(directory)!r} has no {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it is truncated or corrupt: "
            "re-export or re-download it"
        ) from None
    bad = non_finite(tensors)
    if bad:
        raise ValueError(
            f"{path} holds NaN or inf in {len(bad)} tensor(s), e.g. {bad[:3]}: it was saved from a "
            "diverged run; use an earlier checkpoint"
        )
    expected = set(weights_state(wm))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise KeyError(
            f"{path} does not fit this model (parts {list(saved_parts(wm.config))}): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; was it saved from "
            "a model with another config?"
        )
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module_name, sub_key = key.split(".", 1)
        by_module.setdefault(module_name, {})[sub_key] = tensor
    for module_name, state in by_module.items():
        try:
            getattr(wm, module_name).load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise ValueError(
                f"{path} does not fit this model's {module_name}: {err}; was it saved from a model "
                "with another config?"
            ) from None
    wm.instructions.clear_cache()


def _resolve_weights_dir(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_absolute():
        path = Path(str(resources.files("vap_env"))) / path
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"weights directory {str(path)!r} (from the config's `weights` field) does not exist or "
            f"has no {CONFIG_FILE}"
        )
    return path


def _hub_weights(repo: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = [CONFIG_FILE, WEIGHTS_FILE]
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:
        if constants.is_offline_mode():
            raise OSError(
                f"{repo!r} is not a preset or a local directory; as a hub id it is not cached and the "
                f"hub is offline. If it holds vap-env weights, download it once with `hf download "
                f"{repo} --local-dir DIR` and pass load_world_model(DIR); if it is a CogVideoX "
                f"backbone, it goes in backbone=: load_world_model('cogvideox-2b', backbone={repo!r})"
            ) from None
    return Path(snapshot_download(repo, allow_patterns=patterns))


def packaged_checkpoints() -> dict[str, Path]:
    """Checkpoints shipped inside the package (``vap_env/assets/weights/<name>``), by name."""
    from importlib import resources

    root = Path(str(resources.files("vap_env").joinpath("assets", "weights")))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


def is_path_like(text: str) -> bool:
    """Whether a model source written as ``text`` names a path, not a preset or a hub id."""
    return text.startswith((".", "/", "~")) or len(text.split("/")) > 2


def _source_config(source: str | Path | WorldModelConfig) -> tuple[WorldModelConfig, Path | None]:
    if isinstance(source, WorldModelConfig):
        return source, None
    text = str(source)
    presets = model_presets()
    if text in presets:
        return load_model_preset(text), None
    packaged = packaged_checkpoints()
    if text in packaged:
        return read_saved_config(packaged[text]), packaged[text]
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return read_saved_config(path), path
        if (path / "transformer").is_dir():
            raise ValueError(
                f"{text!r} is a diffusers-format backbone, not a saved world model: load it as the "
                f"backbone of a preset, e.g. load_world_model('cogvideox-2b', backbone={text!r})"
            )
        if (path / "MANIFEST.json").is_file() and (path / "trainable.safetensors").is_file():
            raise FileNotFoundError(
                f"{text!r} is a training checkpoint, not a world model: export it first with "
                f"`vap-env train export --checkpoint {text}` and load the directory it prints"
            )
        if (path / "export" / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{text!r} is a training run directory: its world model is {str(path / 'export')!r}"
            )
        raise FileNotFoundError(f"{text!r} is a directory without {CONFIG_FILE}")
    parts = text.split("/")
    if path.exists() or is_path_like(text):
        # A path, not a hub id (org/name): a missing export is the likely cause, not a typo.
        raise FileNotFoundError(
            f"world model directory {text!r} does not exist (or is not a directory); if it is the "
            "export of an earlier training stage, run that stage first"
        )
    if len(parts) == 2 and all(parts):
        hub_dir = _hub_weights(text)
        if not (hub_dir / CONFIG_FILE).is_file():
            raise ValueError(
                f"hub repo {text!r} has no {CONFIG_FILE}; if it is a CogVideoX backbone, load it as the "
                f"backbone of a preset: load_world_model('cogvideox-2b', backbone={text!r})"
            )
        return read_saved_config(hub_dir), hub_dir
    raise KeyError(
        f"unknown world model {text!r}: not a preset ({presets}), a shipped checkpoint "
        f"({sorted(packaged)}), an existing directory or a hub id (org/name)."
        f"{did_you_mean(text, [*presets, *packaged])}"
    )


def world_model_config(source: str | Path | WorldModelConfig) -> WorldModelConfig:
    """The ``WorldModelConfig`` that ``load_world_model(source)`` would build, without building it."""
    return _source_config(source)[0]


def load_world_model(
    source: str | Path | WorldModelConfig = "tiny",
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    **overrides: Any,
) -> WorldModel:
    """Build a world model from a preset name, a saved directory, a hub id or a config.

    Args:
        source: ``"tiny"`` / ``"cogvideox-2b"`` / ``"cogvideox-5b-i2v"``, a shipped checkpoint
            (``"tiny-rt1"``), a directory written by ``save_pretrained``, a hub id of one, or a
            ``WorldModelConfig``.
        device: where the model runs.
        dtype: compute dtype (None: the config's ``dtype``).
        **overrides: ``WorldModelConfig`` fields to replace, e.g. ``backbone="/data/CogVideoX-2b"``.

    Our weights (the saved directory, or the config's ``weights`` field) are loaded on top of the
    backbone; without them the ControlNet is the zero-initialised copy and LoRA the identity.
    """
    cfg, weights_dir = _source_config(source)
    fields = {f.name for f in dataclasses.fields(WorldModelConfig)}
    for key in overrides:
        if key not in fields:
            raise TypeError(
                f"load_world_model got an unknown config field {key!r}.{did_you_mean(key, sorted(fields))}"
            )
    cfg = dataclasses.replace(cfg, **overrides)
    if weights_dir is None and cfg.weights is not None:
        weights_dir = _resolve_weights_dir(cfg.weights)
    wm = WorldModel.from_config(cfg, device=device, dtype=dtype)
    if weights_dir is not None:
        load_weights(wm, weights_dir)
        wm.config = dataclasses.replace(cfg, weights=str(weights_dir))
        if wm.ignores_context():
            warnings.warn(
                f"weights {str(weights_dir)!r} leave the context channels of the patch embedding "
                "at zero (the transformer is text-to-video, widened here, and its training did not "
                f"train patch_embed: trainable={list(cfg.trainable)}), so generated frames ignore "
                "the context frame. Retrain with patch_embed in trainable, or use an "
                "image-to-video backbone",
                stacklevel=2,
            )
    return wm
