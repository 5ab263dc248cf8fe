"""Cache one split's training clips at the model's resolution: ``vap-env data cache``.

    vap-env data cache --data-dir data/synth-rt1 --split train --height 64 --width 80 \\
        --skeleton-from-ground-truth --out data/rt1-train-64x80.npz

The ``.npz`` trains like the directory (``vap-env train --data-dir data/rt1-train-64x80.npz``) on a
machine without TensorFlow or pybullet; see ``vap_env.data.clip_cache``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env data cache``."""

    data_dir: str = field(metadata={"help": "RT-1 / DROID dataset directory"})
    out: str = field(metadata={"help": "clip cache to write (.npz)"})
    split: str = field(default="train", metadata={"help": "split to cache"})
    height: int = field(default=64, metadata={"help": "frame height (the model's)"})
    width: int = field(default=80, metadata={"help": "frame width (the model's)"})
    skeleton_from_ground_truth: bool = field(
        default=False,
        metadata={
            "help": "draw the full arm from synthetic ground-truth joints (as training does)"
        },
    )
    intrinsics: tuple[float, ...] = field(
        default=(),
        metadata={
            "help": "DROID: the camera's fx fy cx cy at 320x180 for the skeletons (empty: the "
            "default K; training must use the same, data.intrinsics)"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        from vap_env.data.intrinsics import as_intrinsics

        as_intrinsics(self.intrinsics)  # a bad K fails before the dataset is opened
        if self.height < 8 or self.width < 8:
            raise ValueError(f"--height {self.height} / --width {self.width}: both must be >= 8")


def main(cfg: Config) -> int:
    """Write the cache; prints its path, episode count, size and time."""
    from vap_env.data.clip_cache import ClipCache, write_clip_cache

    if os.path.exists(cfg.out) and not cfg.overwrite:
        raise FileExistsError(
            f"{cfg.out} already exists; pass --overwrite to replace it or choose another --out"
        )
    start = time.perf_counter()
    path = write_clip_cache(
        cfg.data_dir,
        cfg.split,
        cfg.out,
        height=cfg.height,
        width=cfg.width,
        skeleton_from_ground_truth=cfg.skeleton_from_ground_truth,
        intrinsics=cfg.intrinsics,
        progress=cfg.progress,
    )
    episodes = ClipCache(path, arrays=False).num_episodes
    print(
        f"cached {episodes} {cfg.split} episodes at {cfg.width}x{cfg.height} to {path} "
        f"({os.path.getsize(path) / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s"
    )
    return 0
