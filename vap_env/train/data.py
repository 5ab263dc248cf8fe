"""Training data: ``ClipDataset`` windows at the model's resolution, batched per process.

The clip length and resolution come from the world model's config (K = ``chunk_frames``, H x W), the
shuffle from the run's seed and the epoch (``ClipDataset.set_epoch``), and the sharding from the
Accelerate process: episode ``i`` goes to process ``i % world_size`` (and, within it, to one
DataLoader worker), so every process reads a disjoint share and the order is a pure function of
(seed, epoch, rank, world size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader

from vap_env.models import WorldModelConfig
from vap_env.models.weights import world_model_config
from vap_env.train.config import TrainConfig

if TYPE_CHECKING:
    from vap_env.data.clip_cache import ClipCache


def check_data(cfg: TrainConfig) -> int:
    """Open the configured dataset (RLDS directory or clip cache) and split now.

    Errors come before any model is built: a clip cache is checked against the model's
    resolution (``world_model_config``, which builds nothing), the split, the skeleton kind and
    the DROID intrinsics, and the error gives the ``vap-env data cache`` command that rewrites it
    or the config lines that match it.

    Returns the number of episodes in the split.
    """
    from vap_env.data.clip_cache import ClipCache, is_clip_cache

    if is_clip_cache(cfg.data.data_dir):
        cache = ClipCache(cfg.data.data_dir, arrays=False)  # the index is enough here
        model = world_model_config(cfg.model)
        data = cfg.data
        cache.check(
            data.split,
            model.height,
            model.width,
            data.skeleton_from_ground_truth,
            data.intrinsics,
            advice=_cache_fix(cache, cfg, model),
        )
        lengths = np.diff(cache.offsets)  # (N,) frames per episode
        if lengths.max() < model.chunk_frames + 1:
            raise ValueError(
                f"clip cache {data.data_dir!r}: its longest episode has {int(lengths.max())} "
                f"frames, a clip of model {cfg.model!r} needs {model.chunk_frames + 1} (the "
                "context frame + chunk_frames): cache longer episodes or use a model with "
                "a shorter chunk"
            )
        return cache.num_episodes
    from vap_env.data import open_rlds

    try:
        return open_rlds(cfg.data.data_dir, intrinsics=cfg.data.intrinsics).num_episodes(
            cfg.data.split
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err}. data.data_dir must be an RT-1 / DROID dataset directory; make a synthetic one "
            f"with `vap-env data synth --schema rt1 --episodes 400 --out {cfg.data.data_dir}` or "
            "pass --data-dir"
        ) from err


def _cache_fix(cache: ClipCache, cfg: TrainConfig, model: WorldModelConfig) -> str:
    """The two ways out of a clip cache that does not match the run: rewrite it, or match it."""
    from vap_env.data.intrinsics import intrinsics_key

    data, meta = cfg.data, cache.meta
    command = [
        "vap-env data cache",
        f"--data-dir {meta.get('source') or '<rlds dir>'}",
        f"--split {data.split}",
        f"--height {model.height}",
        f"--width {model.width}",
    ]
    if data.skeleton_from_ground_truth:
        command.append("--skeleton-from-ground-truth")
    droid = meta.get("intrinsics") is not None  # RT-1 caches record none (RT-1 ignores K)
    if droid and data.intrinsics:
        command.append("--intrinsics " + ",".join(repr(float(v)) for v in data.intrinsics))
    command.append(f"--out {data.data_dir} --overwrite")
    fix = f"rewrite the cache for this run with `{' '.join(command)}`"
    # What the config can change to read this cache as it is (the resolution is the model's).
    lines = []
    if meta.get("split") != data.split:
        lines.append(f"data.split: {meta.get('split')}")
    if bool(meta.get("skeleton_from_ground_truth")) != data.skeleton_from_ground_truth:
        cached = str(bool(meta.get("skeleton_from_ground_truth"))).lower()
        lines.append(f"data.skeleton_from_ground_truth: {cached}")
    if droid and meta["intrinsics"] != intrinsics_key(data.intrinsics):
        lines.append(
            "data.intrinsics: [" + ", ".join(repr(float(v)) for v in meta["intrinsics"]) + "]"
        )
    size = (meta.get("height"), meta.get("width"))
    if size != (model.height, model.width):
        return (
            f"{fix} (the cache is {size[1]}x{size[0]}, model {cfg.model!r} is "
            f"{model.width}x{model.height}; only a model of the cache's size could train on it)"
        )
    if not lines:
        return fix
    return f"{fix}, or set {'; '.join(f'`{line}`' for line in lines)} in the training config"


def clip_loader(
    cfg: TrainConfig,
    model: WorldModelConfig,
    epoch: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    split: str | None = None,
    shuffle: bool | None = None,
) -> DataLoader:
    """The DataLoader of one epoch of this process's clips.

    Items (collated): ``context`` (B, 3, H, W), ``frames`` (B, K, 3, H, W), ``skeleton``
    (B, K+1, 3, H, W) as uint8, ``instruction`` list of B strings (+ ``actions``, masks, ids).
    """
    from vap_env.data import ClipConfig, ClipDataset

    data = cfg.data
    clip_cfg = ClipConfig(
        chunk_frames=model.chunk_frames,
        height=model.height,
        width=model.width,
        stride=data.stride,
        shuffle=data.shuffle if shuffle is None else shuffle,
        shuffle_buffer=data.shuffle_buffer,
        seed=cfg.seed,
        output="uint8",  # 4x less to collate and move; ClipBatch converts to [-1, 1] on device
        masks=False,
        skeleton_from_ground_truth=data.skeleton_from_ground_truth,
    )
    dataset = ClipDataset(
        data.data_dir,
        split or data.split,
        clip_cfg,
        rank=rank,
        world_size=world_size,
        intrinsics=data.intrinsics,
    )
    dataset.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=data.num_workers,
        drop_last=True,  # equal batch shapes; the dropped remainder changes every epoch
        persistent_workers=False,
    )
