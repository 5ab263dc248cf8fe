"""Training data: ``ClipDataset`` windows at the model's resolution, batched per process.

The clip length and resolution come from the world model's config (K = ``chunk_frames``, H x W), the
shuffle from the run's seed and the epoch (``ClipDataset.set_epoch``), and the sharding from the
Accelerate process: episode ``i`` goes to process ``i % world_size`` (and, within it, to one
DataLoader worker), so every process reads a disjoint share and the order is a pure function of
(seed, epoch, rank, world size).
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from vap_env.models import WorldModelConfig
from vap_env.train.config import TrainConfig


def check_data(cfg: TrainConfig) -> int:
    """Open the configured dataset (RLDS directory or clip cache) and split now.

    Errors come before any model is built.

    Returns the number of episodes in the split.
    """
    from vap_env.data.clip_cache import ClipCache, is_clip_cache

    if is_clip_cache(cfg.data.data_dir):
        cache = ClipCache(cfg.data.data_dir)
        if cache.split != cfg.data.split:
            raise ValueError(
                f"clip cache {cfg.data.data_dir!r} holds split {cache.split!r}, the config trains "
                f"on data.split = {cfg.data.split!r}: set data.split or cache that split"
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
